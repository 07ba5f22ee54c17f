"""``flask users ...``: account management from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.accounts import services
from app.core.access import Role
from app.core.errors import DomainError
from app.extensions import db

users_cli = AppGroup("users", help="Manage accounts.")

CLI_ERRORS = {
    "email.taken": "an account with this email already exists",
    "password.too_short": (
        f"the password must have at least {services.MIN_PASSWORD_LENGTH} characters"
    ),
    "organization.required": "an employer account needs --org",
    "organization.only_employers": "only employer accounts belong to an organization",
    "region_code.required": "a coordinator account needs --region (six-digit GB/T 2260 code)",
    "region_code.format": "--region must be a six-digit GB/T 2260 code, for example 500106",
}


@users_cli.command("create")
@click.option("--email", required=True, help="Sign-in address.")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]))
@click.option("--name", "display_name", default="", help="Name shown in the service.")
@click.option("--org", "organization_ref", help="Employer: organization id or credit code.")
@click.option("--region", "region_code", help="Coordinator: six-digit region code.")
@click.password_option(help="Asked for when not given (min. 10 characters).")
def create_user_command(email, role, display_name, organization_ref, region_code, password):
    """Create an account."""
    organization = None
    if organization_ref:
        organization = services.find_organization(organization_ref)
        if organization is None:
            raise click.UsageError(f"no organization with id or credit code {organization_ref!r}")
    try:
        user = services.create_user(
            email, password, Role(role), display_name, organization, region_code
        )
    except DomainError as error:
        db.session.rollback()
        raise click.UsageError(CLI_ERRORS.get(error.code, error.code)) from None
    db.session.commit()
    click.echo(f"Created {user.role} account {user.email} (id {user.id}).")
