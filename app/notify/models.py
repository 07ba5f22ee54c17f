"""The outbox: every message the service sends, written in the transaction that caused it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from app.core.access import Role, route_in_region
from app.core.clock import utcnow
from app.extensions import db


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"
    INAPP = "inapp"


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # a permanent error (an invalid number): not retried by itself
    DEAD = "dead"  # transient errors until the last attempt


class Notification(db.Model):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    # event + channel + recipient: the same event never makes two messages to one person.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    event: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(8))
    # Phone number or email address, encrypted (core/pii.py); None for in-app messages.
    recipient_token: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    template: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8))
    # Ids and display values for the template; never whole ID numbers.
    context: Mapped[dict] = mapped_column(JSON, default=dict)
    send_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(8), default=NotificationStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(100))
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where the message's request or trip leaves from and goes to: a coordinator's outbox
    # shows their region's messages. None: no region (an admin's outbox shows everything).
    origin_region_code: Mapped[str | None] = mapped_column(String(6))
    destination_region_code: Mapped[str | None] = mapped_column(String(6))

    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'email', 'inapp')", name="channel_known"),
        CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'dead')", name="status_known"
        ),
        CheckConstraint("channel = 'inapp' OR recipient_token IS NOT NULL", name="recipient_given"),
        CheckConstraint("channel != 'inapp' OR user_id IS NOT NULL", name="inapp_has_user"),
        # What the relay asks for: a channel's due pending rows, oldest first. The index
        # answers it in order, so a claim stays fast however long the queue.
        Index("ix_notifications_due", "status", "channel", "send_at", "id"),
        # The campaign dashboard counts a period's messages by channel and status.
        Index("ix_notifications_created", "created_at", "channel", "status"),
        # Reminders are taken back by event prefix (drop_pending): LIKE 'prefix%' can use a
        # PostgreSQL index only with pattern operators unless the database collation is C.
        Index(
            "ix_notifications_event",
            "event",
            postgresql_ops={"event": "varchar_pattern_ops"},
        ),
    )

    @classmethod
    def visible_to(cls, user):
        if user.role == Role.ADMIN:
            return true()
        if user.role == Role.COORDINATOR:
            return route_in_region(cls, user)
        return cls.user_id == user.id
