"""Health certificates through the pages, the CLI and the re-check job: the trust list, passes
pasted or photographed, paper certificates, verdicts on the request page, overrides."""

import io
import re
import time
from datetime import datetime, timedelta
from datetime import time as dt_time
from zoneinfo import ZoneInfo

import pytest
import segno
from sqlalchemy import func, select, text, update

from app.core import clock
from app.core.clock import local_today, utcnow
from app.core.models import AuditEntry
from app.demand.models import RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.health.cli import create_demo_issuer, issue_demo_pass
from app.health.models import HealthCertificate, HealthIssuer
from app.health.passes import generate_key, sign_pass
from app.health.services import create_issuer
from app.health.views import health_reasons
from tests import scenario
from tests.conftest import People, csrf_token, make_app, sign_in, statements_run, submit
from tests.test_demand import (
    LI,
    ZHANG,
    action,
    add_everyone,
    create_request,
    errors,
    flashes,
    worker_form,
)

TOMORROW = local_today("Asia/Shanghai") + timedelta(days=1)


@pytest.fixture
def issuer_key(app, tmp_path) -> str:
    """A trusted issuer (valid from a week ago) and its private key."""
    with app.app_context():
        create_demo_issuer(
            "重庆市云阳县卫生健康委员会",
            "500235",
            tmp_path / "issuer.pem",
            local_today("Asia/Shanghai") - timedelta(days=7),
            None,
        )
        db.session.commit()
    return (tmp_path / "issuer.pem").read_text()


def a_pass(
    app,
    key: str,
    id_number: str = ZHANG,
    name: str = "张三",
    status: str = "green",
    issued: datetime | None = None,
    hours: int = 7 * 24,
    jti: str | None = None,
) -> str:
    with app.app_context():
        return issue_demo_pass(
            key,
            id_number,
            name,
            status,
            issued or utcnow() - timedelta(hours=1),
            timedelta(hours=hours),
            jti,
        )


def add_worker_with(client, token: str | None = None, image: bytes | None = None, **changes):
    data = worker_form(**changes)
    if token is not None:
        data["health_pass"] = token
    if image is not None:
        data["health_pass_image"] = (io.BytesIO(image), "qr.png")
    return client.post(
        "/roster/new",
        data={"csrf_token": csrf_token(client, "/roster/new"), **data},
        content_type="multipart/form-data",
    )


def entry_of(app, request_id: int, name: str = "张三") -> RosterEntry:
    with app.app_context():
        entry = db.session.scalar(
            select(RosterEntry)
            .join(Worker)
            .where(RosterEntry.request_id == request_id, Worker.name == name)
        )
        db.session.expunge(entry)
        return entry


def request_tomorrow(client) -> int:
    return create_request(
        client,
        earliest_departure=TOMORROW.isoformat(),
        latest_departure=(TOMORROW + timedelta(days=1)).isoformat(),
    )


# --- the trust list ------------------------------------------------------------------------


def test_admin_manages_the_trust_list(app, client_as):
    admin = client_as("admin")
    private_pem, public_jwk = generate_key()
    import json

    response = submit(
        admin,
        "/admin/issuers/new",
        {
            "name": "奉节县卫健委",
            "region_code": "500236",
            "public_key": "not a key",
            "valid_from": "2026-01-01",
        },
    )
    assert response.status_code == 200
    assert len(errors(response)) == 1
    # A private key pasted by mistake: only its public half is kept.
    response = submit(
        admin,
        "/admin/issuers/new",
        {
            "name": "奉节县卫健委",
            "region_code": "500236",
            "public_key": private_pem,
            "valid_from": "2026-01-01",
            "valid_until": "2027-06-30",
        },
    )
    assert response.status_code == 302
    with app.app_context():
        issuer = db.session.scalar(select(HealthIssuer))
        assert "d" not in issuer.public_jwk
        assert issuer.public_jwk == public_jwk
        issuer_id = issuer.id
    page = admin.get("/admin/issuers").get_data(as_text=True)
    assert "奉节县卫健委" in page
    # The same key twice is refused.
    response = submit(
        admin,
        "/admin/issuers/new",
        {
            "name": "again",
            "region_code": "500236",
            "public_key": json.dumps(public_jwk),
            "valid_from": "2026-01-01",
        },
    )
    assert response.status_code == 200

    # Revoking needs a reason; it is recorded and audited.
    form_url = f"/admin/issuers/{issuer_id}"
    submit(admin, f"/admin/issuers/{issuer_id}/revoke", {"reason": ""}, form_url=form_url)
    with app.app_context():
        assert db.session.get(HealthIssuer, issuer_id).revoked is False
    submit(admin, f"/admin/issuers/{issuer_id}/revoke", {"reason": "私钥泄露"}, form_url=form_url)
    with app.app_context():
        issuer = db.session.get(HealthIssuer, issuer_id)
        assert issuer.revoked
        assert issuer.revoked_reason == "私钥泄露"
        actions = set(db.session.scalars(select(AuditEntry.action)))
    assert {"issuer.created", "issuer.revoked"} <= actions


@pytest.mark.parametrize("role", ["employer", "coordinator"])
def test_only_admins_manage_the_trust_list(client_as, role):
    assert client_as(role).get("/admin/issuers").status_code == 403


# --- passes from the roster form -----------------------------------------------------------


def test_a_pasted_pass_clears_the_worker_on_their_request(app, client_as, issuer_key):
    employer = client_as("employer")
    response = add_worker_with(employer, a_pass(app, issuer_key) + "\n")
    assert response.status_code == 302, errors(response)
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    assert entry_of(app, request_id).status == "cleared"
    page = employer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert re.search(r"<strong>1</strong>\s*已核验通过", page)


def test_a_pass_that_does_not_clear_the_worker_is_said_when_it_is_saved(app, client_as, issuer_key):
    """A yellow pass, or one issued to another ID number, is kept, and the employer is told at
    once why it will not clear the worker (it was saved without a word, and showed only once
    the worker was on a request)."""
    employer = client_as("employer")
    for token, reason in (
        (a_pass(app, issuer_key, status="yellow"), "status_not_green"),
        (a_pass(app, issuer_key, id_number=LI, jti="li"), "wrong_id_number"),
    ):
        with app.app_context():
            db.session.execute(text("DELETE FROM health_certificates"))
            db.session.execute(text("DELETE FROM workers"))
            db.session.commit()
        response = add_worker_with(employer, token)
        assert response.status_code == 302, errors(response)
        shown = flashes(employer, response.headers["Location"])
        with app.test_request_context():
            why = " ".join(health_reasons(reason))
        assert len(shown) == 2
        assert "张三" in shown[0]
        assert shown[1] == f"健康码已保存，但此人无法凭它通过核验：{why}"
    # A pass that clears the worker: nothing more is said.
    with app.app_context():
        db.session.execute(text("DELETE FROM health_certificates"))
        db.session.execute(text("DELETE FROM workers"))
        db.session.commit()
    response = add_worker_with(employer, a_pass(app, issuer_key, jti="good"))
    assert len(flashes(employer, response.headers["Location"])) == 1


def test_a_photo_of_the_qr_code_works_too(app, client_as, issuer_key):
    employer = client_as("employer")
    picture = io.BytesIO()
    segno.make(a_pass(app, issuer_key), error="m").save(picture, kind="png", scale=5)
    response = add_worker_with(employer, image=picture.getvalue())
    assert response.status_code == 302, errors(response)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(HealthCertificate)) == 1


@pytest.mark.parametrize(
    ("token", "image", "field_error"),
    [
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", None, "health_pass"),
        ("hello", None, "health_pass"),
        (None, b"\x89PNG\r\n\x1a\nnot really", "health_pass_image"),
    ],
)
def test_an_unreadable_pass_saves_nothing_and_keeps_the_form(
    app, client_as, issuer_key, token, image, field_error
):
    employer = client_as("employer")
    response = add_worker_with(employer, token, image, name="王五")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert len(errors(response)) == 1
    assert 'value="王五"' in page  # what was typed is still there
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 0


def test_a_request_leaving_today_judges_passes_from_now(app, client_as, issuer_key, monkeypatch):
    """At 15:00, a request leaving today judged a pass issued at 14:00 against the usual 06:00
    departure: "issued after the departure", every worker blocked, and no new pass could help."""
    day = local_today("Asia/Shanghai")
    afternoon = datetime.combine(day, dt_time(15), ZoneInfo("Asia/Shanghai"))

    class Afternoon(datetime):
        @classmethod
        def now(cls, tz=None):
            return afternoon.astimezone(tz)

    monkeypatch.setattr(clock, "datetime", Afternoon)
    employer = client_as("employer")
    assert add_worker_with(employer, a_pass(app, issuer_key)).status_code == 302  # issued 14:00
    request_id = create_request(
        employer,
        earliest_departure=day.isoformat(),
        latest_departure=(day + timedelta(days=1)).isoformat(),
    )
    add_everyone(employer, request_id)
    entry = entry_of(app, request_id)
    assert (entry.status, entry.block_reason) == ("cleared", None)


def test_a_pass_that_does_not_clear_says_why(app, client_as, issuer_key):
    employer = client_as("employer")
    # Bound to someone else, yellow, and expiring before the departure.
    token = a_pass(app, issuer_key, id_number=LI, name="李四", status="yellow", hours=2)
    add_worker_with(employer, token)
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    entry = entry_of(app, request_id)
    assert entry.status == "blocked"
    assert set(entry.block_reason.split(",")) == {
        "wrong_id_number",
        "wrong_name",
        "status_not_green",
        "expired_at_departure",
    }
    page = employer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "身份证号" in page  # the reasons, in words


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_worker_cleared_when_put_on_a_request_is_written_once(database, request, tmp_path):
    """A worker whose pass clears them is written cleared by the INSERT that puts them on the
    request (a province's requests inserted each entry, then updated it with its verdict);
    one it does not clear is checked as before: blocked, and when."""
    app = request.getfixturevalue("app" if database == "sqlite" else "pg_app")
    request.getfixturevalue("people" if database == "sqlite" else "pg_people")
    with app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        db.session.commit()
    employer = app.test_client()
    assert sign_in(employer, People.EMAILS["employer"]).status_code == 302
    before = utcnow()
    add_worker_with(employer, a_pass(app, key))
    yellow = a_pass(app, key, id_number=LI, name="李四", status="yellow")
    add_worker_with(employer, yellow, name="李四", id_number=LI, phone="13800138001")
    request_id = request_tomorrow(employer)
    with statements_run(app) as statements:
        add_everyone(employer, request_id)
    # The cleared and the pending entry in one INSERT (SQLite hands back ids row by row).
    inserts = [s.sql for s in statements if s.sql.startswith("INSERT INTO roster_entries")]
    assert len(inserts) == (1 if database == "postgresql" else 2), inserts
    updates = [s.sql for s in statements if s.sql.startswith("UPDATE roster_entries")]
    assert len(updates) == 2, updates  # the yellow one's verdict, and its check time
    cleared, blocked = entry_of(app, request_id), entry_of(app, request_id, "李四")
    assert (cleared.status, blocked.status) == ("cleared", "blocked")
    assert blocked.block_reason == "status_not_green"
    assert before <= cleared.health_checked_at <= utcnow()
    assert before <= blocked.health_checked_at <= utcnow()


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_one_workers_door_verdict_is_the_checks_verdict(database, request, tmp_path):
    """The door (and the worker's page saying what it will say) reads one worker's pass,
    issuer and pass reuse with one statement of its own: its verdicts must be those of the
    check that judges many workers at once, for every reason and on both databases."""
    from app.core.identity import id_number_check_character
    from app.health import services as health

    app = request.getfixturevalue("app" if database == "sqlite" else "pg_app")
    people = request.getfixturevalue("people" if database == "sqlite" else "pg_people")
    with app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        db.session.commit()
    wang, zhao, qian = (
        number + id_number_check_character(number)
        for number in ("50023519850505135", "50023519860606146", "50023519870707157")
    )
    employer = app.test_client()
    assert sign_in(employer, People.EMAILS["employer"]).status_code == 302
    add_worker_with(employer, a_pass(app, key))  # 张三: cleared
    add_worker_with(  # 李四: yellow
        employer,
        a_pass(app, key, id_number=LI, name="李四", status="yellow"),
        name="李四",
        id_number=LI,
        phone="13800138001",
    )
    shared = a_pass(app, key, id_number=wang, name="王五", jti="pass-0001")
    added = add_worker_with(employer, shared, name="王五", id_number=wang, phone="13800138002")
    assert added.status_code == 302, errors(added)
    add_worker_with(employer, name="赵六", id_number=zhao, phone="13800138003")
    with app.app_context():  # 赵六 shows 王五's pass: both hold one pass
        zhao_id = db.session.scalar(select(Worker.id).where(Worker.name == "赵六"))
        db.session.add(
            HealthCertificate(
                **{
                    column: getattr(
                        db.session.scalar(
                            select(HealthCertificate).where(HealthCertificate.jti == "pass-0001")
                        ),
                        column,
                    )
                    for column in ("kind", "status", "issued_at", "expires_at", "kid", "jti")
                },
                worker_id=zhao_id,
                token_cipher="x",
                signature_valid=True,
                pass_issuer="500235",
                subject_hash="x",
                name_hash="x",
            )
        )
        db.session.commit()
    add_worker_with(employer, name="钱七", id_number=qian, phone="13800138004")  # no pass
    departure = datetime.combine(TOMORROW, dt_time(7), ZoneInfo("Asia/Shanghai"))

    def both() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        with app.app_context():
            workers = db.session.scalars(select(Worker).order_by(Worker.id)).all()
            claims = health.current_claims(worker.id for worker in workers)
            checker = health.Checker()
            return {
                worker.name: (
                    tuple(health.door_verdict(worker, departure, None).reasons),
                    tuple(checker.verdict(worker, claims.get(worker.id), departure).reasons),
                )
                for worker in workers
            }

    verdicts = both()
    assert all(door == check for door, check in verdicts.values()), verdicts
    assert verdicts["张三"][0] == ()
    assert verdicts["李四"][0] == ("status_not_green",)
    assert "jti_reused" in verdicts["王五"][0]
    assert "jti_reused" in verdicts["赵六"][0]
    assert verdicts["钱七"][0] != ()
    with app.app_context():
        admin = db.session.get(scenario.User, people.admin_id)
        health.revoke_issuer(db.session.scalar(select(HealthIssuer)), "密钥泄露", admin)
        db.session.commit()
    verdicts = both()
    assert all(door == check for door, check in verdicts.values()), verdicts
    assert "issuer_revoked" in verdicts["张三"][0]


def test_the_same_pass_on_two_people_blocks_the_second(app, client_as, issuer_key):
    employer = client_as("employer")
    token = a_pass(app, issuer_key, jti="pass-0001")
    add_worker_with(employer, token)
    copied = a_pass(app, issuer_key, id_number=LI, name="李四", jti="pass-0001")
    add_worker_with(employer, copied, name="李四", id_number=LI, phone="13800138001")
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    assert "jti_reused" in entry_of(app, request_id, "李四").block_reason.split(",")


def test_revoking_the_issuer_blocks_at_the_next_check(app, client_as, issuer_key):
    employer = client_as("employer")
    add_worker_with(employer, a_pass(app, issuer_key))
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    assert entry_of(app, request_id).status == "cleared"
    with app.app_context():
        issuer = db.session.scalar(select(HealthIssuer))
        issuer_id = issuer.id
    admin = client_as("admin")
    submit(
        admin,
        f"/admin/issuers/{issuer_id}/revoke",
        {"reason": "撤销"},
        form_url=f"/admin/issuers/{issuer_id}",
    )
    assert entry_of(app, request_id).status == "cleared"  # not before the next check
    with app.app_context():
        from app.health.services import recheck_departing

        totals = recheck_departing(utcnow(), timedelta(hours=48))
        db.session.commit()
    assert totals["blocked"] == 1
    assert entry_of(app, request_id).block_reason == "issuer_revoked"


def recheck(app) -> dict[str, int]:
    with app.app_context():
        from app.health.services import recheck_departing

        totals = recheck_departing(utcnow(), timedelta(hours=48))
        db.session.commit()
    return totals


def stored_claims(app) -> dict:
    with app.app_context():
        certificate = db.session.scalar(select(HealthCertificate))
        return {
            "signature_valid": certificate.signature_valid,
            "pass_issuer": certificate.pass_issuer,
            "subject_hash": certificate.subject_hash,
        }


def test_a_pass_from_an_issuer_trusted_later_clears_at_the_next_check(app, client_as):
    """Its signature could not be checked when it came in (unknown key); once an admin trusts
    the key, the next check verifies it and keeps the result."""
    private_pem, _ = generate_key()
    now = utcnow()
    claims = {"iss": "500235", "sub": ZHANG, "name": "张三", "status": "green"}
    claims |= {"iat": int(now.timestamp()) - 3600, "exp": int(now.timestamp()) + 7 * 86400}
    employer = client_as("employer")
    add_worker_with(employer, sign_pass(private_pem, claims | {"jti": "later-1"}))
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    assert entry_of(app, request_id).block_reason == "unknown_kid"
    assert stored_claims(app)["signature_valid"] is None

    with app.app_context():
        create_issuer("云阳县卫健委", "500235", private_pem, now - timedelta(days=7), None, None)
        db.session.commit()
    assert recheck(app)["cleared"] == 1
    assert entry_of(app, request_id).status == "cleared"
    assert stored_claims(app)["signature_valid"] is True


def test_a_forged_signature_stays_refused_at_every_check(app, client_as, issuer_key):
    """A token whose signature is not the trusted key's (here: another pass's signature) is
    refused when added and at each recheck."""
    header, payload, _ = a_pass(app, issuer_key, jti="real").split(".")
    forged = ".".join([header, payload, a_pass(app, issuer_key, jti="other").split(".")[2]])
    employer = client_as("employer")
    add_worker_with(employer, forged)
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    assert entry_of(app, request_id).block_reason == "signature_invalid"
    recheck(app)
    assert entry_of(app, request_id).block_reason == "signature_invalid"
    assert stored_claims(app)["signature_valid"] is False  # checked under the trusted key


def test_correcting_the_name_to_the_passs_clears_the_worker_at_once(app, client_as, issuer_key):
    employer = client_as("employer")
    add_worker_with(employer, a_pass(app, issuer_key), name="张山")  # a typo on the roster
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    assert entry_of(app, request_id, "张山").block_reason == "wrong_name"
    with app.app_context():
        worker_id = db.session.scalar(select(Worker.id))
    response = submit(employer, f"/roster/{worker_id}/edit", worker_form())
    assert response.status_code == 302, errors(response)
    assert entry_of(app, request_id).status == "cleared"
    submit(employer, f"/roster/{worker_id}/edit", worker_form(name="张四"))
    assert entry_of(app, request_id, "张四").block_reason == "wrong_name"


def test_a_pass_stored_before_its_claims_were_kept_is_read_at_the_next_check(
    app, client_as, issuer_key
):
    """Passes added before migration 90bdde3d8626 have no stored claims: the next check reads
    the token, judges it as before, and keeps its claims."""
    employer = client_as("employer")
    add_worker_with(employer, a_pass(app, issuer_key))
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    with app.app_context():
        db.session.execute(
            update(HealthCertificate).values(
                signature_valid=None, pass_issuer=None, subject_hash=None, name_hash=None
            )
        )
        db.session.commit()
    assert recheck(app)["cleared"] == 1
    assert stored_claims(app) == {
        "signature_valid": True,
        "pass_issuer": "500235",
        "subject_hash": stored_claims(app)["subject_hash"],
    }
    with app.app_context():
        worker = db.session.scalar(select(Worker))
        assert stored_claims(app)["subject_hash"] == worker.id_number_hash


# --- coordinators: paper certificates and overrides ---------------------------------------


def submitted_blocked_request(client_as) -> tuple[int, object]:
    employer = client_as("employer")
    add_worker_with(employer)
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    return request_id, employer


def test_coordinator_records_a_paper_certificate(app, client_as):
    request_id, employer = submitted_blocked_request(client_as)
    entry = entry_of(app, request_id)
    assert entry.block_reason == "no_certificate"
    coordinator = client_as("coordinator")
    url = f"/requests/{request_id}/entries/{entry.id}/paper"
    today = local_today("Asia/Shanghai")
    scan = io.BytesIO(b"%PDF-1.4 scan")
    response = coordinator.post(
        url,
        data={
            "csrf_token": csrf_token(coordinator, url),
            "clinic": "云阳县龙洞镇卫生院",
            "certificate_number": "LD-2027-0042",
            "issued_on": today.isoformat(),
            "valid_until": (today + timedelta(days=7)).isoformat(),
            "status": "green",
            "scan": (scan, "scan.pdf"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, errors(response)
    assert entry_of(app, request_id).status == "cleared"
    with app.app_context():
        certificate = db.session.scalar(select(HealthCertificate))
        assert certificate.kind == "paper"
        assert certificate.recorded_by_id is not None
        certificate_id = certificate.id
    # The employer can see the scan of its own worker's certificate; another employer cannot.
    assert employer.get(f"/certificates/{certificate_id}/scan").data == b"%PDF-1.4 scan"
    assert client_as("employer_b").get(f"/certificates/{certificate_id}/scan").status_code == 404


def test_override_needs_a_note_and_is_audited_and_shown(app, client_as):
    request_id, employer = submitted_blocked_request(client_as)
    entry = entry_of(app, request_id)
    coordinator = client_as("coordinator")
    url = f"/requests/{request_id}/entries/{entry.id}/override"
    submit(coordinator, url, {"note": ""}, form_url=f"/requests/{request_id}")
    assert entry_of(app, request_id).status == "blocked"
    submit(
        coordinator,
        url,
        {"note": "纸质证明已核对，原件见调度室"},
        form_url=f"/requests/{request_id}",
    )
    overridden = entry_of(app, request_id)
    assert overridden.status == "cleared"
    assert overridden.overridden_by_id is not None
    page = employer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "纸质证明已核对" in page
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).where(AuditEntry.action == "entry.health_overridden")
            )
            == 1
        )
    # Employers cannot override.
    response = submit(employer, url, {"note": "x"}, form_url=f"/requests/{request_id}")
    assert response.status_code == 403


def test_an_override_covers_only_the_reasons_it_was_given_for(app, client_as, issuer_key):
    request_id, _employer = submitted_blocked_request(client_as)
    entry = entry_of(app, request_id)
    coordinator = client_as("coordinator")
    submit(
        coordinator,
        f"/requests/{request_id}/entries/{entry.id}/override",
        {"note": "特批"},
        form_url=f"/requests/{request_id}",
    )
    assert entry_of(app, request_id).status == "cleared"
    # A new pass that is red: a new reason, blocked again.
    with app.app_context():
        worker = db.session.get(Worker, entry.worker_id)
        from app.health.services import attach_pass

        attach_pass(worker, a_pass(app, issuer_key, status="red"), None)
        db.session.commit()
    again = entry_of(app, request_id)
    assert again.status == "blocked"
    assert again.block_reason == "status_not_green"


# --- the import column ---------------------------------------------------------------------


def test_passes_come_in_with_the_roster_import(app, client_as, issuer_key):
    from tests.test_roster_import import import_file, import_record, xlsx

    employer = client_as("employer")
    request_id = request_tomorrow(employer)
    rows = [
        ["姓名", "身份证号", "手机号", "户籍地区代码", "健康码"],
        ["张三", ZHANG, "13800138000", "500235", a_pass(app, issuer_key)],
        ["李四", LI, "13800138001", "500235", "not a pass"],
    ]
    url = f"/requests/{request_id}/import"
    import_id, _ = import_file(employer, xlsx(rows), url=url)
    record = import_record(app, import_id)
    assert record["status"] == "failed"
    assert [(e["row"], e["column"]) for e in record["errors"]] == [(3, "健康码")]

    rows[2][4] = a_pass(app, issuer_key, id_number=LI, name="李四")
    import_id, _ = import_file(employer, xlsx(rows), url=url)
    assert import_record(app, import_id)["status"] == "done"
    assert entry_of(app, request_id, "张三").status == "cleared"
    assert entry_of(app, request_id, "李四").status == "cleared"


def test_a_pass_imported_with_the_roster_checks_the_workers_requests_again(
    app, client_as, issuer_key
):
    from tests.test_roster_import import import_file, import_record, xlsx

    employer = client_as("employer")
    add_worker_with(employer)  # 张三, no pass yet
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    assert entry_of(app, request_id).status == "blocked"

    # The roster (not the request) imported again with 张三's pass, and a new worker with his.
    rows = [
        ["姓名", "身份证号", "手机号", "户籍地区代码", "健康码"],
        ["张三", ZHANG, "13800138000", "500235", a_pass(app, issuer_key)],
        ["李四", LI, "13800138001", "500235", a_pass(app, issuer_key, id_number=LI, name="李四")],
    ]
    import_id, _ = import_file(employer, xlsx(rows))
    record = import_record(app, import_id)
    assert (record["status"], record["added"], record["updated"]) == ("done", 1, 1)
    assert entry_of(app, request_id).status == "cleared"
    with app.app_context():
        holders = db.session.execute(
            select(Worker.name, HealthCertificate.signature_valid).join(
                HealthCertificate, HealthCertificate.worker_id == Worker.id
            )
        ).all()
    assert sorted(holders) == [("张三", True), ("李四", True)]


@pytest.mark.postgres
def test_an_import_on_postgresql_saves_every_worker_and_each_pass_with_its_holder(
    pg_app, pg_people, tmp_path
):
    from tests.test_roster_import import (
        CN_HEADERS,
        create_request,
        id_number,
        import_file,
        import_record,
        roster_of,
        worker_row,
        xlsx,
    )

    with pg_app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        db.session.commit()
    client = pg_app.test_client()
    assert sign_in(client, People.EMAILS["employer"]).status_code == 302
    import_file(client, xlsx([CN_HEADERS, *(worker_row(n) for n in range(1, 4))]))

    # Three workers already on the roster and 37 new ones, every fifth without a pass,
    # straight into a request.
    rows = [
        [*worker_row(n), a_pass(pg_app, key, id_number(n), f"工人{n}") if n % 5 else None]
        for n in range(1, 41)
    ]
    request_id = create_request(client)
    import_id, _ = import_file(
        client, xlsx([[*CN_HEADERS, "健康码"], *rows]), url=f"/requests/{request_id}/import"
    )
    record = import_record(pg_app, import_id)
    assert (record["status"], record["added"], record["updated"]) == ("done", 37, 3)
    assert set(roster_of(pg_app, pg_people.organization_a_id)) == {
        id_number(n) for n in range(1, 41)
    }
    with pg_app.app_context():
        assert "postgresql" in db.engine.url.drivername
        holders = db.session.execute(
            select(Worker.id_number_hash, HealthCertificate.subject_hash).join(
                HealthCertificate, HealthCertificate.worker_id == Worker.id
            )
        ).all()
        on_request = db.session.scalar(
            select(func.count()).where(RosterEntry.request_id == request_id)
        )
    assert len(holders) == 32
    assert all(worker == subject for worker, subject in holders)  # each pass on its holder
    assert on_request == 40


_STALE_HOLDERS = {  # 20,000 workers with a pass each, written behind the planner's back
    "workers": "INSERT INTO workers (organization_id, name, id_number_token, id_number_hash,"
    " birth_date, phone_token, phone_hash, phone_last4, home_region_code, created_at,"
    " updated_at) SELECT :organization, '工人', 't' || g, 'bulk-' || g, '1990-01-01', 'p' || g,"
    " 'ph' || g, '0000', '370102', now(), now() FROM generate_series(1, 20000) AS g",
    "passes": "INSERT INTO health_certificates (worker_id, kind, status, token_cipher, jti,"
    " created_at) SELECT id, 'pass', 'green', 'x', id_number_hash, now() FROM workers"
    " WHERE id_number_hash LIKE 'bulk-%'",
}


@pytest.mark.postgres
def test_a_pass_on_two_people_is_found_on_postgresql_however_stale_the_statistics(
    pg_app, pg_people, tmp_path
):
    """Who holds a pass is looked up pass by pass, by index: as a join, the planner took
    every certificate and every worker (a hash join) whenever the tables had grown without
    statistics, as in a campaign's first imports: 18 ms a health check at 48,000 workers."""
    from app.health import services

    with pg_app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        db.session.commit()
    employer = pg_app.test_client()
    assert sign_in(employer, People.EMAILS["employer"]).status_code == 302
    add_worker_with(employer, a_pass(pg_app, key, jti="pass-0001"))
    copied = a_pass(pg_app, key, id_number=LI, name="李四", jti="pass-0001")
    add_worker_with(employer, copied, name="李四", id_number=LI, phone="13800138001")
    with pg_app.app_context():
        organization = pg_people.organization_b_id  # another employer's: not on A's pages
        for statement in _STALE_HOLDERS.values():
            db.session.execute(text(statement), {"organization": organization})
        # No statistics at all, as before autovacuum's first look at fresh tables.
        db.session.execute(
            text(
                "DELETE FROM pg_statistic WHERE starelid IN"
                " ('workers'::regclass, 'health_certificates'::regclass)"
            )
        )
        db.session.commit()
        jtis = [f"bulk-{n}" for n in range(1, 61)]

        def plan(statement, parameters) -> str:
            rows = db.session.execute(text(f"EXPLAIN {statement}"), parameters).scalars()
            return "\n".join(rows)

        joined = plan(
            "SELECT c.jti, w.id_number_hash FROM health_certificates AS c"
            " JOIN workers AS w ON c.worker_id = w.id"
            " WHERE c.jti = ANY (CAST(:jtis AS varchar[]))",  # what IN (...) is planned as
            {"jtis": jtis},
        )
        assert "Seq Scan on workers" in joined  # the old join: the problem is real here
        probes = plan(services._HOLDERS_PG.text, {"given": jtis})
        assert "Seq Scan" not in probes, probes
        # The same for each worker's newest certificate.
        workers = db.session.scalars(
            text("SELECT id FROM workers WHERE id_number_hash LIKE 'bulk-%' LIMIT 60")
        ).all()
        newest = plan(
            "SELECT worker_id, max(id) FROM health_certificates"
            " WHERE worker_id = ANY (CAST(:ids AS integer[])) GROUP BY worker_id",
            {"ids": workers},
        )
        assert "Seq Scan on health_certificates" in newest  # the old GROUP BY
        probes = plan(services._CERTIFICATES_OF_PG.text, {"given": workers})
        assert "Seq Scan" not in probes, probes
        certificates = services.current_certificates(workers)
        assert sorted(certificates) == sorted(workers)
        # Each worker's newest claims. Asked for the newest with this worker's id, the planner
        # may walk the primary key down from the newest certificate of all, filtering (a
        # campaign's requests stage did: 21 -> 66 s). Sorting made dear, it takes that walk.
        db.session.execute(text("SET LOCAL enable_sort = off"))
        newest = plan(
            "SELECT given.worker_id, newest.id FROM unnest(CAST(:ids AS integer[]))"
            " AS given (worker_id) CROSS JOIN LATERAL (SELECT c.id FROM health_certificates"
            " AS c WHERE c.worker_id = given.worker_id ORDER BY c.id DESC LIMIT 1) AS newest",
            {"ids": workers},
        )
        assert "Backward using pk_health_certificates" in newest, newest
        probes = plan(services._NEWEST_CLAIMS_PG.element.text, {"given": workers})
        assert "Seq Scan" not in probes, probes
        assert "Backward" not in probes, probes
        claims = services.current_claims(workers)
        assert {w: row.id for w, row in claims.items()} == {
            w: c.id for w, c in certificates.items()
        }
        entries = db.session.scalars(text("SELECT id FROM roster_entries")).all()
        probes = plan(services._ENTRY_HOLDERS_PG.text, {"given": entries})
        assert "Seq Scan" not in probes, probes
        db.session.rollback()

    # And the checker still finds the pass on two people.
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    assert "jti_reused" in entry_of(pg_app, request_id, "李四").block_reason.split(",")


# --- the CLI -------------------------------------------------------------------------------


def test_cli_creates_an_issuer_and_signs_passes(app, people, tmp_path):
    import zxingcpp
    from PIL import Image

    runner = app.test_cli_runner()
    key = tmp_path / "k.pem"
    result = runner.invoke(
        args=[
            "health",
            "issuer",
            "create",
            "--name",
            "测试卫健委",
            "--region",
            "500235",
            "--key-out",
            str(key),
        ],
    )
    assert result.exit_code == 0, result.output
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(
        args=[
            "health",
            "issuer",
            "create",
            "--name",
            "x",
            "--region",
            "500235",
            "--key-out",
            str(key),
        ],
    )
    assert again.exit_code != 0  # never overwrites a private key

    qr = tmp_path / "pass.png"
    result = runner.invoke(
        args=[
            "health",
            "issue-pass",
            "--key",
            str(key),
            "--id-number",
            ZHANG,
            "--name",
            "张三",
            "--qr",
            str(qr),
        ],
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert [found.text for found in zxingcpp.read_barcodes(Image.open(qr))] == [token]
    with app.app_context():
        from app.health.services import read_token

        facts = read_token(token)
        assert facts.signature_valid
        assert facts.subject == ZHANG


# --- the re-check job on real Celery + Redis -----------------------------------------------


@pytest.fixture
def four_day_recheck_window(monkeypatch):
    """The worker process re-checks departures up to 96 h ahead (HEALTH_RECHECK_HOURS), so a
    departure moved by a day stays in its window whatever the hour the test runs at."""
    monkeypatch.setenv("HEALTH_RECHECK_HOURS", "96")


@pytest.mark.postgres
@pytest.mark.redis
def test_recheck_job_blocks_a_worker_whose_pass_expires_before_departure(
    migrated_postgres_url, redis_url, pg_people, four_day_recheck_window, celery_worker, tmp_path
):
    app = make_app(migrated_postgres_url, REDIS_URL=redis_url)
    with app.app_context():
        create_demo_issuer(
            "云阳县卫健委",
            "500235",
            tmp_path / "k.pem",
            local_today("Asia/Shanghai") - timedelta(days=7),
            None,
        )
        db.session.commit()
    key = (tmp_path / "k.pem").read_text()
    employer = app.test_client()
    sign_in(employer, People.EMAILS["employer"])
    # The pass lasts until two hours after tomorrow's departure (06:00 local).
    departure = datetime.combine(TOMORROW, dt_time(6), ZoneInfo("Asia/Shanghai"))
    issued = utcnow() - timedelta(hours=1)
    hours = int((departure - issued).total_seconds() // 3600) + 2
    add_worker_with(employer, a_pass(app, key, issued=issued, hours=hours))
    request_id = request_tomorrow(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    assert entry_of(app, request_id).status == "cleared"

    # The departure moves a day later (a trip rescheduled): the pass no longer lasts.
    with app.app_context():
        request = db.session.get(TransportRequest, request_id)
        request.earliest_departure = request.earliest_departure + timedelta(days=1)
        db.session.commit()
    app.extensions["celery"].send_task("fangang.health.recheck_departing")
    deadline = time.monotonic() + 90  # a wait, not a speed test: the machine may be busy
    while entry_of(app, request_id).status != "blocked":
        assert time.monotonic() < deadline, "the worker did not re-check within 90 s"
        time.sleep(0.3)
    assert entry_of(app, request_id).block_reason == "expired_at_departure"


def test_every_reason_the_rules_give_has_a_sentence():
    from app.health.forms import HEALTH_REASONS
    from app.health.rules import REASON_CODES

    assert set(REASON_CODES) == set(HEALTH_REASONS)


OUT_OF_RANGE = "请填写 2000-01-01 至 2099-12-31 之间的日期。"


def test_an_issuers_validity_outside_a_sane_range_is_refused_on_its_field(app, client_as):
    """Valid until 9999-12-31 or from 0001-01-01 is a typo: refused next to the field, on
    the new and the edit form, with nothing saved (the day arithmetic overflowed: a 500)."""
    admin = client_as("admin")
    private_pem, _public_jwk = generate_key()
    issuer = {
        "name": "奉节县卫健委",
        "region_code": "500236",
        "public_key": private_pem,
        "valid_from": "2026-01-01",
    }
    for changes in ({"valid_until": "9999-12-31"}, {"valid_from": "0001-01-01"}):
        refused = submit(admin, "/admin/issuers/new", {**issuer, **changes})
        assert refused.status_code == 200
        assert errors(refused) == [OUT_OF_RANGE]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(HealthIssuer)) == 0
    assert submit(admin, "/admin/issuers/new", issuer).status_code == 302
    with app.app_context():
        issuer_id = db.session.scalar(select(HealthIssuer.id))
    edit = f"/admin/issuers/{issuer_id}"
    for changes in ({"valid_until": "9999-12-31"}, {"valid_from": "0001-01-01"}):
        refused = submit(admin, edit, {"name": "改名", "valid_from": "2026-01-01", **changes})
        assert errors(refused) == [OUT_OF_RANGE]
    with app.app_context():
        kept = db.session.get(HealthIssuer, issuer_id)
        assert (kept.name, kept.valid_until) == ("奉节县卫健委", None)
