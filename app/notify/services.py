"""The outbox: write messages with the transaction that causes them; relay and deliver later.

``notify`` writes a row (one per event, channel and recipient, whatever happens twice) and asks
for a relay after the commit. The relay task (workers/notify.py) claims due rows (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so any number of relays never claim one row twice) and hands them
to a channel in batches. If Redis is down when a request commits, the request still succeeds
and the row waits: the periodic relay (beat) sends it when Redis is back. Rows left
``sending`` by a killed worker go back to ``pending`` after a while; the gateway drops the
resent duplicates by their key.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from flask import current_app
from flask_babel import force_locale
from psycopg import sql
from sqlalchemy import ColumnElement, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from app.accounts.models import User
from app.core.bulk import bulk_insert
from app.core.clock import utcnow
from app.core.jobs import enqueue_after_commit
from app.core.pii import vault
from app.core.services import record_audit
from app.extensions import db
from app.notify.channels import Outcome, OutgoingMessage, Result, SmsGateway, SmtpMailer
from app.notify.models import Channel, Notification, NotificationStatus

RELAY_TASK = "fangang.notify.relay"
SEND_TASK = "fangang.notify.send_batch"
BATCH_SIZE = 100


# --- writing -------------------------------------------------------------------------------


class HasRegions(Protocol):
    """What a message is about, for its region (a transport request or a trip)."""

    origin_region_code: str
    destination_region_code: str


def _regions(about: HasRegions | None) -> dict[str, str | None]:
    """The outbox row's regions (see Notification): a coordinator's outbox shows its own."""
    return {
        "origin_region_code": about.origin_region_code if about else None,
        "destination_region_code": about.destination_region_code if about else None,
    }


def notify(
    event: str,
    channel: Channel,
    template: str,
    context: dict,
    *,
    to: str | None = None,
    user: User | None = None,
    locale: str | None = None,
    send_at: datetime | None = None,
    about: HasRegions | None = None,
) -> Notification:
    """Put one message in the outbox (or return the one this event already put there)."""
    pii = vault()
    recipient = f"user:{user.id}" if channel == Channel.INAPP else pii.lookup_hash(to or "")[:24]
    key = f"{event}|{channel}|{recipient}"
    existing = db.session.scalar(select(Notification).where(Notification.idempotency_key == key))
    if existing is not None:
        return existing
    notification = Notification(
        idempotency_key=key,
        event=event,
        channel=channel.value,
        recipient_token=pii.encrypt(to) if to else None,
        user_id=user.id if user else None,
        template=template,
        locale=locale
        or (user.locale if user and user.locale else None)
        or current_app.config["BABEL_DEFAULT_LOCALE"],
        context=context,
        send_at=send_at or utcnow(),
        **_regions(about),
    )
    try:
        with db.session.begin_nested():
            db.session.add(notification)
            db.session.flush()
    except IntegrityError:  # the same event, written by a concurrent transaction
        return db.session.scalar(select(Notification).where(Notification.idempotency_key == key))
    enqueue_after_commit(RELAY_TASK)
    return notification


@dataclass(frozen=True)
class Outgoing:
    """One message for ``notify_many``: an SMS or email to an address."""

    event: str
    channel: Channel
    to: str
    template: str
    context: dict
    send_at: datetime | None = None
    locale: str | None = None


def notify_many(messages: Iterable[Outgoing], about: HasRegions | None = None) -> None:
    """Put many messages in the outbox in one bulk write (a locked train: thousands of
    seat messages in one transaction). Messages whose event is already there are skipped, as
    in ``notify``."""
    pii = vault()
    default_locale = current_app.config["BABEL_DEFAULT_LOCALE"]
    now = utcnow()
    regions = _regions(about)
    rows = [
        {
            "idempotency_key": f"{m.event}|{m.channel}|{pii.lookup_hash(m.to)[:24]}",
            "event": m.event,
            "channel": m.channel.value,
            "recipient_token": pii.encrypt(m.to),
            "template": m.template,
            "locale": m.locale or default_locale,
            "context": m.context,
            "send_at": m.send_at or now,
            "status": NotificationStatus.PENDING.value,
            "attempts": 0,
            "created_at": now,
            **regions,
        }
        for m in messages
    ]
    if not rows:
        return
    if db.session.get_bind().dialect.name == "postgresql":
        _copy_into_outbox(rows)
    else:
        db.session.execute(
            sqlite_insert(Notification).on_conflict_do_nothing(index_elements=["idempotency_key"]),
            rows,
        )
    enqueue_after_commit(RELAY_TASK)


# The columns notify_many fills; the rest take their defaults.
_OUTBOX_COLUMNS = (
    "idempotency_key",
    "event",
    "channel",
    "recipient_token",
    "template",
    "locale",
    "context",
    "send_at",
    "status",
    "attempts",
    "created_at",
    "origin_region_code",
    "destination_region_code",
)
_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, _OUTBOX_COLUMNS))
_CREATE_BATCH = text(
    sql.SQL(
        "CREATE TEMPORARY TABLE IF NOT EXISTS outbox_batch ON COMMIT DELETE ROWS AS "
        "SELECT {} FROM notifications WITH NO DATA"
    )
    .format(_COLUMNS)
    .as_string()
)
_INSERT_BATCH = text(
    sql.SQL(
        "INSERT INTO notifications ({}) SELECT * FROM outbox_batch "
        "ON CONFLICT (idempotency_key) DO NOTHING"
    )
    .format(_COLUMNS)
    .as_string()
)


def _copy_into_outbox(rows: list[dict]) -> None:
    """PostgreSQL: COPY the rows into a temporary table of the session's connection, then one
    INSERT … SELECT that skips events already there. psycopg 3 runs the ORM's executemany as
    one INSERT a row (about 70 µs a row; a province's locks write 730,000): this is about 28."""
    db.session.execute(_CREATE_BATCH)
    db.session.execute(text("TRUNCATE outbox_batch"))  # what an earlier call here left
    bulk_insert(Notification.__table__, rows, into="outbox_batch")
    db.session.execute(_INSERT_BATCH)


def retrying(visible: ColumnElement[bool]) -> tuple[int, Notification | None]:
    """Messages waiting to be tried again after an error (a gateway slow or down), and the
    newest of them: until they give up they are in no "not delivered" list."""
    count, newest = db.session.execute(
        select(func.count(), func.max(Notification.id)).where(
            visible,
            Notification.status == NotificationStatus.PENDING,
            Notification.last_error.is_not(None),
        )
    ).one()
    return count, db.session.get(Notification, newest) if newest else None


def drop_pending(prefixes: Iterable[str]) -> int:
    """Take back messages not sent yet (reminders of a seat that changed): events starting
    with any of these prefixes, in one statement that probes the event index once a prefix.
    Rows already handed to a channel are left alone."""
    patterns = [Notification.event.startswith(prefix, autoescape=True) for prefix in prefixes]
    if not patterns:
        return 0
    result = db.session.execute(
        delete(Notification).where(
            or_(*patterns), Notification.status == NotificationStatus.PENDING
        )
    )
    return result.rowcount or 0


def link(path: str) -> str:
    """An absolute link for a message (messages are read outside the service)."""
    return current_app.config["BASE_URL"].rstrip("/") + path


def notify_users(
    event: str,
    users: Iterable[User],
    template: str,
    context: dict,
    about: HasRegions | None = None,
) -> None:
    """Staff hear by email and in the service's own inbox.

    The rows ``notify`` writes for each user and channel, in one INSERT that skips those
    already there: ``notify`` costs four statements a row (look-up, savepoint, insert,
    release), and a campaign's locks, submissions and approvals write 80,000 of these."""
    pii = vault()
    default_locale = current_app.config["BABEL_DEFAULT_LOCALE"]
    now = utcnow()
    regions = _regions(about)
    rows: dict[str, dict] = {}
    for user in users:
        if not user.active:
            continue
        for channel, to in ((Channel.EMAIL, user.email), (Channel.INAPP, None)):
            recipient = (
                f"user:{user.id}" if channel == Channel.INAPP else pii.lookup_hash(to or "")[:24]
            )
            key = f"{event}|{channel}|{recipient}"
            rows.setdefault(
                key,
                {
                    "idempotency_key": key,
                    "event": event,
                    "channel": channel.value,
                    "recipient_token": pii.encrypt(to) if to else None,
                    "user_id": user.id,
                    "template": template,
                    "locale": user.locale or default_locale,
                    "context": context,
                    "send_at": now,
                    "status": NotificationStatus.PENDING.value,
                    "attempts": 0,
                    "created_at": now,
                    **regions,
                },
            )
    if not rows:
        return
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    added = db.session.execute(
        insert(Notification)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Notification.id)
        # The in-app rows have no address: without render_nulls the ORM groups rows by the
        # columns they fill, and email and in-app rows alternate, so it was one INSERT a row.
        .execution_options(render_nulls=True),
        list(rows.values()),
    ).all()
    if added:  # as notify: a relay only for a new message
        enqueue_after_commit(RELAY_TASK)


# --- relaying ------------------------------------------------------------------------------


def recover_stale(now: datetime) -> int:
    """Rows a killed worker left 'sending' go back to the queue."""
    minutes = current_app.config["NOTIFY_STALE_MINUTES"]
    result = db.session.execute(
        update(Notification)
        .where(
            Notification.status == NotificationStatus.SENDING,
            Notification.claimed_at < now - timedelta(minutes=minutes),
        )
        .values(status=NotificationStatus.PENDING.value, claimed_at=None)
    )
    return result.rowcount or 0


def claim_due(now: datetime, channel: str, limit: int = BATCH_SIZE) -> list[int]:
    due = (
        select(Notification.id)
        .where(
            Notification.status == NotificationStatus.PENDING,
            Notification.channel == channel,
            Notification.send_at <= now,
        )
        .order_by(Notification.send_at, Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # Two statements, not UPDATE ... WHERE id IN (that SELECT): PostgreSQL may run such a
    # subquery once per candidate row (a semi-join), claiming far more than ``limit`` rows and
    # taking minutes when a lock adds thousands of messages to a mostly-sent outbox. The rows
    # stay locked (FOR UPDATE) until this transaction ends.
    ids = list(db.session.scalars(due))
    if not ids:
        return []
    claimed = db.session.execute(
        update(Notification)
        .where(Notification.id.in_(ids), Notification.status == NotificationStatus.PENDING)
        .values(status=NotificationStatus.SENDING.value, claimed_at=now)
        .returning(Notification.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(claimed.scalars().all())


# --- delivering ----------------------------------------------------------------------------


def render(notification: Notification) -> tuple[str, str]:
    """(subject, text) in the recipient's language."""
    template = current_app.jinja_env.get_template(f"notify/{notification.template}.txt")
    with force_locale(notification.locale):
        context = template.new_context({**notification.context, "channel": notification.channel})
        subject = "".join(template.blocks["subject"](context)).strip()
        body = "".join(template.blocks[notification.channel](context)).strip()
    return subject, body


class LogChannel:
    """Development without a gateway or mail server: messages go to a file in instance/."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, messages) -> list[Result]:
        with self.path.open("a", encoding="utf-8") as log:
            for message in messages:
                log.write(f"--- {utcnow().isoformat()} to {message.to} [{message.key}]\n")
                if message.subject:
                    log.write(f"Subject: {message.subject}\n")
                log.write(message.text + "\n")
        return [Result(message.key, Outcome.SENT) for message in messages]


# One gateway client (and its keep-alive connections) per process and setting: building one
# per batch cost more than the sending (loading the certificates alone took 20 ms).
_gateways: dict[tuple, SmsGateway] = {}


def channel_for(name: str):
    config = current_app.config
    instance = Path(current_app.instance_path)
    if name == Channel.SMS:
        url = config.get("SMS_GATEWAY_URL")
        if not url:
            return LogChannel(instance / "sms.log")
        user, password = config["SMS_GATEWAY_USERNAME"], config["SMS_GATEWAY_PASSWORD"]
        timeout, per_second = config["SMS_GATEWAY_TIMEOUT"], config["SMS_PER_SECOND"]
        settings = (url, user, password, timeout, per_second)
        if settings not in _gateways:
            _gateways[settings] = SmsGateway(
                url, user, password, timeout=timeout, per_second=per_second
            )
        return _gateways[settings]
    host = config.get("SMTP_HOST")
    if not host:
        return LogChannel(instance / "mail.log")
    return SmtpMailer(
        host,
        config["SMTP_PORT"],
        config.get("SMTP_USERNAME", ""),
        config.get("SMTP_PASSWORD", ""),
        sender=config["MAIL_SENDER"],
        use_tls=config["SMTP_STARTTLS"],
        timeout=config["SMTP_TIMEOUT"],
    )


def backoff(attempts: int) -> timedelta:
    """Exponential, with jitter so retries of a failed burst do not all come back at once."""
    base = current_app.config["NOTIFY_RETRY_BASE_SECONDS"] * 2 ** (attempts - 1)
    capped = min(base, 3600)
    return timedelta(seconds=capped * random.uniform(0.8, 1.2))  # noqa: S311 - not security


def deliver(ids: list[int], now: datetime | None = None) -> dict[str, int]:
    """Send these claimed messages and record each outcome (safe to run twice: only rows
    still 'sending' are sent)."""
    now = now or utcnow()
    rows = db.session.scalars(
        select(Notification)
        .where(Notification.id.in_(ids), Notification.status == NotificationStatus.SENDING)
        .order_by(Notification.id)
    ).all()
    counts = {"sent": 0, "retry": 0, "failed": 0, "dead": 0}
    by_channel: dict[str, list[Notification]] = {}
    for row in rows:
        by_channel.setdefault(row.channel, []).append(row)
    pii = vault()
    max_attempts = current_app.config["NOTIFY_MAX_ATTEMPTS"]
    for channel, notifications in by_channel.items():
        if channel == Channel.INAPP:  # the inbox page shows it: delivered by being stored
            results = {
                n.idempotency_key: Result(n.idempotency_key, Outcome.SENT) for n in notifications
            }
        else:
            messages, results = [], {}
            for notification in notifications:
                key = notification.idempotency_key
                try:
                    subject, text = render(notification)
                except Exception as error:  # a broken template must not hold up the batch
                    results[key] = Result(key, Outcome.PERMANENT, f"template: {error!r}"[:200])
                    continue
                to = pii.decrypt(notification.recipient_token)
                messages.append(OutgoingMessage(key, to, subject, text))
            results.update({r.key: r for r in channel_for(channel).send(messages)})
        for notification in notifications:
            result = results.get(notification.idempotency_key)
            notification.attempts += 1
            if result is not None and result.outcome == Outcome.SENT:
                notification.status = NotificationStatus.SENT.value
                notification.sent_at, notification.provider_id = now, result.provider_id or None
                notification.last_error = None
                counts["sent"] += 1
            elif result is not None and result.outcome == Outcome.PERMANENT:
                notification.status = NotificationStatus.FAILED.value
                notification.last_error = result.error[:200] or "permanent"
                counts["failed"] += 1
            elif notification.attempts >= max_attempts:
                notification.status = NotificationStatus.DEAD.value
                notification.last_error = (result.error if result else "no answer")[:200]
                counts["dead"] += 1
            else:
                notification.status = NotificationStatus.PENDING.value
                notification.send_at = now + backoff(notification.attempts)
                notification.last_error = (result.error if result else "no answer")[:200]
                counts["retry"] += 1
            notification.claimed_at = None
    db.session.flush()
    return counts


# --- the operator view ---------------------------------------------------------------------


def status_counts(visible: ColumnElement[bool]) -> dict[str, dict[str, int]]:
    rows = db.session.execute(
        select(Notification.channel, Notification.status, func.count())
        .where(visible)
        .group_by(Notification.channel, Notification.status)
    ).all()
    counts: dict[str, dict[str, int]] = {
        channel.value: dict.fromkeys(NotificationStatus, 0) for channel in Channel
    }
    for channel, status, count in rows:
        counts[channel][status] = count
    return counts


def retry(ids: Iterable[int] | None, actor: User) -> int:
    """Failed or dead messages the actor may see back to the queue, attempts counted afresh."""
    query = update(Notification).where(
        Notification.visible_to(actor),
        Notification.status.in_([NotificationStatus.FAILED, NotificationStatus.DEAD]),
    )
    if ids is not None:
        query = query.where(Notification.id.in_(list(ids)))
    result = db.session.execute(
        query.values(
            status=NotificationStatus.PENDING.value, attempts=0, send_at=utcnow(), claimed_at=None
        )
    )
    record_audit("outbox.retried", None, actor, count=result.rowcount or 0)
    enqueue_after_commit(RELAY_TASK)
    return result.rowcount or 0


def recent_events(
    since: datetime, visible: ColumnElement[bool], limit: int = 20
) -> list[tuple[str, int, int, int]]:
    """Events of the last hours with how far their messages have got: (event, total, sent,
    failed or dead). A large send (5,000 seat messages) shows as a progress bar."""
    done = func.sum(func.cast(Notification.status == NotificationStatus.SENT, db.Integer))
    stuck = func.sum(
        func.cast(
            Notification.status.in_([NotificationStatus.FAILED, NotificationStatus.DEAD]),
            db.Integer,
        )
    )
    rows = db.session.execute(
        select(Notification.event, func.count(), done, stuck)
        .where(Notification.created_at >= since, visible)
        .group_by(Notification.event)
        .order_by(func.max(Notification.created_at).desc())
        .limit(limit)
    ).all()
    return [(event, total, int(sent or 0), int(bad or 0)) for event, total, sent, bad in rows]
