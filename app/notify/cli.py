"""``flask notify ...``: tools for the notification channels."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from app.notify.fake_gateway import FakeSmsGateway

notify_cli = AppGroup("notify", help="Notifications (SMS and email): development tools.")


@notify_cli.command("fake-sms-gateway", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9090, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Append each accepted message to this file as a JSON line.",
)
def fake_sms_gateway(host: str, port: int, record: Path | None) -> None:
    """Serve a fake SMS gateway until Ctrl-C (no authentication: keep it on 127.0.0.1)."""
    try:
        gateway = FakeSmsGateway(host, port, record_file=record)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None
    click.echo(f"Fake SMS gateway listening on {gateway.url}")
    click.echo(f"Point the app at it:  SMS_GATEWAY_URL={gateway.url}")
    if record:
        click.echo(f"Recording accepted messages to {record}")
    click.echo(f"Messages: GET {gateway.url}/v1/sms/messages   Press Ctrl-C to stop.")
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
        click.echo("Stopped.")
