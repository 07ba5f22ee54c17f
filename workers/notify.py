"""Sending what the outbox holds."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from sqlalchemy.exc import OperationalError

from app.core.clock import utcnow
from app.core.jobs import dispatch
from app.extensions import db
from app.notify import services
from app.notify.models import Channel
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
    return relay_due(utcnow())


def relay_due(now: datetime, max_batches: int = 1000) -> int:
    """Claim what is due at ``now`` and hand it out a batch at a time. Each claim is committed
    before its batch leaves, so no batch is ever sent by two workers."""
    services.recover_stale(now)
    db.session.commit()
    handed = 0
    for channel in Channel:
        for _ in range(max_batches):
            ids = services.claim_due(now, channel.value)
            db.session.commit()
            if not ids:
                break
            dispatch(SEND_TASK, (ids,))
            handed += len(ids)
    return handed


@shared_task(name=SEND_TASK, acks_late=True)
def send_batch(ids: list[int]) -> dict[str, int]:
    """Send one claimed batch. Redelivered after a crash, it sends again only what is still
    'sending'; the gateway drops what it already has (same idempotency key)."""
    counts = services.deliver(ids)
    db.session.commit()
    return counts
