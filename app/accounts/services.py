"""Account operations. They flush and audit; the caller commits."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.accounts.models import Organization, User
from app.core.access import Role
from app.core.clock import utcnow
from app.core.errors import DomainError
from app.core.identity import InvalidIdentifier, validate_credit_code, validate_region_code
from app.core.regions import covering_codes
from app.core.services import record_audit
from app.extensions import db

MIN_PASSWORD_LENGTH = 10

# Checked when the address is unknown, so a miss costs as long as a wrong password and the
# answer time does not tell which addresses have accounts.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_hex(16), method="scrypt")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def find_organization(reference: str) -> Organization | None:
    """By id or by unified social credit code (as the CLI accepts either)."""
    if reference.isdigit() and len(reference) < 18:
        return db.session.get(Organization, int(reference))
    try:
        code = validate_credit_code(reference)
    except InvalidIdentifier:
        return None
    return db.session.scalar(select(Organization).where(Organization.credit_code == code))


def organization_users(organization_id: int) -> list[User]:
    """The active accounts of an employer (its HR staff)."""
    return list(
        db.session.scalars(select(User).where(User.organization_id == organization_id, User.active))
    )


def region_coordinators(*region_codes: str) -> list[User]:
    """Active coordinators whose region covers any of these places (chosen by the database:
    every lock, submission and approval asks, and a province has hundreds of coordinators)."""
    covering = set().union(*(covering_codes(code) for code in region_codes))
    return list(
        db.session.scalars(
            select(User)
            .where(
                User.role == Role.COORDINATOR.value,
                User.active,
                User.region_code.in_(sorted(covering)),
            )
            .order_by(User.id)
        )
    )


def create_organization(
    name: str, credit_code: str, region_code: str | None = None, actor: User | None = None
) -> Organization:
    try:
        code = validate_credit_code(credit_code)
    except InvalidIdentifier as error:
        raise DomainError(f"credit_code.{error.reason}", field="credit_code") from error
    if db.session.scalar(select(Organization.id).where(Organization.credit_code == code)):
        raise DomainError("credit_code.taken", field="credit_code")
    organization = Organization(
        name=name.strip(),
        credit_code=code,
        region_code=validate_region_code(region_code) if region_code else None,
    )
    db.session.add(organization)
    db.session.flush()
    record_audit("organization.created", organization, actor)
    return organization


def create_user(
    email: str,
    password: str,
    role: Role,
    display_name: str = "",
    organization: Organization | None = None,
    region_code: str | None = None,
    actor: User | None = None,
) -> User:
    role = Role(role)
    email = normalize_email(email)
    if find_user_by_email(email) is not None:
        raise DomainError("email.taken", field="email")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DomainError("password.too_short", field="password")
    if role == Role.EMPLOYER and organization is None:
        raise DomainError("organization.required", field="organization")
    if role != Role.EMPLOYER and organization is not None:
        raise DomainError("organization.only_employers", field="organization")
    if role == Role.COORDINATOR:
        if not region_code:
            raise DomainError("region_code.required", field="region_code")
        try:
            region_code = validate_region_code(region_code)
        except InvalidIdentifier as error:
            raise DomainError(f"region_code.{error.reason}", field="region_code") from error
    else:
        region_code = None
    user = User(
        email=email,
        display_name=display_name.strip() or email.split("@")[0],
        role=role.value,
        organization=organization,
        region_code=region_code,
    )
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    record_audit("user.created", user, actor, role=role.value)
    return user


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, else None, taking as long either way."""
    user = find_user_by_email(email)
    if user is None:
        check_password_hash(_UNKNOWN_USER_HASH, password)
        return None
    if not user.check_password(password) or not user.active:
        record_audit("user.sign_in_failed", user)
        return None
    user.last_login_at = utcnow()
    record_audit("user.signed_in", user, user)
    return user


def record_sign_out(user: User) -> None:
    record_audit("user.signed_out", user, user)


def set_locale(user: User, locale: str) -> None:
    user.locale = locale
    db.session.flush()
