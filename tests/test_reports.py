"""Reports: the campaign dashboard per role, trip costs shared among employers, exports and
the server-side SVG chart. The data is made through the real services, from request to
handover: a coach that boarded, departed, arrived and was handed over, and a second coach
still open."""

from __future__ import annotations

import csv
import io
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from flask_babel import gettext
from openpyxl import load_workbook
from sqlalchemy import func, select

from app.accounts import services as accounts
from app.accounts.models import User
from app.core.access import Role
from app.core.clock import local_today
from app.core.models import AuditEntry
from app.demand.models import EntryStatus, RosterEntry, TransportRequest
from app.extensions import db
from app.reports import charts, services, views
from app.reports.forms import MESSAGES
from app.trips import allocation
from app.trips import services as trips
from app.trips.models import SeatAssignment, Trip, TripCost, TripStatus
from tests import scenario
from tests.conftest import PASSWORD, People, sign_in, statements_run, submit

DAY = local_today("Asia/Shanghai") + timedelta(days=2)
SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def text(app, message, **values) -> str:
    """A message (a msgid or a lazy string) as the page shows it, in the default language."""
    with app.test_request_context():
        if isinstance(message, str):
            return gettext(message, **values)
        return str(message) % values if values else str(message)


def leg(hours: int, percent: int = 100, rows: int = 0) -> trips.Leg:
    zone = trips.health.local_zone()
    departs = datetime.combine(DAY, datetime.min.time(), zone) + timedelta(hours=hours)
    return trips.Leg(
        "500235",
        "云阳汽车站",
        None,
        "370100",
        "济南",
        None,
        departs,
        departs + timedelta(hours=18),
        percent,
        rows,
        False,
    )


def build_campaign(app, people: People, tmp_path) -> dict:
    """Employer A: requests of 20 and of 9 (one worker with a yellow pass: blocked); employer
    B: requests of 15 and of 5. Trip 1 (coach-53, full load) carries A's two requests and B's
    15: locked, everyone boarded but one no-show (B) and one fever (A), departed, arrived,
    handed over. Trip 2 (coach-45, 50% and two empty rows) has B's 5 seated, still open."""
    with app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        coordinator = db.session.get(User, people.coordinator_id)
        a = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, key, DAY, {"东村": 12, "西村": 8}
        )
        b = scenario.approved_request(
            people.organization_b_id, people.coordinator_id, key, DAY, {"南村": 15}
        )
        c = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, key, DAY, {"北村": 9}, failing=1
        )
        d = scenario.approved_request(
            people.organization_b_id, people.coordinator_id, key, DAY, {"中村": 5}
        )
        big = scenario.vehicle("渝F12345", "coach-53")
        small = scenario.vehicle("渝F54321", "coach-45")
        first = trips.create_trip(big, leg(7), coordinator, {a.id: 20, b.id: 15, c.id: 9})
        trips.allocate_seats(first.id, coordinator)
        second = trips.create_trip(small, leg(8, 50, 2), coordinator, {d.id: 5})
        trips.allocate_seats(second.id, coordinator)
        trips.lock_manifest(first.id, coordinator)
        seats = db.session.scalars(
            select(SeatAssignment)
            .where(SeatAssignment.trip_id == first.id)
            .order_by(SeatAssignment.id)
        ).all()
        no_show = next(s for s in seats if s.entry.request_id == b.id)
        fever = next(s for s in seats if s.entry.request_id == c.id)
        for seat in seats:
            if seat is no_show:
                continue
            celsius = Decimal("37.8") if seat is fever else Decimal("36.6")
            verdict = trips.board(first.id, seat.entry.booking_code, celsius, coordinator)
            assert verdict.code == ("fever" if seat is fever else "boarded")
        trips.mark_no_show(first.id, no_show.roster_entry_id, coordinator)
        trips.depart(first.id, coordinator)
        trips.arrive(first.id, coordinator)
        trip = db.session.get(Trip, first.id)
        for request_id, count in trips.handover_due(trip).items():
            organization = db.session.get(TransportRequest, request_id).organization_id
            hr = db.session.scalar(select(User).where(User.organization_id == organization))
            trips.confirm_handover(first.id, request_id, count, "赵经理", "", hr)
        db.session.commit()
        assert db.session.get(Trip, first.id).status == TripStatus.CLOSED
        return {
            "first": first.id,
            "second": second.id,
            "requests": {"a": a.id, "b": b.id, "c": c.id, "d": d.id},
        }


@pytest.fixture
def campaign(app, people, tmp_path) -> dict:
    return build_campaign(app, people, tmp_path)


def coordinator_of(app, region: str) -> object:
    """A signed-in client for a coordinator of another region."""
    with app.app_context():
        accounts.create_user(
            f"c{region}@example.cn", PASSWORD, Role.COORDINATOR, "外地调度员", region_code=region
        )
        db.session.commit()
    client = app.test_client()
    assert sign_in(client, f"c{region}@example.cn").status_code == 302
    return client


def cells(html: str, table_id: str) -> dict[str, list[str]]:
    """A report table's rows: the row's data-* key -> its number cells."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert table, f"no table {table_id}"
    rows = {}
    for key, row in re.findall(r'<tr data-\w+="([^"]+)">(.*?)</tr>', table.group(0), re.S):
        rows[key] = re.findall(r'<td class="number"[^>]*>\s*([\d,]+)\s*</td>', row)
    return rows


def fact(html: str, name: str) -> int:
    found = re.search(rf'data-fact="{name}">(\d+)', html)
    assert found, f"no fact {name}"
    return int(found.group(1))


def funnel(html: str) -> dict[str, int]:
    return {stage: int(numbers[0]) for stage, numbers in cells(html, "funnel").items()}


# --- the dashboard -------------------------------------------------------------------------


def test_coordinator_dashboard_counts_match_the_data(app, people, client_as, campaign):
    coordinator = client_as("coordinator")
    with statements_run(app) as statements:
        started = time.perf_counter()
        page = coordinator.get("/reports")
        elapsed = time.perf_counter() - started
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # A handful of grouped queries, whatever the number of workers (the session's user, then
    # one per figure). Shown with -s for the record.
    print(f"\ndashboard: {len(statements)} statements, {elapsed * 1000:.0f} ms")
    assert len(statements) <= 16

    # The funnel, recounted the slow way: every entry of the counted requests, one by one.
    with app.app_context():
        entries = db.session.scalars(select(RosterEntry)).all()
        reached = Counter()
        for entry in entries:
            if entry.status == EntryStatus.WITHDRAWN:
                continue
            reached["registered"] += 1
            if entry.status not in (EntryStatus.PENDING, EntryStatus.BLOCKED):
                reached["cleared"] += 1
            if entry.status in ("seated", "boarded", "arrived", "no_show"):
                reached["seated"] += 1
            if entry.status in ("boarded", "arrived"):
                reached["boarded"] += 1
            if entry.status == "arrived":
                reached["arrived"] += 1
        seats = db.session.scalars(select(SeatAssignment)).all()
        all_trips = db.session.scalars(select(Trip)).all()
        offered = sum(
            allocation.capacity(t.vehicle.seat_map, t.policy, t.all_blocked_seats)
            for t in all_trips
        )
    assert funnel(html) == dict(reached)
    assert funnel(html) == {
        "registered": 49,
        "cleared": 48,
        "seated": 48,
        "boarded": 41,
        "arrived": 41,
    }
    assert fact(html, "blocked") == 1
    assert fact(html, "no_show") == 2  # one absent, one kept off with a fever
    assert fact(html, "withdrawn") == 0
    assert re.search(r'data-reason="status_not_green"', html)

    by_status = cells(html, "trips-by-status")
    assert by_status["closed"][-1] == "1"
    assert by_status["open"][-1] == "1"
    assert all(
        numbers[-1] == "0" for s, numbers in by_status.items() if s not in ("closed", "open")
    )
    assert fact(html, "seats_offered") == offered == 53 + 22
    assert fact(html, "seats_used") == len(seats) == 48

    requests = cells(html, "requests-by-status")
    assert sum(int(numbers[0]) for numbers in requests.values()) == 4
    assert requests["completed"] == ["2"]  # A (all arrived) and B (arrived or no-show)

    assert SVG.findall(html), "the per-day charts"

    # Top origins and destinations by workers.
    assert re.search(r'id="top-origins".*?重庆市 云阳县</td><td class="number">49<', html, re.S)


def test_another_regions_coordinator_sees_zeros(app, people, campaign):
    other = coordinator_of(app, "440300")
    html = other.get("/reports").get_data(as_text=True)
    assert set(funnel(html).values()) == {0}
    assert all(n == ["0"] for n in cells(html, "requests-by-status").values())
    assert all(set(numbers) == {"0"} for numbers in cells(html, "trips-by-status").values())
    assert fact(html, "seats_offered") == fact(html, "seats_used") == 0
    assert "甲建筑有限公司" not in html
    assert "乙制造有限公司" not in html
    # Nor may they open the trips' cost pages.
    assert other.get(f"/trips/{campaign['first']}/costs").status_code == 404


def test_a_window_without_trips_shows_nothing(app, client_as, campaign):
    later = DAY + timedelta(days=10)
    html = (
        client_as("coordinator")
        .get(f"/reports?from={later.isoformat()}&to={(later + timedelta(days=5)).isoformat()}")
        .get_data(as_text=True)
    )
    assert set(funnel(html).values()) == {0}
    assert fact(html, "seats_offered") == 0
    # A range the wrong way round is refused next to its field; the default range is shown.
    wrong = client_as("coordinator").get(f"/reports?from={later}&to={DAY}").get_data(as_text=True)
    assert 'class="field has-error"' in wrong
    assert funnel(wrong)["registered"] == 49
    # The admin sees everything, as the region's coordinator does here.
    everything = client_as("admin").get("/reports").get_data(as_text=True)
    assert funnel(everything)["arrived"] == 41
    assert fact(everything, "seats_used") == 48


def test_the_dashboard_names_its_dates_and_funnel_rows_in_chinese(app, client_as, campaign):
    """The range's fields are a first and a last day, and the funnel starts with the workers
    put on requests (they read 出发地 / 目的地 and 注册时间, the words of other pages)."""
    html = client_as("coordinator").get("/reports").get_data(as_text=True)
    labels = re.findall(r'<label for="(from|to)">([^<]*)</label>', html)
    assert labels == [("from", "开始日期"), ("to", "结束日期")]
    first = re.search(r'<tr data-stage="registered"><td>([^<]*)</td>', html).group(1)
    assert first == "已登记"


def test_employer_sees_only_its_organization(app, people, client_as, campaign):
    employer = client_as("employer")  # organization A: requests of 20 and 9
    html = employer.get("/reports").get_data(as_text=True)
    assert funnel(html) == {
        "registered": 29,
        "cleared": 28,
        "seated": 28,
        "boarded": 27,
        "arrived": 27,
    }
    assert sum(int(n[0]) for n in cells(html, "requests-by-status").values()) == 2
    # No region-wide trips, seats, messages or charts; no other employer's name.
    assert 'id="trips-by-status"' not in html
    assert 'data-fact="seats_offered"' not in html
    assert 'id="notifications"' not in html
    assert not SVG.findall(html)
    assert "乙制造有限公司" not in html
    assert employer.get("/reports/export.csv?table=trips").status_code == 404
    assert employer.get(f"/trips/{campaign['first']}/costs").status_code == 403


# --- costs ---------------------------------------------------------------------------------


def field_block(html: str, name: str) -> str:
    """The markup of one form field (label, input, its messages)."""
    found = re.search(rf'<div class="field[^"]*">\s*<label for="{name}".*?</div>', html, re.S)
    assert found, f"no field {name}"
    return found.group(0)


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("-5", "cost.negative"),
        ("三千", "cost.not_a_number"),
        ("12.345", "cost.decimals"),
        ("45,5", "cost.not_a_number"),  # a decimal comma? refused, not guessed
    ],
)
def test_bad_cost_input_is_refused_next_to_the_field(app, client_as, campaign, typed, code):
    coordinator = client_as("coordinator")
    url = f"/trips/{campaign['first']}/costs"
    page = submit(coordinator, url, {"hire": typed, "meals": "10", "tolls": "0"})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    hire = field_block(html, "hire")
    assert text(app, MESSAGES[code]) in hire
    assert 'aria-invalid="true"' in hire
    assert "has-error" not in field_block(html, "meals")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TripCost)) == 0
        assert not db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "trip.costs_recorded")
        ).all()


def test_costs_recorded_and_shared_per_employer(app, people, client_as, campaign):
    coordinator = client_as("coordinator")
    first, second = campaign["first"], campaign["second"]
    saved = submit(
        coordinator,
        f"/trips/{first}/costs",
        {"hire": "3,000", "meals": "430.5", "tolls": "0", "note": "发票 No. 0012"},
    )
    assert saved.status_code == 302
    # Trip 2: the meals are not known yet (empty), the tolls were waived (0).
    assert (
        submit(coordinator, f"/trips/{second}/costs", {"hire": "800", "tolls": "0"}).status_code
        == 302
    )
    with app.app_context():
        cost = db.session.get(TripCost, second)
        assert (cost.hire, cost.meals, cost.tolls) == (Decimal("800.00"), None, Decimal("0.00"))
        audit = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "trip.costs_recorded")
        ).all()
        assert len(audit) == 2
        assert audit[0].details["hire"] == "3000.00"
        assert audit[0].details["note"] is True

    page = coordinator.get(f"/trips/{second}/costs").get_data(as_text=True)
    waived = text(app, "%(amount)s (waived)", amount="¥0.00")
    not_recorded = text(app, "not recorded")
    assert re.search(rf'class="amount-tolls">{re.escape(waived)}<', page)
    assert re.search(rf'class="amount-meals">{re.escape(not_recorded)}<', page)
    assert 'value="800.00"' in page  # the form shows what is recorded
    assert fact(page, "carried") == 5  # trip 2 has not left: its seated workers
    assert "¥800.00" in page  # all of it B's: B's five are the only ones on it

    # Shares of trip 1 by workers carried (boarded: it has left): A 20 + 7 (one fever), B 14.
    a_hire = Decimal(3000) * 27 / 41
    b_hire = Decimal(3000) * 14 / 41
    a_meals = Decimal("430.5") * 27 / 41
    b_meals = Decimal("430.5") * 14 / 41
    cent = Decimal("0.01")
    with app.app_context():
        user = db.session.get(User, people.coordinator_id)
        zone = ZoneInfo("Asia/Shanghai")
        report = services.cost_report(user, services.default_window(local_today(zone.key), zone))
        rows = {row.name: row for row in report.shared.by_employer}
    a, b = rows["甲建筑有限公司"], rows["乙制造有限公司"]
    assert a.workers == 27
    assert b.workers == 14 + 5
    assert a.hire == a_hire.quantize(cent) == Decimal("1975.61")
    assert b.hire == (b_hire + 800).quantize(cent) == Decimal("1824.39")
    assert a.meals == a_meals.quantize(cent)
    assert b.meals == b_meals.quantize(cent)
    assert b.not_recorded("meals") == 1
    assert a.not_recorded("meals") == 0
    assert a.tolls == b.tolls == Decimal("0.00")
    assert a.total == Decimal("2259.11")
    assert a.per_worker == (Decimal("2259.11") / 27).quantize(cent) == Decimal("83.67")
    assert b.total == (b.hire + b.meals)
    total = report.shared.total
    assert total.hire == Decimal("3800.00")
    assert total.meals == Decimal("430.50")
    assert total.workers == 27 + 14 + 5
    assert not report.shared.unshared.trips
    assert report.uncosted_count == 0

    html = coordinator.get("/reports").get_data(as_text=True)
    assert "¥1,975.61" in html
    assert "¥1,824.39" in html
    assert "¥2,259.11" in html
    assert "¥83.67" in html
    assert waived in html

    # Employer A sees its own row and total, nothing of B.
    mine = client_as("employer").get("/reports").get_data(as_text=True)
    assert "¥1,975.61" in mine
    assert "¥2,259.11" in mine
    assert "¥1,824.39" not in mine
    assert "¥3,800.00" not in mine
    assert "乙制造有限公司" not in mine


def test_the_page_shows_the_costliest_rows_and_the_download_has_them_all(
    app, client_as, campaign, monkeypatch
):
    """A province's cost tables have a row per employer (1,000) and per origin (300): the page
    shows the first rows, highest total first, says how many there are, and the download holds
    every one; the total row still adds up all of them."""
    coordinator = client_as("coordinator")
    for trip_id, hire in ((campaign["first"], "3,000"), (campaign["second"], "800")):
        saved = submit(coordinator, f"/trips/{trip_id}/costs", {"hire": hire, "meals": "0"})
        assert saved.status_code == 302
    monkeypatch.setattr(views, "COST_ROWS_SHOWN", 1)
    html = coordinator.get("/reports").get_data(as_text=True)
    employers = html[html.index(text(app, "Per employer")) : html.index(text(app, "Per origin"))]
    assert "甲建筑有限公司" in employers  # ¥1,975.61 of trip 1's hire
    assert "乙制造有限公司" not in employers  # ¥1,824.39: its share of trip 1, and trip 2
    assert "¥3,800.00" in employers  # the total row: both
    assert (
        text(
            app,
            "The %(shown)s rows with the highest totals, of %(count)s: the download below holds "
            "them all.",
            shown=1,
            count=2,
        )
        in employers
    )
    everyone = coordinator.get("/reports/export.csv?table=costs-employer")  # the same range
    assert "乙制造有限公司" in everyone.get_data(as_text=True)


# --- exports -------------------------------------------------------------------------------


def test_exports_download_the_tables(app, client_as, campaign):
    coordinator = client_as("coordinator")
    assert (
        submit(
            coordinator, f"/trips/{campaign['first']}/costs", {"hire": "3000", "tolls": "0"}
        ).status_code
        == 302
    )
    window = (
        f"from={(DAY - timedelta(days=1)).isoformat()}&to={(DAY + timedelta(days=1)).isoformat()}"
    )

    funnel_file = coordinator.get(f"/reports/export.csv?table=funnel&{window}")
    assert funnel_file.status_code == 200
    assert funnel_file.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in funnel_file.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(funnel_file.get_data().decode("utf-8-sig"))))
    counts = {row[0]: int(row[2]) for row in rows[1:]}
    assert counts == {
        "registered": 49,
        "cleared": 48,
        "seated": 48,
        "boarded": 41,
        "arrived": 41,
        "blocked": 1,
        "no_show": 2,
        "withdrawn": 0,
    }

    daily = coordinator.get(f"/reports/export.xlsx?table=daily&{window}")
    assert daily.status_code == 200
    sheet = load_workbook(io.BytesIO(daily.get_data())).active
    values = list(sheet.iter_rows(values_only=True))
    assert len(values) == 1 + 3  # header and three days
    assert {row[0]: (row[1], row[2]) for row in values[1:]}[DAY.isoformat()] == (2, 48)

    costs = coordinator.get(f"/reports/export.xlsx?table=costs-employer&{window}")
    sheet = load_workbook(io.BytesIO(costs.get_data())).active
    values = list(sheet.iter_rows(values_only=True))
    by_name = {row[0]: row for row in values[1:]}
    assert set(by_name) == {"甲建筑有限公司", "乙制造有限公司", text(app, "All")}
    assert Decimal(str(by_name["甲建筑有限公司"][3])) == Decimal("1975.61")
    assert by_name["甲建筑有限公司"][2] == 27
    assert by_name["甲建筑有限公司"][4] is None  # meals not recorded: an empty cell, not 0
    assert by_name["甲建筑有限公司"][5] == 0  # tolls recorded as zero

    requests = coordinator.get(f"/reports/export.csv?table=requests&{window}")
    rows = list(csv.reader(io.StringIO(requests.get_data().decode("utf-8-sig"))))
    assert sum(int(row[2]) for row in rows[1:]) == 4
    assert coordinator.get("/reports/export.csv?table=nonsense").status_code == 404
    assert coordinator.get("/reports/export.pdf?table=funnel").status_code == 404

    mine = client_as("employer").get(f"/reports/export.csv?table=costs-employer&{window}")
    rows = list(csv.reader(io.StringIO(mine.get_data().decode("utf-8-sig"))))
    assert [row[0] for row in rows[1:]] == ["甲建筑有限公司", text(app, "All")]


# --- the chart -----------------------------------------------------------------------------


def test_dashboard_svg_is_well_formed_and_accessible(app, client_as, campaign):
    html = client_as("coordinator").get("/reports").get_data(as_text=True)
    svgs = SVG.findall(html)
    assert len(svgs) == 2
    ns = {"svg": "http://www.w3.org/2000/svg"}
    for markup in svgs:
        root = ET.fromstring(markup)  # noqa: S314 - our own markup
        assert root.get("role") == "img"
        title, desc = root.find("svg:title", ns), root.find("svg:desc", ns)
        assert title is not None
        assert title.text
        assert desc is not None
        assert desc.text
        assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
        assert "style" not in markup  # the CSP allows no inline styles
    # The workers chart: one bar per day of the window, 48 on DAY.
    bars = ET.fromstring(svgs[1]).findall("svg:rect", ns)  # noqa: S314 - our own markup
    assert len(bars) == 61
    tips = [bar.find("svg:title", ns).text for bar in bars]
    assert any(tip.startswith(DAY.strftime("%m-%d")) and tip.endswith("48") for tip in tips)


def test_chart_escapes_whatever_text_it_is_given():
    hostile = '<script>alert("x")</script> & 工人\x00\x1b'
    markup = charts.bar_chart(
        'id" onload="x', hostile, "desc </desc><g>", [(hostile, 3), ("ok", 0)], empty_text="-"
    )
    root = ET.fromstring(markup)  # noqa: S314 - well-formed, our own markup
    assert "<script" not in markup
    assert "<g>" not in markup
    assert "onload=" not in markup  # the id is cleaned, not an attribute injected
    assert root.get("onload") is None
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert root.find("svg:title", ns).text == '<script>alert("x")</script> & 工人'
    labels = [t.text for t in root.findall("svg:text", ns)]
    assert '<script>alert("x")</script> & 工人' in labels
    empty = ET.fromstring(charts.bar_chart("e", "t", "d", [], empty_text="No data"))  # noqa: S314 - our own markup
    assert "No data" in [t.text for t in empty.findall("svg:text", ns)]


def test_local_days_follow_daylight_saving_time():
    zone = ZoneInfo("Europe/Berlin")
    window = services.Window(date(2026, 3, 20), date(2026, 4, 5), zone)
    pieces = services.offset_pieces(window.start, window.end, zone)
    assert pieces == [(datetime(2026, 3, 29, 1, 0, tzinfo=ZoneInfo("UTC")), 60), (None, 120)]
    shanghai = services.Window(date(2026, 3, 20), date(2026, 4, 5), ZoneInfo("Asia/Shanghai"))
    assert services.offset_pieces(shanghai.start, shanghai.end, shanghai.zone) == [(None, 480)]


# --- PostgreSQL ----------------------------------------------------------------------------


def test_dashboard_and_costs_on_postgresql(pg_app, pg_people, tmp_path):
    """The SQL that differs per database (local day, JSON seat lists grouped, UNION ALL)."""
    ids = build_campaign(pg_app, pg_people, tmp_path)
    client = pg_app.test_client()
    assert sign_in(client, People.EMAILS["coordinator"]).status_code == 302
    assert (
        submit(client, f"/trips/{ids['first']}/costs", {"hire": "3000", "tolls": "0"}).status_code
        == 302
    )
    html = client.get("/reports").get_data(as_text=True)
    assert funnel(html)["arrived"] == 41
    assert fact(html, "seats_offered") == 75
    assert fact(html, "seats_used") == 48
    assert "¥1,975.61" in html
    daily = client.get(
        f"/reports/export.csv?table=daily&from={DAY.isoformat()}&to={DAY.isoformat()}"
    )
    rows = list(csv.reader(io.StringIO(daily.get_data().decode("utf-8-sig"))))
    assert rows[1] == [DAY.isoformat(), "2", "48"]


def test_share_costs_in_proportion_and_unshared_trips():
    """Pure: 100 yuan over 3 workers of A and 1 of B; a cancelled trip's hire is shared with
    nobody but counted in the total; an employer adds up only its own shares."""
    costs = [
        services.TripCosts(1, "coach", Decimal(100), None, Decimal(0)),
        services.TripCosts(2, "train", Decimal(50), Decimal(10), None),
    ]
    slices = [
        services.Slice(1, 10, "A", "云阳", 3),
        services.Slice(1, 20, "B", "万州", 1),
    ]
    shared = services.share_costs(costs, slices)
    rows = {row.name: row for row in shared.by_employer}
    assert rows["A"].hire == Decimal("75.00")
    assert rows["B"].hire == Decimal("25.00")
    assert rows["A"].meals is None  # not recorded on its only trip
    assert rows["A"].tolls == Decimal("0.00")
    assert shared.unshared.hire == Decimal("50.00")
    assert shared.total.hire == Decimal("150.00")
    assert shared.total.meals == Decimal("10.00")
    assert shared.total.not_recorded("meals") == 1
    assert {row.key for row in shared.by_mode} == {"coach"}
    mine = services.share_costs(costs, slices, organization_id=20)
    assert [row.name for row in mine.by_employer] == ["B"]
    assert mine.total.hire == Decimal("25.00")
    assert not mine.unshared.trips


OUT_OF_RANGE = "请填写 2000-01-01 至 2099-12-31 之间的日期。"


@pytest.mark.parametrize(
    "window", ["from=9999-12-01&to=9999-12-31", "from=0001-01-01&to=0001-01-31", "to=0001-01-31"]
)
def test_a_report_range_outside_a_sane_range_is_refused_on_its_field(client_as, window):
    """A year like 0001 or 9999 is refused next to the field and the default range shown;
    the export answers 400 with the message (both overflowed the day arithmetic: a 500)."""
    coordinator = client_as("coordinator")
    page = coordinator.get(f"/reports?{window}")
    assert page.status_code == 200
    assert OUT_OF_RANGE in page.get_data(as_text=True)
    assert 'class="field has-error"' in page.get_data(as_text=True)
    export = coordinator.get(f"/reports/export.csv?table=costs-employer&{window}")
    assert export.status_code == 400
    assert OUT_OF_RANGE in export.get_data(as_text=True)


def test_an_export_of_a_range_the_wrong_way_round_is_refused(client_as):
    """The export says what the page says instead of quietly using the default range."""
    export = client_as("coordinator").get(
        "/reports/export.csv?table=daily&from=2026-03-01&to=2026-02-01"
    )
    assert export.status_code == 400
    assert "结束日期不能早于开始日期。" in export.get_data(as_text=True)
