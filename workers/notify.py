"""Sending what the outbox holds."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app.core.clock import utcnow
from app.extensions import db
from app.notify import services
from app.notify.services import RELAY_TASK, SEND_TASK


@shared_task(
    name=RELAY_TASK,
    autoretry_for=(ConnectionError, OperationalError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def relay() -> int:
    """Hand due messages to senders in batches (beat runs it; each commit nudges it)."""
    return services.relay(utcnow())


@shared_task(name=SEND_TASK, acks_late=True)
def send_batch(ids: list[int]) -> dict[str, int]:
    """Send one claimed batch. Redelivered after a crash, it sends again only what is still
    'sending'; the gateway drops what it already has (same idempotency key)."""
    counts = services.deliver(ids)
    db.session.commit()
    return counts
