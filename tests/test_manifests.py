"""Manifests (乘客登记表) and the employer's arrival list: masked by default, one table per
carriage, downloads as .xlsx and .csv, the whole numbers only for coordinators and audited."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from app.core.clock import local_today
from app.core.identity import mask_id_number, mask_mobile
from app.core.models import AuditEntry
from app.core.pii import vault
from app.demand.spreadsheets import read_table
from app.extensions import db
from app.trips import services as trips
from app.trips.models import SeatAssignment, Trip
from tests import scenario
from tests.conftest import People

DAY = local_today("Asia/Shanghai") + timedelta(days=2)


@pytest.fixture
def train_trip(app, people: People, issuer_key) -> dict:
    """Employer A's request of 6 (two villages) and employer B's of 3 on a two-carriage
    hard-seat train; two of A's workers moved by hand into carriage 2."""
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        mine = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, issuer_key, DAY, {"东村": 4, "西村": 2}
        )
        theirs = scenario.approved_request(
            people.organization_b_id, people.coordinator_id, issuer_key, DAY, {"南村": 3}
        )
        train = scenario.vehicle("K4016", "train-hard-seat-118", 2, kind="train")
        driver = scenario.driver()
        zone = trips.health.local_zone()
        departs = datetime.combine(DAY, datetime.min.time(), zone) + timedelta(hours=6)
        leg = trips.Leg(
            "500235",
            "重庆西站",
            None,
            "370100",
            "济南站",
            "济南市天桥区",
            departs,
            departs + timedelta(hours=20),
        )
        trip = trips.create_trip(train, leg, coordinator, {mine.id: 6, theirs.id: 3})
        assert trips.allocate_seats(trip.id, coordinator).seated == 9
        trips.set_drivers(trip.id, [driver.id], coordinator)
        trip.escort_name, trip.escort_phone = "王干部", "+8613700001234"
        for entry, seat in zip(mine.entries[:2], ("2-050", "2-051"), strict=True):
            trips.move_seat(trip.id, entry.id, seat, trip.seats_version, coordinator)
        db.session.commit()
        pii = vault()

        def people_of(request):
            return [
                {
                    "name": e.worker.name,
                    "id_number": pii.decrypt(e.worker.id_number_token),
                    "phone": pii.decrypt(e.worker.phone_token),
                }
                for e in request.entries
            ]

        carriages = {
            a.seat_label.split("-")[0]
            for a in db.session.scalars(
                select(SeatAssignment).where(SeatAssignment.trip_id == trip.id)
            )
        }
        assert carriages == {"1", "2"}
        return {
            "trip": trip.id,
            "reference": trip.reference,
            "mine": mine.id,
            "theirs": theirs.id,
            "mine_workers": people_of(mine),
            "their_workers": people_of(theirs),
        }


def audits(app) -> list[AuditEntry]:
    with app.app_context():
        return db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "trip.manifest_full")
        ).all()


def national(e164: str) -> str:
    return e164.removeprefix("+86")


def assert_masked(html: str, workers: list[dict]) -> None:
    for worker in workers:
        assert f">{worker['name']}<" in html
        assert mask_id_number(worker["id_number"]) in html
        assert mask_mobile(worker["phone"]) in html
        assert worker["id_number"] not in html
        assert national(worker["phone"]) not in html


def test_the_manifest_page_is_masked_with_one_table_per_carriage(app, client_as, train_trip):
    everyone = train_trip["mine_workers"] + train_trip["their_workers"]
    page = client_as("coordinator").get(f"/trips/{train_trip['trip']}/manifest")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert_masked(html, everyone)
    assert html.count("<table") == 2
    assert html.index("01车") < html.index("02车 050号") < html.index("02车 051号")
    assert "K4016" in html
    assert "云阳客运公司" in html
    assert "重庆西站" in html
    assert "济南站" in html
    assert "刘师傅" in html
    assert "+8613900001111" in html
    assert "王干部" in html
    assert "甲建筑有限公司" in html
    assert "乙制造有限公司" in html
    assert "东村" in html
    assert f"/trips/{train_trip['trip']}/manifest.xlsx" in html
    assert f"/trips/{train_trip['trip']}/manifest.csv" in html
    assert "full=1" in html
    assert f'href="/trips/{train_trip["trip"]}"' in html  # back to the trip
    assert audits(app) == []


def test_a_coach_manifest_has_one_table(app, people, issuer_key, client_as):
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        request = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, issuer_key, DAY, {"东村": 3}
        )
        coach = scenario.vehicle("渝F12345", "coach-45")
        departs = datetime.combine(DAY, datetime.min.time(), trips.health.local_zone())
        leg = trips.Leg(
            "500235",
            "云阳汽车站",
            None,
            "370100",
            "济南",
            None,
            departs,
            departs + timedelta(hours=18),
        )
        trip = trips.create_trip(coach, leg, coordinator, {request.id: 3})
        trips.allocate_seats(trip.id, coordinator)
        db.session.commit()
        trip_id = trip.id
    html = client_as("admin").get(f"/trips/{trip_id}/manifest").get_data(as_text=True)
    assert html.count("<table") == 1
    assert html.count("<tbody>") == 1
    assert html.count("<tr>") == 4


def test_manifest_downloads_name_their_type_and_charset_once(client_as, train_trip):
    coordinator = client_as("coordinator")
    base = f"/trips/{train_trip['trip']}/manifest"
    for url in (f"{base}.csv", f"{base}.csv?full=1"):
        assert coordinator.get(url).headers["Content-Type"] == "text/csv; charset=utf-8"
    assert coordinator.get(f"{base}.xlsx").headers["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )


def test_manifest_downloads_have_every_row_masked(app, client_as, train_trip):
    coordinator = client_as("coordinator")
    expected = {w["name"]: w for w in train_trip["mine_workers"] + train_trip["their_workers"]}
    xlsx = coordinator.get(f"/trips/{train_trip['trip']}/manifest.xlsx")
    assert xlsx.status_code == 200
    assert xlsx.mimetype.endswith("spreadsheetml.sheet")
    assert train_trip["reference"] in xlsx.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(xlsx.data)).worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert len(rows) == 1 + 9
    csv_response = coordinator.get(f"/trips/{train_trip['trip']}/manifest.csv")
    assert csv_response.status_code == 200
    assert train_trip["reference"] in csv_response.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(csv_response.data.decode("utf-8-sig"))))
    assert len(table) == 1 + 9
    for data in (rows[1:], table[1:]):
        assert {row[1] for row in data} == set(expected)
        for row in data:
            worker = expected[row[1]]
            assert row[2] == mask_id_number(worker["id_number"])
            assert row[3] == mask_mobile(worker["phone"])
            assert row[4] in ("甲建筑有限公司", "乙制造有限公司")
            assert row[5].startswith("R")
            assert row[6] in ("东村", "西村", "南村")
            assert row[8] == "重庆市 云阳县"
    # Seat order: carriage 1 first, the two moved workers last.
    assert [row[0] for row in table[-2:]] == ["02车 050号", "02车 051号"]
    for worker in expected.values():
        assert worker["id_number"].encode() not in csv_response.data
    assert audits(app) == []
    assert coordinator.get(f"/trips/{train_trip['trip']}/manifest.pdf").status_code == 404


def test_the_full_manifest_shows_whole_numbers_and_is_audited(app, people, client_as, train_trip):
    coordinator = client_as("coordinator")
    everyone = train_trip["mine_workers"] + train_trip["their_workers"]
    page = coordinator.get(f"/trips/{train_trip['trip']}/manifest?full=1")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for worker in everyone:
        assert worker["id_number"] in html
        assert national(worker["phone"]) in html
    csv_response = coordinator.get(f"/trips/{train_trip['trip']}/manifest.csv?full=1")
    table = list(csv.reader(io.StringIO(csv_response.data.decode("utf-8-sig"))))
    assert {row[2].lstrip("\t") for row in table[1:]} == {w["id_number"] for w in everyone}
    xlsx = coordinator.get(f"/trips/{train_trip['trip']}/manifest.xlsx?full=1")
    sheet = load_workbook(io.BytesIO(xlsx.data)).worksheets[0]
    ids = [r[2] for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert sorted(ids) == sorted(w["id_number"] for w in everyone)  # text, not 3.7E+17
    entries = audits(app)
    assert [e.details for e in entries] == [{"fmt": "html"}, {"fmt": "csv"}, {"fmt": "xlsx"}]
    assert {(e.actor_id, e.object_type, e.object_id) for e in entries} == {
        (people.coordinator_id, "trips", train_trip["trip"])
    }
    client_as("admin").get(f"/trips/{train_trip['trip']}/manifest.csv?full=1")
    assert len(audits(app)) == 4


def excel_text(value: str) -> str:
    """A digit string as a .csv cell that Excel keeps as text: after a tab."""
    return f"\t{value}" if value.isdigit() else value


def test_the_full_manifest_keeps_whole_numbers_as_text_for_excel(app, client_as, train_trip):
    coordinator = client_as("coordinator")
    everyone = train_trip["mine_workers"] + train_trip["their_workers"]
    base = f"/trips/{train_trip['trip']}/manifest"
    # Excel opens a bare 18-digit number in a .csv as 3.70102E+17 and loses its last digits:
    # every ID and mobile number follows a tab, and the cell stays text.
    data = coordinator.get(f"{base}.csv?full=1").data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]
    assert sorted((row[2], row[3]) for row in rows) == sorted(
        (excel_text(w["id_number"]), excel_text(national(w["phone"]))) for w in everyone
    )
    # Read back (our import, or a script) the numbers are whole again.
    back = read_table("manifest.csv", data).rows
    assert sorted(cells[2] for _row, cells in back) == sorted(w["id_number"] for w in everyone)
    # The .xlsx has them as text cells, in text-formatted columns.
    sheet = load_workbook(io.BytesIO(coordinator.get(f"{base}.xlsx?full=1").data)).worksheets[0]
    for row in range(2, 2 + len(everyone)):
        for column in (3, 4):
            cell = sheet.cell(row=row, column=column)
            assert isinstance(cell.value, str)
            assert cell.number_format == "@"


def test_employers_get_no_manifest(app, client_as, train_trip):
    employer = client_as("employer")
    base = f"/trips/{train_trip['trip']}/manifest"
    for url in (base, f"{base}?full=1", f"{base}.xlsx", f"{base}.csv?full=1"):
        assert employer.get(url).status_code in (403, 404)
    assert audits(app) == []


def test_the_arrival_list_is_the_employers_own_and_masked(app, people, client_as, train_trip):
    employer = client_as("employer")
    page = employer.get(f"/requests/{train_trip['mine']}/arrival-list")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert_masked(html, train_trip["mine_workers"])
    for worker in train_trip["their_workers"]:
        assert f">{worker['name']}<" not in html
    assert train_trip["reference"] in html
    assert "K4016" in html
    assert "济南站" in html
    assert "02车 050号" in html
    assert html.count("<tbody>") == 1  # one trip
    assert f'href="/requests/{train_trip["mine"]}"' in html  # back to the request
    # Another organization's request is not there at all.
    assert employer.get(f"/requests/{train_trip['theirs']}/arrival-list").status_code == 404
    assert (
        client_as("employer_b").get(f"/requests/{train_trip['theirs']}/arrival-list").status_code
        == 200
    )
    # The coordinator of the region sees both; the request page links to the list.
    coordinator = client_as("coordinator")
    assert coordinator.get(f"/requests/{train_trip['theirs']}/arrival-list").status_code == 200
    detail = employer.get(f"/requests/{train_trip['mine']}").get_data(as_text=True)
    assert f"/requests/{train_trip['mine']}/arrival-list" in detail


def test_the_arrival_list_shows_the_last_leg_and_not_cancelled_trips(
    app, people, client_as, train_trip
):
    """A coach from the station to the site: the handover is at the coach's arrival."""
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        rail = db.session.get(Trip, train_trip["trip"])
        coach = scenario.vehicle("鲁A10001", "coach-45")
        road = trips.Leg(
            "370100",
            "济南站北广场",
            None,
            "370100",
            "甲建筑有限公司项目部",
            "济南市经十路",
            rail.arrives_at + timedelta(hours=1),
            rail.arrives_at + timedelta(hours=2),
            connects_from_id=rail.id,
        )
        onward = trips.create_trip(coach, road, coordinator, {train_trip["mine"]: 6})
        trips.allocate_seats(onward.id, coordinator)
        db.session.commit()
        onward_id, onward_reference = onward.id, onward.reference
    employer = client_as("employer")
    html = employer.get(f"/requests/{train_trip['mine']}/arrival-list").get_data(as_text=True)
    assert onward_reference in html
    assert "鲁A10001" in html
    assert train_trip["reference"] not in html  # the train is not where they are handed over
    assert html.count("<tbody>") == 1
    with app.app_context():
        trips.cancel_trip(
            onward_id, "车辆故障", db.session.get(scenario.User, people.coordinator_id)
        )
        db.session.commit()
        assert (
            db.session.scalar(select(func.count()).where(SeatAssignment.trip_id == onward_id)) == 0
        )
    html = employer.get(f"/requests/{train_trip['mine']}/arrival-list").get_data(as_text=True)
    assert train_trip["reference"] in html
    assert onward_reference not in html
