"""Faults, against the real services: PostgreSQL connections killed between and during requests
and during tasks; Redis stopped and started again while requests and sends are in flight; a
Celery worker killed (SIGKILL) and stopped (SIGTERM, warm shutdown) mid-batch; the SMS gateway
slow and down. After each: every booking committed exactly once, every message delivered
exactly once, no seat twice, and the service answered meanwhile (degraded, not crashed).

"Delivered" is what the gateway (the fake, a real HTTP server) took: it drops a message whose
idempotency key it already has, as the real one does, so a resend is harmless and counted
(``gateway.duplicates``); "exactly once" is every outbox row ``sent`` and every key taken once.

Every fault lands at a known point, never after a guessed sleep:

- a request or task is caught mid-transaction by a lock the test holds (``LOCK TABLE ... IN
  SHARE MODE``: its INSERT or UPDATE waits), found in ``pg_stat_activity`` by the
  ``application_name`` its process connects with (``PGAPPNAME``), and killed there with
  ``pg_terminate_backend``;
- a batch is in flight while the gateway holds it (``gateway.hold()``: taken, not answered),
  and the test kills or stops the worker, or stops Redis, then releases it;
- waits are on conditions with deadlines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.accounts.models import User
from app.core.clock import local_today, utcnow
from app.core.models import AuditEntry
from app.demand import services as demand
from app.demand.models import EntryStatus, RosterEntry, RosterImport, Worker
from app.extensions import db
from app.notify import services
from app.notify.channels import message_id
from app.notify.models import Channel, Notification, NotificationStatus
from app.notify.services import RELAY_TASK, Outgoing, notify_many
from app.trips import services as trips
from app.trips.models import SeatAssignment, Trip
from tests import scenario
from tests.conftest import (
    CSRF_FIELD,
    PASSWORD,
    ROOT,
    People,
    celery_command,
    free_port,
    make_app,
    service_env,
    sign_in,
    submit,
)
from tests.test_notify import rows
from tests.test_roster_import import CN_HEADERS, worker_row, xlsx
from tests.test_seat_races import assert_sound, state
from workers.notify import relay_due

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WEB = "fangang-faults-web"  # application_name of the web processes' connections
WORKER = "fangang-faults-worker"  # ... and of the Celery workers'
DAY = local_today("Asia/Shanghai") + timedelta(days=2)
SOLO = ("--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat")
# The page of an error on our side, in the default language: nothing saved, try again.
TRY_AGAIN = "所有内容均未保存。请稍后重试"


# --- helpers -------------------------------------------------------------------------------


def wait_for(condition: Callable[[], object], seconds: float, what: str | Callable[[], str]):
    """Poll ``condition`` until it is truthy (its value is returned) or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"after {seconds} s: {what() if callable(what) else what}")
        time.sleep(0.05)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_admin(migrated_postgres_url: str) -> Iterator[psycopg.Connection]:
    """The test's own connection, to look at and kill the others."""
    with psycopg.connect(libpq(migrated_postgres_url), autocommit=True) as connection:
        yield connection


def backends(admin: psycopg.Connection, name: str, waiting: bool = False) -> list[int]:
    """Server processes of the connections opened by processes called ``name`` (waiting on a
    lock, with ``waiting``)."""
    query = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s"
    )
    if waiting:
        query += " AND wait_event_type = 'Lock'"
    return [pid for (pid,) in admin.execute(query, (name,))]


def terminate(admin: psycopg.Connection, pids: list[int]) -> None:
    """pg_terminate_backend, and wait until they are gone."""
    for pid in pids:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(
        lambda: not set(pids) & {p for (p,) in admin.execute("SELECT pid FROM pg_stat_activity")},
        10,
        f"backends {pids} still there",
    )


def tables_written(admin: psycopg.Connection, pid: int) -> set[str]:
    """Tables this backend's open transaction has inserted into or updated."""
    return {
        name
        for (name,) in admin.execute(
            "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE l.pid = %s AND l.granted AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'",
            (pid,),
        )
    }


@contextmanager
def table_locked(database_url: str, table: str) -> Iterator[psycopg.Connection]:
    """Hold ``table`` in SHARE mode: readers go on, every INSERT/UPDATE of it waits."""
    with psycopg.connect(libpq(database_url)) as locker:
        locker.execute(f"LOCK TABLE {table} IN SHARE MODE")
        try:
            yield locker
        finally:
            locker.rollback()


def sms_rows(app: Flask, label: str, count: int) -> list[str]:
    """``count`` due SMS in the outbox, in one commit (whose relay nudge goes to Redis when
    the app has REDIS_URL); their idempotency keys."""
    with app.app_context():
        notify_many(
            Outgoing(
                f"fault.{label}:{n}",
                Channel.SMS,
                f"+86139{n:08d}",
                "seat_given",
                {
                    "name": "张三",
                    "date": "2月20日",
                    "time": "06:30",
                    "meeting_point": "云阳汽车站东门",
                    "vehicle": "渝F·12345",
                    "seat": str(n),
                    "driver_phone": "13800138000",
                    "url": "https://fgzt.cn/t/Xk3d9",
                },
            )
            for n in range(count)
        )
        db.session.commit()
        return db.session.scalars(
            select(Notification.idempotency_key).where(Notification.event.like(f"fault.{label}:%"))
        ).all()


def statuses(app: Flask) -> dict[str, int]:
    with app.app_context():
        return dict(
            db.session.execute(
                select(Notification.status, func.count()).group_by(Notification.status)
            ).all()
        )


def undelivered(app: Flask) -> int:
    """Messages not sent (nor given up), other than reminders for later (a retry's backoff
    counts: it is minutes at most here)."""
    with app.app_context():
        return db.session.scalar(
            select(func.count()).where(
                Notification.status.in_([NotificationStatus.PENDING, NotificationStatus.SENDING]),
                Notification.send_at <= utcnow() + timedelta(minutes=10),
            )
        )


def email_keys(app: Flask) -> set[str]:
    with app.app_context():
        return set(
            db.session.scalars(
                select(Notification.idempotency_key).where(Notification.channel == Channel.EMAIL)
            )
        )


def beat(app: Flask) -> None:
    """What beat does every 10 s: ask for a relay (Redis may still be coming back)."""
    with contextlib.suppress(Exception):
        app.extensions["celery"].send_task(RELAY_TASK)


def beating(app: Flask, every: float = 0.5) -> Callable[[], None]:
    """A function that asks for a relay when it was last asked ``every`` seconds ago or more
    (for wait_for conditions; it returns None, so ``beating(app)() or ...`` goes on)."""
    last = 0.0

    def maybe() -> None:
        nonlocal last
        if time.monotonic() - last >= every:
            beat(app)
            last = time.monotonic()

    return maybe


def all_delivered(app: Flask, seconds: float, relays: bool = True) -> None:
    """Wait until nothing due is left unsent; ``relays``: asking for a relay now and then, as
    beat would (without: only what the worker does by itself)."""
    relay = beating(app) if relays else lambda: None
    wait_for(
        lambda: relay() or undelivered(app) == 0,
        seconds,
        lambda: f"messages still due: {statuses(app)}",
    )


def relay_at(app: Flask) -> int:
    """A relay run in this process, as the worker's would."""
    with app.app_context():
        return relay_due(utcnow())


def assert_each_delivered_once(app: Flask, gateway) -> None:
    """Every SMS row sent, and the gateway took each key once (it drops repeats)."""
    with app.app_context():
        sms = db.session.execute(
            select(Notification.idempotency_key, Notification.status).where(
                Notification.channel == Channel.SMS, Notification.send_at <= utcnow()
            )
        ).all()
    assert {status for _key, status in sms} == {"sent"}
    taken = [m["idempotency_key"] for m in gateway.messages]
    assert len(taken) == len(set(taken))  # the gateway never took one twice...
    assert sorted(taken) == sorted(key for key, _status in sms)  # ...and took every one


@pytest.fixture
def redis_app(migrated_postgres_url: str, own_redis, pg_app) -> Iterator[Flask]:
    """The app as a web process runs it: PostgreSQL, jobs to Celery through the test's own
    Redis."""
    app = make_app(migrated_postgres_url, REDIS_URL=own_redis.url)
    yield app
    with app.app_context():
        db.engine.dispose()


def worker_env(tmp_path: Path, database_url: str, redis_url: str, gateway, **extra) -> dict:
    return {
        **service_env(tmp_path, database_url, redis_url),
        "SMS_GATEWAY_URL": gateway.url,
        "PGAPPNAME": WORKER,
        **{name: str(value) for name, value in extra.items()},
    }


@contextmanager
def worker_process(env: dict, log: Path, *options: str) -> Iterator[subprocess.Popen]:
    """``celery -A workers worker``, as conftest's celery_process starts it, but in a session
    of its own, so that the test can signal it and its pool processes as a service manager
    does; killed at the end (a warm shutdown costs seconds, and the test is done with it)."""
    with log.open("w") as out:
        process = subprocess.Popen(
            celery_command("worker", *options),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: "ready." in log.read_text() or process.poll() is not None,
            60,
            lambda: f"the worker did not start:\n{log.read_text()}",
        )
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def planned_trip(app: Flask, people: People, tmp_path: Path, seated: bool = False) -> int:
    """A coach (45 seats, 50%: 22) planned for one approved request of 10 cleared workers,
    leaving in two days; ``seated``: its seats given too."""
    with app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        request = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, key, DAY, {"村甲": 10}
        )
        vehicle = scenario.vehicle("渝F45454", "coach-45")
        actor = db.session.get(User, people.coordinator_id)
        leg = scenario.yunyang_to_jinan(DAY, max_load_percent=50)
        trip = trips.create_trip(vehicle, leg, actor, {request.id: 10})
        if seated:
            assert trips.allocate_seats(trip.id, actor).seated == 10
        db.session.commit()
        return trip.id


# --- 1. PostgreSQL connections killed between and during requests --------------------------


@contextmanager
def web_server(env: dict, log: Path) -> Iterator[str]:
    """The app under gunicorn (config/gunicorn.conf.py), two sync worker processes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {
        **os.environ,
        **env,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "SECRET_KEY": "test-secret",
        "PGAPPNAME": WEB,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, 60, lambda: f"gunicorn did not answer:\n{log.read_text()}")
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: nothing is in flight
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def csrf_of(page: httpx.Response) -> str:
    found = CSRF_FIELD.search(page.text)
    assert found, f"no CSRF token ({page.status_code})"
    return found.group(1)


def seats_of(app: Flask, trip_id: int) -> dict:
    with app.app_context():
        db.session.expire_all()
        trip = db.session.get(Trip, trip_id)
        entries = db.session.scalars(select(RosterEntry).order_by(RosterEntry.id)).all()
        return {
            "seats": db.session.scalar(
                select(func.count()).where(SeatAssignment.trip_id == trip_id)
            ),
            "trip": (trip.status, trip.seats_version),
            "entries": sorted({entry.status for entry in entries}),
            "booking_codes": [entry.booking_code for entry in entries if entry.booking_code],
            "allocations": db.session.scalar(
                select(func.count()).where(AuditEntry.action == "trip.seats_allocated")
            ),
        }


def test_database_connections_killed_between_and_during_requests(
    pg_app, pg_people, pg_admin, migrated_postgres_url, tmp_path
):
    """Between requests: the next request gets a fresh connection (pool_pre_ping). During
    one (seats being given, the connection killed after the seats were written and before
    the commit): a 503 page saying nothing was saved, nothing half-saved, and the same form
    sent again gives each seat once."""
    trip_id = planned_trip(pg_app, pg_people, tmp_path)
    env = service_env(tmp_path, migrated_postgres_url)
    with web_server(env, tmp_path / "web.log") as url, httpx.Client(base_url=url) as coordinator:
        login = coordinator.get("/login")
        signed_in = coordinator.post(
            "/login",
            data={
                "csrf_token": csrf_of(login),
                "email": People.EMAILS["coordinator"],
                "password": PASSWORD,
            },
        )
        assert signed_in.status_code == 302
        page = coordinator.get(f"/trips/{trip_id}")
        assert page.status_code == 200

        # Between requests: every connection the web processes hold is killed.
        killed = backends(pg_admin, WEB)
        assert killed
        terminate(pg_admin, killed)
        for _ in range(4):  # whichever process answers
            assert coordinator.get(f"/trips/{trip_id}").status_code == 200
        assert not set(killed) & set(backends(pg_admin, WEB))

        # During a request: the seats are written, the audit row waits for our lock.
        token = csrf_of(page)
        allocate = f"/trips/{trip_id}/allocate"
        with (
            table_locked(migrated_postgres_url, "audit_entries"),
            ThreadPoolExecutor(1) as pool,
        ):
            sent = pool.submit(coordinator.post, allocate, data={"csrf_token": token}, timeout=30)
            [pid] = wait_for(
                lambda: backends(pg_admin, WEB, waiting=True), 30, "the allocation never waited"
            )
            assert "seat_assignments" in tables_written(pg_admin, pid)
            # Meanwhile the other web process answers.
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            terminate(pg_admin, [pid])
            response = sent.result(timeout=30)
        assert response.status_code == 503, response.text[:2000]
        assert TRY_AGAIN in response.text
        assert "Traceback" not in response.text
        assert response.headers.get("Retry-After")
        # Nothing half-saved: no seat, the trip and its workers as they were.
        before = seats_of(pg_app, trip_id)
        assert before == {
            "seats": 0,
            "trip": ("planned", 0),
            "entries": [EntryStatus.CLEARED],
            "booking_codes": [],
            "allocations": 0,
        }

        # The same form again: seats given, once; and once more changes nothing.
        assert coordinator.post(allocate, data={"csrf_token": token}).status_code == 302
        assert coordinator.post(allocate, data={"csrf_token": token}).status_code == 302
    after = seats_of(pg_app, trip_id)
    assert after["seats"] == 10
    assert after["trip"] == ("open", 1)  # one allocation gave seats; the second had none to give
    assert after["entries"] == [EntryStatus.SEATED]
    assert len(set(after["booking_codes"])) == 10
    found = state(pg_app, [trip_id])
    assert_sound(found)
    assert found["given"] == {trip_id: 10}


# --- 2. PostgreSQL connections killed during a task ----------------------------------------


def test_database_connections_killed_during_tasks(
    redis_app, pg_people, pg_admin, own_redis, gateway, migrated_postgres_url, tmp_path
):
    """The relay's connection is killed while it claims (its UPDATE waits for our lock), then,
    in another round, the worker's connections while a batch is at the gateway (taken, the
    answer held), so that recording the outcome fails. Each time the task is retried by
    itself (no beat here, no second nudge: nothing waits for a claimed batch to count as
    abandoned after 10 minutes), the batch sent again is dropped by the gateway as a repeat,
    and every message is delivered once."""
    relayed = sms_rows(redis_app, "relay", 150)  # its relay nudge waits in Redis
    env = worker_env(tmp_path, migrated_postgres_url, own_redis.url, gateway)
    with (
        table_locked(migrated_postgres_url, "notifications") as locker,
        worker_process(env, tmp_path / "worker.log", *SOLO),
    ):
        [pid] = wait_for(
            lambda: backends(pg_admin, WORKER, waiting=True), 30, "the relay never waited"
        )
        terminate(pg_admin, [pid])
        locker.rollback()  # the lock goes
        all_delivered(redis_app, 30, relays=False)
        assert statuses(redis_app) == {"sent": len(relayed)}
        assert_each_delivered_once(redis_app, gateway)
        assert gateway.duplicates == 0  # nothing had left before the kill

        gateway.hold()
        requests = gateway.requests
        sent = sms_rows(redis_app, "send", 150)  # two batches, 100 and 50; nudged
        wait_for(lambda: gateway.requests > requests, 30, "no batch reached the gateway")
        killed = backends(pg_admin, WORKER)
        assert killed
        terminate(pg_admin, killed)
        gateway.release()
        all_delivered(redis_app, 30, relays=False)
    assert statuses(redis_app) == {"sent": len(relayed) + len(sent)}
    assert_each_delivered_once(redis_app, gateway)
    assert gateway.duplicates == 100  # the batch at the gateway, sent again after the kill


def test_database_connection_killed_during_a_roster_import(
    redis_app, pg_people, pg_admin, own_redis, gateway, migrated_postgres_url, tmp_path
):
    """The import task's connection is killed while it saves the rows (its INSERT waits for
    our lock): nothing of it was saved, the task runs again by itself a moment later and the
    roster is imported once: the employer does not have to upload the file again."""
    roster = [CN_HEADERS, *(worker_row(n) for n in range(1, 31))]
    with redis_app.app_context():
        employer = db.session.get(User, pg_people.employer_a_id)
        roster_import = demand.create_roster_import(
            employer.organization, "名单.xlsx", xlsx(roster), employer
        )
        db.session.commit()  # the import job goes to Redis
        import_id = roster_import.id
    env = worker_env(tmp_path, migrated_postgres_url, own_redis.url, gateway)
    with (
        table_locked(migrated_postgres_url, "workers") as locker,
        worker_process(env, tmp_path / "worker.log", *SOLO),
    ):
        [pid] = wait_for(
            lambda: backends(pg_admin, WORKER, waiting=True), 30, "the import never waited"
        )
        terminate(pg_admin, [pid])
        locker.rollback()

        def finished():
            with redis_app.app_context():
                found = db.session.get(RosterImport, import_id)
                db.session.rollback()
                return found.status if found.status in ("done", "failed") else None

        assert wait_for(finished, 30, "the import never finished") == "done"
    with redis_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 30
        assert db.session.get(RosterImport, import_id).added == 30


# --- 3. Redis stopped and started again ----------------------------------------------------


def test_redis_stopped_and_started_while_requests_and_sends_are_in_flight(
    redis_app,
    pg_app,
    pg_people,
    own_redis,
    gateway,
    smtp_server,
    migrated_postgres_url,
    tmp_path,
):
    """Redis stops while a batch is at the gateway and more wait in the queue; meanwhile a
    coordinator locks a trip (ten seat messages, reminders and the advance notice written with
    it) and the relay runs; the pages answer. Redis comes back empty (no persistence: the
    queued batches are gone): what was claimed and lost is claimed again once it counts as
    abandoned (NOTIFY_STALE_MINUTES, three seconds here), the rest is relayed, each message
    delivered once."""
    trip_id = planned_trip(pg_app, pg_people, tmp_path, seated=True)
    emails_before = email_keys(pg_app)  # sent in-process as the scenario was built
    env = worker_env(
        tmp_path,
        migrated_postgres_url,
        own_redis.url,
        gateway,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_server.port,
        NOTIFY_STALE_MINUTES=0.05,
    )
    coordinator = redis_app.test_client()
    assert sign_in(coordinator, People.EMAILS["coordinator"]).status_code == 302
    sms_rows(redis_app, "redis", 250)  # three batches
    gateway.hold()
    with worker_process(env, tmp_path / "worker.log", *SOLO):
        wait_for(lambda: gateway.requests >= 1, 30, "no batch reached the gateway")
        own_redis.stop()
        gateway.release()  # the batch in flight ends while Redis is away

        # Requests go on: the lock commits its messages to the outbox and answers.
        started = time.monotonic()
        locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
        assert locked.status_code == 302
        assert time.monotonic() - started < 10
        with redis_app.app_context():
            told = db.session.scalar(
                select(func.count()).where(Notification.event.like(f"seat.given:t{trip_id}:%"))
            )
        assert told == 10
        assert coordinator.get("/outbox").status_code == 200
        assert coordinator.get("/healthz").status_code == 200
        ready = coordinator.get("/readyz")  # still in the pool, and says what is missing
        assert (ready.status_code, ready.json["status"]) == (200, "degraded")
        assert (ready.json["checks"]["database"], ready.json["checks"]["redis"]) == (
            "ok",
            "unreachable",
        )

        # A relay run now (beat's, or a commit's in-process one) claims nothing it cannot
        # hand out: what it claimed goes back to the queue instead of waiting as 'sending'.
        sending = {row.id for row in rows(redis_app, status="sending")}
        relay_at(redis_app)
        assert {row.id for row in rows(redis_app, status="sending")} <= sending

        own_redis.start()
        all_delivered(redis_app, 60)
    assert_each_delivered_once(redis_app, gateway)
    with redis_app.app_context():
        reminders = db.session.scalars(
            select(Notification).where(Notification.event.like("reminder.%"))
        ).all()
        inapp = db.session.scalars(
            select(Notification.status).where(Notification.channel == Channel.INAPP)
        ).all()
    # Reminders wait for their time, kept.
    assert reminders
    assert {(r.status, r.send_at > utcnow()) for r in reminders} == {("pending", True)}
    # Each email once (SMTP drops no repeats: a resend would arrive as a second copy, with the
    # same Message-ID).
    emails = email_keys(redis_app) - emails_before
    assert emails  # the advance notice of the lock
    assert sorted(m["Message-ID"] for m in smtp_server.messages) == sorted(
        message_id(key) for key in emails
    )
    assert set(inapp) == {"sent"}


# --- 4. A worker killed or stopped mid-batch -----------------------------------------------


def pool_processes(pid: int) -> list[int]:
    """The child processes of ``pid`` (a prefork worker's pool)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "SIGKILL to a pool process"])
def test_a_worker_stopped_mid_batch_delivers_each_message_once(
    how, redis_app, pg_people, own_redis, gateway, migrated_postgres_url, tmp_path
):
    """A prefork worker with two pool processes, each with a batch at the gateway (taken, the
    answer held), when:

    - SIGTERM reaches the main process (systemd's KillMode=mixed): a warm shutdown; the
      batches in flight finish, those not started stay in Redis, and a new worker sends them:
      nothing is sent twice, nothing waits to count as abandoned;
    - SIGKILL reaches every process (what the service manager sends when the stop times out):
      the batches the gateway had taken are sent again once they count as abandoned (three
      seconds here) and dropped there as repeats;
    - SIGKILL reaches one pool process (the kernel's OOM killer): its batch goes back to Redis
      at once (acks_late, reject_on_worker_lost) and the same worker sends it again."""
    stale = 0.05 if how == "SIGKILL" else 10
    keys = sms_rows(redis_app, how.split()[0], 450)  # five batches
    env = worker_env(tmp_path, migrated_postgres_url, own_redis.url, gateway)
    env["NOTIFY_STALE_MINUTES"] = str(stale)
    prefork = ("--pool", "prefork", "--concurrency", "2", *SOLO[2:])
    gateway.hold()
    with worker_process(env, tmp_path / "worker.log", *prefork) as worker:
        wait_for(lambda: gateway.requests >= 2, 30, "two batches never reached the gateway")
        if how == "SIGTERM":
            worker.send_signal(signal.SIGTERM)
            gateway.release()
            assert worker.wait(timeout=30) == 0
        elif how == "SIGKILL":
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            gateway.release()
        else:
            os.kill(pool_processes(worker.pid)[0], signal.SIGKILL)
            gateway.release()
            all_delivered(redis_app, 60, relays=False)
            assert worker.poll() is None
    if how != "SIGKILL to a pool process":
        assert statuses(redis_app).get("sent", 0) < len(keys)  # stopped mid-way
        with worker_process(env, tmp_path / "worker2.log", *prefork):
            all_delivered(redis_app, 60, relays=how == "SIGKILL")
    assert statuses(redis_app) == {"sent": len(keys)}
    assert_each_delivered_once(redis_app, gateway)
    if how == "SIGTERM":
        assert gateway.duplicates == 0  # nothing sent twice, nothing had to be recovered
    elif how == "SIGKILL to a pool process":
        assert gateway.duplicates == services.BATCH_SIZE  # the killed one's batch, once more


# --- 5. The SMS gateway slow and down ------------------------------------------------------


def test_a_slow_then_a_dead_gateway_is_retried_with_backoff_then_each_message_sent_once(
    redis_app, pg_people, own_redis, gateway, migrated_postgres_url, tmp_path
):
    """First slow (it takes each batch but answers after the channel's timeout, 0.5 s), then,
    with new messages, down (nothing listens: connection refused). Each attempt fails as
    transient; the rows wait with a doubling backoff (1 s, then 2 s: the relays asked in
    between find nothing due), not lost, not given up, and the outbox page answers; once the
    gateway is well, each message is sent once."""
    env = worker_env(
        tmp_path,
        migrated_postgres_url,
        own_redis.url,
        gateway,
        SMS_GATEWAY_TIMEOUT=0.5,
        NOTIFY_RETRY_BASE_SECONDS=1,
    )
    coordinator = redis_app.test_client()
    assert sign_in(coordinator, People.EMAILS["coordinator"]).status_code == 302
    with worker_process(env, tmp_path / "worker.log", *SOLO):
        gateway_fault_round(redis_app, gateway, coordinator, "slow")
        gateway_fault_round(redis_app, gateway, coordinator, "down")
    assert statuses(redis_app) == {"sent": 60}


def gateway_fault_round(app: Flask, gateway, coordinator, fault: str) -> None:
    """30 messages through a gateway that is ``slow`` or ``down``, until it is well again."""
    error = {"slow": "timeout", "down": "connection_error"}[fault]

    def attempted(times: int) -> list[Notification]:
        """This round's rows, once each has been tried ``times`` times or more (and waits
        again)."""
        found = [r for r in rows(app) if r.event.startswith(f"fault.{fault}:")]
        if all(r.attempts >= times and r.status == "pending" for r in found):
            return found
        return []

    def progress() -> str:
        return f"{fault}: {statuses(app)}"

    if fault == "slow":
        gateway.set_delay(1.5)
    else:
        gateway.go_down()
    duplicates = gateway.duplicates
    started = utcnow()
    keys = sms_rows(app, fault, 30)  # the relay after the commit makes the first attempt
    first = wait_for(lambda: attempted(1), 30, progress)
    assert {(r.attempts, r.last_error) for r in first} == {(1, error)}
    # Not lost, not given up: waiting their backoff (1 s, ±20%).
    assert all(r.send_at >= started + timedelta(seconds=0.8) for r in first)
    assert coordinator.get("/outbox").status_code == 200
    relays = beating(app)  # beat, from now on
    again = wait_for(lambda: relays() or attempted(2), 30, progress)
    assert {r.last_error for r in again} == {error}
    # The second wait doubles (2 s, ±20%) and starts from the second attempt, made once the
    # first wait was over: at least 1.6 s after the first wait's end.
    waited = {r.id: r.send_at for r in first}
    assert all(r.send_at - waited[r.id] >= timedelta(seconds=1.6) for r in again)
    assert coordinator.get("/outbox").status_code == 200
    taken = [m for m in gateway.messages if m["idempotency_key"] in keys]
    assert len(taken) == (30 if fault == "slow" else 0)

    if fault == "slow":
        gateway.set_delay(0)
    else:
        gateway.come_up()
    all_delivered(app, 30)
    assert_each_delivered_once(app, gateway)
    # Slow: the gateway took every message at its first attempt and dropped each later one as
    # a repeat. Down: nothing reached it before it came back.
    repeats = sum(r.attempts - 1 for r in rows(app) if r.idempotency_key in keys)
    assert repeats >= 60  # two failed attempts at least, each
    assert gateway.duplicates - duplicates == (repeats if fault == "slow" else 0)
