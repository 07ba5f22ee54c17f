"""``core.bulk.bulk_insert``: COPY on PostgreSQL, one INSERT elsewhere; the same rows, defaults
and errors either way (the import's workers and passes and the allocation's seats use it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.bulk import bulk_insert
from app.extensions import db
from app.notify.models import Notification
from tests.conftest import create_people

SHANGHAI = timezone(timedelta(hours=8))


def _message(key: str, **columns) -> dict:
    return {
        "idempotency_key": key,
        "event": f"test.{key}",
        "channel": "email",
        "recipient_token": "not-a-real-token",
        "template": "seat_given",
        "locale": "zh_CN",
        "context": {"trip": "鲁A·12345", "seats": [1, 2]},
        "send_at": datetime(2026, 12, 1, 6, 30, tzinfo=SHANGHAI),
        **columns,
    }


def _check_rows_defaults_and_errors(app) -> None:
    create_people(app)
    with app.app_context():
        before = datetime.now(UTC)
        bulk_insert(
            Notification.__table__,
            [_message("a"), _message("b", last_error="timeout")],  # two shapes
        )
        db.session.commit()
        a, b = db.session.scalars(select(Notification).order_by(Notification.id)).all()
        # Columns no row gives take their defaults (Python-side ones too), as with INSERT;
        # one that another row gives is NULL.
        assert (a.status, b.status, a.last_error, b.last_error) == (
            "pending",
            "pending",
            None,
            "timeout",
        )
        assert (a.attempts, b.attempts) == (0, 0)
        assert before <= a.created_at <= datetime.now(UTC)
        # Aware timestamps stored as the same instant; JSON as JSON.
        assert a.send_at == datetime(2026, 11, 30, 22, 30, tzinfo=UTC)
        assert a.context == {"trip": "鲁A·12345", "seats": [1, 2]}

        # A unique key broken: SQLAlchemy's IntegrityError, and nothing of the batch saved;
        # the transaction goes on from its savepoint.
        with pytest.raises(IntegrityError) as raised, db.session.begin_nested():
            bulk_insert(Notification.__table__, [_message("c"), _message("a")])
        assert "idempotency_key" in str(raised.value)
        bulk_insert(Notification.__table__, [_message("d")])
        db.session.commit()
        keys = db.session.scalars(select(Notification.idempotency_key)).all()
        assert sorted(keys) == ["a", "b", "d"]

        with pytest.raises(ValueError, match="no columns"):
            bulk_insert(Notification.__table__, [{"nonsense": 1}])


def test_bulk_insert_on_sqlite(app):
    _check_rows_defaults_and_errors(app)


@pytest.mark.postgres
def test_bulk_insert_copies_on_postgresql(pg_app):
    _check_rows_defaults_and_errors(pg_app)
