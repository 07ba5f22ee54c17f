"""``flask health ...``: an issuer key pair and signed passes, for demos and tests.

Real passes come from health authorities; these commands let a demo or a test play one.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
import segno
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.core.clock import local_today, utcnow
from app.core.errors import DomainError
from app.core.identity import InvalidIdentifier, validate_id_number, validate_region_code
from app.extensions import db
from app.health import services
from app.health.models import HealthIssuer
from app.health.passes import generate_key, key_id, public_jwk_from_text, sign_pass

health_cli = AppGroup("health", help="Health-certificate issuers and passes (demo and test tools).")
issuer_cli = AppGroup("issuer", help="The trust list.")
health_cli.add_command(issuer_cli)


def write_private_key(path: Path, private_pem: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(private_pem)


def create_demo_issuer(
    name: str, region_code: str, key_out: Path, valid_from: date, valid_until: date | None
) -> HealthIssuer:
    """A new key pair: the public half on the trust list, the private half in ``key_out``."""
    private_pem, public_jwk = generate_key()
    issuer = services.create_issuer(
        name,
        region_code,
        json.dumps(public_jwk),
        services.local_day_start(valid_from),
        services.local_day_end(valid_until) if valid_until else None,
        None,
    )
    write_private_key(key_out, private_pem)
    return issuer


@issuer_cli.command("create")
@click.option("--name", required=True, help="For example 重庆市云阳县卫生健康委员会.")
@click.option("--region", "region_code", required=True, help="Six-digit code (claim iss).")
@click.option(
    "--key-out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the private key (PEM, readable by you only).",
)
@click.option(
    "--valid-from", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Default: today."
)
@click.option("--valid-until", type=click.DateTime(["%Y-%m-%d"]), default=None)
def create_issuer_command(name, region_code, key_out, valid_from, valid_until):
    """Generate an EC P-256 key pair and put its public half on the trust list."""
    try:
        region_code = validate_region_code(region_code)
    except InvalidIdentifier:
        raise click.UsageError("--region must be a six-digit region code") from None
    if key_out.exists():
        raise click.UsageError(f"{key_out} exists: not overwriting a private key")
    today = local_today(current_app.config["BABEL_DEFAULT_TIMEZONE"])
    try:
        issuer = create_demo_issuer(
            name,
            region_code,
            key_out,
            valid_from.date() if valid_from else today,
            valid_until.date() if valid_until else None,
        )
    except DomainError as error:
        db.session.rollback()
        raise click.UsageError(error.code) from None
    db.session.commit()
    click.echo(f"Issuer {issuer.name} added (kid {issuer.kid}); private key in {key_out}.")


def issue_demo_pass(
    private_pem: str,
    id_number: str,
    name: str,
    status: str,
    issued_at: datetime,
    valid_for: timedelta,
    jti: str | None = None,
) -> str:
    kid = key_id(public_jwk_from_text(private_pem))
    issuer = db.session.scalar(select(HealthIssuer).where(HealthIssuer.kid == kid))
    claims = {
        "iss": issuer.region_code if issuer else "000000",
        "sub": id_number,
        "name": name,
        "status": status,
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + valid_for).timestamp()),
        "jti": jti or str(uuid.uuid4()),
    }
    return sign_pass(private_pem, claims)


@health_cli.command("issue-pass")
@click.option(
    "--key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The issuer's private key (from 'issuer create').",
)
@click.option("--id-number", required=True)
@click.option("--name", required=True)
@click.option("--status", type=click.Choice(["green", "yellow", "red"]), default="green")
@click.option("--issued-at", type=click.DateTime(), default=None, help="UTC; default: now.")
@click.option("--valid-hours", type=int, default=7 * 24, show_default=True)
@click.option("--jti", default=None, help="The pass's unique id; default: a new UUID.")
@click.option(
    "--qr",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the pass as a QR code picture (PNG).",
)
def issue_pass_command(key_file, id_number, name, status, issued_at, valid_hours, jti, qr):
    """Sign a health pass (TEST AND DEMO ONLY) and print its text."""
    try:
        id_number = validate_id_number(id_number, utcnow().date())
    except InvalidIdentifier as error:
        raise click.UsageError(f"--id-number: {error.reason}") from None
    issued = issued_at.replace(tzinfo=UTC) if issued_at else utcnow()
    token = issue_demo_pass(
        key_file.read_text(), id_number, name, status, issued, timedelta(hours=valid_hours), jti
    )
    if qr:
        segno.make(token, error="m").save(str(qr), scale=4)
    click.echo(token)
