"""``flask users create`` and ``flask demo seed``."""

from sqlalchemy import func, select

from app.accounts.models import Organization, User
from app.demand.models import RosterEntry, TransportRequest, Worker
from app.extensions import db
from tests.conftest import CREDIT_CODE_A, sign_in


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
    emails = [line.split()[1] for line in first.output.splitlines()[1:]]
    assert len(emails) == 4
    for email in emails:
        assert sign_in(app.test_client(), email, password).status_code == 302, email
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Organization)) == 2
        assert db.session.scalar(select(func.count()).select_from(User)) == 4
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 60
        submitted = db.session.scalars(select(TransportRequest.status)).all()
        assert submitted == ["submitted", "submitted"]
        # Demo workers carry health passes: mostly green, a few that do not clear.
        verdicts = dict(
            db.session.execute(
                select(RosterEntry.status, func.count()).group_by(RosterEntry.status)
            ).all()
        )
        assert verdicts["cleared"] > verdicts["blocked"] > 0
