"""The relay's claim on PostgreSQL: at most a batch, however the planner sees the outbox.

Locking a train adds thousands of due messages to an outbox whose statistics say nothing is
pending. An ``UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` is then
planned as a join that runs the subquery again for each candidate row: one claim took
thousands of rows and minutes (seen under honcho with beat during the campaign benchmark)."""

from __future__ import annotations

import time

from sqlalchemy import func, select, text

from app.core.clock import utcnow
from app.extensions import db
from app.notify import services
from app.notify.models import Notification


def test_a_claim_takes_one_batch_when_the_statistics_say_the_outbox_is_empty(pg_app):
    outbox = text(
        "INSERT INTO notifications (idempotency_key, event, channel, recipient_token,"
        " template, locale, context, send_at, status, attempts, created_at)"
        " SELECT :status || g, 'seat.given:' || g, 'sms', 'x', 'seat_given', 'zh_CN',"
        " '{}'::json, now() - interval '1 minute', :status, 0, now()"
        " FROM generate_series(1, :rows) g"
    )
    with pg_app.app_context():
        # Yesterday's messages, all sent, and the statistics taken then.
        db.session.execute(outbox, {"status": "sent", "rows": 20000})
        db.session.commit()
        db.session.execute(text("ANALYZE notifications"))
        db.session.commit()
        db.session.execute(outbox, {"status": "pending", "rows": 5000})  # a train locked
        db.session.commit()

        started = time.perf_counter()
        claimed = services.claim_due(utcnow(), "sms", limit=100)
        seconds = time.perf_counter() - started
        db.session.commit()

        assert len(claimed) == 100
        sending = db.session.scalar(select(func.count()).where(Notification.status == "sending"))
        assert sending == 100  # nothing claimed beyond the batch
        # The oldest first: the batch is the first hundred pending rows.
        first = db.session.scalars(
            select(Notification.id)
            .where(Notification.status != "sent")
            .order_by(Notification.id)
            .limit(100)
        )
        assert claimed == sorted(first)
        print(f"\nclaim of 100 among 5,000 due: {seconds * 1000:.0f} ms")
