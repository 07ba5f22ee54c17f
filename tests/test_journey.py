"""The K4016 case replayed through the pages, as the people who lived it would: 476 workers of
ten construction companies ride special train K4016 from Chongqing West to Jinan, then coaches
to each company's site. Debian's Chromium, driven by Playwright (sync API), against the app on
SQLite served on a free local port; one browser context per person.

Through the browser:

- ten employers (ten organizations, one HR account each) upload their roster (.xlsx with a 健康码
  column; three workers carry a failing pass: a yellow one, one signed by an issuer that is not
  on the trust list, one that expires before departure) on the roster upload page, save a
  request, add everyone to it, read the request page (counts, the blocked worker and why) and
  submit it;
- the coordinator signs in on the sign-in page, approves each request from the queue, plans the
  train on /trips/plan (all ten requests, K4016 with nine hard-seat carriages, 50% with alternate
  seats) and each site's coaches (one plan per site, 50% with the last two rows empty), gives the
  train an escort on the trip form, connects the coaches of two sites (中建八局's four and
  中铁十四局's one) to the train on the trip form, gives seats on the train and on those coaches,
  locks them, moves the followed worker to the last carriage on the train's seat map and locks
  the train;
- the followed worker opens the /my-trip/ link of the SMS written at lock (read from the
  outbox) on a 360 x 740 phone screen without JavaScript: train carriage and seat, then the coach;
- the escort, on a phone, types the booking codes of the followed worker and one more with their
  temperatures, isolates one worker with 38.5 °C, marks one no-show, departs and arrives the
  train (closed: everyone rides on), then does the same at the followed worker's coach;
- the three employers with a blocked worker withdraw them (they stayed home); 中建八局 and
  中铁十四局 confirm the handover of each of their coaches, and see their requests completed.

Through the Flask test client posting the same forms, with the browser's session cookie (a
second tab of the same person; ~180 page loads fewer): connecting, seating and locking the 18
other coaches, and the handovers of the eight other employers.

Through the JSON API with the escort's personal token (the boarding scan is the same service as
the boarding page): the ~930 other boarding scans, and the departure and arrival of the 22 other
coaches. The boarding page renders the whole "not yet here" list after every scan with one query
per row (about 490 queries per scan on the full train), so posting it 930 times would take
minutes.

Users, organizations, vehicles and the trusted issuer are set up through the services, as the
other tests do. All times are relative to the day the test runs (the train leaves the day after
tomorrow at 08:20, Shanghai time): nothing depends on the hour. Screenshots of each role's key
page go to test-artifacts/k4016-*.png. With ``-s`` each step prints its wall time.

The tests after it reproduce, in miniature, the app bugs met on the way (all fixed since).
"""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from flask import Flask
from flask_babel import gettext, ngettext
from openpyxl import Workbook
from playwright.sync_api import Browser, BrowserContext, Locator, Page, sync_playwright
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.accounts import models as account_models
from app.accounts import services as accounts
from app.accounts.models import User
from app.api import services as api_services
from app.core.access import Role
from app.core.clock import local_today, utcnow
from app.core.identity import credit_code_check_character, id_number_check_character
from app.demand.models import EntryStatus, RequestStatus, RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.fleet.models import Operator
from app.health.cli import issue_demo_pass
from app.health.passes import generate_key
from app.health.views import health_reasons
from app.notify.models import Notification
from app.notify.services import render
from app.trips import allocation
from app.trips import services as trip_services
from app.trips.forms import BOARDING_MESSAGES
from app.trips.models import SeatAssignment, Trip, TripStatus
from app.trips.seatmaps import load_template
from tests import scenario
from tests.conftest import CSRF_FIELD, PASSWORD, csrf_token, submit
from tests.test_allocation import K4016_EMPLOYERS
from tests.test_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    CHROMIUM_ARGS,
    chromium_path,
    live_server,
)

DAY = local_today("Asia/Shanghai") + timedelta(days=2)  # K4016 leaves Chongqing West
NEXT_DAY = DAY + timedelta(days=1)  # arrives in Jinan; the coaches take everyone on
PHONE = {"width": 360, "height": 740}

# Where each company builds (district of Jinan), and the failing pass of one of its workers.
DISTRICTS = {
    "中建八局": ("370102", "历下区", "yellow"),
    "中铁十局": ("370103", "市中区", None),
    "山东建工": ("370104", "槐荫区", None),
    "济南城建": ("370105", "天桥区", "untrusted"),
    "中建五局": ("370112", "历城区", None),
    "山东路桥": ("370113", "长清区", None),
    "济南一建": ("370114", "章丘区", None),
    "天元建设": ("370115", "济阳区", None),
    "中铁十四局": ("370116", "莱芜区", None),
    "济南四建": ("370117", "钢城区", "expired"),
}
FAILING_REASON = {
    "yellow": "status_not_green",
    "untrusted": "unknown_kid",
    "expired": "expired_at_departure",
}
FOLLOWED_EMPLOYER = "中铁十四局"  # one coach: the followed worker, the fever and the no-show
HOMES = (
    ("500235", "重庆市云阳县", ("龙洞村", "双河村", "青龙村")),
    ("500236", "重庆市奉节县", ("石门村", "桂花村")),
    ("500101", "重庆市万州区", ("黄岭村", "长岭村")),
    ("500233", "重庆市忠县", ("白石村", "新立村")),
)
SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高"
GIVEN = "德明华建国志军平红伟强芳洪海涛亮斌刚勇杰峰波辉春"
HEADERS = ["姓名", "身份证号", "手机号", "户籍地区代码", "户籍地区", "分组", "健康码"]
COACH_POLICY = allocation.Policy.of_percent(50, 2, False)  # 2020: 50%, last two rows empty


# --- the cast --------------------------------------------------------------------------------


@dataclass
class Person:
    n: int
    name: str
    id_number: str
    phone: str
    home_code: str
    home_name: str
    village: str
    failing: str | None = None


@dataclass
class Company:
    key: str
    size: int
    district_code: str
    district_name: str
    failing: str | None
    organization_id: int = 0
    email: str = ""
    coach_ids: list[int] = field(default_factory=list)
    workers: list[Person] = field(default_factory=list)
    request_id: int = 0

    @property
    def name(self) -> str:
        return f"{self.key}济南项目公司"

    @property
    def site(self) -> str:
        return f"{self.key}{self.district_name}项目部"

    @property
    def cleared(self) -> int:
        return self.size - (1 if self.failing else 0)


@dataclass
class Cast:
    companies: list[Company]
    coordinator_email: str
    escort_email: str
    train_id: int
    issuer_key: str
    untrusted_key: str

    def company(self, key: str) -> Company:
        return next(c for c in self.companies if c.key == key)


def credit_code(n: int) -> str:
    first17 = f"91370100MA3K{n:05d}"
    return first17 + credit_code_check_character(first17)


def person(n: int, failing: str | None) -> Person:
    home_code, home_name, villages = HOMES[n % len(HOMES)]
    born = date(1975, 1, 1) + timedelta(days=(n * 131) % 8000)
    first17 = f"{home_code}{born:%Y%m%d}{n:03d}"
    given = GIVEN[(n // len(SURNAMES)) % len(GIVEN)] + GIVEN[(n * 7 + 3) % len(GIVEN)]
    return Person(
        n=n,
        name=SURNAMES[n % len(SURNAMES)] + given,
        id_number=first17 + id_number_check_character(first17),
        phone=f"139{n:08d}",
        home_code=home_code,
        home_name=home_name,
        village=f"{home_name[3:]}{villages[(n // 7) % len(villages)]}",
        failing=failing,
    )


@pytest.fixture
def k4016(app: Flask, issuer_key: str, monkeypatch: pytest.MonkeyPatch) -> Cast:
    """Ten companies with an HR account each, the Jinan coordinator and an escort, train K4016
    (nine hard-seat carriages, 03-11) and enough 53-seat coaches for each site at 50%."""
    app.config["API_RATE_LIMIT"] = "5000/minute"  # the escort's scanner is quick
    coach_cap = allocation.capacity(load_template("coach-53"), COACH_POLICY)
    companies = []
    n = 0
    # Twelve accounts with the same password: one real scrypt hash (0.3 s each here), shared.
    hashed = generate_password_hash(PASSWORD, method="scrypt")
    with app.app_context(), monkeypatch.context() as patch:
        patch.setattr(account_models, "generate_password_hash", lambda _password, method: hashed)
        accounts.create_user(
            "dispatch@k4016.example.cn",
            PASSWORD,
            Role.COORDINATOR,
            "济南调度",
            region_code="370100",
        )
        accounts.create_user(
            "escort@k4016.example.cn", PASSWORD, Role.COORDINATOR, "押运员", region_code="370100"
        )
        railway = Operator(name="中国铁路成都局集团有限公司", contact_phone="02363851234")
        coaches = Operator(name="济南长途汽车运输有限公司", contact_phone="053186901234")
        db.session.add_all([railway, coaches])
        train_id = scenario.vehicle(
            "K4016", "train-hard-seat-118", 9, 3, kind="train", operator=railway
        ).id
        plate = 80001
        for index, (key, size) in enumerate(K4016_EMPLOYERS.items(), start=1):
            code, district, failing = DISTRICTS[key]
            company = Company(key, size, code, district, failing)
            organization = accounts.create_organization(company.name, credit_code(index), code)
            company.organization_id = organization.id
            company.email = f"hr{index}@k4016.example.cn"
            accounts.create_user(company.email, PASSWORD, Role.EMPLOYER, "人事", organization)
            for i in range(size):
                n += 1
                company.workers.append(person(n, failing if i == 2 else None))
            for _ in range(math.ceil(company.cleared / coach_cap)):
                company.coach_ids.append(
                    scenario.vehicle(f"鲁A{plate}", "coach-53", operator=coaches).id
                )
                plate += 1
            companies.append(company)
        db.session.commit()
    assert n == 476
    untrusted, _ = generate_key()  # a "health authority" nobody put on the trust list
    return Cast(
        companies,
        "dispatch@k4016.example.cn",
        "escort@k4016.example.cn",
        train_id,
        issuer_key,
        untrusted,
    )


def roster_xlsx(app: Flask, cast: Cast, company: Company) -> bytes:
    """The company's roster as its HR office keeps it, each worker's 健康码 included."""
    issued = utcnow() - timedelta(hours=1)
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADERS)
    with app.app_context():
        for p in company.workers:
            key = cast.untrusted_key if p.failing == "untrusted" else cast.issuer_key
            status = "yellow" if p.failing == "yellow" else "green"
            valid = timedelta(hours=2) if p.failing == "expired" else timedelta(days=7)
            token = issue_demo_pass(key, p.id_number, p.name, status, issued, valid)
            sheet.append([p.name, p.id_number, p.phone, p.home_code, p.home_name, p.village, token])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- reading and driving pages ---------------------------------------------------------------


def said(app: Flask, message: str, **values) -> str:
    """A sentence as the pages say it (Chinese, the default)."""
    with app.test_request_context():
        return gettext(message, **values)


def said_n(app: Flask, singular: str, plural: str, num: int) -> str:
    with app.test_request_context():
        return ngettext(singular, plural, num)


def told(app: Flask, message, **values) -> str:
    """A lazily translated message of a table (BOARDING_MESSAGES...), filled in."""
    with app.test_request_context():
        return str(message) % values if values else str(message)


def press(page: Page, target: Locator) -> None:
    """Click something that loads a new page, and wait for it."""
    with page.expect_navigation():
        target.click()


def flash(page: Page) -> str:
    return " ".join(page.locator("p.flash").all_inner_texts())


def watch_responses(context: BrowserContext, problems: list[str]) -> None:
    """Every error answer the context's pages get goes into ``problems`` (the browser's own
    favicon probe aside)."""
    context.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )


def sign_in_page(
    browser: Browser, base: str, email: str, problems: list[str], typed: bool = False, **options
) -> Page:
    """A browser context of its own, signed in: through the sign-in page when ``typed``, else
    by posting the same form with the context's own HTTP client (its cookies are the page's)."""
    context = browser.new_context(base_url=base, **options)
    context.set_default_timeout(20_000)
    watch_responses(context, problems)
    page = context.new_page()
    if typed:
        page.goto("/login")
        page.fill("#email", email)
        page.fill("#password", PASSWORD)
        press(page, page.locator("main form button[type=submit]"))
        assert "/login" not in page.url, email
    else:
        form = context.request.get("/login").text()
        token = CSRF_FIELD.search(form).group(1)
        answer = context.request.post(
            "/login",
            form={"csrf_token": token, "email": email, "password": PASSWORD},
            max_redirects=0,
        )
        assert answer.status == 302, email
    return page


def entry_counts(page: Page) -> dict[str, int]:
    """The per-status counts at the top of a request's worker list."""
    pairs = page.eval_on_selector_all(
        "ul.counts a",
        "links => links.map(a => [a.getAttribute('href'), a.querySelector('strong')?.textContent])",
    )
    counts = {}
    for href, number in pairs:
        found = re.search(r"status=(\w+)", href or "")
        if found and number is not None:
            counts[found.group(1)] = int(number)
    return counts


def boarding_counts(page: Page) -> list[int]:
    """boarded, seated, not yet here, no-show (and isolated when there are any)."""
    return [int(t) for t in page.locator("ul.boarding-counts strong").all_inner_texts()]


def shot(page: Page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


@dataclass
class Clock:
    """Wall time per step, printed at the end (pytest -s shows it)."""

    start: float = field(default_factory=time.monotonic)
    laps: list[tuple[str, float]] = field(default_factory=list)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append((name, now - self.start))
        print(f"{name:45s} {now - self.start:6.1f} s", flush=True)
        self.start = now


# --- database reads (what the test needs to know, not what the user sees) ---------------------


def trip_of(app: Flask, vehicle_id: int) -> int:
    with app.app_context():
        return db.session.scalar(select(Trip.id).where(Trip.vehicle_id == vehicle_id))


def entry_of(app: Flask, p: Person) -> int:
    with app.app_context():
        return db.session.scalar(
            select(RosterEntry.id)
            .join(Worker)
            .where(Worker.name == p.name, RosterEntry.status != EntryStatus.WITHDRAWN)
        )


def seat_of(app: Flask, trip_id: int, entry_id: int) -> tuple[str, str]:
    """(machine label, as on a ticket)."""
    with app.app_context():
        label = db.session.scalar(
            select(SeatAssignment.seat_label).where(
                SeatAssignment.trip_id == trip_id, SeatAssignment.roster_entry_id == entry_id
            )
        )
        trip = db.session.get(Trip, trip_id)
        return label, trip.vehicle.seat_map.seat(label).display


def codes_on(app: Flask, trip_id: int) -> dict[int, str]:
    """Booking code per seated entry (what each worker shows at the door)."""
    with app.app_context():
        return dict(
            db.session.execute(
                select(RosterEntry.id, RosterEntry.booking_code)
                .join(SeatAssignment, SeatAssignment.roster_entry_id == RosterEntry.id)
                .where(SeatAssignment.trip_id == trip_id)
            ).all()
        )


def free_seat_for(app: Flask, trip_id: int, entry_id: int) -> str:
    """A seat the allocator's checks allow for this worker, in the last carriage (what the
    coordinator picks on the seat map)."""
    with app.app_context():
        trip = db.session.get(Trip, trip_id)
        seat_map = trip.vehicle.seat_map
        existing = dict(
            db.session.execute(
                select(SeatAssignment.roster_entry_id, SeatAssignment.seat_label).where(
                    SeatAssignment.trip_id == trip_id
                )
            ).all()
        )
        last = max(seat.carriage for seat in seat_map.seats)
        for seat in seat_map.seats:
            if seat.carriage == last and not allocation.check_move(
                seat_map, trip.policy, trip.all_blocked_seats, existing, entry_id, seat.label
            ):
                return seat.label
    raise AssertionError("no free seat in the last carriage")


# --- the journey -----------------------------------------------------------------------------


def employer_imports_and_submits(app: Flask, company: Company, roster: bytes, page: Page) -> None:
    # The roster upload page: every row checked, all saved.
    page.goto("/roster/import")
    page.set_input_files(
        "#file",
        {
            "name": f"{company.key}返岗人员名单.xlsx",
            "mimeType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "buffer": roster,
        },
    )
    press(page, page.locator("main form button[type=submit]"))
    assert re.search(r"/roster/imports/\d+$", page.url)
    imported = said(
        app,
        "Imported: %(added)s workers added, %(updated)s updated.",
        added=company.size,
        updated=0,
    )
    assert imported in page.locator("p.flash-success").inner_text()

    # A request for the train to the site, then everyone on the roster added to it.
    page.goto("/requests/new")
    for name, value in {
        "origin_region_code": "500106",
        "origin_region_name": "重庆市沙坪坝区",
        "pickup_point": "重庆西站",
        "pickup_address": "重庆市沙坪坝区西永大道",
        "destination_region_code": company.district_code,
        "destination_region_name": f"山东省济南市{company.district_name}",
        "site_name": company.site,
        "site_address": f"济南市{company.district_name}工业北路88号",
        "site_contact_name": "赵经理",
        "site_contact_phone": "0531-88886666",
        "earliest_departure": DAY.isoformat(),
        "latest_departure": NEXT_DAY.isoformat(),
    }.items():
        page.fill(f"#{name}", value)
    page.select_option("#preferred_mode", "train")
    press(page, page.locator("main form button[type=submit]"))
    found = re.search(r"/requests/(\d+)/workers$", page.url)
    assert found, page.url
    company.request_id = int(found.group(1))
    page.select_option("#group", "*")
    press(page, page.locator("form:has(#group) button[type=submit]"))
    added = said(app, "%(count)s workers added.", count=company.size)
    assert added in flash(page)

    # The request page: who is cleared, who is blocked and why.
    page.goto(f"/requests/{company.request_id}")
    counts = entry_counts(page)
    assert counts["cleared"] == company.cleared
    assert counts["blocked"] == (1 if company.failing else 0)
    if company.key == "中建八局":
        shot(page, "k4016-1-employer-request-after-import.png")
    if company.failing:  # who, and why: then submitted from this list
        page.goto(f"/requests/{company.request_id}?status=blocked")
        row = page.locator("table.stack tbody tr")
        assert row.count() == 1
        assert row.locator("td").first.inner_text() == company.workers[2].name
        with app.test_request_context():
            reason = health_reasons(FAILING_REASON[company.failing])[0]
        assert reason in row.locator("ul.reasons").inner_text()
    press(page, page.locator("form[action$='/submit'] button"))
    assert said(app, "Request submitted to the coordinators.") in flash(page)
    assert page.locator("p.status.status-submitted").count() == 1


def coordinator_approves(app: Flask, page: Page) -> None:
    page.goto("/queue")
    rows = page.locator("table.stack tbody tr")
    assert rows.count() == 10
    workers = [int(t) for t in rows.locator("td:last-child").all_inner_texts()]
    assert sum(workers) == 476
    links = rows.locator("td:first-child a")
    for href in [links.nth(i).get_attribute("href") for i in range(links.count())]:
        page.goto(href)
        press(page, page.locator("form.decision button:not(.danger)"))
        assert said(app, "Request approved.") in flash(page)
        assert page.locator("p.status.status-approved").count() == 1
    page.goto("/queue")
    assert page.locator("table.stack tbody tr").count() == 0


def fill_leg(page: Page, leg: dict[str, str], alternate: bool = False) -> None:
    for name, value in leg.items():
        page.fill(f"#{name}", value)
    page.locator("#alternate_seats").set_checked(alternate)
    page.select_option("#connects_from_id", "0")


def plan_and_apply(app: Flask, page: Page, expected: int) -> list[int]:
    """Make the plan, check its numbers, apply it: the counts planned per vehicle."""
    press(page, page.locator("button[name=make]"))
    planned = page.eval_on_selector_all("table.plan input.count", "els => els.map(e => +e.value)")
    assert sum(planned) == expected, planned
    return planned


def coordinator_plans_the_train(app: Flask, cast: Cast, page: Page) -> int:
    page.goto(f"/trips/plan?origin=50&day={DAY.isoformat()}")
    boxes = page.locator("input[name=requests]")
    assert boxes.count() == 10
    for i in range(10):
        boxes.nth(i).check()
    page.locator(f"input[name=vehicles][value='{cast.train_id}']").check()
    fill_leg(
        page,
        {
            "origin_region_code": "500106",
            "origin_point": "重庆西站",
            "origin_address": "重庆市沙坪坝区西永大道",
            "destination_region_code": "370100",
            "destination_point": "济南站",
            "destination_address": "济南市天桥区车站街19号",
            "departs_on": DAY.isoformat(),
            "departs_time": "08:20",
            "arrives_on": NEXT_DAY.isoformat(),
            "arrives_time": "06:10",
            "max_load_percent": "50",
            "isolation_rows": "0",
            "health_freshness_hours": "72",
        },
        alternate=True,
    )
    cleared = sum(c.cleared for c in cast.companies)
    planned = plan_and_apply(app, page, cleared)
    assert len(planned) == 10  # one row (the train), a column per request
    # Nine carriages of 118 at 50% with alternate seats: 59 each.
    assert page.locator("table.plan tbody td").first.inner_text() == str(9 * 59)
    shot(page, "k4016-2-coordinator-plan.png")
    # Ten requests' columns scroll inside the plan's table: the page is no wider than the
    # window (the table used to widen the whole page at 1280 px).
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    # Only the trip: its seats come after the coaches are planned from the same workers.
    press(page, page.locator("button[name=apply][value='1']"))
    assert said_n(app, "%(num)d trip created.", "%(num)d trips created.", 1) in flash(page)
    return trip_of(app, cast.train_id)


def coach_leg(company: Company) -> dict[str, str]:
    """Jinan station's north square to the site, the morning the train comes in."""
    return {
        "origin_region_code": "370105",
        "origin_point": "济南站北广场",
        "origin_address": "济南市天桥区无影山中路",
        "destination_region_code": company.district_code,
        "destination_point": company.site,
        "destination_address": f"济南市{company.district_name}工业北路88号",
        "departs_on": NEXT_DAY.isoformat(),
        "departs_time": "07:30",
        "arrives_on": NEXT_DAY.isoformat(),
        "arrives_time": "09:30",
        "max_load_percent": "50",
        "isolation_rows": "2",
        "health_freshness_hours": "72",
    }


def coordinator_plans_coaches(app: Flask, company: Company, page: Page, train: int) -> list[int]:
    page.goto(f"/trips/plan?destination={company.district_code}&day={NEXT_DAY.isoformat()}")
    boxes = page.locator("input[name=requests]")
    assert boxes.count() == 1
    boxes.first.check()
    for coach_id in company.coach_ids:
        page.locator(f"input[name=vehicles][value='{coach_id}']").check()
    # Connecting legs from the train, planned once its seats are given: they carry the
    # workers seated on it (workers planned on the train wait for it, not for a coach planned
    # as another first leg).
    fill_leg(page, coach_leg(company))
    page.select_option("#connects_from_id", str(train))
    planned = plan_and_apply(app, page, company.cleared)
    assert len([n for n in planned if n]) == len(company.coach_ids)
    press(page, page.locator("button[name=apply][value='1']"))
    return [trip_of(app, coach_id) for coach_id in company.coach_ids]


def edit_trip(app: Flask, page: Page, trip_id: int, **changes: str) -> None:
    page.goto(f"/trips/{trip_id}/edit")
    for name, value in changes.items():
        page.fill(f"#{name}", value)
    press(page, page.locator("main form button[type=submit]"))
    assert page.url.endswith(f"/trips/{trip_id}"), page.url
    assert said(app, "Trip saved.") in flash(page)


def give_seats(app: Flask, page: Page, trip_id: int) -> int:
    """On the trip page: "Give seats"; every worker planned on the trip gets one."""
    if not page.url.endswith(f"/trips/{trip_id}"):
        page.goto(f"/trips/{trip_id}")
    cells = page.locator("table.stack tbody td:nth-child(3)").all_inner_texts()
    planned = sum(int(t) for t in cells)
    press(page, page.locator(f"form[action$='/trips/{trip_id}/allocate'] button"))
    seated = said_n(app, "%(num)d worker seated.", "%(num)d workers seated.", planned)
    assert seated in flash(page)
    return planned


def lock(app: Flask, page: Page, trip_id: int) -> int:
    """On the trip page: "Lock the manifest"; every seated worker is told by SMS."""
    if not page.url.endswith(f"/trips/{trip_id}"):
        page.goto(f"/trips/{trip_id}")
    cells = page.locator("table.stack tbody td:nth-child(4)").all_inner_texts()
    seated = sum(int(t) for t in cells)
    page.locator("details.confirm:has(form[action$='/lock']) summary").click()
    press(page, page.locator(f"form[action$='/trips/{trip_id}/lock'] button"))
    assert locked_text(app, seated) in flash(page)
    assert page.locator("p.status.status-locked").count() == 1
    return seated


def locked_text(app: Flask, seated: int) -> str:
    return said_n(
        app,
        "Manifest locked; %(num)d worker is being told their seat by text message.",
        "Manifest locked; %(num)d workers are being told their seats by text message.",
        seated,
    )


def board_in_browser(page: Page, code: str, celsius: str) -> str:
    page.fill("#code", code)
    page.fill("#temperature", celsius)
    press(page, page.locator("main form.narrow button[type=submit]"))
    return page.locator("div.verdict").inner_text()


class Tab:
    """The same person in a second tab, driven by the Flask test client: the browser's session
    cookie, and the forms posted as the pages post them (with the page's CSRF token)."""

    def __init__(self, app: Flask, page: Page) -> None:
        self.client = app.test_client()
        for cookie in page.context.cookies():
            self.client.set_cookie(cookie["name"], cookie["value"], domain="localhost")
        self.token = csrf_token(self.client, "/")

    def get(self, url: str) -> str:
        answer = self.client.get(url)
        assert answer.status_code == 200, url
        return answer.get_data(as_text=True)

    def post(self, url: str, data: dict | None = None) -> str:
        """Post a form; it redirects to a page that says what happened."""
        answer = self.client.post(url, data={"csrf_token": self.token, **(data or {})})
        assert answer.status_code == 302, (url, answer.get_data(as_text=True)[:2000])
        return self.get(answer.headers["Location"])


class Scanner:
    """The escort's handheld scanner: the JSON API's boarding scan, the same service as the
    boarding page, with the escort's personal API token. (The boarding page renders the whole
    "not yet here" list after every scan, one query per row: posting it 940 times would take
    minutes.)"""

    def __init__(self, app: Flask, email: str) -> None:
        with app.app_context():
            user = db.session.scalar(select(User).where(User.email == email))
            _token, secret = api_services.create_token(user, "押运扫码枪")
            db.session.commit()
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {secret}"}

    def post(self, path: str, body: dict | None = None):
        return self.client.post(f"/api/v1{path}", json=body or {}, headers=self.headers)

    def board(self, trip_id: int, codes: list[str]) -> None:
        for code in codes:
            answer = self.post(f"/trips/{trip_id}/boarding", {"code": code, "temperature": "36.5"})
            assert answer.status_code == 200, answer.json
            assert answer.json["verdict"] == "boarded", answer.json

    def move(self, trip_id: int, action: str) -> None:
        answer = self.post(f"/trips/{trip_id}/{action}")
        assert answer.status_code == 200, answer.json


def hand_over(app: Flask, page: Page, company: Company, trip_id: int) -> int:
    """At the site gate: the count received, signed by the site manager."""
    page.goto(f"/requests/{company.request_id}/handover/{trip_id}")
    due = int(page.locator("#received").input_value())
    page.fill("#representative_name", "赵经理")
    press(page, page.locator("main form button[type=submit]"))
    assert said(app, "Handover confirmed.") in flash(page)
    received = said(app, "%(received)s of %(expected)s", received=due, expected=due)
    assert received in page.locator("dl.facts").inner_text()
    return due


DUE = re.compile(r'id="received"[^>]*value="(\d+)"|value="(\d+)"[^>]*id="received"')


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:  # noqa: F811
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_k4016_through_the_pages(app, k4016, live_server, browser):  # noqa: F811
    cast, clock, problems = k4016, Clock(), []
    companies = cast.companies
    followed_company = cast.company(FOLLOWED_EMPLOYER)
    biggest = companies[0]  # 中建八局: 82 workers, one yellow pass, four coaches

    # 1. Ten employers import their rosters and submit their requests.
    rosters = {c.key: roster_xlsx(app, cast, c) for c in companies}
    hr = {c.key: sign_in_page(browser, live_server, c.email, problems) for c in companies}
    for company in companies:
        employer_imports_and_submits(app, company, rosters[company.key], hr[company.key])
    clock.lap("employers: roster, request, submit")

    # 2. The coordinator approves, plans the train and gives its seats (the failing passes
    # are checked again and stay off), then plans each site's coaches on from the train.
    desk = sign_in_page(browser, live_server, cast.coordinator_email, problems, typed=True)
    coordinator_approves(app, desk)
    train = coordinator_plans_the_train(app, cast, desk)
    edit_trip(app, desk, train, escort_name="孙卫东", escort_phone="13700001111")
    cleared = sum(c.cleared for c in companies)
    allowed = said(app, "%(seated)s seated of %(capacity)s allowed", seated=cleared, capacity=531)
    assert give_seats(app, desk, train) == cleared
    assert allowed in desk.locator("dl.facts").inner_text()
    kept_off = said_n(
        app,
        "%(num)d worker blocked by the health check (the employer is told).",
        "%(num)d workers blocked by the health check (the employer is told).",
        3,
    )
    assert kept_off in flash(desk)  # the three failing passes, checked again for this train
    coach_trips = {c.key: coordinator_plans_coaches(app, c, desk, train) for c in companies}
    company_of = {t: c for c in companies for t in coach_trips[c.key]}
    all_coaches = list(company_of)
    assert len(all_coaches) == 23
    desk.goto(f"/trips/{train}")
    assert desk.locator("dl.facts dd a[href^='/trips/']").count() == 23  # continues on
    clock.lap("coordinator: approve, plan, seat the train, plan the coaches")

    # Seats on each site's coaches, from the workers seated on the train; their manifests
    # are final at once. Two sites through the pages, the 18 others through the same forms.
    by_hand = coach_trips[biggest.key] + coach_trips[FOLLOWED_EMPLOYER]
    by_tab = [t for t in all_coaches if t not in by_hand]
    office = Tab(app, desk)
    for trip_id in by_hand:
        assert give_seats(app, desk, trip_id) == lock(app, desk, trip_id)
    for trip_id in by_tab:
        with app.app_context():
            planned = sum(load.planned for load in db.session.get(Trip, trip_id).loads)
        seated = said_n(app, "%(num)d worker seated.", "%(num)d workers seated.", planned)
        assert seated in office.post(f"/trips/{trip_id}/allocate")
        assert locked_text(app, planned) in office.post(f"/trips/{trip_id}/lock")
    with app.app_context():
        failing = [c.workers[2].name for c in companies if c.failing]
        seated_names = db.session.scalars(
            select(Worker.name).join(RosterEntry).join(SeatAssignment)
        ).all()
        assert len(seated_names) == cleared + cleared  # train and coach
        assert not set(failing) & set(seated_names)

    # One seat fixed by hand on the seat map: the followed worker moves to the last carriage.
    followed, fever, absent = followed_company.workers[0:3]
    followed_entry = entry_of(app, followed)
    target = free_seat_for(app, train, followed_entry)
    desk.goto(f"/trips/{train}/seats")
    assert allowed in desk.locator("main > p:not(.back)").first.inner_text()
    desk.select_option("#entry_id", str(followed_entry))
    desk.fill("#to_seat", target)
    press(desk, desk.locator("form[action$='/seats/move'] button:not([formaction])"))
    assert said(app, "Seat changed.") in flash(desk)
    train_seat = seat_of(app, train, followed_entry)
    assert train_seat[0] == target
    grid = desk.locator("div.seatmap").first
    seat_box = grid.locator(f"span.seat[title='{train_seat[1]}']")
    assert seat_box.locator(".seat-text").inner_text() == followed.name
    shot(desk, "k4016-3-train-seat-map.png", full_page=False)  # counts, legend, carriage 03
    carriage = seat_box.locator("xpath=ancestor::section[1]")
    carriage.screenshot(path=str(ARTIFACTS / "k4016-3-train-seat-map-carriage-11.png"))
    assert lock(app, desk, train) == cleared  # every worker is told their train seat by SMS
    clock.lap("coordinator: seats, move, lock")

    # 3. The followed worker opens the link in the SMS on a small phone.
    coach = coach_trips[FOLLOWED_EMPLOYER][0]
    coach_seat = seat_of(app, coach, followed_entry)
    with app.app_context():
        sms = db.session.scalar(
            select(Notification).where(
                Notification.template == "seat_given",
                Notification.event.like(f"seat.given:t{train}:e{followed_entry}:%"),
            )
        )
        assert sms is not None
    with app.test_request_context():
        _subject, text = render(sms)
    assert "K4016" in text
    assert train_seat[1] in text
    link = re.search(r"https?://[^/\s]+(/my-trip/\S+)", text)
    assert link, text
    phone = browser.new_context(
        base_url=live_server,
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        java_script_enabled=False,
    )
    watch_responses(phone, problems)
    mine = phone.new_page()
    assert mine.goto(link.group(1)).status == 200
    legs = mine.locator("section.leg")
    assert legs.count() == 2
    train_leg, coach_leg_shown = legs.nth(0), legs.nth(1)
    assert train_leg.locator(".my-seat").inner_text() == train_seat[1]
    assert train_seat[1].startswith("11车")  # the last carriage, as moved by hand
    assert "K4016" in train_leg.inner_text()
    assert "重庆西站" in train_leg.locator(".trip-place").inner_text()
    assert "13700001111" in train_leg.inner_text().replace(" ", "")  # the escort's phone
    assert coach_leg_shown.locator(".my-seat").inner_text() == coach_seat[1]
    with app.app_context():
        plate = db.session.get(Trip, coach).vehicle.identifier
    assert plate in coach_leg_shown.inner_text()
    assert followed_company.site in coach_leg_shown.inner_text()
    assert mine.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    booking_code = mine.locator(".booking-code").inner_text()
    shot(mine, "k4016-4-worker-trip-360.png")
    phone.close()
    clock.lap("worker: SMS link")

    # 4. The escort boards the train on a phone.
    escort = sign_in_page(
        browser, live_server, cast.escort_email, problems, viewport=PHONE, is_mobile=True
    )
    escort.goto(f"/trips/{train}/boarding")
    assert boarding_counts(escort) == [0, cleared, cleared, 0]
    verdict = board_in_browser(escort, booking_code, "36,6")
    assert followed.name in verdict
    assert told(app, BOARDING_MESSAGES["boarded"], seat=train_seat[1]) in verdict
    codes = codes_on(app, train)
    fever_entry, absent_entry = entry_of(app, fever), entry_of(app, absent)
    others = [entry_of(app, followed_company.workers[3])]
    for entry_id in others:
        board_in_browser(escort, codes[entry_id].lower(), "36.4")
        assert "verdict-ok" in escort.locator("div.verdict").get_attribute("class")
    fever_verdict = board_in_browser(escort, codes[fever_entry], "38.5")
    assert told(app, BOARDING_MESSAGES["fever"]) in fever_verdict
    no_show_row = escort.locator("table.stack tbody tr", has_text=absent.name)
    press(escort, no_show_row.locator("button"))
    assert said(app, "Marked as not showing up.") in flash(escort)
    done = {followed_entry, fever_entry, absent_entry, *others}
    scanner = Scanner(app, cast.escort_email)
    scanner.board(train, [code for entry_id, code in codes.items() if entry_id not in done])
    escort.goto(f"/trips/{train}/boarding")
    assert boarding_counts(escort) == [cleared - 2, cleared, 0, 1, 1]
    assert said(app, "Everyone is accounted for.") in escort.locator("main").inner_text()
    shot(escort, "k4016-5-boarding-360.png")
    press(escort, escort.locator("form[action$='/depart'] button"))
    assert escort.locator("p.status.status-departed").count() == 1
    press(escort, escort.locator("form[action$='/arrive'] button"))
    # Everyone rides on by coach: nothing to hand over at Jinan station, the train is closed.
    assert escort.locator("p.status.status-closed").count() == 1
    clock.lap("escort: train")

    # The followed worker's coach: the fever case and the no-show never got here.
    escort.goto(f"/trips/{coach}/boarding")
    coach_codes = codes_on(app, coach)
    verdict = board_in_browser(escort, booking_code, "36.5")
    assert told(app, BOARDING_MESSAGES["boarded"], seat=coach_seat[1]) in verdict
    for name in (fever.name, absent.name):
        press(escort, escort.locator("table.stack tbody tr", has_text=name).locator("button"))
    missing = {followed_entry, fever_entry, absent_entry}
    scanner.board(coach, [c for e, c in coach_codes.items() if e not in missing])
    escort.goto(f"/trips/{coach}/boarding")
    assert boarding_counts(escort) == [len(coach_codes) - 2, len(coach_codes), 0, 2]
    press(escort, escort.locator("form[action$='/depart'] button"))
    press(escort, escort.locator("form[action$='/arrive'] button"))
    assert escort.locator("p.status.status-arrived").count() == 1
    # The 22 other coaches: the escorts' scanners, and their depart and arrive calls.
    for trip_id in all_coaches:
        if trip_id != coach:
            scanner.board(trip_id, list(codes_on(app, trip_id).values()))
            scanner.move(trip_id, "depart")
            scanner.move(trip_id, "arrive")
    with app.app_context():
        statuses = db.session.scalars(select(Trip.status).where(Trip.id.in_(all_coaches)))
        assert set(statuses) == {TripStatus.ARRIVED}
    clock.lap("escort: coaches")

    # 5. The three workers whose passes failed stayed home: their employers withdraw them.
    for company in companies:
        if company.failing:
            page = hr[company.key]
            page.goto(f"/requests/{company.request_id}?status=blocked")
            press(page, page.locator("table.stack tbody tr button"))
            name = company.workers[2].name
            assert said(app, "%(name)s withdrawn from this request.", name=name) in flash(page)

    # Each employer confirms the handover of each of its coaches at the site gate: two of them
    # on the pages, the eight others through the same form.
    for company in companies:
        page = hr[company.key]
        if company in (biggest, followed_company):
            page.goto(f"/requests/{company.request_id}")
            links = page.locator("ul.trips-of-request")
            for trip_id in coach_trips[company.key]:
                assert links.locator(f"a[href$='/handover/{trip_id}']").count() == 1
            for trip_id in coach_trips[company.key]:
                hand_over(app, page, company, trip_id)
            if company is followed_company:
                shot(page, "k4016-6-handover.png")
            page.goto(f"/requests/{company.request_id}")
            assert page.locator("p.status.status-completed").count() == 1, company.key
            counts = entry_counts(page)
        else:
            tab = Tab(app, page)
            for trip_id in coach_trips[company.key]:
                form = tab.get(f"/requests/{company.request_id}/handover/{trip_id}")
                due = next(g for g in DUE.search(form).groups() if g)
                confirmed = tab.post(
                    f"/requests/{company.request_id}/handover/{trip_id}",
                    {"received": due, "representative_name": "赵经理"},
                )
                assert said(app, "Handover confirmed.") in confirmed
            completed = tab.get(f"/requests/{company.request_id}")
            assert 'class="status status-completed"' in completed, company.key
            with app.app_context():
                rows = db.session.execute(
                    select(RosterEntry.status, db.func.count())
                    .where(RosterEntry.request_id == company.request_id)
                    .group_by(RosterEntry.status)
                )
                counts = dict(rows.all())
        lost = 2 if company is followed_company else 0  # the fever case and the no-show
        assert counts["arrived"] == company.cleared - lost
        assert counts.get("no_show", 0) == lost
        assert counts.get("withdrawn", 0) == (1 if company.failing else 0)
    clock.lap("employers: withdraw, handover")

    with app.app_context():
        arrived = db.session.scalar(
            select(db.func.count()).where(RosterEntry.status == EntryStatus.ARRIVED)
        )
        assert arrived == cleared - 2
        assert set(db.session.scalars(select(TransportRequest.status))) == {RequestStatus.COMPLETED}
        assert set(db.session.scalars(select(Trip.status))) == {TripStatus.CLOSED}
    desk.goto("/trips?status=closed")
    assert desk.locator("table.stack tbody tr").count() == 24
    assert not problems, problems
    clock.lap("checks")


# --- bugs found on the way ------------------------------------------------------------------


def small_chain(app: Flask, people, issuer_key: str, workers: int = 4, failing: int = 0):
    """K4016 in miniature through the services: a request, a train to Jinan and a coach on to
    the site, both seated and locked. Returns (request id, train id, coach id)."""
    with app.app_context():
        coordinator = db.session.get(User, people.coordinator_id)
        request = scenario.approved_request(
            people.organization_a_id,
            people.coordinator_id,
            issuer_key,
            DAY,
            {"龙洞村": workers},
            failing=failing,
        )
        rail = scenario.vehicle("K4016", "train-hard-seat-118", 1, kind="train")
        road = scenario.vehicle("鲁A80001", "coach-45")
        departs = trip_services.datetime.combine(DAY, trip_services.datetime.min.time())
        departs = departs.replace(tzinfo=trip_services.health.local_zone()) + timedelta(hours=8)
        first = trip_services.Leg(
            "500106", "重庆西站", None, "370100", "济南站", None, departs,
            departs + timedelta(hours=22), 50, 0, True,
        )  # fmt: skip
        train = trip_services.create_trip(rail, first, coordinator, {request.id: workers})
        second = trip_services.Leg(
            "370105", "济南站北广场", None, "370102", request.site_name, None,
            departs + timedelta(hours=23), departs + timedelta(hours=24), 50, 2, False,
            connects_from_id=train.id,
        )  # fmt: skip
        coach = trip_services.create_trip(road, second, coordinator, {request.id: workers})
        for trip in (train, coach):
            trip_services.allocate_seats(trip.id, coordinator)
            trip_services.lock_manifest(trip.id, coordinator)
        db.session.commit()
        return request.id, train.id, coach.id


def train_codes(app: Flask, trip_id: int) -> list[tuple[int, str]]:
    with app.app_context():
        return [
            (a.roster_entry_id, a.entry.booking_code) for a in trip_services.assignments(trip_id)
        ]


def test_a_connecting_leg_can_be_planned_on_the_plan_page(app, people, issuer_key, client_as):
    with app.app_context():
        request = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, issuer_key, DAY, {"龙洞村": 10}
        )
        train = scenario.vehicle("K4016", "train-hard-seat-118", 1, kind="train").id
        coach = scenario.vehicle("鲁A80001", "coach-45").id
        db.session.commit()
        request_id = request.id
    coordinator = client_as("coordinator")

    def plan(vehicle_id: int, leg: dict[str, str], loads: dict | None = None):
        form = {
            **leg,
            "requests": [str(request_id)],
            "vehicles": [str(vehicle_id)],
            "health_freshness_hours": "72",
        }
        if loads is None:
            return submit(coordinator, "/trips/plan", {**form, "make": "1"})
        return submit(coordinator, "/trips/plan", {**form, **loads, "apply": "1"})

    def loads_in(page) -> dict[str, str]:
        return dict(re.findall(r'name="(load-\d+-\d+)"[^>]*value="(\d+)"', page.get_data(True)))

    rail = {
        "origin_region_code": "500106",
        "origin_point": "重庆西站",
        "destination_region_code": "370100",
        "destination_point": "济南站",
        "departs_on": DAY.isoformat(),
        "departs_time": "08:20",
        "arrives_on": NEXT_DAY.isoformat(),
        "arrives_time": "06:10",
        "max_load_percent": "50",
        "isolation_rows": "0",
        "alternate_seats": "y",
        "connects_from_id": "0",
    }
    assert plan(train, rail, loads_in(plan(train, rail))).status_code == 302
    train_trip = trip_of(app, train)
    given = submit(coordinator, f"/trips/{train_trip}/allocate", form_url=f"/trips/{train_trip}")
    assert given.status_code == 302
    road = {
        **rail,
        "origin_region_code": "370105",
        "origin_point": "济南站北广场",
        "destination_region_code": "370102",
        "destination_point": "工地",
        "departs_on": NEXT_DAY.isoformat(),
        "departs_time": "07:30",
        "arrives_on": NEXT_DAY.isoformat(),
        "arrives_time": "09:30",
        "isolation_rows": "2",
        "alternate_seats": "",
        "connects_from_id": str(train_trip),
    }
    loads = loads_in(plan(coach, road))
    assert loads == {f"load-{coach}-{request_id}": "10"}
    assert plan(coach, road, loads).status_code == 302
    with app.app_context():
        assert db.session.get(Trip, trip_of(app, coach)).connects_from_id == train_trip


def test_withdrawing_the_last_open_worker_completes_the_request(app, people, issuer_key, client_as):
    request_id, train, coach = small_chain(app, people, issuer_key, workers=4, failing=1)
    escort = client_as("coordinator")
    for trip_id in (train, coach):
        for _entry, code in train_codes(app, trip_id):
            url = f"/trips/{trip_id}/boarding"
            assert b"verdict-ok" in submit(escort, url, {"code": code, "temperature": "36.5"}).data
        for action in ("depart", "arrive"):
            url = f"/trips/{trip_id}/{action}"
            assert submit(escort, url, form_url=f"/trips/{trip_id}").status_code == 302
    employer = client_as("employer")
    handover = f"/requests/{request_id}/handover/{coach}"
    confirmed = submit(employer, handover, {"received": "3", "representative_name": "赵经理"})
    assert confirmed.status_code == 302
    with app.app_context():
        request = db.session.get(TransportRequest, request_id)
        assert request.status == RequestStatus.APPROVED  # the blocked worker is still open
        blocked = next(e.id for e in request.entries if e.status == EntryStatus.BLOCKED)
    withdraw = f"/requests/{request_id}/entries/{blocked}/withdraw"
    assert submit(employer, withdraw, form_url=f"/requests/{request_id}").status_code == 302
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == RequestStatus.COMPLETED


def test_a_worker_isolated_on_the_train_cannot_board_the_coach(app, people, issuer_key, client_as):
    """Nor can one marked as not there at the train's door: only those who boarded the
    feeding trip ride on."""
    _request_id, train, coach = small_chain(app, people, issuer_key)
    escort = client_as("coordinator")
    (_isolated, code), (absent, absent_code), *rest = train_codes(app, train)
    url = f"/trips/{train}/boarding"
    assert b"verdict-stop" in submit(escort, url, {"code": code, "temperature": "38.5"}).data
    for _entry, other in rest:
        assert b"verdict-ok" in submit(escort, url, {"code": other, "temperature": "36.5"}).data
    no_show = f"/trips/{train}/boarding/{absent}/no-show"
    assert submit(escort, no_show, form_url=url).status_code == 302
    for action in ("depart", "arrive"):
        assert submit(escort, f"/trips/{train}/{action}", form_url=f"/trips/{train}").status_code

    with app.test_request_context():  # the messages as the page shows them (Chinese)
        fever, not_on_the_train = (
            str(BOARDING_MESSAGES[code]) for code in ("fever", "missed_connection")
        )
    at_the_coach = f"/trips/{coach}/boarding"
    isolated = submit(escort, at_the_coach, {"code": code, "temperature": "36.5"})
    assert b"verdict-stop" in isolated.data
    assert fever in isolated.get_data(as_text=True)
    missed = submit(escort, at_the_coach, {"code": absent_code, "temperature": "36.5"})
    assert b"verdict-stop" in missed.data
    assert not_on_the_train in missed.get_data(as_text=True)
    _entry, boarded_code = rest[0]
    rode = submit(escort, at_the_coach, {"code": boarded_code, "temperature": "36.5"})
    assert b"verdict-ok" in rode.data


def test_no_handover_is_offered_for_a_train_everyone_rides_on_from(
    app, people, issuer_key, client_as
):
    request_id, train, _coach = small_chain(app, people, issuer_key)
    escort = client_as("coordinator")
    for _entry, code in train_codes(app, train):
        submit(escort, f"/trips/{train}/boarding", {"code": code, "temperature": "36.5"})
    assert submit(escort, f"/trips/{train}/depart", form_url=f"/trips/{train}").status_code
    arrived = submit(
        escort, f"/trips/{train}/arrive", form_url=f"/trips/{train}", follow_redirects=True
    )
    with app.test_request_context():  # the page says why no employer is asked to come
        rides_on = gettext(
            "The trip has arrived and is closed: everyone on it rides on, and is handed over "
            "at their last stop."
        )
    assert rides_on in arrived.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Trip, train).status == TripStatus.CLOSED
    page = client_as("employer").get(f"/requests/{request_id}").get_data(as_text=True)
    assert f"/handover/{train}" not in page
