"""The outbox end to end: events write rows once, the relay sends them through a real SMTP
server and the fake SMS gateway (a real HTTP server), retries, gives up, and is watched and
retried from the operator page."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from flask_babel import ngettext
from sqlalchemy import func, select

from app.accounts import services as accounts
from app.core.access import Role
from app.core.clock import utcnow
from app.extensions import db
from app.notify import services
from app.notify.models import Channel, Notification
from tests.conftest import ROOT, celery_process, make_app, service_env, statements_run, submit
from tests.test_demand import action, add_everyone, add_worker, create_request
from workers.notify import relay_due


@pytest.fixture
def mail_app(app, smtp_server, gateway):
    app.config.update(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_server.port,
        SMS_GATEWAY_URL=gateway.url,
        SMS_GATEWAY_TIMEOUT=1.0,
        NOTIFY_RETRY_BASE_SECONDS=30,
        NOTIFY_MAX_ATTEMPTS=3,
    )
    return app


SEAT = {
    "name": "张三",
    "date": "2月20日",
    "time": "06:30",
    "meeting_point": "云阳汽车站东门",
    "vehicle": "渝F·12345",
    "seat": "12",
    "driver_phone": "13800138000",
    "url": "https://fgzt.cn/t/Xk3d9",
}


def rows(app, **where) -> list[Notification]:
    with app.app_context():
        query = select(Notification).order_by(Notification.id)
        for name, value in where.items():
            query = query.where(getattr(Notification, name) == value)
        found = db.session.scalars(query).all()
        for row in found:
            db.session.expunge(row)
        return found


def relay_at(app, when) -> int:
    with app.app_context():
        return relay_due(when)


@dataclass
class Route:
    """What a message is about, for its regions (a request or a trip has these two)."""

    origin_region_code: str = "500235"  # 云阳县
    destination_region_code: str = "370102"  # 济南市历下区: the coordinator's (370100)


def sms(app, event: str, to: str, send_at=None, about: Route | None = None) -> None:
    with app.app_context():
        services.notify(
            event,
            Channel.SMS,
            "seat_given",
            SEAT,
            to=to,
            send_at=send_at,
            about=about or Route(),
        )
        db.session.commit()


def test_an_event_makes_one_row_however_often_it_is_told(mail_app, people):
    from app.accounts.models import User

    with mail_app.app_context():
        user = db.session.get(User, people.employer_a_id)
        for _ in range(3):
            services.notify(
                "request.approved:1:1",
                Channel.EMAIL,
                "request_decided",
                {"reference": "R1", "decision": "approved", "url": "x"},
                to=user.email,
                user=user,
            )
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_app(request):
    """The embedded SQLite app, and the app on real PostgreSQL (where notify_many COPYs)."""
    return request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")


def test_many_messages_are_written_once_each_as_given(any_app):
    """A lock's seat messages: every event once, however often and in however many calls of
    one transaction it is given, with its text, time and phone number as given."""
    later = utcnow() + timedelta(hours=20)
    seat = {**SEAT, "stops": [{"name": "济南西站", "at": "14:05"}], "note": '带好"身份证"'}

    def message(n: int, send_at=None) -> services.Outgoing:
        return services.Outgoing(
            f"seat.given:t1:e{n}:v1", Channel.SMS, f"1380013{n:04d}", "seat_given", seat, send_at
        )

    with any_app.app_context():
        services.notify_many([message(1), message(2, later), message(1)])
        services.notify_many([message(2), message(3)])  # the same transaction
        db.session.commit()
        services.notify_many([message(3), message(4)])  # a later one
        services.notify_many([])
        db.session.commit()
        written = db.session.scalars(select(Notification).order_by(Notification.event)).all()
        assert [n.event for n in written] == [f"seat.given:t1:e{n}:v1" for n in (1, 2, 3, 4)]
        first, second = written[0], written[1]
        assert first.context == seat
        assert first.locale == any_app.config["BABEL_DEFAULT_LOCALE"]
        assert second.send_at == later
        assert services.vault().decrypt(second.recipient_token) == "13800130002"


def test_staff_are_told_in_one_insert_each_once(any_app):
    """A lock's advance notice to a region's coordinators: an email and an inbox row for
    each active one, written by one INSERT (it was one a row: email and in-app rows took
    turns), and told again, nothing new."""
    with any_app.app_context():
        coordinators = [
            accounts.create_user(
                f"c{n}@example.cn",
                "correct horse battery",
                Role.COORDINATOR,
                f"调度{n}",
                region_code="370100",
            )
            for n in range(3)
        ]
        coordinators[2].active = False
        db.session.flush()
        with statements_run(any_app) as statements:
            services.notify_users("trip.locked:7", coordinators, "trip_advance_notice", {})
            services.notify_users("trip.locked:7", coordinators, "trip_advance_notice", {})
        db.session.commit()
        written = db.session.execute(
            select(Notification.user_id, Notification.channel).order_by(
                Notification.user_id, Notification.channel
            )
        ).all()
        assert written == [
            (user.id, channel)
            for user in coordinators[:2]
            for channel in sorted([Channel.EMAIL.value, Channel.INAPP.value])
        ]
        assert (
            services.vault().decrypt(
                db.session.scalar(
                    select(Notification.recipient_token).where(
                        Notification.channel == Channel.EMAIL,
                        Notification.user_id == coordinators[0].id,
                    )
                )
            )
            == "c0@example.cn"
        )
    inserts = [s.sql for s in statements if s.sql.startswith("INSERT INTO notifications")]
    assert len(inserts) == 2, inserts  # one a call


def test_a_place_is_told_to_its_province_city_and_county_coordinators(any_app):
    with any_app.app_context():
        made = {
            region: accounts.create_user(
                f"c{region}@example.cn",
                "correct horse battery",
                Role.COORDINATOR,
                "调度",
                region_code=region,
            )
            for region in ("370000", "370100", "370102", "370103", "370200", "500000")
        }
        made["370100"].active = False
        db.session.flush()

        def regions_of(*codes: str) -> list[str]:
            return [user.region_code for user in accounts.region_coordinators(*codes)]

        assert regions_of("370102") == ["370000", "370102"]  # not the city's: inactive
        assert regions_of("370203", "500235") == ["370000", "370200", "500000"]
        assert regions_of("370100") == ["370000"]
        assert regions_of("440300") == []


def test_submission_and_decision_reach_people_by_email_and_inbox(mail_app, client_as, smtp_server):
    employer = client_as("employer")
    add_worker(employer)
    request_id = create_request(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")

    # The coordinator of the region: an email (sent in-process right after the commit)...
    to_coordinator = [m for m in smtp_server.messages if "coordinator@" in m["X-Envelope-To"]]
    assert len(to_coordinator) == 1
    assert "新的用车申请" in to_coordinator[0]["Subject"]
    assert f"/requests/{request_id}" in to_coordinator[0].get_content()
    # ...and a message in the service.
    coordinator = client_as("coordinator")
    inbox = coordinator.get("/inbox").get_data(as_text=True)
    assert "提交了新的用车申请" in inbox
    # Opened where the reader is (BASE_URL is for messages read outside the service).
    assert f'<a href="/requests/{request_id}">' in inbox

    # Health problems, told to the employer on submission (nobody has a certificate here).
    to_employer = [m for m in smtp_server.messages if "hr@a." in m["X-Envelope-To"]]
    assert any("健康证明" in m["Subject"] for m in to_employer)

    action(coordinator, request_id, "reject", reason="日期与专列不符")
    decided = [m for m in smtp_server.messages if "已驳回" in m["Subject"]]
    assert len(decided) == 1
    assert "日期与专列不符" in decided[0].get_content()
    assert "hr@a." in decided[0]["X-Envelope-To"]
    assert "hr@b." not in decided[0]["X-Envelope-To"]  # another employer hears nothing


def test_english_speakers_get_english(mail_app, client_as, smtp_server):
    client_as("employer").get("/language/en")  # remembered on the account
    employer = client_as("employer")
    add_worker(employer)
    request_id = create_request(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    action(client_as("coordinator"), request_id, "approve", reason="")
    approved = [m for m in smtp_server.messages if "approved" in m["Subject"]]
    assert len(approved) == 1
    assert approved[0]["Subject"].startswith("Transport request R")


def test_sms_is_sent_once_through_the_gateway(mail_app, gateway):
    sms(mail_app, "seat.given:1", "+8613800138000")
    relay_at(mail_app, utcnow())
    [row] = rows(mail_app)
    assert row.status == "sent"
    assert [m["to"] for m in gateway.messages] == ["+8613800138000"]
    assert gateway.messages[0]["idempotency_key"] == row.idempotency_key
    assert "云阳汽车站东门" in gateway.messages[0]["text"]
    # Relaying again sends nothing more.
    relay_at(mail_app, utcnow())
    assert len(gateway.messages) == 1


def test_transient_errors_are_retried_with_backoff_then_sent(mail_app, gateway, client_as):
    gateway.fail_next(2, status=500)
    sms(mail_app, "seat.given:2", "+8613800138001")
    now = utcnow()
    relay_at(mail_app, now)
    [row] = rows(mail_app)
    assert (row.status, row.attempts) == ("pending", 1)
    # The outbox says so while it waits (it is in no "not delivered" list yet).
    outbox = client_as("coordinator").get("/outbox").get_data(as_text=True)
    with mail_app.test_request_context():
        said = ngettext(
            "%(num)d message is waiting to be tried again after an error.",
            "%(num)d messages are waiting to be tried again after an error.",
            1,
        )
    assert said in outbox
    assert row.last_error in outbox
    first_wait = row.send_at - now
    assert timedelta(seconds=20) <= first_wait <= timedelta(seconds=40)  # 30 s, with jitter
    relay_at(mail_app, now + timedelta(seconds=10))  # too early: not tried
    assert rows(mail_app)[0].attempts == 1
    tried = utcnow()  # the wait counts from the attempt
    relay_at(mail_app, now + timedelta(seconds=40))
    [row] = rows(mail_app)
    assert (row.status, row.attempts) == ("pending", 2)
    assert timedelta(seconds=45) <= row.send_at - tried <= timedelta(seconds=75)  # doubled
    relay_at(mail_app, now + timedelta(minutes=5))
    assert rows(mail_app)[0].status == "sent"
    assert len(gateway.messages) == 1


def test_a_permanent_error_fails_at_once(mail_app, gateway):
    sms(mail_app, "seat.given:3", "+8612345678901")  # not a mobile number: the gateway refuses
    relay_at(mail_app, utcnow())
    [row] = rows(mail_app)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "invalid_number" in row.last_error


def test_the_last_attempt_gives_up_visibly_and_can_be_retried(mail_app, gateway, client_as):
    gateway.fail_next(10, status=503)
    sms(mail_app, "seat.given:4", "+8613800138004")
    now = utcnow()
    for minutes in (0, 10, 60):
        relay_at(mail_app, now + timedelta(minutes=minutes))
    [row] = rows(mail_app)
    assert (row.status, row.attempts) == ("dead", 3)

    coordinator = client_as("coordinator")
    page = coordinator.get("/outbox").get_data(as_text=True)
    assert "seat.given:4" in page
    assert "已放弃" in page
    gateway.reset()
    submit(coordinator, "/outbox/retry", {"all": "1"}, form_url="/outbox")
    # Retried in-process right after the commit.
    assert rows(mail_app)[0].status == "sent"
    assert len(gateway.messages) == 1


def test_a_coordinator_sees_and_retries_their_regions_messages_only(
    mail_app, gateway, client_as, people
):
    """The outbox of a coordinator of 济南 (370100) holds the messages of requests and trips
    leaving from or going to it; another region's stay out of their lists, counts and "retry
    all". An admin's outbox holds everything."""
    gateway.fail_next(100, status=400)  # every message fails at once, for good
    sms(mail_app, "seat.given:jinan", "+8613800138004")  # to 济南
    sms(mail_app, "seat.given:from-jinan", "+8613800138005", about=Route("370105", "320100"))
    sms(mail_app, "seat.given:nanjing", "+8613800138006", about=Route("500235", "320100"))
    relay_at(mail_app, utcnow())
    assert {row.status for row in rows(mail_app)} == {"failed"}

    coordinator = client_as("coordinator")
    page = coordinator.get("/outbox").get_data(as_text=True)
    assert "seat.given:jinan" in page
    assert "seat.given:from-jinan" in page
    assert "seat.given:nanjing" not in page
    assert "seat.given:nanjing" in client_as("admin").get("/outbox").get_data(as_text=True)

    gateway.reset()
    submit(coordinator, "/outbox/retry", {"all": "1"}, form_url="/outbox")
    statuses = {row.event: row.status for row in rows(mail_app)}
    assert statuses == {
        "seat.given:jinan": "sent",
        "seat.given:from-jinan": "sent",
        "seat.given:nanjing": "failed",
    }
    with mail_app.app_context():
        nanjing = db.session.scalar(
            select(Notification.id).where(Notification.event == "seat.given:nanjing")
        )
    submit(coordinator, "/outbox/retry", {"id": str(nanjing)}, form_url="/outbox")
    assert {row.event: row.status for row in rows(mail_app)}["seat.given:nanjing"] == "failed"


def test_seat_sms_do_not_wait_behind_staff_email(mail_app, gateway, smtp_server):
    """The relay hands out the channels' batches in turn: a lock's seat SMS and its staff
    emails leave side by side, not all of one channel first."""
    decided = {"reference": "R1", "decision": "approved", "url": "x"}
    with mail_app.app_context():
        services.notify_many(
            [
                services.Outgoing(
                    f"seat.given:e{n}", Channel.SMS, f"+861380013{n:04d}", "seat_given", SEAT
                )
                for n in range(250)
            ]
            + [
                services.Outgoing(
                    f"decided:{n}", Channel.EMAIL, f"hr{n}@a.example.cn", "request_decided", decided
                )
                for n in range(250)
            ]
        )
        db.session.commit()  # embedded: the relay runs now, and sends each batch it hands out
    sms, email = rows(mail_app, channel="sms"), rows(mail_app, channel="email")
    assert {n.status for n in sms + email} == {"sent"}
    assert len(gateway.messages) == 250
    assert len(smtp_server.messages) == 250
    # Three batches each: the first email batch left before the last SMS batch.
    assert min(n.sent_at for n in email) < max(n.sent_at for n in sms)
    assert min(n.sent_at for n in sms) < max(n.sent_at for n in email)


def test_reminders_wait_for_their_time(mail_app, gateway):
    departure = utcnow() + timedelta(hours=26)
    sms(mail_app, "reminder.24h:1", "+8613800138005", send_at=departure - timedelta(hours=24))
    relay_at(mail_app, utcnow())
    assert rows(mail_app)[0].status == "pending"
    assert gateway.messages == []
    relay_at(mail_app, departure - timedelta(hours=24) + timedelta(seconds=1))
    assert rows(mail_app)[0].status == "sent"


def test_a_stuck_sending_row_goes_back_to_the_queue(mail_app, gateway):
    later = utcnow() + timedelta(hours=1)
    sms(mail_app, "seat.given:6", "+8613800138006", send_at=later)
    with mail_app.app_context():
        services.claim_due(later, "sms")  # claimed, then the worker died
        db.session.commit()
    relay_at(mail_app, later)
    assert rows(mail_app)[0].status == "sending"  # not yet: it may still be on its way
    relay_at(mail_app, later + timedelta(minutes=11))
    assert rows(mail_app)[0].status == "sent"


def test_preview_shows_both_languages_and_sms_length(client_as):
    page = client_as("coordinator").get("/outbox/preview").get_data(as_text=True)
    assert "已驳回" in page
    assert "rejected" in page
    assert client_as("employer").get("/outbox/preview").status_code == 403


def test_preview_shows_the_seat_sms_with_a_driver_an_escort_and_no_number(client_as):
    """Only the seat SMS with a driver's number was shown, though a coordinator's trip may
    have only an escort, or no number to call."""
    page = client_as("coordinator").get("/outbox/preview").get_data(as_text=True)
    for template in ("seat_given", "trip_changed"):
        texts = re.findall(rf"<h2>{template} · (\w+) · sms[^<]*</h2>\s*<pre>([^<]*)</pre>", page)
        chinese = [text for locale, text in texts if locale != "en"]
        english = [text for locale, text in texts if locale == "en"]
        assert len(chinese) == len(english) == 3, template
        assert sum("司机 " in text for text in chinese) == 1, template
        assert sum("随车人员 " in text for text in chinese) == 1, template
        assert sum("Driver " in text for text in english) == 1, template
        assert sum("Escort " in text for text in english) == 1, template


def test_without_a_gateway_messages_go_to_a_file_in_development(app, people):
    sms(app, "seat.given:7", "+8613800138007")
    assert rows(app)[0].status == "sent"
    log = Path(app.instance_path, "sms.log").read_text(encoding="utf-8")
    assert "云阳汽车站东门" in log


# --- real Redis, real worker ---------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_redis_stopped_during_the_request_then_started_again(
    migrated_postgres_url, pg_people, gateway, own_redis, tmp_path
):
    """The real thing: Redis stops, a request writes a message and still succeeds (the row
    waits); Redis starts again and the relay delivers the message once."""
    env = {
        **service_env(tmp_path, migrated_postgres_url, own_redis.url),
        "SMS_GATEWAY_URL": gateway.url,
    }
    options = ("--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat")
    with celery_process("worker", env, tmp_path / "worker.log", "ready.", *options):
        app = make_app(migrated_postgres_url, REDIS_URL=own_redis.url)
        own_redis.stop()
        sms(app, "seat.given:8", "+8613800138008")  # commits; the nudge to Redis fails
        assert rows(app)[0].status == "pending"
        own_redis.start()
        # The periodic relay (sent by hand here, as beat would) finds the waiting row.
        deadline = time.monotonic() + 60
        while rows(app)[0].status != "sent":
            with contextlib.suppress(Exception):  # the worker may still be reconnecting
                app.extensions["celery"].send_task(services.RELAY_TASK)
            assert time.monotonic() < deadline, rows(app)[0].status
            time.sleep(1)
    assert [m["to"] for m in gateway.messages] == ["+8613800138008"]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_killed_mid_batch_delivers_each_message_once(
    migrated_postgres_url, redis_url, pg_people, gateway, tmp_path
):
    app = make_app(migrated_postgres_url, REDIS_URL=redis_url)
    with app.app_context():
        for n in range(300):
            services.notify(
                f"seat.given:k{n}",
                Channel.SMS,
                "seat_given",
                SEAT,
                to=f"+86139{n:08d}",
            )
        db.session.commit()
    gateway.set_delay(0.3)  # each batch takes a while: the kill lands mid-way
    env = {
        **os.environ,
        **service_env(tmp_path, migrated_postgres_url, redis_url),
        "SMS_GATEWAY_URL": gateway.url,
        "NOTIFY_STALE_MINUTES": "0",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "--pool",
        "solo",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        app.extensions["celery"].send_task(services.RELAY_TASK)
        deadline = time.monotonic() + 30
        while len(gateway.messages) < 50:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    gateway.set_delay(0)
    # A new worker: the unacknowledged batch comes back from Redis (acks late); rows left
    # 'sending' go back to the queue and are resent; the gateway drops what it already had.
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            statuses = {row.status for row in rows(app)}
            if statuses == {"sent"}:
                break
            assert time.monotonic() < deadline, statuses
            app.extensions["celery"].send_task(services.RELAY_TASK)
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    delivered = [m["idempotency_key"] for m in gateway.messages]
    assert len(delivered) == 300
    assert len(set(delivered)) == 300  # each exactly once
