"""One contender in tests/test_seat_races.py: a separate server process that gives seats on a
trip at the same moment as its rivals.

    python -m tests.seat_race_child

The app comes from the environment (DATABASE_URL, PII_KEYS, PII_HASH_KEY, SECRET_KEY), as in
a real server process. Once built and connected, the process prints ``{"ready": pid}`` and then
serves one race per JSON line read from stdin::

    {"trip": 1, "actor": 2, "gate": 4711, "sleep": 0.2, "no_lock": false, "no_health_write": false}

For each: wait on the PostgreSQL advisory lock ``gate`` (held by the test until every
contender waits on it), run ``allocate_seats(trip, actor)`` in a fresh app context and commit
once, like the allocate view (with ``"trips": [1, 2]`` instead: ``allocate_trips`` on them,
like the plan page's "create these trips and give seats"); print one JSON line:
``{"trip": .., "seated": n}`` or
``{"trip": .., "error": "IntegrityError", "constraint": ..}`` (or ``DomainError`` and its code).
The process is started once and serves several races because building the app costs far more
than a race.

Test-only switches, per race (never in app code):

- ``sleep``: seconds to wait inside the allocator, after everything it decides on has been read
  and before anything is written, so that rivals surely overlap.
- ``no_lock``: the negative control. ``_lock_trips`` and ``_lock_requests`` read their rows
  without ``FOR UPDATE``; the unique constraints stay on.
- ``no_health_write``: the health re-check decides but writes nothing. Its UPDATE of the
  requests' roster rows holds row locks until commit and so, by accident, also serializes two
  allocations on the same requests; switched off, only the trip and request locks stand
  between the contenders.
"""

from __future__ import annotations

import json
import os
import sys
import time

MODE: dict = {"sleep": 0.0, "no_lock": False, "no_health_write": False}


def _patch() -> None:
    """Wrap what the switches touch; each wrapper does the real thing unless its switch is on."""
    from sqlalchemy import select

    from app.core.errors import DomainError
    from app.demand.models import TransportRequest
    from app.extensions import db
    from app.health import services as health
    from app.trips import allocation, services
    from app.trips.models import Trip

    allocate = allocation.allocate
    lock_trips = services._lock_trips
    lock_requests = services._lock_requests
    check_entries = health.check_entries

    def slow_allocate(*args, **kwargs):
        time.sleep(MODE["sleep"])
        return allocate(*args, **kwargs)

    def maybe_lock_trips(trip_ids) -> list[Trip]:
        if not MODE["no_lock"]:
            return lock_trips(trip_ids)
        wanted = sorted(set(trip_ids))
        trips = list(
            db.session.scalars(  # the same read, without FOR UPDATE
                select(Trip)
                .where(Trip.id.in_(wanted))
                .order_by(Trip.id)
                .execution_options(populate_existing=True)
            )
        )
        if len(trips) != len(wanted):
            raise DomainError("trip.missing")
        return trips

    def maybe_lock_requests(request_ids) -> list[TransportRequest]:
        if not MODE["no_lock"]:
            return lock_requests(request_ids)
        return list(
            db.session.scalars(  # the same read, without FOR UPDATE
                select(TransportRequest)
                .where(TransportRequest.id.in_(sorted(set(request_ids))))
                .order_by(TransportRequest.id)
                .execution_options(populate_existing=True)
            )
        )

    def maybe_check_entries(entries, *args, **kwargs):
        if not MODE["no_health_write"]:
            return check_entries(entries, *args, **kwargs)
        session = db.session()
        session.flush = lambda *_args, **_kwargs: None
        try:
            with session.no_autoflush:
                return check_entries(entries, *args, **kwargs)
        finally:
            del session.flush
            for entry in entries:  # the verdicts' changes are dropped, never written
                session.expire(entry)

    allocation.allocate = slow_allocate
    services._lock_trips = maybe_lock_trips
    services._lock_requests = maybe_lock_requests
    health.check_entries = maybe_check_entries


def contend(app, command: dict) -> dict:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from app.accounts.models import User
    from app.core.errors import DomainError
    from app.extensions import db
    from app.trips import services

    MODE.update(
        sleep=float(command.get("sleep", 0)),
        no_lock=bool(command.get("no_lock")),
        no_health_write=bool(command.get("no_health_write")),
    )
    result: dict = {"trip": command["trip"], "pid": os.getpid()}
    with app.app_context():
        actor = db.session.get(User, command["actor"])
        db.session.commit()
        # The start signal: the test holds this lock until every contender waits on it.
        gate = {"key": command["gate"]}
        db.session.execute(text("SELECT pg_advisory_lock_shared(:key)"), gate)
        db.session.execute(text("SELECT pg_advisory_unlock_shared(:key)"), gate)
        db.session.commit()
        result["started"] = time.time()
        try:
            if "trips" in command:
                outcomes = services.allocate_trips(command["trips"], actor).values()
            else:
                outcomes = [services.allocate_seats(command["trip"], actor)]
            db.session.commit()
            result["seated"] = sum(outcome.seated for outcome in outcomes)
        except DomainError as error:
            db.session.rollback()
            result.update(error="DomainError", code=error.code)
        except IntegrityError as error:
            db.session.rollback()
            diag = getattr(error.orig, "diag", None)
            result.update(error="IntegrityError", constraint=getattr(diag, "constraint_name", None))
        except DBAPIError as error:  # a deadlock or serialization failure would land here
            db.session.rollback()
            result.update(
                error=type(error.orig).__name__, sqlstate=getattr(error.orig, "sqlstate", None)
            )
        result["finished"] = time.time()
    return result


def main() -> None:
    from app import create_app
    from config import normalize_database_url

    app = create_app(
        {
            "SECRET_KEY": os.environ["SECRET_KEY"],
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(os.environ["DATABASE_URL"]),
            "PII_KEYS": os.environ["PII_KEYS"],
            "PII_HASH_KEY": os.environ["PII_HASH_KEY"],
            "REDIS_URL": None,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    _patch()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(contend(app, json.loads(line))), flush=True)
    from app.extensions import db

    with app.app_context():
        db.engine.dispose()
    os._exit(0)  # stdin closed: the test is done with us; skip the slow interpreter teardown


if __name__ == "__main__":
    main()
