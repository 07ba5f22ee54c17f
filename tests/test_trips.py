"""Trips through the coordinator's pages: plan -> apply -> give seats -> move by hand -> lock
-> manifest; cancelling; connecting legs (K4016); the worker's trip page; stale pages."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from decimal import Decimal

import pytest
from flask_babel import gettext, ngettext
from sqlalchemy import func, select, text, update

from app.accounts.models import User
from app.core.clock import local_today, utcnow
from app.core.models import AuditEntry
from app.demand import services as demand
from app.demand.models import EntryStatus, RequestStatus, RosterEntry, TransportRequest
from app.extensions import db
from app.fleet.models import Vehicle
from app.health import services as health
from app.health.cli import issue_demo_pass
from app.notify.models import Channel, Notification
from app.notify.services import Outgoing, drop_pending, notify_many, render
from app.trips import allocation
from app.trips import services as trips
from app.trips.forms import MESSAGES, message_for
from app.trips.models import SeatAssignment, Trip, TripStatus
from tests import scenario
from tests.conftest import People, sign_in, statements_run, submit

DAY = local_today("Asia/Shanghai") + timedelta(days=2)


@pytest.fixture
def three_employers(app, people: People, issuer_key) -> dict:
    """Three requests of 20, 15 and 9 workers (villages inside), one coach-53 and one
    coach-45, a driver. Returns ids."""
    with app.app_context():
        a = scenario.approved_request(
            people.organization_a_id,
            people.coordinator_id,
            issuer_key,
            DAY,
            {"东村": 12, "西村": 8},
        )
        b = scenario.approved_request(
            people.organization_b_id, people.coordinator_id, issuer_key, DAY, {"南村": 15}
        )
        c = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, issuer_key, DAY, {"北村": 9}, failing=1
        )
        big = scenario.vehicle("渝F12345", "coach-53")
        small = scenario.vehicle("渝F54321", "coach-45")
        driver = scenario.driver()
        db.session.commit()
        return {
            "requests": [a.id, b.id, c.id],
            "big": big.id,
            "small": small.id,
            "driver": driver.id,
        }


def leg_form(**changes) -> dict:
    form = {
        "origin_region_code": "500235",
        "origin_point": "云阳汽车站",
        "origin_address": "云阳县双江街道滨江大道",
        "destination_region_code": "370100",
        "destination_point": "济南长途汽车总站",
        "destination_address": "济南市天桥区",
        "departs_on": DAY.isoformat(),
        "departs_time": "06:30",
        "arrives_on": (DAY + timedelta(days=1)).isoformat(),
        "arrives_time": "08:00",
        "max_load_percent": "100",
        "isolation_rows": "0",
        "health_freshness_hours": "72",
        "connects_from_id": "0",
    }
    form.update(changes)
    return form


def plan_page(client, requests, vehicles, **changes):
    data = leg_form(**changes)
    data = {**data, "requests": [str(r) for r in requests], "vehicles": [str(v) for v in vehicles]}
    return submit(client, "/trips/plan", {**data, "make": "1"})


def plan_inputs(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="(load-\d+-\d+)"[^>]*value="(\d+)"', html))


def test_the_plan_asks_to_check_a_meeting_point_away_from_the_workers_home(
    app, client_as, three_employers
):
    """The leg's fields are filled from the first request listed, not from those ticked: a
    coach planned from another county would text its workers to meet there."""
    ids = three_employers
    coordinator = client_as("coordinator")
    with app.app_context():
        references = [db.session.get(TransportRequest, rid).reference for rid in ids["requests"]]
    at_home = plan_page(coordinator, ids["requests"], [ids["big"]]).get_data(as_text=True)
    assert "请核对集合地点" not in at_home
    away = plan_page(
        coordinator,
        ids["requests"],
        [ids["big"]],
        origin_region_code="500236",
        origin_point="奉节汽车站",
    ).get_data(as_text=True)
    for reference in references:
        assert (
            f"请核对集合地点：{reference} 的工人从重庆市 云阳县（500235）出发，"
            "本趟车从奉节汽车站（500236）发车，短信会让他们到那里集合。"
        ) in away
    assert plan_inputs(away)  # a warning: the plan is still made and can be created


def field_value(html: str, name: str) -> str:
    found = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', html)
    assert found, name
    return found.group(1)


def test_the_plan_takes_its_route_and_day_from_the_ticked_requests(app, client_as, three_employers):
    """The page starts from the first request listed; the button puts the ticked requests'
    meeting point, site and day in the leg, and names those that start elsewhere."""
    ids = three_employers
    first, _second, fengjie = ids["requests"]
    with app.app_context():
        moved = db.session.get(TransportRequest, fengjie)
        moved.origin_region_code, moved.origin_region_name = "500236", "重庆市 奉节县"
        moved.pickup_point, moved.pickup_address = "奉节汽车站", "奉节县永安街道"
        moved.earliest_departure += timedelta(days=1)
        moved.latest_departure += timedelta(days=1)
        references = {
            rid: db.session.get(TransportRequest, rid).reference for rid in (first, fengjie)
        }
        db.session.commit()
    coordinator = client_as("coordinator")
    start = coordinator.get("/trips/plan").get_data(as_text=True)
    assert field_value(start, "origin_point") == "云阳汽车站"

    def fill(*ticked):
        data = {**leg_form(), "requests": [str(r) for r in ticked], "fill": "1"}
        return submit(coordinator, "/trips/plan", data).get_data(as_text=True)

    alone = fill(fengjie)
    assert field_value(alone, "origin_region_code") == "500236"
    assert field_value(alone, "origin_point") == "奉节汽车站"
    assert field_value(alone, "origin_address") == "奉节县永安街道"
    assert field_value(alone, "departs_on") == (DAY + timedelta(days=1)).isoformat()
    assert f'name="requests" value="{fengjie}" checked' in alone
    assert "出发地或目的地不同" not in alone
    # Two requests from two counties: the day inside both windows, the other one named.
    both = fill(first, fengjie)
    assert field_value(both, "origin_point") == "云阳汽车站"
    assert field_value(both, "departs_on") == (DAY + timedelta(days=1)).isoformat()
    assert (
        f"路线和日期已按 {references[first]} 填写。{references[fengjie]} 的出发地或目的地不同："
        "请分开规划，或核对集合地点。"
    ) in both
    assert "请先勾选需求，再按它们的路线和日期填写。" in fill()
    # From a request's page: the plan opens with that request ticked and its route filled.
    detail = coordinator.get(f"/requests/{fengjie}").get_data(as_text=True)
    link = re.search(r'href="(/trips/plan\?[^"]+)">为此需求规划车次<', detail)
    assert link, "no link to plan the request"
    linked = coordinator.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert f'name="requests" value="{fengjie}" checked' in linked
    assert f'name="requests" value="{first}" checked' not in linked
    assert field_value(linked, "origin_point") == "奉节汽车站"
    assert field_value(linked, "departs_time") == "06:00"  # DEFAULT_DEPARTURE_TIME
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Trip)) == 0


def test_plan_apply_allocate_move_lock_manifest(app, client_as, three_employers):
    ids = three_employers
    coordinator = client_as("coordinator")
    # 44 workers, one of them with a yellow pass (blocked when the request was submitted, so
    # not planned): both coaches offered, the 53-seat one carries the 43 at full load, so the
    # plan uses that one vehicle.
    page = plan_page(coordinator, ids["requests"], [ids["big"], ids["small"]])
    assert page.status_code == 200
    inputs = plan_inputs(page.get_data(as_text=True))
    assert sum(int(v) for v in inputs.values()) == 43
    assert all(name.startswith(f"load-{ids['big']}-") for name, v in inputs.items() if v != "0")

    applied = submit(
        coordinator,
        "/trips/plan",
        {
            **leg_form(),
            "requests": [str(r) for r in ids["requests"]],
            "vehicles": [str(ids["big"]), str(ids["small"])],
            **inputs,
            "apply": "1",
        },
    )
    assert applied.status_code == 302
    with app.app_context():
        trip = db.session.scalar(select(Trip))
        assert trip.vehicle_id == ids["big"]
        assert trip.status == TripStatus.PLANNED
        assert sorted(load.planned for load in trip.loads) == [8, 15, 20]
        trip_id = trip.id

    given = submit(coordinator, f"/trips/{trip_id}/allocate", form_url=f"/trips/{trip_id}")
    assert given.status_code == 302
    with app.app_context():
        seats = db.session.scalars(select(SeatAssignment)).all()
        assert len(seats) == 43
        assert len({s.seat_label for s in seats}) == 43
        blocked = db.session.scalars(
            select(RosterEntry).where(RosterEntry.status == EntryStatus.BLOCKED)
        ).all()
        assert len(blocked) == 1
        # Each employer's request sits together: one contiguous piece each.
        trip = db.session.get(Trip, trip_id)
        seat_map = trip.vehicle.seat_map
        by_request: dict[int, list[str]] = {}
        for s in seats:
            by_request.setdefault(s.entry.request_id, []).append(s.seat_label)
        assert all(len(seat_map.clusters(labels)) == 1 for labels in by_request.values())
        statuses = {r.status for r in db.session.scalars(select(TransportRequest))}
        assert RequestStatus.SCHEDULED in statuses  # the two fully seated requests

    # The seat map shows names; a move onto a taken seat is refused and changes nothing.
    seat_page = coordinator.get(f"/trips/{trip_id}/seats")
    html = seat_page.get_data(as_text=True)
    assert seat_page.status_code == 200
    assert "工人" in html
    # The legend shows each employer's colour, as the seats are drawn (styled classes).
    legend = re.search(r'<ul class="group-legend">(.*?)</ul>', html, re.S).group(1)
    assert re.findall(r'class="seat-swatch (seat-group-\d)"', legend) == [
        "seat-group-0",
        "seat-group-1",
        "seat-group-2",
    ]
    version = re.search(r'name="seats_version"[^>]*value="(\d+)"', html).group(1)
    with app.app_context():
        first, second = db.session.scalars(
            select(SeatAssignment).order_by(SeatAssignment.id).limit(2)
        ).all()
        free = next(
            s.label
            for s in seat_map.seats
            if s.label not in {a.seat_label for a in db.session.scalars(select(SeatAssignment))}
        )
        first_id, first_seat, second_seat = (
            first.roster_entry_id,
            first.seat_label,
            second.seat_label,
        )
    refused = submit(
        coordinator,
        f"/trips/{trip_id}/seats/move",
        {"seats_version": version, "entry_id": first_id, "to_seat": second_seat},
        form_url=f"/trips/{trip_id}/seats",
    )
    assert refused.status_code == 409
    moved = submit(
        coordinator,
        f"/trips/{trip_id}/seats/move",
        {"seats_version": version, "entry_id": first_id, "to_seat": free},
        form_url=f"/trips/{trip_id}/seats",
    )
    assert moved.status_code == 302
    # The same page, posted again with the version it showed, is stale now.
    stale = submit(
        coordinator,
        f"/trips/{trip_id}/seats/move",
        {"seats_version": version, "entry_id": first_id, "to_seat": first_seat},
        form_url=f"/trips/{trip_id}/seats",
    )
    assert stale.status_code == 409
    with app.app_context():
        assert trips._assignment(trip_id, first_id).seat_label == free

    locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
    assert locked.status_code == 302
    with app.app_context():
        trip = db.session.get(Trip, trip_id)
        assert trip.status == TripStatus.LOCKED
        sms = db.session.scalars(
            select(Notification).where(Notification.template == "seat_given")
        ).all()
        assert len(sms) == 43
        reminders = db.session.scalar(
            select(func.count()).where(Notification.template == "departure_reminder")
        )
        assert reminders == 86  # 24 h and 2 h before, for each
        notice = db.session.scalar(
            select(Notification).where(Notification.template == "trip_advance_notice")
        )
        assert notice is not None
        assert notice.context["total"] == 43
        assert db.session.scalar(
            select(AuditEntry).where(AuditEntry.action == "trip.locked")
        ).details == {"seated": 43}


def test_staff_see_a_trips_times_to_the_minute(app, client_as, people, three_employers):
    """The trip page and the printed manifest say when the coach leaves as a driver reads it:
    the date and the clock time (they said 06:00:00, and 6:00:00 AM in English)."""
    with app.app_context():
        vehicle = db.session.get(Vehicle, three_employers["big"])
        actor = db.session.get(User, people.coordinator_id)
        trip = trips.create_trip(vehicle, scenario.yunyang_to_jinan(DAY), actor, {})
        db.session.commit()
        trip_id = trip.id
    coordinator = client_as("coordinator")
    arrival = DAY + timedelta(days=1)
    expected = {
        "zh_CN": (
            f"{DAY.year}年{DAY.month}月{DAY.day}日 06:00",
            f"{arrival.year}年{arrival.month}月{arrival.day}日 00:00",
        ),
        "en": (
            f"{DAY:%b} {DAY.day}, {DAY.year} 6:00\u202fAM",
            f"{arrival:%b} {arrival.day}, {arrival.year} 12:00\u202fAM",
        ),
    }
    for language, (departs, arrives) in expected.items():
        coordinator.get(f"/language/{language}")
        for page in (f"/trips/{trip_id}", f"/trips/{trip_id}/manifest"):
            html = coordinator.get(page).get_data(as_text=True)
            assert f"<dd>{departs}</dd>" in html, (language, page)
            assert f"<dd>{arrives}</dd>" in html, (language, page)
            assert not re.search(r"\d:\d\d:\d\d", html), (language, page)


def test_a_plan_can_create_its_trips_and_give_their_seats_at_once(app, client_as, three_employers):
    """ "Create these trips and give seats": both coaches at half load carry the 43 cleared
    workers, each trip seats exactly what its loads plan, and the page says how many."""
    ids = three_employers
    coordinator = client_as("coordinator")
    vehicles = [str(ids["big"]), str(ids["small"])]
    page = plan_page(coordinator, ids["requests"], vehicles, max_load_percent="50")
    inputs = plan_inputs(page.get_data(as_text=True))
    assert sum(int(v) for v in inputs.values()) == 43
    plan = {**leg_form(max_load_percent="50"), "requests": [str(r) for r in ids["requests"]]}
    applied = submit(
        coordinator, "/trips/plan", {**plan, "vehicles": vehicles, **inputs, "apply": "seats"}
    )
    assert applied.status_code == 302
    said = coordinator.get(applied.location).get_data(as_text=True)
    with app.test_request_context():
        assert ngettext("%(num)d trip created.", "%(num)d trips created.", 2) in said
        assert ngettext("%(num)d worker seated.", "%(num)d workers seated.", 43) in said
    with app.app_context():
        created = db.session.scalars(select(Trip).order_by(Trip.id)).all()
        assert len(created) == 2
        assert {trip.status for trip in created} == {TripStatus.OPEN}
        for trip in created:
            seated = dict(
                db.session.execute(
                    select(RosterEntry.request_id, func.count())
                    .join(SeatAssignment, SeatAssignment.roster_entry_id == RosterEntry.id)
                    .where(SeatAssignment.trip_id == trip.id)
                    .group_by(RosterEntry.request_id)
                ).all()
            )
            assert seated == {load.request_id: load.planned for load in trip.loads}
        entries = db.session.scalars(
            select(RosterEntry).where(RosterEntry.status == EntryStatus.SEATED)
        ).all()
        assert len(entries) == 43
        assert all(entry.booking_code for entry in entries)


def test_giving_seats_on_several_trips_checks_each_worker_once_a_departure(
    app, people, issuer_key, three_employers
):
    """Three trips at the same hour share the 20 workers of one request. Three of them carry
    a pass issued 100 hours ago: too old for the two trips that want passes of at most 72
    hours (checked once, not once a trip), fresh enough for the third, which wants 168."""
    request_id = three_employers["requests"][0]
    with app.app_context():
        hr = db.session.scalar(
            select(scenario.User).where(scenario.User.organization_id == people.organization_a_id)
        )
        entries = db.session.scalars(
            select(RosterEntry).where(RosterEntry.request_id == request_id).order_by(RosterEntry.id)
        ).all()
        stale = [entry.id for entry in entries[:3]]
        for entry in entries[:3]:
            data = demand.worker_data(entry.worker)
            issued = utcnow() - timedelta(hours=100)
            token = issue_demo_pass(
                issuer_key, data.id_number, data.name, "green", issued, timedelta(days=7)
            )
            health.attach_pass(entry.worker, token, hr)
        actor = db.session.get(scenario.User, people.coordinator_id)
        made = []
        for identifier, planned, freshness in (
            ("渝F10001", 12, 72),
            ("渝F10002", 8, 72),
            ("渝F10003", 3, 168),
        ):
            leg = scenario.yunyang_to_jinan(DAY)
            leg.health_freshness_hours = freshness
            coach = scenario.vehicle(identifier, "coach-45")
            made.append(trips.create_trip(coach, leg, actor, {request_id: planned}).id)
        db.session.commit()

        outcomes = trips.allocate_trips(made, actor)
        db.session.commit()

        first, second, third = (outcomes[trip_id] for trip_id in made)
        assert (first.seated, second.seated, third.seated) == (12, 5, 3)
        assert first.blocked + second.blocked == 3  # each stale pass judged once at 72 hours
        assert third.blocked == 0
        on_third = db.session.scalars(
            select(SeatAssignment.roster_entry_id).where(SeatAssignment.trip_id == made[2])
        ).all()
        assert sorted(on_third) == stale
        statuses = db.session.scalars(
            select(RosterEntry.status).where(RosterEntry.request_id == request_id)
        ).all()
        assert statuses == [EntryStatus.SEATED] * 20
        assert db.session.get(TransportRequest, request_id).status == RequestStatus.SCHEDULED
        audited = db.session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "trip.seats_allocated")
        ).all()
        assert sorted(d["seated"] for d in audited) == [3, 5, 12]


def test_giving_seats_on_several_trips_reads_their_vehicles_once(app, people, three_employers):
    """Each trip's seat map comes from its vehicle: all the vehicles are read in one query,
    not one query a trip (a list read and dropped left the session nothing to reuse)."""
    request_id = three_employers["requests"][0]
    with app.app_context():
        actor = db.session.get(scenario.User, people.coordinator_id)
        made = []
        for identifier, planned in (("渝F20001", 8), ("渝F20002", 7), ("渝F20003", 5)):
            coach = scenario.vehicle(identifier, "coach-45")
            made.append(
                trips.create_trip(
                    coach, scenario.yunyang_to_jinan(DAY), actor, {request_id: planned}
                ).id
            )
        db.session.commit()
    with app.app_context():  # a new session, as the next page or task has
        actor = db.session.get(scenario.User, people.coordinator_id)
        with statements_run(app) as statements:
            outcomes = trips.allocate_trips(made, actor)
        db.session.commit()
        assert [outcomes[trip_id].seated for trip_id in made] == [8, 7, 5]
    vehicle_reads = [
        s.sql for s in statements if s.sql.startswith("SELECT") and "FROM vehicles" in s.sql
    ]
    assert len(vehicle_reads) == 1, vehicle_reads


def test_a_plan_that_cannot_carry_everyone_says_how_many_seats_are_missing(
    app, client_as, three_employers
):
    ids = three_employers
    coordinator = client_as("coordinator")
    # 43 cleared workers on a coach-45 at 50% with two empty rows.
    page = plan_page(
        coordinator, ids["requests"], [ids["small"]], max_load_percent="50", isolation_rows="2"
    )
    html = page.get_data(as_text=True)
    with app.app_context():
        seat_map = db.session.get(scenario.Vehicle, ids["small"]).seat_map
        cap = allocation.capacity(seat_map, allocation.COACH_2020)
    assert page.status_code == 200
    assert f">{cap}<" in html
    assert 'name="apply"' not in html
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Trip)) == 0


def test_connecting_legs_train_then_coaches_to_each_site(
    app, people, issuer_key, client, client_as
):
    """K4016 in small: a special train Chongqing West -> Jinan carries three employers'
    workers; coaches from Jinan take each employer's workers on to its site. The worker's page
    shows both legs, train seat (carriage and number) first."""
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        requests = [
            scenario.approved_request(org, people.coordinator_id, issuer_key, DAY, {f"村{n}": size})
            for n, (org, size) in enumerate(
                [
                    (people.organization_a_id, 14),
                    (people.organization_b_id, 11),
                    (people.organization_a_id, 9),
                ]
            )
        ]
        train = scenario.vehicle("K4016", "train-hard-seat-118", 2, first_carriage=3, kind="train")
        zone = trips.health.local_zone()
        departs = trips.datetime.combine(DAY, trips.datetime.min.time(), zone) + timedelta(hours=6)
        rail = trips.Leg(
            "500100",
            "重庆西站",
            "重庆市沙坪坝区",
            "370100",
            "济南站",
            "济南市天桥区",
            departs,
            departs + timedelta(hours=20),
            50,
            0,
            True,
        )
        leg1 = trips.create_trip(train, rail, coordinator, {r.id: 40 for r in requests})
        assert trips.allocate_seats(leg1.id, coordinator).seated == 34
        coaches = []
        for n, request in enumerate(requests):
            coach = scenario.vehicle(f"鲁A1000{n}", "coach-45")
            road = trips.Leg(
                "370100",
                "济南站北广场",
                None,
                "370100",
                request.site_name,
                request.site_address,
                rail.arrives_at + timedelta(hours=1),
                rail.arrives_at + timedelta(hours=2),
                50,
                2,
                False,
                connects_from_id=leg1.id,
            )
            coaches.append(trips.create_trip(coach, road, coordinator, {request.id: 20}))
        for coach in coaches:
            trips.allocate_seats(coach.id, coordinator)
        # Two drivers on the train, one on the worker's coach: both shown, each on its leg.
        crew = [
            scenario.driver(name, f"+861390000{n:04d}")
            for n, name in enumerate(["甲师傅", "乙师傅", "丙师傅"])
        ]
        trips.set_drivers(leg1.id, [crew[0].id, crew[1].id], coordinator)
        trips.set_drivers(coaches[1].id, [crew[2].id], coordinator)
        db.session.commit()
        assert [c.leg for c in coaches] == [2, 2, 2]
        # Every worker on the train has exactly one coach seat, on their own employer's coach.
        for coach, request in zip(coaches, requests, strict=True):
            riders = db.session.scalars(
                select(RosterEntry.request_id)
                .join(SeatAssignment)
                .where(SeatAssignment.trip_id == coach.id)
            ).all()
            assert riders == [request.id] * len(request.entries)
        entry = requests[1].entries[0]
        legs = trips.itinerary(entry.id)
        assert [a.trip_id for a in legs] == [leg1.id, coaches[1].id]
        train_seat = train.seat_map.seat(legs[0].seat_label).display
        assert train_seat.startswith(("03", "04"))
        token = trips.trip_page_token(entry.id)
        first_request_id = requests[0].id

    def selects_for(client_, url: str):
        with statements_run(app) as statements:
            answer = client_.get(url)
        return answer, [s.sql for s in statements if s.sql.startswith("SELECT")]

    page, selects = selects_for(client, f"/my-trip/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.index("重庆西站") < html.index("济南站北广场")
    assert train_seat in html
    assert "K4016" in html
    assert "鲁A10001" in html
    # Each leg lists its own crew: the train's two drivers before the coach's one.
    assert html.index("甲师傅") < html.index("济南站北广场") < html.index("丙师傅")
    assert html.index("乙师傅") < html.index("济南站北广场")
    # The busiest page of a campaign: the entry, then all legs with trips, vehicles and crew
    # (the lazy loads it used to make cost a round trip each), then the door's judgement of
    # the seated worker's pass in one statement: its claims, its issuer on the trust list,
    # whether another person holds it (three statements made the page half again as slow).
    assert len(selects) == 3, selects
    assert client.get(f"/my-trip/{token}x").status_code == 404

    # The employer's request page lists each worker with both seats, in a fixed number of
    # statements however many workers the page holds (not one per worker or per vehicle).
    page, selects = selects_for(client_as("employer"), f"/requests/{first_request_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count(" · K4016 · ") == 14
    assert html.count(" · 鲁A10000 · ") == 14
    assert len(selects) <= 8, selects


def test_cancelling_a_locked_trip_frees_seats_and_tells_everyone(app, people, three_employers):
    ids = three_employers
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        vehicle = db.session.get(scenario.Vehicle, ids["big"])
        zone = trips.health.local_zone()
        departs = trips.datetime.combine(DAY, trips.datetime.min.time(), zone) + timedelta(hours=7)
        leg = trips.Leg(
            "500235",
            "云阳汽车站",
            None,
            "370100",
            "济南",
            None,
            departs,
            departs + timedelta(hours=18),
            50,
            2,
            False,
        )
        trip = trips.create_trip(vehicle, leg, coordinator, dict.fromkeys(ids["requests"], 20))
        outcome = trips.allocate_seats(trip.id, coordinator)
        cap = allocation.capacity(vehicle.seat_map, allocation.COACH_2020)
        assert outcome.seated == cap == 26  # 53 seats at 50% (44 outside the two empty rows)
        assert outcome.unplaced == {"capacity": 43 - cap}
        trips.lock_manifest(trip.id, coordinator)
        db.session.commit()
        assert (
            db.session.scalar(
                select(func.count()).where(Notification.template == "departure_reminder")
            )
            == 2 * cap
        )
        with pytest.raises(trips.DomainError):
            trips.cancel_trip(trip.id, "  ", coordinator)
        db.session.rollback()
        trips.cancel_trip(trip.id, "车辆故障", coordinator)
        db.session.commit()
        assert db.session.scalar(select(func.count()).select_from(SeatAssignment)) == 0
        assert (
            db.session.scalar(
                select(func.count()).where(Notification.template == "departure_reminder")
            )
            == 0
        )  # reminders of a cancelled trip are taken back before they go
        assert (
            db.session.scalar(select(func.count()).where(Notification.template == "trip_cancelled"))
            == cap
        )
        assert (
            db.session.scalar(
                select(func.count()).where(Notification.template == "trip_cancelled_employer")
            )
            > 0
        )
        statuses = db.session.scalars(select(RosterEntry.status).distinct()).all()
        assert set(statuses) == {EntryStatus.CLEARED, EntryStatus.BLOCKED}
        assert {r.status for r in db.session.scalars(select(TransportRequest))} == {
            RequestStatus.APPROVED
        }


def test_on_sqlite_a_writing_request_holds_the_write_lock_from_its_start(app):
    """What row locks give on PostgreSQL: a POST begins with BEGIN IMMEDIATE, so nobody
    else can write between what it reads and what it writes. Reading requests take no lock."""
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")

    def others_can_write() -> bool:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            other.close()

    for method, locked in (("POST", True), ("GET", False)):
        with app.test_request_context("/trips", method=method):
            app.preprocess_request()
            db.session.execute(select(1))
            assert others_can_write() is not locked
            db.session.rollback()


def said(app, code: str) -> str:
    """What the page says for a refusal, in the default language (Chinese)."""
    with app.test_request_context():
        return message_for(code)


def make_trip(app, people, ids, vehicle_key="big", hours=7, percent=100, rows=0) -> int:
    """A trip on DAY carrying the three requests, seats given. Returns its id."""
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        vehicle = db.session.get(scenario.Vehicle, ids[vehicle_key])
        zone = trips.health.local_zone()
        departs = trips.datetime.combine(DAY, trips.datetime.min.time(), zone)
        departs += timedelta(hours=hours)
        leg = trips.Leg(
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
        trip = trips.create_trip(vehicle, leg, coordinator, dict.fromkeys(ids["requests"], 20))
        trips.allocate_seats(trip.id, coordinator)
        db.session.commit()
        return trip.id


def seat_version(client, trip_id: int) -> str:
    html = client.get(f"/trips/{trip_id}/seats").get_data(as_text=True)
    return re.search(r'name="seats_version"[^>]*value="(\d+)"', html).group(1)


def seats_of(app, trip_id: int) -> dict[int, str]:
    with app.app_context():
        rows = db.session.scalars(select(SeatAssignment).where(SeatAssignment.trip_id == trip_id))
        return {a.roster_entry_id: a.seat_label for a in rows}


def test_the_seat_page_asks_for_a_worker_not_a_job_worker(app, people, client_as, three_employers):
    """Move and swap name the worker 务工人员; 执行进程 (the System page's Celery worker, which
    shared the msgid "Worker") belongs to that page alone."""
    trip_id = make_trip(app, people, three_employers)
    html = client_as("coordinator").get(f"/trips/{trip_id}/seats").get_data(as_text=True)
    labels = re.findall(r'<label for="(entry_id|swap-a)">([^<]*)</label>', html)
    assert len(labels) == 2
    assert {text for _, text in labels} == {"务工人员"}
    assert "执行进程" not in html
    admin = client_as("admin")
    submit(admin, "/admin/system")  # a test job, so the page lists its runs
    assert "<th>执行进程</th>" in admin.get("/admin/system").get_data(as_text=True)


def test_swap_take_back_and_block_seats_by_hand(app, people, client_as, three_employers):
    trip_id = make_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    before = seats_of(app, trip_id)
    a, b = sorted(before)[:2]
    url = f"/trips/{trip_id}/seats"
    swapped = submit(
        coordinator,
        f"{url}/swap",
        {"seats_version": seat_version(coordinator, trip_id), "entry_id": a, "other_entry_id": b},
        form_url=url,
    )
    assert swapped.status_code == 302
    after = seats_of(app, trip_id)
    assert (after[a], after[b]) == (before[b], before[a])

    taken_back = submit(
        coordinator,
        f"{url}/unseat",
        {"seats_version": seat_version(coordinator, trip_id), "entry_id": a},
        form_url=url,
    )
    assert taken_back.status_code == 302
    assert a not in seats_of(app, trip_id)
    with app.app_context():
        assert db.session.get(RosterEntry, a).status == EntryStatus.CLEARED

    # Blocking a taken seat is refused; blocking the freed one works, and the allocator then
    # leaves it alone.
    version = seat_version(coordinator, trip_id)
    refused = submit(
        coordinator,
        f"{url}/block",
        {"seats_version": version, "blocked": [after[b]]},
        form_url=url,
    )
    assert refused.status_code == 302
    with app.app_context():
        assert db.session.get(Trip, trip_id).blocked_seats == []
    blocked = submit(
        coordinator, f"{url}/block", {"seats_version": version, "blocked": [after[a]]}, form_url=url
    )
    assert blocked.status_code == 302
    submit(coordinator, f"/trips/{trip_id}/allocate", form_url=f"/trips/{trip_id}")
    final = seats_of(app, trip_id)
    assert a in final
    assert final[a] != after[a]
    assert after[a] not in final.values()


def test_a_coach_runs_one_trip_at_a_time_under_whichever_operator_it_is_registered(
    app, people, client_as, three_employers
):
    ids = three_employers
    first = make_trip(app, people, ids, "big", hours=7)
    coordinator = client_as("coordinator")
    # The coach is sold on: out of service at 云阳客运公司, registered at the new operator
    # while its trip for the old one still runs.
    coach = {"kind": "coach", "identifier": "渝F12345", "template": "coach-53"}
    coach_form = {**coach, "first_carriage": "1", "carriages": "1", "notes": ""}
    assert submit(coordinator, f"/fleet/vehicles/{ids['big']}", coach_form).status_code == 302
    added = submit(coordinator, "/fleet", {"name": "云阳客运二公司"})
    operator_id = int(added.location.rsplit("/", 1)[1])
    added = submit(
        coordinator,
        f"/fleet/operators/{operator_id}/vehicles",
        coach_form,
        form_url=f"/fleet/operators/{operator_id}",
    )
    assert added.status_code == 302
    same_coach = int(added.location.rsplit("/", 1)[1])
    with app.app_context():
        actor = db.session.get(scenario.User, people.coordinator_id)
        running = db.session.get(Trip, first)
        vehicle = db.session.get(Vehicle, same_coach)
        overlapping = trips.Leg(
            "500235",
            "云阳汽车站",
            None,
            "370100",
            "济南",
            None,
            running.departs_at + timedelta(hours=2),
            running.arrives_at + timedelta(hours=2),
        )
        with pytest.raises(trips.DomainError) as refused:
            trips.create_trip(vehicle, overlapping, actor, {})
        assert refused.value.code == "trip.vehicle_busy"
        db.session.rollback()
        later = trips.Leg(
            **{
                **overlapping.__dict__,
                "departs_at": running.arrives_at + timedelta(hours=1),
                "arrives_at": running.arrives_at + timedelta(hours=5),
            }
        )
        second = trips.create_trip(vehicle, later, actor, {}).id
        db.session.commit()
    # Moved onto the old trip's hours from the trip page: refused.
    page = coordinator.get(f"/trips/{second}/edit").get_data(as_text=True)
    fields = dict(re.findall(r'<input[^>]*id="(\w+)"[^>]*value="([^"]*)"', page))
    moved = submit(
        coordinator,
        f"/trips/{second}/edit",
        leg_form(
            departs_on=DAY.isoformat(),
            departs_time="10:00",
            arrives_on=fields["arrives_on"],
            arrives_time=fields["arrives_time"],
        ),
    )
    assert moved.status_code == 200
    assert said(app, "trip.vehicle_busy") in moved.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Trip, second).departs_at > db.session.get(Trip, first).arrives_at


def test_a_driver_cannot_be_on_two_overlapping_trips(app, people, client_as, three_employers):
    ids = three_employers
    first = make_trip(app, people, ids, "big", hours=7)
    with app.app_context():
        # The second trip, on the other coach, overlaps the first in time.
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        other = db.session.get(Trip, first)
        leg = trips.Leg(
            "500235",
            "云阳汽车站",
            None,
            "370100",
            "济南",
            None,
            other.departs_at + timedelta(hours=2),
            other.arrives_at + timedelta(hours=2),
        )
        second = trips.create_trip(
            db.session.get(scenario.Vehicle, ids["small"]), leg, coordinator, {}
        ).id
        db.session.commit()
    coordinator = client_as("coordinator")

    def give_driver(trip_id):
        page = coordinator.get(f"/trips/{trip_id}/edit").get_data(as_text=True)
        fields = dict(re.findall(r'<input[^>]*id="(\w+)"[^>]*value="([^"]*)"', page))
        form = leg_form(
            departs_on=fields["departs_on"],
            departs_time=fields["departs_time"],
            arrives_on=fields["arrives_on"],
            arrives_time=fields["arrives_time"],
            max_load_percent="100",
            drivers=[str(ids["driver"])],
        )
        return submit(coordinator, f"/trips/{trip_id}/edit", form)

    assert give_driver(first).status_code == 302
    refused = give_driver(second)
    assert refused.status_code == 200
    # Which driver, and on which trip: the coordinator knows whom to replace, or where.
    with app.app_context():
        busy = db.session.get(scenario.Driver, ids["driver"]).name
        reference = db.session.get(Trip, first).reference
    with app.test_request_context():
        expected = str(MESSAGES["trip.driver_busy"]) % {"driver": busy, "trip": reference}
    assert field_errors(refused.get_data(as_text=True), "drivers") == [expected]
    assert busy in expected
    assert reference in expected
    with app.app_context():
        assert db.session.get(Trip, second).drivers == []


def test_a_plan_outside_the_requests_window_is_refused(app, client_as, three_employers):
    ids = three_employers
    coordinator = client_as("coordinator")
    late = DAY + timedelta(days=5)
    page = plan_page(coordinator, ids["requests"], [ids["big"]])
    inputs = plan_inputs(page.get_data(as_text=True))
    refused = submit(
        coordinator,
        "/trips/plan",
        {
            **leg_form(
                departs_on=late.isoformat(), arrives_on=late.isoformat(), arrives_time="23:00"
            ),
            "requests": [str(r) for r in ids["requests"]],
            "vehicles": [str(ids["big"])],
            **inputs,
            "apply": "1",
        },
    )
    assert refused.status_code == 200
    with app.test_request_context():
        expected = gettext("%(ref)s: the departure day is outside the request's departure window.")
    assert expected.split("%(ref)s")[1].replace("'", "&#39;") in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Trip)) == 0


def test_employer_sees_seats_on_the_request_and_no_trip_pages(
    app, people, client_as, three_employers
):
    trip_id = make_trip(app, people, three_employers)
    employer = client_as("employer")
    page = employer.get(f"/requests/{three_employers['requests'][0]}").get_data(as_text=True)
    assert "渝F12345" in page
    for url in ("/trips", f"/trips/{trip_id}", f"/trips/{trip_id}/seats", "/trips/plan"):
        assert employer.get(url).status_code == 403


def test_taking_back_reminders_touches_only_that_trip_and_worker(app):
    """Reminder events are taken back by prefix: trip 1 must not reach trip 12's, worker 2
    not worker 23's, and a message already handed to the gateway stays."""
    events = [
        "reminder.24h:t1:e2:v1",
        "reminder.2h:t1:e2:v3",
        "reminder.24h:t12:e2:v1",
        "reminder.24h:t1:e23:v1",
        "reminder.2h:t1:e5:v1",
        "seat.given:t1:e2:v1",
    ]
    with app.app_context():
        later = utcnow() + timedelta(days=1)
        notify_many(
            Outgoing(event, Channel.SMS, "+8613800138000", "departure_reminder", {}, later)
            for event in events
        )
        sent = db.session.scalar(select(Notification).where(Notification.event == events[1]))
        sent.status = "sent"
        db.session.commit()

        assert drop_pending(trips._reminder_prefixes(1, 2)) == 1
        db.session.commit()
        left = set(db.session.scalars(select(Notification.event)))
        assert left == set(events) - {events[0]}

        assert drop_pending(trips._reminder_prefixes(1)) == 2  # e23's and e5's
        db.session.commit()
        left = set(db.session.scalars(select(Notification.event)))
        assert left == {events[1], events[2], events[5]}


def test_on_postgresql_a_connecting_leg_keeps_boarded_workers_and_their_codes(
    pg_app, pg_people, tmp_path
):
    """Seats are written in one UPDATE on PostgreSQL: the first leg seats the cleared workers
    with fresh booking codes; the connecting leg keeps each code, and a worker already through
    the first leg's door stays "boarded"."""
    with pg_app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        request = scenario.approved_request(
            pg_people.organization_a_id, pg_people.coordinator_id, key, DAY, {"东村": 6}
        )
        actor = db.session.get(scenario.User, pg_people.coordinator_id)
        first_leg = scenario.yunyang_to_jinan(DAY)
        train = trips.create_trip(scenario.vehicle("渝F70001"), first_leg, actor, {request.id: 6})
        assert trips.allocate_seats(train.id, actor).seated == 6
        trips.lock_manifest(train.id, actor)
        db.session.commit()
        entries = db.session.scalars(
            select(RosterEntry).where(RosterEntry.request_id == request.id).order_by(RosterEntry.id)
        ).all()
        codes = {entry.id: entry.booking_code for entry in entries}
        assert all(codes.values())
        assert len(set(codes.values())) == 6
        assert {entry.status for entry in entries} == {EntryStatus.SEATED}
        boarded = entries[0].id
        verdict = trips.board(train.id, codes[boarded], Decimal("36.5"), actor)
        assert verdict.code == "boarded"
        db.session.commit()

        onward = trips.Leg(
            "370105",
            "济南站北广场",
            None,
            "370102",
            "厂区",
            None,
            first_leg.arrives_at + timedelta(hours=1),
            first_leg.arrives_at + timedelta(hours=3),
            connects_from_id=train.id,
        )
        coach = trips.create_trip(scenario.vehicle("鲁A70002"), onward, actor, {request.id: 6})
        assert trips.allocate_seats(coach.id, actor).seated == 6
        db.session.commit()
        db.session.expire_all()
        after = {
            entry.id: (entry.status, entry.booking_code)
            for entry in db.session.scalars(
                select(RosterEntry).where(RosterEntry.request_id == request.id)
            )
        }
    assert after[boarded] == (EntryStatus.BOARDED, codes[boarded])
    assert {entry_id: code for entry_id, (_, code) in after.items()} == codes
    assert {status for entry_id, (status, _) in after.items() if entry_id != boarded} == {
        EntryStatus.SEATED
    }


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_seating_writes_each_workers_health_check_with_their_seat(database, request, tmp_path):
    """Allocation checks each worker at the trip's departure and writes that check with the
    seat (one UPDATE). A worker blocked before for a reason the check no longer finds is seated
    with the old verdict and its override gone; one whose pass fails stays blocked, with the
    time of this check too."""
    app = request.getfixturevalue("app" if database == "sqlite" else "pg_app")
    people = request.getfixturevalue("people" if database == "sqlite" else "pg_people")
    with app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        transport = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, key, DAY, {"东村": 5}, failing=1
        )
        entries = sorted(transport.entries, key=lambda entry: entry.id)
        yellow, once_blocked = entries[0].id, entries[1].id
        db.session.execute(  # an earlier verdict, overridden, that no longer holds
            update(RosterEntry)
            .where(RosterEntry.id == once_blocked)
            .values(
                status=EntryStatus.BLOCKED.value,
                block_reason="stale",
                override_reasons="expired",
                override_note="纸质证明已核",
                overridden_by_id=people.coordinator_id,
                overridden_at=utcnow() - timedelta(days=1),
            )
        )
        db.session.execute(update(RosterEntry).values(health_checked_at=None))
        actor = db.session.get(scenario.User, people.coordinator_id)
        coach = trips.create_trip(
            scenario.vehicle("鲁A70004"), scenario.yunyang_to_jinan(DAY), actor, {transport.id: 5}
        )
        db.session.commit()
        before = utcnow()
        with statements_run(app) as statements:
            outcome = trips.allocate_seats(coach.id, actor)
        db.session.commit()
        # The seated workers' rows written once (seat and check), the blocked one's check apart.
        assert len([s for s, _ in statements if s.startswith("UPDATE roster_entries")]) == 2
        # Whole entries read only for the two not plainly cleared again (for their verdict's
        # audit); the three others judged from rows.
        whole = [
            parameters
            for s, parameters in statements
            if s.startswith("SELECT roster_entries.id") and "roster_entries.block_reason" in s
        ]
        assert [len(parameters) for parameters in whole] == [2]
        db.session.expire_all()
        assert (outcome.seated, outcome.blocked) == (4, 1)
        after = {
            entry.id: entry
            for entry in db.session.scalars(
                select(RosterEntry).where(RosterEntry.request_id == transport.id)
            )
        }
    assert after[yellow].status == EntryStatus.BLOCKED
    assert after[yellow].booking_code is None
    seated = [entry for entry_id, entry in after.items() if entry_id != yellow]
    assert {entry.status for entry in seated} == {EntryStatus.SEATED}
    assert all(entry.booking_code for entry in seated)
    cleared = after[once_blocked]
    assert (cleared.block_reason, cleared.override_reasons, cleared.override_note) == (None,) * 3
    assert (cleared.overridden_by_id, cleared.overridden_at) == (None, None)
    assert all(before <= entry.health_checked_at <= utcnow() for entry in after.values())


@pytest.mark.postgres
def test_on_postgresql_finding_who_waits_probes_each_workers_seat_whatever_the_statistics(
    pg_app, pg_people, tmp_path
):
    """Who still waits for a seat that day is an index probe per worker, also when the
    statistics were taken while the seat table was empty (a campaign's allocation: the table
    grows by 230,000 seats between two ANALYZE). As an anti-join it read the whole day's seats
    for every worker; the allocation still seats everyone."""
    with pg_app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        request = scenario.approved_request(
            pg_people.organization_a_id, pg_people.coordinator_id, key, DAY, {"东村": 6}
        )
        actor = db.session.get(scenario.User, pg_people.coordinator_id)
        coach = trips.create_trip(
            scenario.vehicle("鲁A70003"), scenario.yunyang_to_jinan(DAY), actor, {request.id: 6}
        )
        db.session.commit()
        db.session.execute(text("ANALYZE seat_assignments"))  # empty
        db.session.commit()

        def plan(query) -> str:
            statement = query.compile(db.engine, compile_kwargs={"literal_binds": True})
            return "\n".join(db.session.execute(text(f"EXPLAIN {statement}")).scalars())

        waiting = trips._waiting(select(RosterEntry.id), coach, request.id, ["cleared"])
        probes = plan(waiting)
        assert "SubPlan" in probes, probes
        assert "Anti Join" not in probes, probes
        as_join = waiting.where(  # the same test without OFFSET 0: the planner's anti-join
            ~select(SeatAssignment.id)
            .where(SeatAssignment.roster_entry_id == RosterEntry.id)
            .exists()
        )
        assert "Anti Join" in plan(as_join)

        assert trips.allocate_seats(coach.id, actor).seated == 6
        db.session.commit()


def sms_texts(app, template: str, locale: str | None = None, **where) -> list[str]:
    """The texts of the outbox's SMS from this template, as the workers read them (in
    ``locale``, or the language each was written in)."""
    with app.test_request_context():
        query = select(Notification).where(Notification.template == template)
        for name, value in where.items():
            query = query.where(getattr(Notification, name) == value)
        found = db.session.scalars(query.order_by(Notification.id)).all()
        return [
            render(
                Notification(
                    template=row.template,
                    locale=locale or row.locale,
                    channel=row.channel,
                    context=row.context,
                )
            )[1]
            for row in found
        ]


def edit_trip(client, trip_id: int, **changes):
    return submit(
        client,
        f"/trips/{trip_id}/edit",
        leg_form(**{"destination_point": "济南", **changes}),
    )


def test_a_planned_trip_cannot_be_moved_outside_its_requests_windows(
    app, people, client_as, three_employers
):
    """Before seats are given a trip's day may change, but the plan's check that a first leg
    leaves within each request's window was not made again: it could leave days early."""
    ids = three_employers
    coordinator = client_as("coordinator")
    with app.app_context():
        coordinator_user = db.session.get(scenario.User, people.coordinator_id)
        departs = trips.datetime.combine(DAY, trips.datetime.min.time(), trips.health.local_zone())
        leg = trips.Leg(
            "500235", "云阳汽车站", None, "370100", "济南", None,
            departs + timedelta(hours=7), departs + timedelta(hours=25), 100, 0, False,
        )  # fmt: skip
        vehicle = db.session.get(Vehicle, ids["big"])
        trip = trips.create_trip(vehicle, leg, coordinator_user, {ids["requests"][0]: 20})
        db.session.commit()
        trip_id, reference = trip.id, trip.loads[0].request.reference

    def move_to(day):
        arrives = (day + timedelta(days=1)).isoformat()
        return edit_trip(coordinator, trip_id, departs_on=day.isoformat(), arrives_on=arrives)

    refused = move_to(DAY - timedelta(days=2))
    assert refused.status_code == 200
    page = refused.get_data(as_text=True)
    assert f"申请 {reference} 的出发日期为 {DAY.isoformat()} 至" in page
    with app.app_context():
        assert trips.local_date(db.session.get(Trip, trip_id).departs_at) == DAY
    # The last day of the window is still a day it may leave on.
    assert move_to(DAY + timedelta(days=1)).status_code == 302


def test_connecting_a_feeder_renumbers_the_legs_it_feeds(app, people, three_employers):
    """A coach planned onward from a train is leg 2; once the train itself is connected
    from an earlier coach (both unseated), the train is leg 3's feeder, and the onward coach
    must become leg 3 (it stayed 2: its seats would have been counted as the train's)."""
    ids = three_employers
    with app.app_context():
        actor = db.session.get(scenario.User, people.coordinator_id)
        zone = trips.health.local_zone()
        start = trips.datetime.combine(DAY, trips.datetime.min.time(), zone)

        def leg(hours: int, connects_from_id: int | None = None) -> trips.Leg:
            return trips.Leg(
                "500235", "云阳", None, "370100", "济南", None,
                start + timedelta(hours=hours), start + timedelta(hours=hours + 2),
                connects_from_id=connects_from_id,
            )  # fmt: skip

        big = db.session.get(Vehicle, ids["big"])
        small = db.session.get(Vehicle, ids["small"])
        first = trips.create_trip(small, leg(1), actor, {})
        train = trips.create_trip(big, leg(4), actor, {})
        onward = trips.create_trip(small, leg(7, train.id), actor, {})
        assert (train.leg, onward.leg) == (1, 2)
        trips.update_trip(train.id, leg(4, first.id), (None, None), actor)
        db.session.commit()
        assert db.session.get(Trip, train.id).leg == 2
        assert db.session.get(Trip, onward.id).leg == 3
        # And back: a first leg again.
        trips.update_trip(train.id, leg(4), (None, None), actor)
        db.session.commit()
        assert (db.session.get(Trip, train.id).leg, db.session.get(Trip, onward.id).leg) == (1, 2)
        # An onward leg that has given seats keeps its number: the change is refused.
        entry = db.session.scalar(select(RosterEntry))
        db.session.add(
            SeatAssignment(
                trip_id=onward.id, roster_entry_id=entry.id, seat_label="1A", travel_date=DAY, leg=2
            )
        )
        db.session.commit()
        with pytest.raises(trips.DomainError) as refused:
            trips.update_trip(train.id, leg(4, first.id), (None, None), actor)
        assert refused.value.code == "trip.connection_fixed_once_seated"
        db.session.rollback()
        assert db.session.get(Trip, onward.id).leg == 2


def test_each_change_to_a_locked_trips_time_or_place_is_texted_to_every_seated_worker(
    app, people, client_as, three_employers
):
    """A second change used the first one's message keys: nobody heard of it, and a reminder
    already sent was not written again for the new time."""
    trip_id = make_trip(app, people, three_employers)  # 07:00
    coordinator = client_as("coordinator")
    locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
    assert locked.status_code == 302
    seated = len(seats_of(app, trip_id))

    assert edit_trip(coordinator, trip_id, departs_time="07:15").status_code == 302
    first = sms_texts(app, "trip_changed")
    assert len(first) == seated
    assert all("07:15" in sms for sms in first)
    with app.app_context():  # the 24 h reminder of 07:15 went out already
        db.session.execute(
            update(Notification)
            .where(Notification.event.startswith("reminder.24h:"))
            .values(status="sent")
        )
        db.session.commit()

    changed = edit_trip(coordinator, trip_id, departs_time="06:00", origin_point="云阳县客运中心")
    assert changed.status_code == 302
    texts = sms_texts(app, "trip_changed")
    assert len(texts) == 2 * seated
    assert all("06:00" in sms and "云阳县客运中心" in sms for sms in texts[seated:])

    with app.app_context():
        departs = db.session.get(Trip, trip_id).departs_at
        waiting = db.session.scalars(
            select(Notification).where(
                Notification.template == "departure_reminder", Notification.status == "pending"
            )
        ).all()
        assert sorted(row.send_at for row in waiting) == sorted(
            departs - timedelta(hours=hours) for hours in (24, 2) for _ in range(seated)
        )
    reminders = sms_texts(app, "departure_reminder", status="pending")
    assert all("06:00" in sms and "云阳县客运中心" in sms for sms in reminders)


def test_a_seat_sms_leaves_the_driver_out_when_the_trip_has_no_number_to_call(
    app, people, client_as, three_employers
):
    """It said "司机 。" / "Driver ." with neither a driver nor an escort on the trip."""
    trip_id = make_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
    assert locked.status_code == 302
    chinese, english = sms_texts(app, "seat_given"), sms_texts(app, "seat_given", "en")
    assert len(chinese) == len(english) == len(seats_of(app, trip_id))
    for sms in chinese:
        assert "司机" not in sms
        assert re.search(r"座位\S+。详情：http", sms), sms
    for sms in english:
        assert "Driver" not in sms
        assert re.search(r"seat \S+\. Details: http", sms), sms

    with app.app_context():  # with a number, the driver part says it
        row = db.session.scalar(select(Notification).where(Notification.template == "seat_given"))
        row.context = {**row.context, "driver_phone": "+8613900001111"}
        db.session.commit()
    assert "司机 +8613900001111。" in sms_texts(app, "seat_given")[0]
    assert "Driver +8613900001111." in sms_texts(app, "seat_given", "en")[0]


@pytest.fixture
def train_and_coach(app, people, issuer_key) -> dict:
    """A train (leg 1, 06:00 to 20:00 on DAY) with 7 seated workers, and the coach that takes
    them on from the station at 21:00 (leg 2), its 7 seats given too. Returns ids."""
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        request = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, issuer_key, DAY, {"东村": 7}
        )
        zone = trips.health.local_zone()
        midnight = trips.datetime.combine(DAY, trips.datetime.min.time(), zone)
        rail = trips.Leg(
            "500100",
            "重庆西站",
            None,
            "370100",
            "济南站",
            None,
            midnight + timedelta(hours=6),
            midnight + timedelta(hours=20),
            50,
            0,
            True,
        )
        train = scenario.vehicle("K4016", "train-hard-seat-118", 1, first_carriage=3, kind="train")
        train_trip = trips.create_trip(train, rail, coordinator, {request.id: 7})
        road = trips.Leg(
            "370100",
            "济南站北广场",
            None,
            "370100",
            "甲建筑项目部",
            None,
            midnight + timedelta(hours=21),
            midnight + timedelta(hours=23),
            50,
            2,
            False,
            connects_from_id=train_trip.id,
        )
        coach_trip = trips.create_trip(
            scenario.vehicle("鲁A10000"), road, coordinator, {request.id: 7}
        )
        assert trips.allocate_seats(train_trip.id, coordinator).seated == 7
        assert trips.allocate_seats(coach_trip.id, coordinator).seated == 7
        db.session.commit()
        return {
            "train": train_trip.id,
            "coach": coach_trip.id,
            "coach_reference": coach_trip.reference,
            "request": request.id,
        }


def test_a_train_seat_is_texted_as_the_ticket_prints_it(app, client_as, train_and_coach):
    """A train seat shows as "03车 012号": the seat SMS said "K4016 03车 012号号座"."""
    coordinator = client_as("coordinator")
    train = train_and_coach["train"]
    locked = submit(coordinator, f"/trips/{train}/lock", form_url=f"/trips/{train}")
    assert locked.status_code == 302
    given = sms_texts(app, "seat_given")
    reminders = sms_texts(app, "departure_reminder", status="pending")
    assert len(given) == 7
    assert len(reminders) == 14
    for sms in given + reminders:
        assert re.search(r"座位03车 \d{3}号。", sms), sms
        assert "号号" not in sms
    assert all("K4016 座位03车" in sms for sms in given)


def train_form(**changes) -> dict:
    """The train's edit form as the page shows it, with ``changes``."""
    return (
        leg_form(
            origin_region_code="500100",
            origin_point="重庆西站",
            origin_address="",
            destination_point="济南站",
            destination_address="",
            arrives_on=DAY.isoformat(),
            departs_time="06:00",
            arrives_time="20:00",
            max_load_percent="50",
            alternate_seats="y",
        )
        | changes
    )


def coach_form(train_id: int, **changes) -> dict:
    """The connecting coach's edit form as the page shows it, with ``changes``."""
    return (
        leg_form(
            origin_region_code="370100",
            origin_point="济南站北广场",
            origin_address="",
            destination_point="甲建筑项目部",
            destination_address="",
            arrives_on=DAY.isoformat(),
            departs_time="21:00",
            arrives_time="23:00",
            max_load_percent="50",
            isolation_rows="2",
            connects_from_id=str(train_id),
        )
        | changes
    )


def field_errors(html: str, name: str) -> list[str]:
    """The messages shown next to a form field."""
    block = re.search(rf'<div class="field[^"]*">\s*<label for="{name}".*?</div>', html, re.S)
    return re.findall(r'<p class="error" role="alert">(.*?)</p>', block.group(0), re.S)


def test_a_seated_connecting_legs_connection_cannot_change(app, client_as, train_and_coach):
    """The coach's seven workers sit on it as the train's onward leg (their seats are leg 2):
    turning it into a first leg, whose workers nobody checked, is refused next to the field,
    and nothing changes; without the change the same form saves."""
    ids = train_and_coach
    coordinator = client_as("coordinator")
    url = f"/trips/{ids['coach']}/edit"
    refused = submit(coordinator, url, coach_form(ids["train"], connects_from_id="0"))
    assert refused.status_code == 200
    html = refused.get_data(as_text=True)
    assert field_errors(html, "connects_from_id") == [
        said(app, "trip.connection_fixed_once_seated")
    ]
    with app.app_context():
        coach = db.session.get(Trip, ids["coach"])
        assert (coach.connects_from_id, coach.leg) == (ids["train"], 2)
        assert trips._rides_on(db.session.get(Trip, ids["train"])) == {
            a.roster_entry_id for a in trips.assignments(ids["coach"])
        }
    saved = submit(coordinator, url, coach_form(ids["train"], escort_name="王干事"))
    assert saved.status_code == 302
    with app.app_context():
        coach = db.session.get(Trip, ids["coach"])
        assert (coach.connects_from_id, coach.leg, coach.escort_name) == (ids["train"], 2, "王干事")


def test_a_train_cannot_arrive_after_its_onward_coaches_leave(app, client_as, train_and_coach):
    """The coach leaves the station at 21:00: the train's arrival moved to 23:30 is refused,
    naming the coach; 20:45 is saved."""
    ids = train_and_coach
    coordinator = client_as("coordinator")
    url = f"/trips/{ids['train']}/edit"
    refused = submit(coordinator, url, train_form(arrives_time="23:30"))
    assert refused.status_code == 200
    html = refused.get_data(as_text=True)
    with app.test_request_context():
        expected = str(MESSAGES["trip.onward_departs_before_arrival"]) % {
            "trips": ids["coach_reference"]
        }
    assert re.findall(r'<p class="error form-error" role="alert">(.*?)</p>', html) == [expected]
    with app.app_context():
        train = db.session.get(Trip, ids["train"])
        assert train.arrives_at.astimezone(trips.health.local_zone()).hour == 20
    saved = submit(coordinator, url, train_form(arrives_time="20:45"))
    assert saved.status_code == 302
    with app.app_context():
        train = db.session.get(Trip, ids["train"])
        assert train.arrives_at.astimezone(trips.health.local_zone()).minute == 45


def test_a_seat_is_typed_as_the_screen_shows_it(app, people, client_as, train_and_coach):
    """The seat field takes a seat as the page prints it ("03车 005号"), with or without the
    carriage's leading zero, in full-width characters, lower case, between spaces; a seat the
    vehicle does not have is still refused as such."""
    ids = train_and_coach
    coordinator = client_as("coordinator")

    def move(trip_id: int, entry_id: int, typed: str):
        return submit(
            coordinator,
            f"/trips/{trip_id}/seats/move",
            {
                "seats_version": seat_version(coordinator, trip_id),
                "entry_id": entry_id,
                "to_seat": typed,
            },
            form_url=f"/trips/{trip_id}/seats",
        )

    def free_seat(trip_id: int, entry_id: int):
        """A seat this worker may take by hand, other than their own."""
        with app.app_context():
            trip = db.session.get(Trip, trip_id)
            existing = seats_of(app, trip_id)
            seat_map = trip.vehicle.seat_map
            return next(
                seat
                for seat in seat_map.seats
                if seat.label not in existing.values()
                and allocation.check_move(
                    seat_map, trip.policy, trip.all_blocked_seats, existing, entry_id, seat.label
                )
                is None
            )

    train, coach = ids["train"], ids["coach"]
    entry_id = sorted(seats_of(app, train))[0]
    variants = [
        lambda seat: seat.display,  # 03车 005号
        lambda seat: f"0{seat.carriage}-{seat.local}",  # 03-005
        lambda seat: f"  {seat.carriage}-{int(seat.local)} ",  # 3-5
        lambda seat: seat.display.translate(FULL_WIDTH),  # ０３车 ００５号
    ]
    for typed_as in variants:
        seat = free_seat(train, entry_id)
        moved = move(train, entry_id, typed_as(seat))
        assert moved.status_code == 302, typed_as(seat)
        assert seats_of(app, train)[entry_id] == seat.label
    coach_entry = sorted(seats_of(app, coach))[0]
    seat = free_seat(coach, coach_entry)
    assert move(coach, coach_entry, f" {seat.label.lower()} ").status_code == 302
    assert seats_of(app, coach)[coach_entry] == seat.label

    before = seats_of(app, train)
    for nowhere in ("03车 999号", "05-001", "3A", ""):
        refused = move(train, entry_id, nowhere)
        assert refused.status_code == 409, nowhere
        assert said(app, "seat.no_such_seat") in refused.get_data(as_text=True)
    assert seats_of(app, train) == before


FULL_WIDTH = str.maketrans(
    "0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "０１２３４５６７８９－ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ",
)


def test_a_count_that_is_not_a_whole_number_is_marked_in_the_plan_kept_as_edited(
    app, client_as, three_employers
):
    """A count the plan cannot read (7², which str.isdigit took and int refused: a 500;
    -1, abc, 7.0, nothing) keeps the plan on the page with every edit as typed, and the
    message sits next to that cell, naming its vehicle and request. Nothing is created."""
    ids = three_employers
    coordinator = client_as("coordinator")
    page = plan_page(coordinator, ids["requests"], [ids["big"]])
    inputs = plan_inputs(page.get_data(as_text=True))
    first, second, third = sorted(inputs)
    with app.app_context():
        vehicle = db.session.get(Vehicle, ids["big"]).identifier
        reference = db.session.get(TransportRequest, int(first.split("-")[2])).reference
    for typed in ("7²", "-1", "abc", "7.0", " "):
        edited = {**inputs, first: typed, second: "5"}
        answer = submit(
            coordinator,
            "/trips/plan",
            {
                **leg_form(),
                "requests": [str(r) for r in ids["requests"]],
                "vehicles": [str(ids["big"])],
                **edited,
                "apply": "1",
            },
        )
        assert answer.status_code == 200, typed
        html = answer.get_data(as_text=True)
        cells = dict(re.findall(r'name="(load-\d+-\d+)"[^>]*value="([^"]*)"', html))
        assert cells == edited
        with app.test_request_context():
            expected = gettext(
                "%(vehicle)s, %(ref)s: the number of workers must be a whole number, 0 or more.",
                vehicle=vehicle,
                ref=reference,
            )
        cell = re.search(rf'<td>\s*<input[^>]*name="{first}".*?</td>', html, re.S).group(0)
        assert 'aria-invalid="true"' in cell
        assert re.findall(r'<p class="error" role="alert">(.*?)</p>', cell) == [expected]
        assert f'name="{third}"' in html
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Trip)) == 0


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_workers_planned_on_a_trip_no_longer_wait_for_a_plan(database, request, tmp_path):
    """A request's 20 workers planned on a coach ("only create the trips": no seat yet) no
    longer wait: the plan page says 0 waiting, and the same plan applied again on another
    coach (a second coordinator's, made before the first was applied) is refused, saying
    why; one trip, once. Taking seats on that coach does not make them wait again."""
    app = request.getfixturevalue("app" if database == "sqlite" else "pg_app")
    people = request.getfixturevalue("people" if database == "sqlite" else "pg_people")
    with app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        transport = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, key, DAY, {"东村": 20}
        )
        coaches = [scenario.vehicle("渝F12345").id, scenario.vehicle("渝F54321").id]
        db.session.commit()
        request_id, reference = transport.id, transport.reference
    coordinator = app.test_client()
    sign_in(coordinator, People.EMAILS["coordinator"])

    def waiting_shown() -> str:
        """What the plan page's list of requests says of this one's waiting workers."""
        page = coordinator.get("/trips/plan").get_data(as_text=True)
        return re.search(rf"{reference} · [^<]* · ([^·<]*)</label>", page).group(1).strip()

    def waiting(n: int) -> str:
        with app.test_request_context():
            return gettext("%(num)s waiting", num=n)

    assert waiting_shown() == waiting(20)
    plans = []
    for coach in coaches:  # two coordinators make their plans before either applies
        page = plan_page(coordinator, [request_id], [coach]).get_data(as_text=True)
        inputs = plan_inputs(page)
        assert sum(int(v) for v in inputs.values()) == 20
        plans.append(
            {**leg_form(), "requests": [str(request_id)], "vehicles": [str(coach)], **inputs}
        )
    first = submit(coordinator, "/trips/plan", {**plans[0], "apply": "1"})
    assert first.status_code == 302
    assert waiting_shown() == waiting(0)

    second = submit(coordinator, "/trips/plan", {**plans[1], "apply": "1"})
    assert second.status_code == 200
    with app.test_request_context():
        why = gettext(
            "%(ref)s: %(planned)s planned, but only %(limit)s workers wait: the others are "
            "already planned on trips that have not given them a seat yet.",
            ref=reference,
            planned=20,
            limit=0,
        )
    assert why in second.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Trip)) == 1
        trip_id = db.session.scalar(select(Trip.id))

    # Seats given to all but two (their seats taken back): those two wait for this coach.
    submit(coordinator, f"/trips/{trip_id}/allocate", form_url=f"/trips/{trip_id}")
    with app.app_context():
        actor = db.session.get(User, people.coordinator_id)
        for entry_id in sorted(seats_of(app, trip_id))[:2]:
            trips.unseat(trip_id, entry_id, None, actor)
        db.session.commit()
    assert waiting_shown() == waiting(0)


def test_a_seat_sms_names_the_escort_when_the_number_to_call_is_the_escorts(
    app, people, client_as, three_employers
):
    """With no driver on the trip, the seat SMS gave the escort's phone as the driver's
    (司机 / Driver)."""
    trip_id = make_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    escorted = edit_trip(
        coordinator,
        trip_id,
        departs_time="07:00",
        escort_name="王干部",
        escort_phone="13700002222",
    )
    assert escorted.status_code == 302
    locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
    assert locked.status_code == 302
    chinese, english = sms_texts(app, "seat_given"), sms_texts(app, "seat_given", "en")
    assert len(chinese) == len(english) == len(seats_of(app, trip_id))
    for sms in chinese:
        assert "随车人员 +8613700002222。" in sms
        assert "司机" not in sms
    for sms in english:
        assert "Escort +8613700002222." in sms
        assert "Driver" not in sms


def test_workers_on_a_locked_trip_get_the_new_number_when_its_driver_changes(
    app, people, client_as, three_employers
):
    """A new driver (or escort) on a locked trip told no one, though the seat SMS had given
    the number to call. Each save texts every worker once, whatever changed in it."""
    trip_id = make_trip(app, people, three_employers)  # 07:00, no driver, no escort
    with app.app_context():
        other = scenario.driver("陈师傅", "+8613900002222").id
        db.session.commit()
    coordinator = client_as("coordinator")
    same_place = {"departs_time": "07:00", "origin_address": ""}
    locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
    assert locked.status_code == 302
    seated = len(seats_of(app, trip_id))

    driven = edit_trip(coordinator, trip_id, **same_place, drivers=[three_employers["driver"]])
    assert driven.status_code == 302
    texts = sms_texts(app, "trip_changed")
    assert len(texts) == seated
    assert all("司机 +8613900001111。" in sms for sms in texts)

    # Time and driver in one save: one message each, with both.
    both = edit_trip(coordinator, trip_id, departs_time="07:30", origin_address="", drivers=[other])
    assert both.status_code == 302
    texts = sms_texts(app, "trip_changed", "en")
    assert len(texts) == 2 * seated
    assert all("07:30" in sms and "Driver +8613900002222." in sms for sms in texts[seated:])

    # An escort beside the driver changes no number the workers were given: no message.
    escorted = edit_trip(
        coordinator,
        trip_id,
        departs_time="07:30",
        origin_address="",
        drivers=[other],
        escort_name="王干部",
        escort_phone="13700002222",
    )
    assert escorted.status_code == 302
    assert len(sms_texts(app, "trip_changed")) == 2 * seated

    # Without a driver, the escort is the one to call.
    alone = edit_trip(
        coordinator,
        trip_id,
        departs_time="07:30",
        origin_address="",
        escort_name="王干部",
        escort_phone="13700002222",
    )
    assert alone.status_code == 302
    texts = sms_texts(app, "trip_changed")
    assert len(texts) == 3 * seated
    assert all("随车人员 +8613700002222。" in sms for sms in texts[2 * seated :])


def pending_reminders(app, entry_id: int | None = None) -> int:
    with app.app_context():
        query = select(func.count()).where(
            Notification.template == "departure_reminder", Notification.status == "pending"
        )
        if entry_id is not None:
            query = query.where(Notification.event.contains(f":e{entry_id}:"))
        return db.session.scalar(query)


def sms_events(app, template: str) -> list[str]:
    with app.app_context():
        return db.session.scalars(
            select(Notification.event)
            .where(Notification.template == template, Notification.channel == Channel.SMS)
            .order_by(Notification.id)
        ).all()


def test_a_worker_whose_seat_on_a_locked_trip_is_taken_back_is_texted(
    app, people, client_as, three_employers
):
    """Taking back a seat on a locked trip took back the worker's reminders and told them
    nothing: they had the seat SMS, and would have gone to the coach."""
    trip_id = make_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
    assert locked.status_code == 302
    before = seats_of(app, trip_id)
    worker = sorted(before)[0]
    url = f"/trips/{trip_id}/seats"
    taken_back = submit(
        coordinator,
        f"{url}/unseat",
        {"seats_version": seat_version(coordinator, trip_id), "entry_id": worker},
        form_url=url,
    )
    assert taken_back.status_code == 302

    assert [event.split(":")[2] for event in sms_events(app, "seat_withdrawn")] == [f"e{worker}"]
    with app.app_context():
        told = db.session.get(RosterEntry, worker)
        seat = db.session.get(Trip, trip_id).vehicle.seat_map.seat(before[worker]).display
        name = told.worker.name
    (chinese,) = sms_texts(app, "seat_withdrawn")
    (english,) = sms_texts(app, "seat_withdrawn", "en")
    assert f"{name}：" in chinese
    assert f"渝F12345 座位{seat}已收回" in chinese
    assert "请勿前往云阳汽车站" in chinese
    assert f"seat {seat} on 渝F12345" in english
    assert "is withdrawn" in english
    assert pending_reminders(app, worker) == 0
    assert pending_reminders(app) == 2 * (len(before) - 1)


def test_cancelling_a_feeding_train_texts_the_workers_of_its_locked_onward_coach(
    app, people, issuer_key, client_as
):
    """K4016 (open) feeds a coach already locked: cancelling the train freed the coach seats
    and took back their reminders, but only the employers heard of it. The coach's page says
    its feeder is cancelled: nobody can get a seat on it as it is."""
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        request = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, issuer_key, DAY, {"东村": 5}
        )
        train = scenario.vehicle("K4016", "train-hard-seat-118", 2, first_carriage=3, kind="train")
        rail = scenario.yunyang_to_jinan(DAY)
        leg1 = trips.create_trip(train, rail, coordinator, {request.id: 5})
        onward = trips.Leg(
            "370100",
            "济南站北广场",
            None,
            "370100",
            request.site_name,
            request.site_address,
            rail.arrives_at + timedelta(hours=1),
            rail.arrives_at + timedelta(hours=2),
            connects_from_id=leg1.id,
        )
        coach = trips.create_trip(
            scenario.vehicle("鲁A10000"), onward, coordinator, {request.id: 5}
        )
        assert trips.allocate_seats(leg1.id, coordinator).seated == 5
        assert trips.allocate_seats(coach.id, coordinator).seated == 5
        db.session.commit()
        train_id, coach_id = leg1.id, coach.id
    desk = client_as("coordinator")
    locked = submit(desk, f"/trips/{coach_id}/lock", form_url=f"/trips/{coach_id}")
    assert locked.status_code == 302
    assert pending_reminders(app) == 10

    cancelled = submit(
        desk, f"/trips/{train_id}/cancel", {"reason": "线路停运"}, form_url=f"/trips/{train_id}"
    )
    assert cancelled.status_code == 302
    events = sms_events(app, "seat_withdrawn")
    assert len(events) == 5
    assert all(event.startswith(f"seat.withdrawn:t{coach_id}:") for event in events)
    assert len({event.split(":")[2] for event in events}) == 5
    assert all(
        "鲁A10000" in sms and "请勿前往济南站北广场" in sms
        for sms in sms_texts(app, "seat_withdrawn")
    )
    assert sms_events(app, "trip_cancelled") == []  # the train's seats were never told
    assert pending_reminders(app) == 0
    with app.app_context():
        assert db.session.scalar(
            select(func.count()).where(Notification.template == "trip_cancelled_employer")
        )

    page = desk.get(f"/trips/{coach_id}").get_data(as_text=True)
    with app.test_request_context():
        warning = gettext(
            "The trip this one connects from is cancelled: nobody can get a seat on it. "
            "Connect it from another trip, or cancel it."
        )
    assert warning in page


def test_a_worker_withdrawn_by_the_employer_from_a_locked_trip_is_texted(
    app, people, client_as, three_employers
):
    """The seat SMS said where to go: a withdrawal took the seat and its reminders back in
    silence."""
    trip_id = make_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    locked = submit(coordinator, f"/trips/{trip_id}/lock", form_url=f"/trips/{trip_id}")
    assert locked.status_code == 302
    request_id = three_employers["requests"][0]
    with app.app_context():
        worker = db.session.scalar(
            select(RosterEntry.id)
            .join(SeatAssignment)
            .where(SeatAssignment.trip_id == trip_id, RosterEntry.request_id == request_id)
            .limit(1)
        )
    employer = client_as("employer")
    withdraw = f"/requests/{request_id}/entries/{worker}/withdraw"
    assert submit(employer, withdraw, form_url=f"/requests/{request_id}").status_code == 302
    assert [event.split(":")[2] for event in sms_events(app, "seat_withdrawn")] == [f"e{worker}"]
    assert pending_reminders(app, worker) == 0
