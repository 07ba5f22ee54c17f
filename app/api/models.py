"""Machine access: personal API tokens, and the answers to creates retried with the same
Idempotency-Key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.accounts.models import User
from app.core.clock import utcnow
from app.extensions import db


class ApiToken(db.Model):
    """A personal token: shown once, stored as its SHA-256 (a token is random, so a plain
    hash is enough to find it and useless to a thief of the table)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # shown in lists: "fg_Ab3dE…"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()

    @classmethod
    def visible_to(cls, user):
        return cls.user_id == user.id


class IdempotentResponse(db.Model):
    """What a create answered, kept so that the same Idempotency-Key from the same user
    gets the same answer instead of a second object."""

    __tablename__ = "idempotent_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    body: Mapped[dict] = mapped_column(JSON)
    location: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_idempotent_responses_user_key"),
        Index("ix_idempotent_responses_created_at", "created_at"),
    )
