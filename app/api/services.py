"""Personal API tokens and idempotent creates. Services flush and never commit."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta

from sqlalchemy import delete, select

from app.accounts.models import User
from app.api.models import ApiToken, IdempotentResponse
from app.core.clock import utcnow
from app.core.errors import DomainError
from app.core.services import record_audit
from app.extensions import db

TOKEN_PREFIX = "fg_"  # noqa: S105 - a marker, not a secret
IDEMPOTENCY_KEEP = timedelta(hours=24)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; the secret is returned once and never stored."""
    name = (name or "").strip()
    if not name:
        raise DomainError("token.name_missing", "name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id, name=name[:100], token_hash=_digest(secret), prefix=secret[:8]
    )
    db.session.add(token)
    db.session.flush()
    record_audit("api_token.created", token, user)
    return token, secret


def revoke_token(token: ApiToken, actor: User) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.flush()
        record_audit("api_token.revoked", token, actor)


def user_for_token(secret: str) -> tuple[User, ApiToken] | None:
    """The active user a live token acts for, or None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=5):
        token.last_used_at = now  # coarse, so a busy client does not write on every call
    return token.user, token


def request_fingerprint(method: str, path: str, body: object) -> str:
    return hashlib.sha256(
        json.dumps([method, path, body], sort_keys=True, default=str).encode()
    ).hexdigest()


def stored_response(user: User, key: str) -> IdempotentResponse | None:
    db.session.execute(
        delete(IdempotentResponse).where(
            IdempotentResponse.created_at < utcnow() - IDEMPOTENCY_KEEP
        )
    )
    return db.session.scalar(
        select(IdempotentResponse).where(
            IdempotentResponse.user_id == user.id, IdempotentResponse.key == key
        )
    )


def store_response(
    user: User,
    key: str,
    fingerprint: str,
    method: str,
    path: str,
    status: int,
    body: dict,
    location: str | None,
) -> None:
    db.session.add(
        IdempotentResponse(
            user_id=user.id,
            key=key,
            method=method,
            path=path,
            request_hash=fingerprint,
            status=status,
            body=body,
            location=location,
        )
    )
    db.session.flush()
