"""``flask users create`` and ``flask demo seed``."""

import re

from sqlalchemy import func, select

from app.accounts.models import Organization, User
from app.demand.models import RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.notify.models import Notification
from app.trips.models import Trip
from tests.conftest import CREDIT_CODE_A, sign_in, submit


def test_create_accounts_for_each_role(app, people):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "users",
            "create",
            "--role",
            "employer",
            "--email",
            "New.HR@a.example.cn",
            "--org",
            CREDIT_CODE_A.lower(),
            "--name",
            "新人事",
        ],
        input="a long enough password\na long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "new.hr@a.example.cn" in result.output

    result = runner.invoke(
        args=[
            "users",
            "create",
            "--role",
            "coordinator",
            "--email",
            "c2@example.cn",
            "--region",
            "500106",
            "--password",
            "another long password",
        ],
    )
    assert result.exit_code == 0, result.output

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new.hr@a.example.cn"))
        assert user.organization_id == people.organization_a_id
        assert user.check_password("a long enough password")
    assert (
        sign_in(app.test_client(), "new.hr@a.example.cn", "a long enough password").status_code
        == 302
    )


def test_create_refuses_bad_input_with_a_clear_line(app, people):
    runner = app.test_cli_runner()
    cases = [
        (["--role", "employer", "--email", "x@example.cn"], "needs --org"),
        (
            ["--role", "employer", "--email", "x@example.cn", "--org", "91370100MA3C99990H"],
            "no organization",
        ),
        (["--role", "coordinator", "--email", "x@example.cn"], "needs --region"),
        (["--role", "coordinator", "--email", "x@example.cn", "--region", "12"], "six-digit"),
        (["--role", "admin", "--email", "ADMIN@example.cn"], "already exists"),
        (["--role", "admin", "--email", "y@example.cn", "--password", "short"], "at least 10"),
        (["--role", "pilot", "--email", "y@example.cn"], "pilot"),
    ]
    for args, message in cases:
        full = ["users", "create", *args]
        if "--password" not in args:
            full += ["--password", "long enough password"]
        result = runner.invoke(args=full)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 4  # nothing added


def test_demo_seed_prints_credentials_that_work_and_runs_twice(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0, second.output
    assert first.output == second.output

    password = first.output.split("password for all: ")[1].split(")")[0]
    emails = [line.split()[1] for line in first.output.splitlines()[1:5]]
    assert len(emails) == 4
    for email in emails:
        assert sign_in(app.test_client(), email, password).status_code == 302, email
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Organization)) == 2
        assert db.session.scalar(select(func.count()).select_from(User)) == 4
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 60
        statuses = db.session.scalars(
            select(TransportRequest.status).order_by(TransportRequest.id)
        ).all()
        # One journey to look at (approved: its blocked workers have no seat yet), one request
        # for the coordinator to decide.
        assert statuses == ["approved", "submitted"]
        # Demo workers carry health passes: mostly green, a few that do not clear.
        verdicts = dict(
            db.session.execute(
                select(RosterEntry.status, func.count()).group_by(RosterEntry.status)
            ).all()
        )
        assert verdicts["cleared"] > verdicts["blocked"] > 0


def test_demo_seed_gives_a_locked_trip_a_worker_can_look_up(app):
    """The first employer's workers have seats on a locked coach and were told by SMS; the
    booking code and digits printed open that worker's page."""
    output = app.test_cli_runner().invoke(args=["demo", "seed"]).output
    code = re.search(r"booking code (\S+) and phone digits (\d{4})", output)
    assert code, output
    with app.app_context():
        trip = db.session.scalars(select(Trip)).one()
        assert (trip.status, trip.vehicle.identifier) == ("locked", "渝F12345")
        on_trip = select(RosterEntry).where(RosterEntry.request_id == trip.loads[0].request_id)
        seated = db.session.scalars(on_trip.where(RosterEntry.status == "seated")).all()
        cleared_left = db.session.scalars(on_trip.where(RosterEntry.status == "cleared")).all()
        told = db.session.scalars(
            select(Notification.idempotency_key).where(
                Notification.event.startswith("seat.given"), Notification.channel == "sms"
            )
        ).all()
    assert len(seated) >= 5
    assert not cleared_left  # everyone who may travel has a seat
    assert len(told) == len(seated)
    page = submit(
        app.test_client(),
        "/trip",
        {"booking_code": code.group(1), "phone_last4": code.group(2)},
        follow_redirects=True,
    )
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for shown in ("渝F12345", "06:30", "云阳汽车站"):
        assert shown in html
