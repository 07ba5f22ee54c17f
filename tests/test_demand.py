"""The employer's half through its pages: roster, transport requests and their lifecycle, the
coordinator's queue and decision, and who may see what."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.core.clock import local_today
from app.core.identity import id_number_check_character
from app.demand.models import RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.notify.models import Channel, Notification
from tests.conftest import People, sign_in, submit


def id_number(first17: str) -> str:
    return first17 + id_number_check_character(first17)


ZHANG = id_number("50023519900101123")  # 500235199001011239
LI = id_number("50023519920315456")
TODAY = local_today("Asia/Shanghai")
SOON = TODAY + timedelta(days=10)


def worker_form(**changes) -> dict:
    return {
        "name": "张三",
        "id_number": ZHANG,
        "phone": "13800138000",
        "home_region_code": "500235",
        "home_region_name": "重庆市云阳县",
        "group_tag": "龙洞村",
        **changes,
    }


def request_form(**changes) -> dict:
    return {
        "origin_region_code": "500235",
        "origin_region_name": "重庆市 云阳县",
        "pickup_point": "云阳汽车站",
        "pickup_address": "云阳县滨江大道1号",
        "destination_region_code": "370102",
        "destination_region_name": "山东省 济南市 历下区",
        "site_name": "历下区经十路工地",
        "site_address": "经十路100号",
        "site_contact_name": "王工",
        "site_contact_phone": "0531-88886666",
        "earliest_departure": SOON.isoformat(),
        "latest_departure": (SOON + timedelta(days=2)).isoformat(),
        "preferred_mode": "any",
        **changes,
    }


def errors(response) -> list[str]:
    return re.findall(r'class="error[^"]*" role="alert">([^<]+)', response.get_data(as_text=True))


def flashes(client, url: str) -> list[str]:
    return re.findall(r'class="flash[^"]*"[^>]*>([^<]+)', client.get(url).get_data(as_text=True))


def add_worker(client, **changes):
    response = submit(client, "/roster/new", worker_form(**changes))
    assert response.status_code == 302, errors(response)


def create_request(client, **changes) -> int:
    response = submit(client, "/requests/new", request_form(**changes))
    assert response.status_code == 302, errors(response)
    return int(response.headers["Location"].split("/")[2])


def add_everyone(client, request_id: int):
    return submit(client, f"/requests/{request_id}/workers", {"group": "*"})


def action(client, request_id: int, name: str, **data):
    return submit(
        client, f"/requests/{request_id}/{name}", data, form_url=f"/requests/{request_id}"
    )


# --- roster --------------------------------------------------------------------------------


def test_add_edit_search_and_remove_a_worker(app, client_as):
    client = client_as("employer")
    add_worker(client, id_number=ZHANG.lower().replace("9", "９"), phone="+86 138-0013-8000")
    roster = client.get("/roster").get_data(as_text=True)
    assert "张三" in roster
    assert "5002**********1239" in roster  # masked on the list
    assert ZHANG not in roster
    assert "138****8000" in roster

    with app.app_context():
        worker = db.session.scalar(select(Worker))
        assert ZHANG not in worker.id_number_token  # encrypted at rest
        worker_id = worker.id
    edit_page = client.get(f"/roster/{worker_id}/edit").get_data(as_text=True)
    assert ZHANG in edit_page  # whole for the employer who keeps the roster
    response = submit(client, f"/roster/{worker_id}/edit", worker_form(name="张三丰"))
    assert response.status_code == 302

    # Whole ID and phone numbers find the worker exactly; names by part. The search is
    # posted: ID and phone numbers stay out of URLs (and so out of logs).
    def search(text: str) -> str:
        return submit(client, "/roster", {"q": text}).get_data(as_text=True)

    assert ">张三丰</td>" in search(ZHANG)
    assert ">张三丰</td>" in search("138 0013 8000")
    assert ">张三丰</td>" in search("三丰")
    assert ">张三丰</td>" not in search(LI)
    assert ZHANG not in search(ZHANG).split("<main>")[0]  # not in the language-switch link

    # Removing asks first: the form's only button is inside a closed confirmation (one tap on
    # "删除" removed the worker).
    roster = client.get("/roster").get_data(as_text=True)
    asked = re.search(
        rf'<details class="confirm"><summary>删除</summary>\s*<form method="post" '
        rf'action="/roster/{worker_id}/delete">.*?<button[^>]*>([^<]*)</button>\s*</form>\s*</details>',
        roster,
        re.S,
    )
    assert asked.group(1) == "确认将张三丰从花名册中移除"
    assert roster.count(f'action="/roster/{worker_id}/delete"') == 1
    submit(client, f"/roster/{worker_id}/delete", form_url="/roster")
    assert ">张三丰</td>" not in client.get("/roster").get_data(as_text=True)


def test_worker_form_explains_every_problem_in_chinese(client_as):
    client = client_as("employer")
    response = submit(
        client,
        "/roster/new",
        worker_form(
            name="", id_number="3.70102E+17", phone="0531-88886666", home_region_code="5002"
        ),
    )
    shown = errors(response)
    assert response.status_code == 200
    assert len(shown) == 4
    assert any("Excel" in message for message in shown)  # lost digits: never repaired


def test_removing_a_worker_on_a_request_says_which_request_and_what_to_do(app, client_as):
    """A worker on a live request is withdrawn there first; one a past request lists stays on
    the roster. Both refusals name the request (the message asked to withdraw them from a
    request it did not name, even from a cancelled one that has no way to)."""
    employer = client_as("employer")
    add_worker(employer)
    request_id = create_request(employer)
    add_everyone(employer, request_id)
    with app.app_context():
        worker_id = db.session.scalar(select(Worker.id))
        reference = db.session.get(TransportRequest, request_id).reference

    def remove() -> list[str]:
        response = submit(employer, f"/roster/{worker_id}/delete", form_url="/roster")
        return flashes(employer, response.headers["Location"])

    assert remove() == [f"该务工人员在用车申请 {reference} 中，无法删除：请先在该申请中将其退出。"]
    action(employer, request_id, "cancel")
    assert remove() == [
        f"该务工人员须保留在花名册中：用车申请 {reference} 的记录中有此人，记录须保持完整。"
    ]
    assert ">张三</td>" in employer.get("/roster").get_data(as_text=True)


def test_one_worker_per_id_number_per_organization(client_as):
    client = client_as("employer")
    add_worker(client)
    response = submit(client, "/roster/new", worker_form(name="张三二"))
    assert response.status_code == 200
    assert len(errors(response)) == 1
    # Another employer may have the same person on its roster.
    add_worker(client_as("employer_b"))


def test_roster_export_has_whole_numbers_as_text(client_as):
    from io import BytesIO

    from openpyxl import load_workbook

    client = client_as("employer")
    add_worker(client)
    response = client.get("/roster/export.xlsx")
    sheet = load_workbook(BytesIO(response.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("姓名", "身份证号", "手机号")
    assert rows[1][1] == ZHANG  # a string, all 18 characters
    assert sheet.cell(row=2, column=2).number_format == "@"
    csv_text = client.get("/roster/export.csv").data.decode("utf-8-sig")
    assert f",\t{ZHANG}," in csv_text  # after a tab: Excel keeps the cell as text


def test_roster_paginates(app, client_as, people):
    from app.demand.roster import WorkerData
    from app.demand.services import create_worker

    with app.app_context():
        from app.accounts.models import Organization, User

        organization = db.session.get(Organization, people.organization_a_id)
        actor = db.session.get(User, people.employer_a_id)
        for n in range(30):
            number = id_number(f"50023519900115{n:03d}")
            create_worker(
                organization,
                WorkerData(f"工人{n:02d}", number, f"+86138{n:08d}", "500235"),
                actor,
            )
        db.session.commit()
    client = client_as("employer")
    first = client.get("/roster").get_data(as_text=True)
    assert 'rel="next"' in first
    assert "工人00" in first
    assert "工人29" in client.get("/roster?page=2").get_data(as_text=True)


# --- access --------------------------------------------------------------------------------


def test_employer_cannot_see_or_change_another_employers_workers_or_requests(app, client_as):
    owner = client_as("employer")
    add_worker(owner)
    request_id = create_request(owner)
    with app.app_context():
        worker_id = db.session.scalar(select(Worker.id))

    other = client_as("employer_b")
    assert "张三" not in other.get("/roster").get_data(as_text=True)
    assert other.get(f"/roster/{worker_id}/edit").status_code == 404
    assert (
        submit(other, f"/roster/{worker_id}/edit", worker_form(name="改名"), "/roster").status_code
        == 404
    )
    assert submit(other, f"/roster/{worker_id}/delete", form_url="/roster").status_code == 404
    assert other.get(f"/requests/{request_id}").status_code == 404
    assert other.get(f"/requests/{request_id}/workers").status_code == 404
    assert action(other, request_id, "cancel").status_code in (302, 404)
    assert other.get("/requests").get_data(as_text=True).count("R20") == 0
    with app.app_context():
        assert db.session.get(Worker, worker_id).name == "张三"
        assert db.session.get(TransportRequest, request_id).status == "draft"
    # Nor can another employer's worker be slipped onto one's own request by id.
    own_request = create_request(other)
    submit(other, f"/requests/{own_request}/workers", {"worker": str(worker_id)})
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RosterEntry)) == 0


def test_coordinators_see_requests_of_their_region_only_once_submitted(app, client_as):
    employer = client_as("employer")
    add_worker(employer)
    to_jinan = create_request(employer)  # destination 370102: inside the coordinator's 370100
    add_everyone(employer, to_jinan)
    elsewhere = create_request(
        employer, destination_region_code="320100", destination_region_name="江苏省 南京市"
    )

    coordinator = client_as("coordinator")
    assert coordinator.get(f"/requests/{to_jinan}").status_code == 404  # still a draft
    action(employer, to_jinan, "submit")
    assert coordinator.get(f"/requests/{to_jinan}").status_code == 200
    assert coordinator.get(f"/requests/{elsewhere}").status_code == 404
    assert coordinator.get("/roster").status_code == 403
    assert employer.get("/queue").status_code == 403


# --- the request lifecycle -----------------------------------------------------------------


def test_full_request_lifecycle_through_the_pages(app, client_as):
    employer = client_as("employer")
    add_worker(employer)
    add_worker(employer, name="李四", id_number=LI, phone="13800138001", group_tag="石门村")
    request_id = create_request(employer)

    # A draft without workers cannot be submitted.
    action(employer, request_id, "submit")
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == "draft"

    # A whole group at once.
    submit(employer, f"/requests/{request_id}/workers", {"group": "龙洞村"})
    page = employer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "张三" in page
    assert "李四" not in page
    add_everyone(employer, request_id)
    assert "李四" in employer.get(f"/requests/{request_id}").get_data(as_text=True)

    # Edit while a draft, then submit: frozen.
    response = submit(
        employer,
        f"/requests/{request_id}/edit",
        request_form(site_name="新工地"),
        form_url=f"/requests/{request_id}/edit",
    )
    assert response.status_code == 302
    action(employer, request_id, "submit")
    assert employer.get(f"/requests/{request_id}/edit").status_code == 302  # refused, back

    # Take it back, submit again.
    action(employer, request_id, "withdraw")
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == "draft"
    action(employer, request_id, "submit")

    # The coordinator's queue, with its filters.
    coordinator = client_as("coordinator")
    queue = coordinator.get("/queue").get_data(as_text=True)
    assert f'href="/requests/{request_id}"' in queue
    assert f'href="/requests/{request_id}"' in coordinator.get("/queue?origin=云阳").get_data(
        as_text=True
    )
    assert f'href="/requests/{request_id}"' not in coordinator.get("/queue?origin=5001").get_data(
        as_text=True
    )
    late = (SOON + timedelta(days=30)).isoformat()
    assert f'href="/requests/{request_id}"' not in coordinator.get(f"/queue?from={late}").get_data(
        as_text=True
    )
    # Dates that cannot be used are said, not quietly dropped (or read as "nothing matches").
    for client, url in ((coordinator, "/queue"), (employer, "/requests")):
        swapped = client.get(f"{url}?from={late}&to={SOON.isoformat()}").get_data(as_text=True)
        assert f"开始日期（{late}）晚于结束日期（{SOON.isoformat()}）" in swapped
        unreadable = client.get(f"{url}?from=2027-02-30").get_data(as_text=True)
        assert "“2027-02-30”不是有效日期" in unreadable
        assert 'value="2027-02-30"' in unreadable  # kept for correcting

    # Rejecting needs a reason; the employer sees it.
    action(coordinator, request_id, "reject", reason="")
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == "submitted"
    action(coordinator, request_id, "reject", reason="日期与专列不符，请改为下周")
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == "rejected"
    assert "日期与专列不符" in employer.get(f"/requests/{request_id}").get_data(as_text=True)

    # A new request for the same workers, approved this time.
    second = create_request(employer)
    add_everyone(employer, second)
    action(employer, second, "submit")
    action(coordinator, second, "approve", reason="")
    with app.app_context():
        approved = db.session.get(TransportRequest, second)
        assert approved.status == "approved"
        assert approved.decided_by_id is not None

    # One worker withdraws: counted as withdrawn, place freed.
    with app.app_context():
        entry = db.session.scalar(select(RosterEntry).where(RosterEntry.request_id == second))
        entry_id = entry.id
    submit(
        employer, f"/requests/{second}/entries/{entry_id}/withdraw", form_url=f"/requests/{second}"
    )
    with app.app_context():
        entry = db.session.get(RosterEntry, entry_id)
        assert entry.status == "withdrawn"
        assert entry.holds_place is False

    # Adding a worker back to an approved request sends it back to the coordinator.
    add_everyone(employer, second)
    with app.app_context():
        assert db.session.get(TransportRequest, second).status == "submitted"

    # Cancelled: every place freed.
    action(employer, second, "cancel")
    with app.app_context():
        assert db.session.get(TransportRequest, second).status == "cancelled"
        assert db.session.scalar(select(func.count()).where(RosterEntry.holds_place)) == 0

    # Every step is in the audit log.
    from app.core.models import AuditEntry

    with app.app_context():
        audited = set(db.session.scalars(select(AuditEntry.action)))
    assert {
        "request.submitted",
        "request.withdrawn",
        "request.rejected",
        "request.approved",
        "entry.withdrawn",
        "request.resubmitted",
        "request.cancelled",
    } <= audited


def test_workers_added_to_an_approved_request_send_it_back_and_the_coordinators_hear(
    app, client_as
):
    """An approved request that gets more workers waits for approval again: the employer is
    warned before and told after, the old approval's note is gone, and the coordinators are
    told the request is back (it went back in silence, the old note still shown)."""
    employer, coordinator = client_as("employer"), client_as("coordinator")
    add_worker(employer)
    request_id = create_request(employer)
    add_everyone(employer, request_id)
    action(employer, request_id, "submit")
    action(coordinator, request_id, "approve", reason="同意，注意防疫")
    add_worker(employer, name="李四", id_number=LI, phone="13800138001", group_tag="石门村")

    page = employer.get(f"/requests/{request_id}/workers").get_data(as_text=True)
    assert "该申请已批准：加入务工人员后将退回调度员重新审批。" in page
    response = submit(employer, f"/requests/{request_id}/workers", {"group": "石门村"})
    told = flashes(employer, response.headers["Location"])
    assert told == [
        "已添加 1 名务工人员。",
        "该申请原已批准：加入务工人员后已退回调度员，需重新审批。",
    ]

    detail = employer.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "同意，注意防疫" not in detail
    with app.app_context():
        request = db.session.get(TransportRequest, request_id)
        assert (request.status, request.decision_reason, request.decided_by_id) == (
            "submitted",
            None,
            None,
        )
        told_coordinators = db.session.scalars(
            select(Notification.context).where(
                Notification.template == "request_submitted",
                Notification.channel == Channel.INAPP,
            )
        ).all()
    assert sorted(context["workers"] for context in told_coordinators) == [1, 2]
    inbox = coordinator.get("/inbox").get_data(as_text=True)
    assert inbox.count(f"/requests/{request_id}") == 2


def test_request_form_refuses_bad_dates_and_codes(client_as):
    employer = client_as("employer")
    response = submit(
        employer,
        "/requests/new",
        request_form(
            earliest_departure=(SOON + timedelta(days=5)).isoformat(),
            latest_departure=SOON.isoformat(),
            origin_region_code="5002",
            site_contact_phone="call me",
        ),
    )
    assert response.status_code == 200
    assert len(errors(response)) == 3
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    response = submit(employer, "/requests/new", request_form(earliest_departure=yesterday))
    assert response.status_code == 200
    assert len(errors(response)) == 1


def test_status_counts_on_the_request_page(client_as):
    employer = client_as("employer")
    add_worker(employer)
    add_worker(employer, name="李四", id_number=LI, phone="13800138001")
    request_id = create_request(employer)
    add_everyone(employer, request_id)
    page = employer.get(f"/requests/{request_id}").get_data(as_text=True)
    # Checked as soon as they are on it: without a health certificate, both are blocked.
    assert re.search(r"<strong>2</strong>\s*未通过", page)
    assert "尚无健康证明" in page or "No health certificate yet" in page
    blocked_only = employer.get(f"/requests/{request_id}?status=blocked").get_data(as_text=True)
    assert "张三" in blocked_only
    assert "张三" not in employer.get(f"/requests/{request_id}?status=cleared").get_data(
        as_text=True
    )


def test_worker_too_old_on_the_departure_date_is_refused(app, client_as):
    employer = client_as("employer")
    old = id_number("11010519550601123")  # 71 at the end of 2026
    with app.app_context():
        app.config["WORKER_MAX_AGE"] = 80  # the roster allows them...
    add_worker(employer, id_number=old)
    with app.app_context():
        app.config["WORKER_MAX_AGE"] = 70  # ...the request does not
    request_id = create_request(employer)
    add_everyone(employer, request_id)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RosterEntry)) == 0


def born_in(year: int, n: int) -> str:
    return id_number(f"110105{year}0601{n:03d}")


def test_adding_a_group_with_workers_too_old_names_them_and_adds_nobody(app, client_as):
    employer = client_as("employer")
    with app.app_context():
        app.config["WORKER_MAX_AGE"] = 80  # the roster allows them...
    add_worker(employer, name="年轻人", id_number=ZHANG, group_tag="石门村")
    for n in range(1, 13):
        add_worker(
            employer,
            name=f"老人{n:02d}",
            id_number=born_in(1950, n),
            phone=f"139{n:08d}",
            group_tag="石门村",
        )
    with app.app_context():
        app.config["WORKER_MAX_AGE"] = 70  # ...the request does not
    request_id = create_request(employer)

    submit(employer, f"/requests/{request_id}/workers", {"group": "石门村"})

    [message] = flashes(employer, f"/requests/{request_id}/workers")
    assert "70" in message
    named = re.findall(r"老人\d\d", message)
    assert named == [f"老人{n:02d}" for n in range(1, 11)]  # ten by name...
    assert re.search(r"另外 ?2 ?人|2 more", message)  # ...and how many more
    assert "年轻人" not in message
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RosterEntry)) == 0


def test_adding_everyone_names_who_is_on_another_live_request_and_adds_nobody(
    app, client_as, people
):
    employer, other_employer = client_as("employer"), client_as("employer_b")
    add_worker(employer)  # 张三
    first = create_request(employer)
    add_everyone(employer, first)
    action(employer, first, "submit")
    add_worker(employer, name="李四", id_number=LI, phone="13800138001")
    add_worker(employer, name="王五", id_number=born_in(1990, 1), phone="13800138002")
    add_worker(other_employer, name="李四", id_number=LI, phone="13800138001")
    elsewhere = create_request(other_employer)
    add_everyone(other_employer, elsewhere)
    action(other_employer, elsewhere, "submit")
    second = create_request(employer)

    add_everyone(employer, second)

    [message] = flashes(employer, f"/requests/{second}/workers")
    with app.app_context():
        own = db.session.get(TransportRequest, first).reference
        theirs = db.session.get(TransportRequest, elsewhere).reference
    assert "张三" in message
    assert own in message
    assert "李四" in message
    assert theirs not in message
    assert "王五" not in message
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(RosterEntry.request_id == second)) == 0


# --- one person, one live place (PostgreSQL) -----------------------------------------------


@pytest.mark.postgres
def test_a_worker_cannot_hold_places_on_two_live_requests(pg_app, pg_people):
    employer_a, employer_b = pg_app.test_client(), pg_app.test_client()
    sign_in(employer_a, People.EMAILS["employer"])
    sign_in(employer_b, People.EMAILS["employer_b"])
    # The same person on both employers' rosters: allowed.
    add_worker(employer_a)
    add_worker(employer_b)
    first = create_request(employer_a)
    add_everyone(employer_a, first)
    action(employer_a, first, "submit")

    # Employer B is told as soon as it puts the person on its own request.
    second = create_request(employer_b)
    add_everyone(employer_b, second)
    assert any(
        "其他有效申请" in text for text in flashes(employer_b, f"/requests/{second}/workers")
    )
    with pg_app.app_context():
        assert db.session.scalar(select(func.count()).where(RosterEntry.request_id == second)) == 0

    # Once the first request is cancelled, the place is free.
    action(employer_a, first, "cancel")
    add_everyone(employer_b, second)
    action(employer_b, second, "submit")
    with pg_app.app_context():
        assert db.session.get(TransportRequest, second).status == "submitted"


@pytest.mark.postgres
def test_the_database_itself_refuses_a_second_live_place(pg_app, pg_people):
    """Even code that skips the services (or two servers racing) cannot give one person two
    live places: a partial unique index holds."""
    from sqlalchemy.exc import IntegrityError

    employer = pg_app.test_client()
    sign_in(employer, People.EMAILS["employer"])
    add_worker(employer)
    first, second = create_request(employer), create_request(employer)
    add_everyone(employer, first)
    add_everyone(employer, second)
    with pg_app.app_context():
        entries = db.session.scalars(select(RosterEntry).order_by(RosterEntry.id)).all()
        entries[0].holds_place = True
        db.session.flush()
        entries[1].holds_place = True
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()


@pytest.mark.postgres
def test_two_people_changing_one_request_get_a_clear_refusal(pg_app, pg_people):
    """Optimistic locking: the second save of a stale copy is refused, not silently applied."""
    from sqlalchemy.orm.exc import StaleDataError

    employer = pg_app.test_client()
    sign_in(employer, People.EMAILS["employer"])
    request_id = create_request(employer)
    with pg_app.app_context():
        engine = db.engine
        from sqlalchemy.orm import Session

        with Session(engine) as first, Session(engine) as second:
            one = first.get(TransportRequest, request_id)
            two = second.get(TransportRequest, request_id)
            one.site_name = "甲"
            first.commit()
            two.site_name = "乙"
            with pytest.raises(StaleDataError):
                second.commit()


@pytest.mark.postgres
def test_correcting_an_id_number_cannot_take_someone_elses_live_place(pg_app, pg_people):
    employer_a, employer_b = pg_app.test_client(), pg_app.test_client()
    sign_in(employer_a, People.EMAILS["employer"])
    sign_in(employer_b, People.EMAILS["employer_b"])
    add_worker(employer_a)  # ZHANG, on A's submitted request
    first = create_request(employer_a)
    add_everyone(employer_a, first)
    action(employer_a, first, "submit")
    add_worker(employer_b, name="李四", id_number=LI, phone="13800138001")
    second = create_request(employer_b)
    add_everyone(employer_b, second)
    action(employer_b, second, "submit")
    with pg_app.app_context():
        li_id = db.session.scalar(select(Worker.id).where(Worker.name == "李四"))

    # B "corrects" 李四's ID number to 张三's: refused on the form, nothing changed.
    response = submit(
        employer_b, f"/roster/{li_id}/edit", worker_form(name="李四", phone="13800138001")
    )
    assert response.status_code == 200
    assert len(errors(response)) == 1
    # A real correction (a number nobody travels on) goes through, place and all.
    other = id_number("50023519920315457")
    response = submit(
        employer_b,
        f"/roster/{li_id}/edit",
        worker_form(name="李四", id_number=other, phone="13800138001"),
    )
    assert response.status_code == 302


def test_a_departure_more_than_a_year_ahead_is_refused_on_its_field(app, client_as, people):
    """A typo like 9999 or 2062 for the year is refused next to the date, on the page and
    through the API, and no request is saved (it was accepted)."""
    employer = client_as("employer")
    far = TODAY + timedelta(days=367)
    for changes, field in (
        ({"earliest_departure": "9999-12-30", "latest_departure": "9999-12-31"}, "earliest"),
        ({"latest_departure": far.isoformat()}, "latest"),
    ):
        refused = submit(employer, "/requests/new", request_form(**changes))
        assert refused.status_code == 200
        assert errors(refused) == ["出发日期距今超过一年：请检查年份。"], field
    from tests.test_api import token_for

    api = app.test_client()
    headers = {
        "Authorization": f"Bearer {token_for(app, people.employer_a_id)}",
        "Accept-Language": "en",
    }
    answer = api.post(
        "/api/v1/requests", json=request_form(latest_departure=far.isoformat()), headers=headers
    )
    assert answer.status_code == 422
    assert answer.json["error"]["fields"] == {
        "latest_departure": ["The departure is more than a year ahead: check the year."]
    }
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TransportRequest)) == 0
    a_year = request_form(latest_departure=(TODAY + timedelta(days=366)).isoformat())
    assert submit(employer, "/requests/new", a_year).status_code == 302
