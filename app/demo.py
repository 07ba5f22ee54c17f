"""``flask demo seed``: demo organizations and accounts for trying the service.

Each domain adds its demo data here as it lands. Running the command again changes nothing.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.accounts import services as accounts
from app.core.access import Role
from app.extensions import db

demo_cli = AppGroup("demo", help="Demo data.")

DEMO_PASSWORD = "fangang-demo-2026"  # noqa: S105 - printed on purpose, demo only

DEMO_ORGANIZATIONS = [
    # name, unified social credit code, region code
    ("济南城建工程有限公司", "91370100MA3C12340R", "370100"),
    ("山东鲁中建设集团有限公司", "91370102MA3D567800", "370102"),
]

DEMO_USERS = [
    # email, role, name, organization index, region code
    ("admin@demo.fangang.cn", Role.ADMIN, "系统管理员", None, None),
    ("coordinator@demo.fangang.cn", Role.COORDINATOR, "王调度", None, "370100"),
    ("hr@jinan-chengjian.demo.fangang.cn", Role.EMPLOYER, "李人事", 0, None),
    ("hr@luzhong.demo.fangang.cn", Role.EMPLOYER, "张人事", 1, None),
]


@demo_cli.command("seed")
def seed_command():
    """Create the demo organizations and accounts (idempotent) and print the credentials."""
    organizations = []
    for name, credit_code, region_code in DEMO_ORGANIZATIONS:
        organization = accounts.find_organization(credit_code)
        if organization is None:
            organization = accounts.create_organization(name, credit_code, region_code)
        organizations.append(organization)
    for email, role, name, organization_index, region_code in DEMO_USERS:
        if accounts.find_user_by_email(email) is None:
            organization = None if organization_index is None else organizations[organization_index]
            accounts.create_user(email, DEMO_PASSWORD, role, name, organization, region_code)
    db.session.commit()

    click.echo(f"Demo accounts (password for all: {DEMO_PASSWORD}):")
    for email, role, name, organization_index, _region in DEMO_USERS:
        where = ""
        if organization_index is not None:
            where = f" — {DEMO_ORGANIZATIONS[organization_index][0]}"
        click.echo(f"  {role.value:<12} {email:<38} {name}{where}")
