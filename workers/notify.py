"""Sending what the outbox holds."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from sqlalchemy import update

from app.core.clock import utcnow
from app.core.jobs import DATABASE_GONE, dispatch
from app.extensions import db
from app.notify import services
from app.notify.models import Channel, Notification, NotificationStatus
from app.notify.services import RELAY_TASK, SEND_TASK


@shared_task(
    name=RELAY_TASK,
    autoretry_for=(ConnectionError, *DATABASE_GONE),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def relay() -> int:
    """Hand due messages to senders in batches (beat runs it; each commit nudges it)."""
    return relay_due(utcnow())


def relay_due(now: datetime, max_batches: int = 1000) -> int:
    """Claim what is due at ``now`` and hand it out a batch at a time. Each claim is committed
    before its batch leaves, so no batch is ever sent by two workers. A batch that cannot
    leave (Redis away) goes back to the queue at once, and the relay stops: otherwise every
    due message would be claimed and wait as 'sending' until it counts as abandoned
    (NOTIFY_STALE_MINUTES); the next relay (beat's, or a commit's) hands them out.

    The channels take turns, a batch each (at most ``max_batches`` each): the senders take
    batches in the order they are handed out, and a locked train's seat SMS must not wait
    behind the staff emails of the same lock."""
    services.recover_stale(now)
    db.session.commit()
    handed = 0
    channels = list(Channel)
    for _ in range(max_batches):
        for channel in list(channels):
            ids = services.claim_due(now, channel.value)
            db.session.commit()
            if not ids:
                channels.remove(channel)
                continue
            if not dispatch(SEND_TASK, (ids,)):
                _unclaim(ids, now)
                db.session.commit()
                return handed
            handed += len(ids)
        if not channels:
            break
    return handed


def _unclaim(ids: list[int], claimed_at: datetime) -> None:
    """This relay's claim of these rows, undone (rows a batch run here already sent stay)."""
    db.session.execute(
        update(Notification)
        .where(
            Notification.id.in_(ids),
            Notification.status == NotificationStatus.SENDING,
            Notification.claimed_at == claimed_at,
        )
        .values(status=NotificationStatus.PENDING.value, claimed_at=None)
    )


@shared_task(
    name=SEND_TASK,
    acks_late=True,
    autoretry_for=DATABASE_GONE,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def send_batch(ids: list[int]) -> dict[str, int]:
    """Send one claimed batch. Run again (redelivered after a crash, or retried because the
    database went away before the outcome was recorded), it sends again only what is still
    'sending'; the gateway drops what it already has (same idempotency key). Retries
    exhausted, the rows are sent again once they count as abandoned."""
    counts = services.deliver(ids)
    db.session.commit()
    return counts
