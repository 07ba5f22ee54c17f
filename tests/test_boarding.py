"""At the vehicle door and at the site gate: boarding verdicts, no-shows, departure only with
everyone accounted for, arrival and the employer's handover completing a request."""

from __future__ import annotations

import re
from datetime import timedelta

from flask_babel import gettext
from sqlalchemy import func, select

from app.core.clock import utcnow
from app.core.identity import id_number_check_character
from app.core.models import AuditEntry
from app.demand.models import EntryStatus, RequestStatus, RosterEntry, TransportRequest
from app.extensions import db
from app.health import services as health
from app.health.models import HealthIssuer
from app.notify.models import Notification
from app.trips import services as trips
from app.trips.forms import BOARDING_MESSAGES, MESSAGES
from app.trips.models import Handover, SeatAssignment, Trip, TripStatus
from tests import scenario
from tests.conftest import statements_run, submit
from tests.test_trips import make_trip, three_employers  # noqa: F401 - fixtures


def text(app, message, **values) -> str:
    """A message as the page shows it (Chinese, HTML-escaped apostrophes aside)."""
    with app.test_request_context():
        return str(message) % values if values else str(message)


def locked_trip(app, people, ids) -> int:
    trip_id = make_trip(app, people, ids)
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        trips.lock_manifest(trip_id, coordinator)
        db.session.commit()
    return trip_id


def code_of(app, trip_id: int, n: int = 0) -> tuple[int, str]:
    with app.app_context():
        seat = db.session.scalars(
            select(SeatAssignment)
            .where(SeatAssignment.trip_id == trip_id)
            .order_by(SeatAssignment.id)
        ).all()[n]
        return seat.roster_entry_id, seat.entry.booking_code


def scan(client, trip_id: int, code: str, temperature: str = "36.6"):
    url = f"/trips/{trip_id}/boarding"
    return submit(client, url, {"code": code, "temperature": temperature})


def test_boarding_verdicts(app, people, client_as, three_employers):  # noqa: F811
    trip_id = locked_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    entry_id, code = code_of(app, trip_id)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{10}", code)

    # Typed in lower case with a dash: boarded, and the seat is said.
    first = scan(coordinator, trip_id, f"{code[:5].lower()}-{code[5:]}")
    html = first.get_data(as_text=True)
    with app.app_context():
        seat = db.session.scalar(
            select(SeatAssignment).where(SeatAssignment.roster_entry_id == entry_id)
        )
        shown = seat.trip.vehicle.seat_map.seat(seat.seat_label).display
        assert seat.boarding == "boarded"
        assert str(seat.temperature) == "36.6"
        assert db.session.get(RosterEntry, entry_id).status == EntryStatus.BOARDED
    assert text(app, BOARDING_MESSAGES["boarded"], seat=shown) in html

    # The same scan again: said so, nothing recorded twice.
    again = scan(coordinator, trip_id, code).get_data(as_text=True)
    assert text(app, BOARDING_MESSAGES["already_boarded"], seat=shown) in again
    with app.app_context():
        boarded = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "boarding.boarded")
        ).all()
        assert len(boarded) == 1

    # 37,5 with a comma is a reading: fever, not boarded, employer and coordinator told.
    fever_entry, fever_code = code_of(app, trip_id, 1)
    fever = scan(coordinator, trip_id, fever_code, "37,5").get_data(as_text=True)
    assert text(app, BOARDING_MESSAGES["fever"]) in fever
    with app.app_context():
        entry = db.session.get(RosterEntry, fever_entry)
        assert (entry.status, entry.block_reason) == (EntryStatus.NO_SHOW, "fever")
        told = db.session.scalars(
            select(Notification.user_id).where(Notification.template == "worker_fever")
        ).all()
        assert people.coordinator_id in told
        assert people.employer_a_id in told or people.employer_b_id in told

    # Unknown code, a temperature out of range: clear answers, nothing recorded.
    unknown = scan(coordinator, trip_id, "ZZZZZZZZZZ").get_data(as_text=True)
    assert text(app, BOARDING_MESSAGES["unknown_code"]) in unknown
    wrong_shape = scan(coordinator, trip_id, "12345").get_data(as_text=True)
    assert text(app, BOARDING_MESSAGES["bad_code"]) in wrong_shape
    out_of_range = scan(coordinator, trip_id, code_of(app, trip_id, 2)[1], "33")
    assert out_of_range.status_code == 422
    with app.app_context():
        assert (
            db.session.scalar(
                select(SeatAssignment.boarding).where(
                    SeatAssignment.roster_entry_id == code_of(app, trip_id, 2)[0]
                )
            )
            is None
        )


def test_wrong_vehicle_says_which_trip_is_theirs(app, people, client_as, three_employers):  # noqa: F811
    first = locked_trip(app, people, three_employers)
    entry_id, code = code_of(app, first)
    with app.app_context():
        coordinator = db.session.get(scenario.User, people.coordinator_id)
        trips.unseat(first, entry_id, None, coordinator)
        request_id = db.session.get(RosterEntry, entry_id).request_id
        trip = db.session.get(Trip, first)
        leg = trips.Leg(
            "500235",
            "云阳汽车站",
            None,
            "370100",
            "济南",
            None,
            trip.departs_at + trips.timedelta(hours=1),
            trip.arrives_at + trips.timedelta(hours=1),
        )
        second = trips.create_trip(
            db.session.get(scenario.Vehicle, three_employers["small"]),
            leg,
            coordinator,
            {request_id: 1},
        )
        trips.allocate_seats(second.id, coordinator)
        db.session.commit()
        reference = second.reference
    html = scan(client_as("coordinator"), first, code).get_data(as_text=True)
    assert reference in html
    assert "渝F54321" in html


def test_departure_needs_everyone_accounted_for_then_handover_completes(
    app,
    people,
    client_as,
    three_employers,  # noqa: F811
):
    trip_id = locked_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    with app.app_context():
        seats = db.session.scalars(
            select(SeatAssignment).where(SeatAssignment.trip_id == trip_id)
        ).all()
        codes = [(s.roster_entry_id, s.entry.booking_code, s.entry.request_id) for s in seats]
    absent = codes[-1]
    for _entry_id, code, _request in codes[:-1]:
        scan(coordinator, trip_id, code)
    refused = submit(coordinator, f"/trips/{trip_id}/depart", form_url=f"/trips/{trip_id}/boarding")
    assert refused.status_code == 302
    with app.app_context():
        assert db.session.get(Trip, trip_id).status == TripStatus.LOCKED
    page = coordinator.get(f"/trips/{trip_id}/boarding").get_data(as_text=True)
    assert "工人" in page  # the one not yet here is listed
    submit(
        coordinator,
        f"/trips/{trip_id}/boarding/{absent[0]}/no-show",
        form_url=f"/trips/{trip_id}/boarding",
    )
    departed = submit(
        coordinator, f"/trips/{trip_id}/depart", form_url=f"/trips/{trip_id}/boarding"
    )
    assert departed.status_code == 302
    arrived = submit(coordinator, f"/trips/{trip_id}/arrive", form_url=f"/trips/{trip_id}")
    assert arrived.status_code == 302
    with app.app_context():
        trip = db.session.get(Trip, trip_id)
        assert trip.status == TripStatus.ARRIVED
        assert db.session.scalars(
            select(Notification).where(Notification.template == "trip_arrived")
        ).first()

    # Employer A's first request: all of its workers boarded here.
    employer = client_as("employer")
    request_id = three_employers["requests"][0]
    with app.app_context():
        expected = sum(1 for _e, _c, r in codes[:-1] if r == request_id)
    url = f"/requests/{request_id}/handover/{trip_id}"
    short = submit(employer, url, {"received": str(expected - 1), "representative_name": "赵经理"})
    assert short.status_code == 200
    assert text(app, MESSAGES["handover.note_needed"]) in short.get_data(as_text=True)
    done = submit(employer, url, {"received": str(expected), "representative_name": "赵经理"})
    assert done.status_code == 302
    twice = submit(employer, url, {"received": str(expected), "representative_name": "赵经理"})
    assert text(app, MESSAGES["handover.done"]) in twice.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Handover)) == 1
        request = db.session.get(TransportRequest, request_id)
        assert request.status == RequestStatus.COMPLETED
        statuses = {e.status for e in request.entries}
        assert statuses <= {EntryStatus.ARRIVED, EntryStatus.NO_SHOW}
    # Another organization's request: not found, like a missing one.
    other = client_as("employer_b").get(url)
    assert other.status_code == 404


def test_a_certificate_that_no_longer_clears_stops_the_worker_at_the_door(
    app,
    people,
    client_as,
    three_employers,  # noqa: F811
):
    """The issuer is taken off the trust list after the seats were given: the pass is judged
    again at the door, and the worker does not board."""
    trip_id = locked_trip(app, people, three_employers)
    entry_id, code = code_of(app, trip_id)
    with app.app_context():
        admin = db.session.get(scenario.User, people.admin_id)
        issuer = db.session.scalar(select(HealthIssuer))
        health.revoke_issuer(issuer, "密钥泄露", admin)
        db.session.commit()
    html = scan(client_as("coordinator"), trip_id, code).get_data(as_text=True)
    assert text(app, BOARDING_MESSAGES["health_blocked"]) in html
    with app.app_context():
        seat = db.session.scalar(
            select(SeatAssignment).where(SeatAssignment.roster_entry_id == entry_id)
        )
        assert seat.boarding is None
        assert db.session.get(RosterEntry, entry_id).status == EntryStatus.SEATED


def test_the_periodic_check_warns_the_employer_of_seated_workers_ahead(
    app,
    people,
    three_employers,  # noqa: F811
):
    """The issuer is taken off the trust list after the seats were given: the periodic check
    (beat, every few hours) keeps the seats, since a new pass may still come and the door
    judges again, but each employer hears now which of their seated workers would be refused,
    once (a second run tells nothing new)."""
    trip_id = locked_trip(app, people, three_employers)
    with app.app_context():
        admin = db.session.get(scenario.User, people.admin_id)
        health.revoke_issuer(db.session.scalar(select(HealthIssuer)), "密钥泄露", admin)
        db.session.commit()
        seated = {a.roster_entry_id: a.entry.request_id for a in trips.assignments(trip_id, True)}
        warnings = select(Notification).where(
            Notification.template == "health_blocked", Notification.channel == "inapp"
        )
        before = {n.id for n in db.session.scalars(warnings)}  # those of the submissions
        totals = health.recheck_departing(utcnow(), timedelta(days=7))
        db.session.commit()
        assert totals["seated_failing"] == len(seated)
        statuses = db.session.scalars(
            select(RosterEntry.status).where(RosterEntry.id.in_(list(seated)))
        ).all()
        assert set(statuses) == {EntryStatus.SEATED}
        told = [n for n in db.session.scalars(warnings) if n.id not in before]
        by_request = {}
        for note in told:
            request_id = int(note.context["url"].rsplit("/", 1)[1])
            by_request[request_id] = sorted(w["name"] for w in note.context["workers"])
            assert {w["reasons"] for w in note.context["workers"]} == {"issuer_revoked"}
        expected = {}
        for entry_id, request_id in seated.items():
            expected.setdefault(request_id, []).append(db.session.get(RosterEntry, entry_id))
        assert by_request == {
            rid: sorted(e.worker.name for e in entries) for rid, entries in expected.items()
        }
        again = health.recheck_departing(utcnow(), timedelta(days=7))
        db.session.commit()
        assert again["seated_failing"] == len(seated)
        assert len(db.session.scalars(warnings).all()) == len(before) + len(told)


def test_a_seated_workers_new_id_number_is_judged_against_their_pass_at_once(
    app,
    people,
    client_as,
    three_employers,  # noqa: F811
):
    """An employer corrects a seated worker's ID number to one their pass was not issued for:
    the worker keeps the seat (the door judges), but the employer hears now that the pass no
    longer fits (before, nothing was said until the check 48 hours ahead)."""
    trip_id = locked_trip(app, people, three_employers)
    with app.app_context():
        seat = next(
            a
            for a in trips.assignments(trip_id, True)
            if a.entry.request.organization_id == people.organization_a_id
        )
        worker_id, name, entry_id = seat.entry.worker_id, seat.entry.worker.name, seat.entry.id
        told_before = db.session.scalar(select(func.max(Notification.id)))
    employer = client_as("employer")
    page = employer.get(f"/roster/{worker_id}/edit").get_data(as_text=True)
    fields = dict(re.findall(r'<input[^>]*name="(\w+)"[^>]*value="([^"]*)"', page))
    body = fields["id_number"][:16] + ("1" if fields["id_number"][16] != "1" else "3")
    corrected = body + id_number_check_character(body)
    response = submit(employer, f"/roster/{worker_id}/edit", {**fields, "id_number": corrected})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(RosterEntry, entry_id).status == EntryStatus.SEATED
        told = db.session.scalars(
            select(Notification.context).where(
                Notification.template == "health_blocked",
                Notification.channel == "inapp",
                Notification.id > told_before,
            )
        ).all()
    workers = [worker for context in told for worker in context["workers"]]
    assert workers == [{"name": name, "reasons": "wrong_id_number"}]


def test_boarding_and_seat_pages_cost_the_same_for_a_full_coach(
    app,
    people,
    client_as,
    three_employers,  # noqa: F811
):
    """Every scan re-renders the list of those not yet here: one statement per worker (their
    name, their employer) made boarding a full train slower with each scan."""
    trip_id = locked_trip(app, people, three_employers)
    coordinator = client_as("coordinator")

    def selects(url: str) -> int:
        with statements_run(app) as statements:
            page = coordinator.get(url)
        assert page.status_code == 200
        return len([s for s in statements if s.sql.startswith("SELECT")])

    with app.app_context():
        waiting = len(trips.assignments(trip_id))
    assert waiting >= 40
    # The session's user, the trip, its vehicle, its seats with workers and employers, counts.
    assert selects(f"/trips/{trip_id}/boarding") <= 10
    assert selects(f"/trips/{trip_id}/seats") <= 12


def test_a_trip_nobody_boarded_arrives_closed_and_says_no_handover_is_due(
    app,
    people,
    client_as,
    three_employers,  # noqa: F811
):
    """Everyone was marked as not showing up: the trip leaves empty, and on arrival it is
    closed with nothing to hand over. The page says so, not that the employers are asked to
    the handover (nobody is: no employer hears of an arrival)."""
    trip_id = locked_trip(app, people, three_employers)
    coordinator = client_as("coordinator")
    with app.app_context():
        seated = db.session.scalars(
            select(SeatAssignment.roster_entry_id).where(SeatAssignment.trip_id == trip_id)
        ).all()
    for entry_id in seated:
        submit(
            coordinator,
            f"/trips/{trip_id}/boarding/{entry_id}/no-show",
            form_url=f"/trips/{trip_id}/boarding",
        )
    submit(coordinator, f"/trips/{trip_id}/depart", form_url=f"/trips/{trip_id}")
    arrived = submit(
        coordinator, f"/trips/{trip_id}/arrive", form_url=f"/trips/{trip_id}", follow_redirects=True
    )
    html = arrived.get_data(as_text=True)
    with app.test_request_context():
        closed = gettext(
            "The trip has arrived and is closed: nobody boarded it, so nobody is handed over."
        )
        asked = gettext("The trip has arrived; the employers are asked to the handover.")
    assert closed in html
    assert asked not in html
    with app.app_context():
        assert db.session.get(Trip, trip_id).status == TripStatus.CLOSED
        arrivals = select(Notification).where(Notification.template == "trip_arrived")
        assert db.session.scalars(arrivals).first() is None
