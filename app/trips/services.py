"""Trips: planning approved demand onto vehicles, giving seats, moving them, locking the
manifest and cancelling. Services flush and never commit.

Seat safety lives in the database: unique (trip, seat), (trip, worker) and (worker, day, leg),
and every operation that changes a trip's seats first locks the trip row (``lock_trip``:
``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the request already holds the write lock,
see app/__init__.py) and then re-reads what it decides on. Locks are taken in one order —
trip, then its requests by id — so two operations never wait on each other in a circle.
"""

from __future__ import annotations

import hmac
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from itertools import groupby, islice
from operator import attrgetter

from flask import current_app
from flask_babel import force_locale, format_date, format_datetime, format_time
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import (
    ARRAY,
    Boolean,
    DateTime,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, contains_eager, joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from app.accounts.models import User
from app.accounts.services import organization_users, region_coordinators
from app.core.bulk import bulk_insert
from app.core.clock import utcnow
from app.core.errors import DomainError
from app.core.identity import normalize_identifier
from app.core.pii import vault
from app.core.services import record_audit, record_audits
from app.demand import services as demand
from app.demand.models import EntryStatus, RequestStatus, RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.fleet.models import Driver, Vehicle, sharing_seats
from app.health import services as health
from app.health.rules import evaluate_temperature
from app.notify.models import Channel
from app.notify.services import Outgoing, drop_pending, link, notify_many, notify_users
from app.trips import allocation
from app.trips.models import (
    RUNNING_STATUSES,
    SEATING_STATUSES,
    CancelledSeat,
    Handover,
    SeatAssignment,
    Trip,
    TripLoad,
    TripStatus,
    trip_drivers,
)

# Entries that may be planned onto a first leg: not yet seated, health not failed.
PLANNABLE = (EntryStatus.PENDING.value, EntryStatus.CLEARED.value)
REMINDER_HOURS = (24, 2)
TRIP_PAGE_SALT = "trip-page"
TRIP_PAGE_MAX_AGE = timedelta(days=60)


# --- locks and reads -----------------------------------------------------------------------


def lock_trip(trip_id: int) -> Trip:
    """The trip row, locked until the transaction ends, read afresh."""
    return _lock_trips([trip_id])[0]


def _lock_trips(trip_ids: Iterable[int]) -> list[Trip]:
    """These trip rows, locked in id order (so two callers never wait on each other in a
    circle), read afresh."""
    wanted = sorted(set(trip_ids))
    trips = list(
        db.session.scalars(
            select(Trip)
            .where(Trip.id.in_(wanted))
            .order_by(Trip.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    if len(trips) != len(wanted):
        raise DomainError("trip.missing")
    return trips


def _lock_requests(request_ids: Iterable[int]) -> list[TransportRequest]:
    return list(
        db.session.scalars(
            select(TransportRequest)
            .where(TransportRequest.id.in_(sorted(set(request_ids))))
            .order_by(TransportRequest.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def assignments(trip_id: int, with_workers: bool = False) -> list[SeatAssignment]:
    """The trip's seats, read afresh; ``with_workers`` loads their entries, workers and
    employers too (in the same query, however many seats)."""
    return _assignments_of([trip_id], with_workers)


def _assignments_of(
    trip_ids: list[int], with_workers: bool, entry_ids: Iterable[int] | None = None
) -> list[SeatAssignment]:
    query = select(SeatAssignment).where(SeatAssignment.trip_id.in_(trip_ids))
    if entry_ids is not None:
        query = query.where(SeatAssignment.roster_entry_id.in_(list(entry_ids)))
    if with_workers:
        # Joined, not selectin: every link is many-to-one and never null, so one query with
        # inner joins loads them all (four round trips and IN lists took twice as long).
        entry = joinedload(SeatAssignment.entry, innerjoin=True)
        query = query.options(
            entry.joinedload(RosterEntry.worker, innerjoin=True),
            entry.joinedload(RosterEntry.request, innerjoin=True).joinedload(
                TransportRequest.organization, innerjoin=True
            ),
        )
    return list(
        db.session.scalars(
            query.order_by(SeatAssignment.id).execution_options(populate_existing=True)
        )
    )


def local_date(moment: datetime):
    return moment.astimezone(health.local_zone()).date()


# --- trips ---------------------------------------------------------------------------------


@dataclass
class Leg:
    """Where and when a trip runs, and its policy: what the planner and the trip form set."""

    origin_region_code: str
    origin_point: str
    origin_address: str | None
    destination_region_code: str
    destination_point: str
    destination_address: str | None
    departs_at: datetime
    arrives_at: datetime
    max_load_percent: int = 100
    isolation_rows: int = 0
    alternate_seats: bool = False
    health_freshness_hours: int = 72
    connects_from_id: int | None = None

    @property
    def policy(self) -> allocation.Policy:
        return allocation.Policy.of_percent(
            self.max_load_percent, self.isolation_rows, self.alternate_seats
        )


def route_of(request: TransportRequest) -> dict[str, str | None]:
    """A leg's route fields for a request's workers: from their meeting point to the site."""
    return {
        "origin_region_code": request.origin_region_code,
        "origin_point": request.pickup_point,
        "origin_address": request.pickup_address,
        "destination_region_code": request.destination_region_code,
        "destination_point": request.site_name,
        "destination_address": request.site_address,
    }


def _check_leg(leg: Leg) -> Trip | None:
    if leg.arrives_at <= leg.departs_at:
        raise DomainError("trip.arrives_before_departure", "arrives_at")
    if leg.connects_from_id is None:
        return None
    feeder = db.session.get(Trip, leg.connects_from_id)
    if feeder is None or feeder.status == TripStatus.CANCELLED:
        raise DomainError("trip.feeder_missing", "connects_from_id")
    if leg.departs_at < feeder.arrives_at:
        raise DomainError("trip.departs_before_feeder_arrives", "departs_at")
    return feeder


def _check_onward(trip: Trip, leg: Leg) -> None:
    """The legs this trip feeds leave after it arrives (``_check_leg`` looks the other way)."""
    onward = db.session.scalars(
        select(Trip)
        .where(
            Trip.connects_from_id == trip.id,
            Trip.status != TripStatus.CANCELLED,
            Trip.departs_at < leg.arrives_at,
        )
        .order_by(Trip.departs_at, Trip.id)
    ).all()
    if onward:
        references = ", ".join(t.reference for t in onward)
        raise DomainError("trip.onward_departs_before_arrival", "arrives_at", trips=references)


def _vehicles_busy(
    vehicle_ids: list[int], start: datetime, end: datetime, except_trip: int | None = None
) -> bool:
    """Whether any of these vehicles runs another trip in this time, under this record or
    another of the same physical vehicle (a coach registered again by its new operator while
    its old trips still run; a train's carriages)."""
    values = {"vehicle_ids": vehicle_ids, "start": start, "end": end, "except_trip": except_trip}
    return db.session.scalar(_busy_query(except_trip is not None), values) is not None


@cache
def _busy_query(except_trip: bool) -> Select:
    """Built once: the join on the physical vehicle took a millisecond of Python a call to
    build and compile (a province's plans call it 2,350 times)."""
    booked = aliased(Vehicle)
    query = (
        select(Trip.id)
        .join(booked, Trip.vehicle_id == booked.id)
        .join(
            Vehicle,
            and_(
                Vehicle.id.in_(bindparam("vehicle_ids", expanding=True)),
                sharing_seats(
                    booked,
                    Vehicle.kind,
                    Vehicle.identifier,
                    Vehicle.first_carriage,
                    Vehicle.carriages,
                ),
            ),
        )
        .where(
            Trip.status.in_([s.value for s in RUNNING_STATUSES]),
            Trip.departs_at < bindparam("end"),
            Trip.arrives_at > bindparam("start"),
        )
    )
    if except_trip:
        query = query.where(Trip.id != bindparam("except_trip"))
    return query.limit(1)


def create_trip(vehicle: Vehicle, leg: Leg, actor: User, loads: dict[int, int]) -> Trip:
    """A trip for one vehicle; ``loads``: request id -> workers planned on it."""
    return create_trips(leg, actor, {vehicle: loads})[0]


def create_trips(leg: Leg, actor: User, loads: dict[Vehicle, dict[int, int]]) -> list[Trip]:
    """A trip on this leg for each vehicle, in vehicle id order; ``loads``: vehicle ->
    request id -> workers planned on it."""
    if not loads:
        return []
    vehicles = sorted(loads, key=lambda vehicle: vehicle.id)
    if not all(vehicle.active for vehicle in vehicles):
        raise DomainError("trip.vehicle_inactive", "vehicle_id")
    feeder = _check_leg(leg)
    # The vehicle rows are the locks that keep two plans from booking one coach twice (taken
    # in id order, so two plans never wait on each other in a circle).
    ids = [vehicle.id for vehicle in vehicles]
    db.session.scalars(
        select(Vehicle.id).where(Vehicle.id.in_(ids)).order_by(Vehicle.id).with_for_update()
    ).all()
    if _vehicles_busy(ids, leg.departs_at, leg.arrives_at):
        raise DomainError("trip.vehicle_busy", "vehicle_id")
    trips = []
    for vehicle in vehicles:
        trip = Trip(
            vehicle=vehicle,
            created_by_id=actor.id,
            leg=feeder.leg + 1 if feeder else 1,
            **asdict(leg),
        )
        planned = sorted(loads[vehicle].items())
        trip.loads = [TripLoad(request_id=rid, planned=n) for rid, n in planned if n]
        trips.append(trip)
    db.session.add_all(trips)
    db.session.flush()
    record_audits(
        "trip.created",
        [(trip, {"vehicle_id": trip.vehicle_id, "loads": len(trip.loads)}) for trip in trips],
        actor,
    )
    return trips


def update_trip(
    trip_id: int,
    leg: Leg,
    escort: tuple[str, str],
    actor: User,
    driver_ids: Sequence[int] | None = None,
) -> Trip:
    """Times, places, escort, policy and (unless None) drivers. The policy and times cannot
    change once seats are given in a way that breaks them; a locked trip's workers hear of a
    new time or place, or a new number to call, in one message."""
    trip = lock_trip(trip_id)
    if trip.status not in SEATING_STATUSES:
        raise DomainError("trip.not_editable")
    feeder = _check_leg(leg)
    _check_onward(trip, leg)
    if _vehicles_busy([trip.vehicle_id], leg.departs_at, leg.arrives_at, trip.id):
        raise DomainError("trip.vehicle_busy", "departs_at")
    taken = assignments(trip.id, with_workers=True)
    # Seats carry their leg number, and a connecting leg's workers were checked on the trip
    # that feeds it: moving the trip in or out of a chain would leave both wrong.
    if taken and leg.connects_from_id != trip.connects_from_id:
        raise DomainError("trip.connection_fixed_once_seated", "connects_from_id")
    policy_changed = (leg.max_load_percent, leg.isolation_rows, leg.alternate_seats) != (
        trip.max_load_percent,
        trip.isolation_rows,
        trip.alternate_seats,
    )
    if taken and policy_changed:
        raise DomainError("trip.policy_fixed_once_seated", "max_load_percent")
    if taken and local_date(leg.departs_at) != local_date(trip.departs_at):
        raise DomainError("trip.day_fixed_once_seated", "departs_at")
    day = local_date(leg.departs_at)
    if leg.connects_from_id is None and (
        day != local_date(trip.departs_at) or trip.connects_from_id is not None
    ):
        # As the plan checked: a first leg leaves within each request's window.
        for r in (load.request for load in trip.loads):
            if not r.leaves_within(day):
                raise DomainError(
                    "trip.outside_window",
                    "departs_on",
                    request=r.reference,
                    first=r.earliest_departure.isoformat(),
                    last=r.latest_departure.isoformat(),
                )
    moved = (leg.departs_at, leg.origin_point, leg.origin_address) != (
        trip.departs_at,
        trip.origin_point,
        trip.origin_address,
    )
    calling = _number_to_call(trip)
    for name, value in asdict(leg).items():
        setattr(trip, name, value)
    trip.leg = feeder.leg + 1 if feeder else 1
    _renumber_onward(trip)
    trip.escort_name, trip.escort_phone = escort
    db.session.flush()
    audit = record_audit("trip.updated", trip, actor)
    if driver_ids is not None:
        set_drivers(trip.id, driver_ids, actor)
    recalled = _number_to_call(trip) != calling  # the seat SMS gave the old number
    if (moved or recalled) and trip.status == TripStatus.LOCKED:
        # The seats (and their version) stay as they were: the change's audit entry names
        # this telling, so each change is told, however many came before.
        _tell_seats(trip, taken, "changed", f"a{audit.id}")
    return trip


def _renumber_onward(trip: Trip) -> None:
    """The legs this trip feeds, and theirs, numbered after it again when its connection
    changed. Seats carry their leg's number: a leg that has given seats keeps its number, so
    the change is refused then (as for the trip itself)."""
    onward = db.session.scalars(
        select(Trip).where(Trip.connects_from_id == trip.id, Trip.status != TripStatus.CANCELLED)
    ).all()
    for next_leg in onward:
        if next_leg.leg != trip.leg + 1:
            if db.session.scalar(
                select(SeatAssignment.id).where(SeatAssignment.trip_id == next_leg.id).limit(1)
            ):
                raise DomainError("trip.connection_fixed_once_seated", "connects_from_id")
            next_leg.leg = trip.leg + 1
            _renumber_onward(next_leg)


def set_drivers(trip_id: int, driver_ids: Sequence[int], actor: User) -> None:
    """A driver cannot be on two trips whose times overlap."""
    trip = lock_trip(trip_id)
    drivers = list(
        db.session.scalars(
            select(Driver).where(Driver.id.in_(sorted(set(driver_ids)))).with_for_update()
        )
    )
    for driver in drivers:
        if not driver.active:
            raise DomainError("trip.driver_inactive", "drivers")
        clash = db.session.scalar(
            select(Trip)
            .join(trip_drivers, trip_drivers.c.trip_id == Trip.id)
            .where(
                trip_drivers.c.driver_id == driver.id,
                Trip.id != trip.id,
                Trip.status.in_([s.value for s in RUNNING_STATUSES]),
                Trip.departs_at < trip.arrives_at,
                Trip.arrives_at > trip.departs_at,
            )
            .limit(1)
        )
        if clash is not None:
            raise DomainError(
                "trip.driver_busy", "drivers", driver=driver.name, trip=clash.reference
            )
    trip.drivers = sorted(drivers, key=attrgetter("name"))  # as the trip loads them
    db.session.flush()
    record_audit("trip.drivers_set", trip, actor, drivers=[d.id for d in drivers])


def set_blocked_seats(trip_id: int, labels: Iterable[str], seen_version: int, actor: User) -> None:
    """Seats kept free on this run; a seat someone sits on cannot be blocked."""
    trip = lock_trip(trip_id)
    _check_version(trip, seen_version)
    labels = sorted(set(labels))
    seat_map = trip.vehicle.seat_map
    if any(label not in seat_map for label in labels):
        raise DomainError("trip.unknown_seat", "blocked_seats")
    taken = {a.seat_label for a in assignments(trip.id)}
    if taken & set(labels):
        raise DomainError("trip.block_taken_seat", "blocked_seats")
    trip.blocked_seats = labels
    trip.seats_version += 1
    db.session.flush()
    record_audit("trip.seats_blocked", trip, actor, seats=len(labels))


def _check_version(trip: Trip, seen_version: int | None) -> None:
    if seen_version is not None and seen_version != trip.seats_version:
        raise DomainError("trip.stale")


# --- planning ------------------------------------------------------------------------------


def plannable_counts(request_ids: Iterable[int]) -> dict[int, int]:
    """Per request: workers waiting for a first-leg plan (see ``_waiting_counts``)."""
    return _waiting_counts(request_ids, None)[0]


def _waiting_counts(
    request_ids: Iterable[int], connects_from_id: int | None
) -> tuple[dict[int, int], dict[int, int]]:
    """Per request: workers waiting for a plan on a leg — a first leg: those not seated
    whose health has not failed; a leg from ``connects_from_id``: those the feeding trip
    carries who have no onward seat — less those a live trip on the same leg is planned to
    carry and has not seated yet (they wait for that trip, not for another plan). Also
    returns those held so, per request."""
    ids = list(request_ids)
    if connects_from_id is None:
        counts = dict(
            db.session.execute(
                select(RosterEntry.request_id, func.count())
                .where(RosterEntry.request_id.in_(ids), RosterEntry.status.in_(PLANNABLE))
                .group_by(RosterEntry.request_id)
            ).all()
        )
    else:
        counts = _feeder_counts(connects_from_id, ids)
    held = _held_by_plans(ids, connects_from_id)
    waiting = {rid: n - held.get(rid, 0) for rid, n in counts.items() if n > held.get(rid, 0)}
    return waiting, held


def _held_by_plans(request_ids: list[int], connects_from_id: int | None) -> dict[int, int]:
    """Per request: the places live trips on this leg (first legs, or legs from this feeder)
    keep for its workers: each load's planned count less the seats its trip gave them. A
    worker who fails the health check still holds one (the trip seats them once cleared)."""
    seated = (
        select(func.count())
        .select_from(SeatAssignment)
        .join(RosterEntry, RosterEntry.id == SeatAssignment.roster_entry_id)
        .where(
            SeatAssignment.trip_id == TripLoad.trip_id,
            RosterEntry.request_id == TripLoad.request_id,
        )
        .scalar_subquery()
    )
    loads = db.session.execute(
        select(TripLoad.trip_id, TripLoad.request_id, TripLoad.planned - seated).where(
            TripLoad.request_id.in_(request_ids)
        )
    ).all()
    if not loads:
        return {}
    # The loads' trips read apart, by primary key: joined to the loads, a planner without
    # statistics on trips yet (a campaign's plan stage, trips growing by thousands) put the
    # trips first and scanned them all for each call (14 ms a call at a province's size).
    same_leg = (
        Trip.connects_from_id.is_(None)
        if connects_from_id is None
        else Trip.connects_from_id == connects_from_id
    )
    live = set(
        db.session.scalars(
            select(Trip.id).where(
                Trip.id.in_({trip_id for trip_id, _, _ in loads}),
                Trip.status.in_([s.value for s in SEATING_STATUSES]),
                same_leg,
            )
        )
    )
    held: dict[int, int] = defaultdict(int)
    for trip_id, request_id, unseated in loads:
        if trip_id in live and unseated > 0:
            held[request_id] += unseated
    return dict(held)


def vehicle_option(vehicle: Vehicle, policy: allocation.Policy) -> allocation.VehicleOption:
    first = vehicle.first_carriage
    return allocation.VehicleOption(
        template=vehicle.seatmap_template,
        policy=policy,
        carriages=tuple(range(first, first + vehicle.carriages)),
        blocked=frozenset(vehicle.blocked_seats),
    )


def make_plan(
    requests: Sequence[TransportRequest],
    vehicles: Sequence[Vehicle],
    policy: allocation.Policy,
    connects_from_id: int | None = None,
) -> allocation.Plan:
    """Which requests ride which of these vehicles (the pure planner on today's numbers): on
    a first leg their workers waiting for a seat, on a connecting leg those the feeding trip
    carries who have no onward seat yet."""
    counts = _waiting_counts([r.id for r in requests], connects_from_id)[0]
    groups = [(str(r.id), counts.get(r.id, 0)) for r in requests if counts.get(r.id)]
    return allocation.plan(groups, [vehicle_option(v, policy) for v in vehicles])


def boarding_elsewhere(leg: Leg, requests: Iterable[TransportRequest]) -> list[TransportRequest]:
    """The requests whose workers start from another region than this first leg: their SMS
    will send them to the leg's origin point. Shown for the coordinator to check, not refused
    (a special train from a city station takes the workers of its counties)."""
    if leg.connects_from_id is not None:  # they board where the feeding trip arrives
        return []
    return [r for r in requests if r.origin_region_code != leg.origin_region_code]


@dataclass
class PlanProblem:
    # "over_capacity" (a vehicle); "short", "too_many", "already_planned" (more than wait, the
    # others held by trips planned before), "outside_window" (a request)
    code: str
    subject: str  # the vehicle identifier or the request reference
    planned: int
    limit: int


def apply_plan(
    leg: Leg, loads: dict[int, dict[int, int]], actor: User
) -> tuple[list[Trip], list[PlanProblem]]:
    """Create one trip per vehicle with ``loads`` (vehicle id -> request id -> workers), after
    checking the (possibly edited) plan against today's numbers: every waiting worker of each
    request carried, no vehicle over its policy capacity. Nothing is created if anything is
    wrong; the problems are returned instead."""
    policy = leg.policy
    request_ids = {rid for per in loads.values() for rid in per}
    requests = {r.id: r for r in _lock_requests(request_ids)}
    # A connecting leg carries on workers already seated: their request may be scheduled.
    allowed = (
        (RequestStatus.APPROVED,)
        if leg.connects_from_id is None
        else (RequestStatus.APPROVED, RequestStatus.SCHEDULED)
    )
    if set(requests) != request_ids or any(r.status not in allowed for r in requests.values()):
        raise DomainError("plan.requests_changed")
    vehicles = {v.id: v for v in db.session.scalars(select(Vehicle).where(Vehicle.id.in_(loads)))}
    if set(vehicles) != set(loads):
        raise DomainError("plan.vehicles_changed")
    # Counted under the requests' locks: of two plans for the same workers, the second
    # finds them held by the first's trips.
    waiting, held = _waiting_counts(request_ids, leg.connects_from_id)
    problems = []
    if leg.connects_from_id is None:  # a first leg leaves within each request's window
        day = local_date(leg.departs_at)
        for rid in sorted(request_ids):
            r = requests[rid]
            if not r.leaves_within(day):
                problems.append(PlanProblem("outside_window", r.reference, 0, 0))
    for vehicle_id, per in sorted(loads.items()):
        vehicle = vehicles[vehicle_id]
        option = vehicle_option(vehicle, policy)
        seat_map = allocation.build_vehicle(option.template, option.carriages)
        cap = allocation.capacity(seat_map, policy, option.blocked)
        planned = sum(per.values())
        if planned > cap:
            problems.append(PlanProblem("over_capacity", vehicle.identifier, planned, cap))
    for rid in sorted(request_ids):
        planned = sum(per.get(rid, 0) for per in loads.values())
        need = waiting.get(rid, 0)
        if planned != need:
            code = "short" if planned < need else "already_planned" if held.get(rid) else "too_many"
            problems.append(PlanProblem(code, requests[rid].reference, planned, need))
    if problems:
        return [], problems
    used = {vehicles[vid]: per for vid, per in loads.items() if sum(per.values())}
    return create_trips(leg, actor, used), []


def _feeder_counts(feeder_id: int, request_ids: Iterable[int]) -> dict[int, int]:
    """Per request: workers seated on the feeding trip who have no seat on a next leg yet."""
    feeder = db.session.get(Trip, feeder_id)
    if feeder is None:
        return {}
    onward = select(SeatAssignment.roster_entry_id).where(
        SeatAssignment.leg == feeder.leg + 1,
        SeatAssignment.travel_date >= local_date(feeder.departs_at),
    )
    rows = db.session.execute(
        select(RosterEntry.request_id, func.count())
        .join(SeatAssignment, SeatAssignment.roster_entry_id == RosterEntry.id)
        .where(
            SeatAssignment.trip_id == feeder_id,
            RosterEntry.request_id.in_(list(request_ids)),
            RosterEntry.id.not_in(onward),
        )
        .group_by(RosterEntry.request_id)
    ).all()
    return dict(rows)


# --- seats ---------------------------------------------------------------------------------


@dataclass
class AllocationOutcome:
    seated: int
    unplaced: dict[str, int]  # reason -> workers
    blocked: int  # workers the health check kept off this trip
    pieces: dict[int, int]  # request id -> seat blocks it got

    @classmethod
    def of_all(cls, outcomes: Iterable[AllocationOutcome]) -> AllocationOutcome:
        """Several trips' outcomes added up (what a plan's trips got)."""
        total = cls(0, defaultdict(int), 0, defaultdict(int))
        for outcome in outcomes:
            total.seated += outcome.seated
            total.blocked += outcome.blocked
            for reason, n in outcome.unplaced.items():
                total.unplaced[reason] += n
            for request_id, n in outcome.pieces.items():
                total.pieces[request_id] += n
        return total


def _passenger_of(entry_id: int, request_id: int, group_tag: str | None) -> allocation.Passenger:
    return allocation.Passenger(entry_id, (f"{request_id:09d}", group_tag or ""))


def _passenger(entry: RosterEntry) -> allocation.Passenger:
    return _passenger_of(entry.id, entry.request_id, entry.worker.group_tag)


def _waiting(query: Select, trip: Trip, request_id: int, statuses: Sequence[str]) -> Select:
    """``query`` narrowed to a request's workers who may get a seat on this trip: on a first
    leg those in ``statuses`` without a seat that day; on a connecting leg those seated on the
    feeding trip without a seat on this leg yet."""
    # NOT EXISTS, correlated: an index probe per entry on (entry, day, leg). The NOT IN it
    # replaces read every seat of the day (no index on the day alone): 24,000 seats a call on
    # a campaign day, once per trip load. OFFSET 0 keeps it a probe: as an anti-join, planned
    # on statistics from when the seat table was nearly empty, it read the day's seats again
    # for every entry (38.7 process-seconds of a province's allocation).
    same_leg = (
        select(SeatAssignment.id)
        .where(
            SeatAssignment.roster_entry_id == RosterEntry.id,
            SeatAssignment.travel_date == local_date(trip.departs_at),
            SeatAssignment.leg == trip.leg,
        )
        .offset(0)
        .exists()
    )
    query = query.where(RosterEntry.request_id == request_id, ~same_leg)
    if trip.connects_from_id is None:
        return query.where(RosterEntry.status.in_(list(statuses)))
    feeder = select(SeatAssignment.roster_entry_id).where(
        SeatAssignment.trip_id == trip.connects_from_id
    )
    return query.where(
        RosterEntry.id.in_(feeder),
        RosterEntry.status.in_([EntryStatus.SEATED, EntryStatus.BOARDED]),
    )


def _waiting_entries(
    trip: Trip, request_id: int, statuses: Sequence[str] = (EntryStatus.CLEARED.value,)
) -> list[RosterEntry]:
    """The entries ``_waiting`` picks, with their workers (one query, not two)."""
    query = select(RosterEntry).options(joinedload(RosterEntry.worker, innerjoin=True))
    return list(db.session.scalars(_waiting(query, trip, request_id, statuses)))


def _waiting_in_order(
    trip: Trip, request_id: int, statuses: Sequence[str] = (EntryStatus.CLEARED.value,)
) -> list[allocation.Passenger]:
    """``_waiting_entries`` as passengers in seating order, from three columns a worker: whole
    rows of a big request's waiting workers were a campaign's costliest read."""
    query = select(RosterEntry.id, RosterEntry.request_id, Worker.group_tag).join(
        RosterEntry.worker
    )
    rows = db.session.execute(_waiting(query, trip, request_id, statuses))
    return allocation.seating_order([_passenger_of(*row) for row in rows])


@dataclass
class _Load:
    """One request's share of a trip being seated: room left, and whom the check chose."""

    trip: Trip
    request_id: int
    room: int
    chosen: list[int] = field(default_factory=list)  # entry ids, in seating order
    blocked: int = 0

    @property
    def queue_key(self) -> tuple:
        """Loads with the same key wait on the same workers: see ``_waiting``."""
        trip = self.trip
        return (self.request_id, local_date(trip.departs_at), trip.leg, trip.connects_from_id)


def _check_key(trip: Trip) -> tuple:
    """Trips with the same key get the same health verdict for a worker; a connecting leg
    checks no one (its workers boarded the feeding trip cleared)."""
    if trip.connects_from_id is not None:
        return (trip.departs_at, 0, True)
    return (trip.departs_at, trip.health_freshness_hours, False)


class _Chooser:
    """Picks each load's workers from its request's waiting queue, in seating order, trip by
    trip. Each queue is read once per call. Trips of one check key share verdicts: the workers
    they want are checked together up front (one ``check_entries``), and more only when
    refusals leave a load short. A worker blocked for one departure is judged again for
    another."""

    def __init__(self) -> None:
        self.queues: dict[tuple, list[int]] = {}
        self.taken: set[int] = set()  # chosen in this call
        self.passengers: dict[int, allocation.Passenger] = {}  # entry id -> passenger
        self.request_of: dict[int, int] = {}  # entry id -> request id
        self.statuses: dict[int, str] = {}  # entry id -> status after this call's check
        self.checked: set[int] = set()  # verdict known for the current check key
        self.counted: set[int] = set()  # refusals already reported for it
        self.cursors: dict[tuple, int] = defaultdict(int)
        self.checkers: dict[int | None, health.Checker] = {}  # by freshness: one trust read
        self.stamps: dict[int, health.Stamp] = {}  # checks made, written with the seats

    def queue(self, load: _Load) -> list[int]:
        key = load.queue_key
        if key not in self.queues:
            waiting = _waiting_in_order(load.trip, load.request_id, health.CHECKABLE)
            self.queues[key] = [passenger.id for passenger in waiting]
            self.know(waiting, load.request_id)
        return self.queues[key]

    def know(self, passengers: Iterable[allocation.Passenger], request_id: int) -> None:
        for passenger in passengers:
            self.passengers[passenger.id] = passenger
            self.request_of[passenger.id] = request_id

    def start(self, loads: list[_Load]) -> None:
        """A new check key: check what its loads want from each queue, all at once."""
        self.checked, self.counted = set(), set()
        self.cursors.clear()
        if not loads:
            return
        wanted: dict[tuple, int] = defaultdict(int)
        for load in loads:
            wanted[load.queue_key] += load.room
        first = {load.queue_key: load for load in loads}
        ids = [
            entry_id
            for key, n in wanted.items()
            for entry_id in self._unchecked(self.queue(first[key]), 0, n)
        ]
        self._check(ids, loads[0].trip)

    def fill(self, load: _Load) -> None:
        """Up to ``load.room`` workers fit to travel, the first waiting in seating order."""
        key, ids = load.queue_key, self.queue(load)
        position = self.cursors[key]
        while len(load.chosen) < load.room and position < len(ids):
            entry_id = ids[position]
            if entry_id not in self.checked:
                need = load.room - len(load.chosen)
                self._check(self._unchecked(ids, position, need), load.trip)
            if entry_id not in self.taken:
                status = self.statuses.get(entry_id)
                if load.trip.connects_from_id is not None or status == EntryStatus.CLEARED:
                    load.chosen.append(entry_id)
                    self.taken.add(entry_id)
                elif status == EntryStatus.BLOCKED and entry_id not in self.counted:
                    load.blocked += 1
                    self.counted.add(entry_id)
            position += 1
        self.cursors[key] = position

    def release(self, entry_ids: Iterable[int]) -> None:
        """Chosen but not placed (the vehicle could not take them): a later trip may."""
        released = set(entry_ids)
        if released:
            self.taken -= released
            self.cursors.clear()

    def _unchecked(self, ids: list[int], position: int, n: int) -> list[int]:
        found = []
        for entry_id in islice(ids, position, None):
            if len(found) == n:
                break
            if entry_id not in self.taken and entry_id not in self.checked:
                found.append(entry_id)
        return found

    def _check(self, ids: list[int], trip: Trip) -> None:
        self.checked.update(ids)
        # A connecting leg checks no one: its workers boarded the feeding trip cleared.
        if trip.connects_from_id is None and ids:
            freshness = trip.health_freshness_hours
            if freshness not in self.checkers:
                self.checkers[freshness] = health.Checker(freshness)
            self.statuses.update(
                health.check_entries_by_id(
                    ids, trip.departs_at, self.checkers[freshness], self.stamps
                )
            )


def allocate_seats(trip_id: int, actor: User | None) -> AllocationOutcome:
    """Give seats on this trip to the workers its plan carries who have none yet (health
    checked against this trip's departure first), with the pure allocator around the seats
    already given (which never move)."""
    return allocate_trips([trip_id], actor)[trip_id]


def allocate_trips(trip_ids: Iterable[int], actor: User | None) -> dict[int, AllocationOutcome]:
    """``allocate_seats`` on each of these trips, earliest departure first, in one go: the
    trips of a plan share their requests, whose waiting workers are then read once and checked
    once per departure, not again for every trip (a campaign's allocation read and checked a
    big request's remaining workers once per coach)."""
    trips = _lock_trips(trip_ids)
    if any(trip.status not in SEATING_STATUSES for trip in trips):
        raise DomainError("trip.not_seating")
    trips.sort(key=lambda trip: (*_check_key(trip), trip.id))
    planned = db.session.execute(
        select(TripLoad.trip_id, TripLoad.request_id, TripLoad.planned)
        .where(TripLoad.trip_id.in_([trip.id for trip in trips]))
        .order_by(TripLoad.trip_id, TripLoad.request_id)
    ).all()
    _lock_requests(request_id for _, request_id, _ in planned)
    # The vehicles in one query, set on their trips: the session's identity map holds objects
    # only while something refers to them, so a list read and dropped left ``trip.vehicle``
    # to load each vehicle again (a query a trip).
    vehicles = db.session.scalars(
        select(Vehicle).where(Vehicle.id.in_({trip.vehicle_id for trip in trips}))
    )
    by_vehicle_id = {vehicle.id: vehicle for vehicle in vehicles}
    for trip in trips:
        set_committed_value(trip, "vehicle", by_vehicle_id[trip.vehicle_id])
    chooser = _Chooser()
    taken: dict[int, list[SeatAssignment]] = defaultdict(list)
    # A trip whose seats never changed has none: a plan's new trips need no read.
    seated_before = [trip.id for trip in trips if trip.seats_version]
    for seat in _assignments_of(seated_before, with_workers=True) if seated_before else ():
        taken[seat.trip_id].append(seat)
        chooser.know([_passenger(seat.entry)], seat.entry.request_id)
    loads: dict[int, list[_Load]] = defaultdict(list)
    by_id = {trip.id: trip for trip in trips}
    for trip_id, request_id, count in planned:
        seated = sum(1 for seat in taken[trip_id] if seat.entry.request_id == request_id)
        if count > seated:
            loads[trip_id].append(_Load(by_id[trip_id], request_id, count - seated))
    outcomes: dict[int, AllocationOutcome] = {}
    given: list[tuple[Trip, dict[int, str]]] = []
    for _key, same_check in groupby(trips, key=_check_key):
        group = list(same_check)
        chooser.start([load for trip in group for load in loads[trip.id]])
        for trip in group:
            for load in loads[trip.id]:
                chooser.fill(load)
            outcome, seats = _seat_trip(trip, taken[trip.id], loads[trip.id], chooser)
            outcomes[trip.id] = outcome
            given.append((trip, seats))
    _give(given, chooser.request_of, actor, manual=False, stamps=chooser.stamps)
    health.write_stamps(chooser.stamps)  # the checks of workers who got no seat
    audited = []  # after the seats: what the audit says was given, was
    for trip in trips:
        outcome = outcomes[trip.id]
        audited.append(
            (trip, {"seated": outcome.seated, "unplaced": sum(outcome.unplaced.values())})
        )
    record_audits("trip.seats_allocated", audited, actor)
    return outcomes


def _seat_trip(
    trip: Trip,
    taken: list[SeatAssignment],
    loads: list[_Load],
    chooser: _Chooser,
) -> tuple[AllocationOutcome, dict[int, str]]:
    """The pure allocator on one trip; workers it could not place may go on a later trip."""
    existing = {seat.roster_entry_id: seat.seat_label for seat in taken}
    passengers = [chooser.passengers[entry_id] for load in loads for entry_id in load.chosen]
    result = allocation.allocate(
        trip.vehicle.seat_map,
        trip.policy,
        trip.all_blocked_seats,
        existing,
        passengers,
        existing_groups={pid: chooser.passengers[pid].group for pid in existing},
    )
    chooser.release(result.unplaced)
    unplaced: dict[str, int] = defaultdict(int)
    for reason in result.reasons.values():
        unplaced[reason] += 1
    outcome = AllocationOutcome(
        len(result.assigned),
        dict(unplaced),
        sum(load.blocked for load in loads),
        {int(key): n for key, n in result.pieces.items()},
    )
    return outcome, result.assigned


def _give(
    given: list[tuple[Trip, dict[int, str]]],
    request_of: dict[int, int],
    actor: User | None,
    manual: bool,
    stamps: dict[int, health.Stamp] | None = None,
) -> None:
    """Write seats (trip -> entry id -> seat; ``request_of``: entry id -> request id) in
    bulk, mark their workers seated (with the health checks in ``stamps`` of those seated:
    see ``_seat_entries``), and tell them on trips already locked."""
    given = [(trip, seats) for trip, seats in given if seats]
    if not given:
        return
    bulk_insert(
        SeatAssignment.__table__,
        [
            {
                "trip_id": trip.id,
                "roster_entry_id": entry_id,
                "seat_label": label,
                "travel_date": local_date(trip.departs_at),
                "leg": trip.leg,
                "manual": manual,
                "assigned_by_id": actor.id if actor else None,
            }
            for trip, seats in given
            for entry_id, label in seats.items()
        ],
    )
    _seat_entries([entry_id for _, seats in given for entry_id in seats], stamps or {})
    for trip, _ in given:
        trip.seats_version += 1
        if trip.status == TripStatus.PLANNED:
            trip.status = TripStatus.OPEN.value
    db.session.flush()
    _update_requests({request_of[entry_id] for _, seats in given for entry_id in seats})
    for trip, seats in given:
        if trip.status == TripStatus.LOCKED:
            told = [
                a for a in assignments(trip.id, with_workers=True) if a.roster_entry_id in seats
            ]
            _tell_seats(trip, told, "given", f"v{trip.seats_version}")


def _mark_entries(
    entry_ids: list[int], status: EntryStatus, only_from: Sequence[EntryStatus] | None = None
) -> None:
    for start in range(0, len(entry_ids), 5000):
        query = update(RosterEntry).where(RosterEntry.id.in_(entry_ids[start : start + 5000]))
        if only_from is not None:
            query = query.where(RosterEntry.status.in_([s.value for s in only_from]))
        db.session.execute(query.values(status=status.value))


def _update_requests(request_ids: Iterable[int]) -> None:
    """approved <-> scheduled: scheduled once no worker waits for a seat."""
    for request in _lock_requests(request_ids):
        waiting = db.session.scalar(
            select(func.count()).where(
                RosterEntry.request_id == request.id,
                RosterEntry.status.in_(
                    [EntryStatus.PENDING, EntryStatus.CLEARED, EntryStatus.BLOCKED]
                ),
            )
        )
        if request.status == RequestStatus.APPROVED and not waiting:
            request.status = RequestStatus.SCHEDULED.value
        elif request.status == RequestStatus.SCHEDULED and waiting:
            request.status = RequestStatus.APPROVED.value
    db.session.flush()


def _assignment(trip_id: int, entry_id: int) -> SeatAssignment | None:
    return db.session.scalar(
        select(SeatAssignment).where(
            SeatAssignment.trip_id == trip_id, SeatAssignment.roster_entry_id == entry_id
        )
    )


def move_seat(trip_id: int, entry_id: int, to_seat: str, seen_version: int, actor: User) -> None:
    """A coordinator puts a worker (seated on this trip, or planned on it and waiting) on a
    seat by hand, with the same checks as the allocator. ``to_seat`` as typed: the seat's
    label or the text the pages show for it (``SeatMap.label_for``)."""
    trip = lock_trip(trip_id)
    if trip.status not in SEATING_STATUSES:
        raise DomainError("trip.not_seating")
    _check_version(trip, seen_version)
    taken = assignments(trip.id)
    existing = {a.roster_entry_id: a.seat_label for a in taken}
    current = next((a for a in taken if a.roster_entry_id == entry_id), None)
    entry = db.session.get(RosterEntry, entry_id)
    if current is None:
        load = next((x for x in trip.loads if entry and x.request_id == entry.request_id), None)
        if load is not None:  # "waiting" is decided under the request's lock, as in allocate
            _lock_requests([entry.request_id])
        if load is None or entry not in _waiting_entries(trip, load.request_id):
            raise DomainError("seat.not_waiting")
    seat_map = trip.vehicle.seat_map
    label = seat_map.label_for(to_seat)
    if label is None:
        raise DomainError("seat.no_such_seat")
    refusal = allocation.check_move(
        seat_map, trip.policy, trip.all_blocked_seats, existing, entry_id, label
    )
    if refusal:
        raise DomainError(f"seat.{refusal}")
    if current is None:
        _give([(trip, {entry_id: label})], {entry_id: entry.request_id}, actor, manual=True)
    elif current.seat_label != label:
        previous = current.seat_label
        current.seat_label, current.manual, current.assigned_by_id = label, True, actor.id
        trip.seats_version += 1
        db.session.flush()
        if trip.status == TripStatus.LOCKED:
            _tell_seats(trip, [current], "changed", f"v{trip.seats_version}")
        record_audit("seat.moved", trip, actor, entry_id=entry_id, old=previous, new=label)


def swap_seats(trip_id: int, entry_a: int, entry_b: int, seen_version: int, actor: User) -> None:
    """Two seated workers change places (the seats taken stay the same, so the policy holds)."""
    trip = lock_trip(trip_id)
    if trip.status not in SEATING_STATUSES:
        raise DomainError("trip.not_seating")
    _check_version(trip, seen_version)
    a, b = _assignment(trip.id, entry_a), _assignment(trip.id, entry_b)
    if a is None or b is None or a.id == b.id:
        raise DomainError("seat.swap_needs_two")
    seats = {entry_a: b.seat_label, entry_b: a.seat_label}
    # Unique (trip, seat) holds after every statement: free both seats, then take them.
    db.session.execute(delete(SeatAssignment).where(SeatAssignment.id.in_([a.id, b.id])))
    db.session.execute(
        insert(SeatAssignment),
        [
            {
                "trip_id": trip.id,
                "roster_entry_id": eid,
                "seat_label": label,
                "travel_date": local_date(trip.departs_at),
                "leg": trip.leg,
                "manual": True,
                "assigned_by_id": actor.id,
            }
            for eid, label in seats.items()
        ],
    )
    trip.seats_version += 1
    db.session.flush()
    if trip.status == TripStatus.LOCKED:
        swapped = [x for x in assignments(trip.id, with_workers=True) if x.roster_entry_id in seats]
        _tell_seats(trip, swapped, "changed", f"v{trip.seats_version}")
    record_audit("seat.swapped", trip, actor, entries=sorted(seats))


def unseat(trip_id: int, entry_id: int, seen_version: int | None, actor: User | None) -> None:
    """Take a worker's seat back (the worker waits for another); later legs go too."""
    trip = lock_trip(trip_id)
    if trip.status not in SEATING_STATUSES:
        raise DomainError("trip.not_seating")
    _check_version(trip, seen_version)
    current = _assignment(trip.id, entry_id)
    if current is None:
        raise DomainError("seat.not_seated")
    _free([trip], {entry_id})
    record_audit("seat.taken_back", trip, actor, entry_id=entry_id)


def _free(trips: list[Trip], entry_ids: set[int]) -> None:
    """Remove these workers' seats on these trips and on the legs they feed; a worker left
    with no seat is cleared and waits again; their reminders are taken back, and those told
    their seat (on a locked trip) are texted that it is withdrawn."""
    trip_ids = [t.id for t in trips]
    frontier = list(trip_ids)
    while frontier:  # the legs fed by these trips, and theirs
        frontier = list(
            db.session.scalars(select(Trip.id).where(Trip.connects_from_id.in_(frontier)))
        )
        trip_ids.extend(frontier)
    locked = db.session.scalars(
        select(Trip.id).where(Trip.id.in_(trip_ids), Trip.status == TripStatus.LOCKED)
    ).all()
    told = _assignments_of(list(locked), with_workers=True, entry_ids=entry_ids or None)
    query = delete(SeatAssignment).where(SeatAssignment.trip_id.in_(trip_ids))
    if entry_ids:
        query = query.where(SeatAssignment.roster_entry_id.in_(list(entry_ids)))
    freed = [
        row.roster_entry_id
        for row in db.session.execute(
            query.returning(SeatAssignment.roster_entry_id, SeatAssignment.trip_id)
        )
    ]
    drop_pending(
        prefix
        for tid in set(trip_ids)
        for eid in (entry_ids or [None])
        for prefix in _reminder_prefixes(tid, eid)
    )
    still = set(
        db.session.scalars(
            select(SeatAssignment.roster_entry_id).where(SeatAssignment.roster_entry_id.in_(freed))
        )
    )
    waiting = sorted(set(freed) - still)
    _mark_entries(waiting, EntryStatus.CLEARED)
    for trip in db.session.scalars(select(Trip).where(Trip.id.in_(trip_ids))):
        trip.seats_version += 1
        withdrawn = [a for a in told if a.trip_id == trip.id]
        _tell_seats(trip, withdrawn, "withdrawn", f"v{trip.seats_version}")
    db.session.flush()
    request_ids = db.session.scalars(
        select(RosterEntry.request_id).where(RosterEntry.id.in_(freed)).distinct()
    )
    _update_requests(list(request_ids))


# --- locking and cancelling ----------------------------------------------------------------


def lock_manifest(trip_id: int, actor: User) -> int:
    """The manifest is final: every seated worker is told their seat by SMS (with reminders
    24 h and 2 h before departure), and the destination region's coordinators get the advance
    notice. Returns how many workers were told."""
    trip = lock_trip(trip_id)
    if trip.status != TripStatus.OPEN:
        raise DomainError("trip.cannot_lock")
    taken = assignments(trip.id, with_workers=True)
    if not taken:
        raise DomainError("trip.no_seats")
    trip.status = TripStatus.LOCKED.value
    trip.locked_at = utcnow()
    db.session.flush()
    _tell_seats(trip, taken, "given", f"v{trip.seats_version}")
    _tell_destination(trip, taken)
    record_audit("trip.locked", trip, actor, seated=len(taken))
    return len(taken)


def cancel_trip(trip_id: int, reason: str, actor: User) -> int:
    """Seats freed (and on the legs this trip feeds); the workers wait for a seat again and
    hear of it if they had been told their seat; their employers hear of it."""
    trip = lock_trip(trip_id)
    if trip.status not in SEATING_STATUSES:
        raise DomainError("trip.cannot_cancel")
    if not reason.strip():
        raise DomainError("trip.cancel_reason_missing", "reason")
    taken = assignments(trip.id, with_workers=True)
    if trip.status == TripStatus.LOCKED:
        _tell_seats(trip, taken, "cancelled", f"v{trip.seats_version}")
    request_ids = {a.entry.request_id for a in taken} | {load.request_id for load in trip.loads}
    _lock_requests(request_ids)
    db.session.execute(  # kept for the workers' pages: the seats themselves go
        insert(CancelledSeat).from_select(
            ["trip_id", "roster_entry_id"],
            select(SeatAssignment.trip_id, SeatAssignment.roster_entry_id).where(
                SeatAssignment.trip_id == trip.id
            ),
        )
    )
    # Cancelled before its seats go: its workers hear of the cancellation, not of a seat
    # withdrawn (those on the locked legs it feeds do).
    trip.status = TripStatus.CANCELLED.value
    _free([trip], set())
    trip.cancelled_at = utcnow()
    trip.cancel_reason = reason.strip()
    db.session.flush()
    for request in db.session.scalars(
        select(TransportRequest).where(TransportRequest.id.in_(request_ids))
    ):
        notify_users(
            f"trip.cancelled:{trip.id}:{request.id}",
            organization_users(request.organization_id),
            "trip_cancelled_employer",
            {
                "trip": trip.reference,
                "reference": request.reference,
                "reason": trip.cancel_reason,
                "url": link(f"/requests/{request.id}"),
            },
            about=trip,
        )
    record_audit("trip.cancelled", trip, actor, freed=len(taken))
    return len(taken)


# --- what workers and staff are told -------------------------------------------------------


def vehicle_text(trip: Trip) -> str:
    return trip.vehicle.identifier


def _seat_text(trip: Trip, label: str) -> str:
    return trip.vehicle.seat_map.seat(label).display


def trip_page_token(entry_id: int) -> str:
    serializer = URLSafeTimedSerializer(current_app.secret_key, salt=TRIP_PAGE_SALT)
    return serializer.dumps(entry_id)


def entry_for_token(token: str) -> RosterEntry | None:
    """The roster entry a trip-page link was made for, or None (tampered or expired)."""
    serializer = URLSafeTimedSerializer(current_app.secret_key, salt=TRIP_PAGE_SALT)
    try:
        entry_id = serializer.loads(token, max_age=int(TRIP_PAGE_MAX_AGE.total_seconds()))
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(entry_id, int):
        return None
    return db.session.scalar(_entry_for_page(), {"entry_id": entry_id})


# The worker's trip page is the busiest of a campaign (every worker, several times a day, from
# the SMS link): its two statements are built once per process, with a bound parameter.
# Building a select with its loader options costs about as much Python as running it
# (0.3 ms of the page's 1 ms of SQLAlchemy work).


@cache
def _entry_for_page() -> Select:
    """One statement for everything the worker's page shows of the entry."""
    return (
        select(RosterEntry)
        .options(
            joinedload(RosterEntry.worker),
            joinedload(RosterEntry.request).joinedload(TransportRequest.organization),
        )
        .where(RosterEntry.id == bindparam("entry_id"))
    )


@cache
def _itinerary() -> Select:
    return (
        select(SeatAssignment)
        .join(Trip)
        .options(
            contains_eager(SeatAssignment.trip).joinedload(Trip.vehicle),
            contains_eager(SeatAssignment.trip).joinedload(Trip.drivers),
        )
        .where(
            SeatAssignment.roster_entry_id == bindparam("entry_id"),
            Trip.status != TripStatus.CANCELLED,
        )
        .order_by(Trip.departs_at)
    )


def itinerary(entry_id: int) -> list[SeatAssignment]:
    """A worker's seats across legs, in travel order, with each leg's trip, vehicle and crew
    loaded in the same statement."""
    return list(db.session.scalars(_itinerary(), {"entry_id": entry_id}).unique())


def cancelled_trip(entry_id: int) -> Trip | None:
    """The trip most lately cancelled with this worker's seat on it, if any."""
    return db.session.scalar(
        select(Trip)
        .join(CancelledSeat, CancelledSeat.trip_id == Trip.id)
        .where(CancelledSeat.roster_entry_id == entry_id)
        .order_by(Trip.cancelled_at.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class RequestTrips:
    """The trips carrying a request's workers (not cancelled) with how many of them each, in
    travel order, and those on which some of them reach their last stop (no onward leg):
    where the employer receives them."""

    trips: list[tuple[Trip, int]]
    final_legs: set[int]


def request_trips(request_id: int) -> RequestTrips:
    # The request's entries are read first and given as a list of ids: joined to the request
    # instead, PostgreSQL read every seat of the campaign (a parallel scan of 230,000, about
    # 17 ms a query) rather than probing the (entry, day, leg) index once per entry.
    ids = list(
        db.session.scalars(select(RosterEntry.id).where(RosterEntry.request_id == request_id))
    )
    counts: dict[Trip, int] = defaultdict(int)
    seats: list[tuple[int, int]] = []
    rides_on: set[tuple[int, int]] = set()  # (trip, entry): the entry rides on from that trip
    for start in range(0, len(ids), 5000):
        rows = db.session.execute(
            select(SeatAssignment.roster_entry_id, Trip)
            .join(Trip)
            .options(joinedload(Trip.vehicle))
            .where(SeatAssignment.roster_entry_id.in_(ids[start : start + 5000]))
        )
        for entry_id, trip in rows:
            seats.append((trip.id, entry_id))
            if trip.status == TripStatus.CANCELLED:
                continue
            counts[trip] += 1
            if trip.connects_from_id is not None:
                rides_on.add((trip.connects_from_id, entry_id))
    return RequestTrips(
        trips=sorted(counts.items(), key=lambda pair: (pair[0].departs_at, pair[0].id)),
        final_legs={trip_id for trip_id, entry_id in seats if (trip_id, entry_id) not in rides_on},
    )


def seats_of_entries(entry_ids: list[int]) -> dict[int, list[tuple[Trip, str]]]:
    """Per roster entry: its trips and seats (as printed on a ticket), in travel order."""
    rows = db.session.execute(
        select(SeatAssignment.roster_entry_id, SeatAssignment.seat_label, Trip)
        .join(Trip)
        .options(joinedload(Trip.vehicle))
        .where(SeatAssignment.roster_entry_id.in_(entry_ids), Trip.status != TripStatus.CANCELLED)
        .order_by(Trip.departs_at)
    ).all()
    seats: dict[int, list[tuple[Trip, str]]] = defaultdict(list)
    for entry_id, label, trip in rows:
        seats[entry_id].append((trip, _seat_text(trip, label)))
    return dict(seats)


# What each telling of _tell_seats sends a worker: its event, its template, and whether
# reminders before departure follow it.
TELLINGS = {
    "given": ("seat.given", "seat_given", True),
    "changed": ("seat.changed", "trip_changed", True),
    "cancelled": ("trip.cancelled", "trip_cancelled", False),
    "withdrawn": ("seat.withdrawn", "seat_withdrawn", False),
}


def _tell_seats(trip: Trip, given: list[SeatAssignment], what: str, telling: str) -> None:
    """SMS to each worker: their seat ("given"), a change ("changed"), the cancellation, or
    their seat taken back ("withdrawn"). Seat and change messages come with fresh reminders;
    old reminders are taken back.

    ``telling`` names this telling in the messages' keys, unique to it: a seat change's
    version ("v4"), a trip change's audit entry ("a17"). The same telling written twice is
    one message; a new telling must not reuse a key, or the outbox drops it as sent."""
    if not given:
        return
    pii = vault()
    locale = current_app.config["BABEL_DEFAULT_LOCALE"]
    zone = health.local_zone()
    departs = trip.departs_at.astimezone(zone)
    calling, phone_to_call = _number_to_call(trip) or ("", "")
    with force_locale(locale):
        day = format_date(departs, "medium")
        hour = format_time(departs, "short")
    if what != "given":  # a first telling has no reminders to take back
        drop_pending(
            prefix for a in given for prefix in _reminder_prefixes(trip.id, a.roster_entry_id)
        )
    messages = []
    now = utcnow()
    # Once per trip, not per worker: the seat map (a template cache look-up that stats the
    # file) and the link signer (trip_page_token builds one per call).
    seat_map = trip.vehicle.seat_map
    signer = URLSafeTimedSerializer(current_app.secret_key, salt=TRIP_PAGE_SALT)
    vehicle = vehicle_text(trip)
    for assignment in given:
        entry = assignment.entry
        phone = pii.decrypt(entry.worker.phone_token)
        key = f"t{trip.id}:e{entry.id}:{telling}"
        url = link(f"/my-trip/{signer.dumps(entry.id)}")
        context = {
            "name": entry.worker.name,
            "date": day,
            "time": hour,
            "meeting_point": trip.origin_point,
            "vehicle": vehicle,
            "seat": seat_map.seat(assignment.seat_label).display,
            # The SMS names whose number it is: a worker calls the escort as the escort.
            "driver_phone": phone_to_call if calling == "driver" else "",
            "escort_phone": phone_to_call if calling == "escort" else "",
            "trip": trip.reference,
            "url": url,
        }
        event, template, reminded = TELLINGS[what]
        messages.append(Outgoing(f"{event}:{key}", Channel.SMS, phone, template, context))
        if not reminded:
            continue
        for hours in REMINDER_HOURS:
            send_at = trip.departs_at - timedelta(hours=hours)
            if send_at > now:
                messages.append(
                    Outgoing(
                        f"reminder.{hours}h:{key}",
                        Channel.SMS,
                        phone,
                        "departure_reminder",
                        {**context, "hours_before": hours},
                        send_at=send_at,
                    )
                )
    notify_many(messages, about=trip)


def _number_to_call(trip: Trip) -> tuple[str, str] | None:
    """Whom the workers' SMS tell them to call, and the number: the first driver, else the
    escort ("driver" or "escort"), or None."""
    if trip.drivers:
        return "driver", trip.drivers[0].phone
    if trip.escort_phone:
        return "escort", trip.escort_phone
    return None


def _reminder_prefixes(trip_id: int, entry_id: int | None = None) -> list[str]:
    """Event prefixes of a trip's reminders (or one worker's on it), as _tell_seats names
    them: "reminder.24h:t12:e345:v3" or "reminder.24h:t12:e345:a17"."""
    worker = f"e{entry_id}:" if entry_id is not None else ""
    return [f"reminder.{hours}h:t{trip_id}:{worker}" for hours in REMINDER_HOURS]


def _tell_destination(trip: Trip, taken: list[SeatAssignment]) -> None:
    """The advance notice to the destination region's coordinators (as the sending side did
    in 2020): who arrives, for which employer, on what, and when."""
    per_employer: dict[str, int] = defaultdict(int)
    for assignment in taken:
        per_employer[assignment.entry.request.organization.name] += 1
    with force_locale(current_app.config["BABEL_DEFAULT_LOCALE"]):
        arrival = format_datetime(trip.arrives_at.astimezone(health.local_zone()), "short")
    notify_users(
        f"trip.locked:{trip.id}",
        region_coordinators(trip.destination_region_code),
        "trip_advance_notice",
        {
            "trip": trip.reference,
            "vehicle": vehicle_text(trip),
            "origin": trip.origin_point,
            "destination": trip.destination_point,
            "arrival": arrival,
            "total": len(taken),
            "employers": sorted(per_employer.items()),
            "url": link(f"/trips/{trip.id}"),
        },
        about=trip,
    )


def seat_holders(trip_id: int) -> list[tuple[SeatAssignment, RosterEntry]]:
    """Seats with their workers, in seat order (for the seat map and the manifest)."""
    rows = db.session.execute(
        select(SeatAssignment, RosterEntry)
        .join(RosterEntry, SeatAssignment.roster_entry_id == RosterEntry.id)
        .options(  # what the pages show of each: one query for a whole train
            joinedload(RosterEntry.worker, innerjoin=True),
            joinedload(RosterEntry.request, innerjoin=True).joinedload(
                TransportRequest.organization, innerjoin=True
            ),
        )
        .where(SeatAssignment.trip_id == trip_id)
    ).all()
    trip = db.session.get(Trip, trip_id)
    seat_map = trip.vehicle.seat_map
    return sorted(((a, e) for a, e in rows), key=lambda row: seat_map.index(row[0].seat_label))


def safe_integrity(operation):
    """Run a seat operation; a unique constraint that fires (a race the locks did not
    cover, e.g. the same worker seated on two trips at once) becomes a domain refusal."""
    try:
        with db.session.begin_nested():
            return operation()
    except IntegrityError as error:
        raise DomainError("seat.conflict") from error


# --- booking codes -------------------------------------------------------------------------

# Crockford's base 32: no I, L, O or U, so a code read out on the phone is not misheard.
BOOKING_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BOOKING_CODE_LENGTH = 10  # 50 random bits
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_booking_code() -> str:
    # 32 letters: each random byte's low 5 bits pick one, evenly (one urandom call a code).
    return "".join(BOOKING_ALPHABET[b & 31] for b in secrets.token_bytes(BOOKING_CODE_LENGTH))


def normalize_booking_code(text: str | None) -> str | None:
    """The code as stored, from what a person typed or a scanner read ("abcde-fghjk",
    with spaces, O for 0, in full width from a Chinese keyboard); None when it cannot be a
    booking code."""
    code = normalize_identifier(text or "").replace("-", "").translate(_READ_AS)
    if len(code) != BOOKING_CODE_LENGTH or any(c not in BOOKING_ALPHABET for c in code):
        return None
    return code


def shown_booking_code(code: str | None) -> str:
    return f"{code[:5]}-{code[5:]}" if code else ""


def _seated_values(code, checked_at, plainly_cleared) -> dict:
    """The SET of ``_seat_entries``, from the given code, check time (None: not checked by
    this allocation) and whether that check cleared the worker plainly (its verdict columns
    then written as ``health.write_stamps`` writes them)."""
    table = RosterEntry.__table__
    verdict = {
        column: case((plainly_cleared, value), else_=table.c[column])
        for column, value in health.PLAIN_CLEARED.items()
        if column != "status"
    }
    seated = or_(plainly_cleared, table.c.status == EntryStatus.CLEARED.value)
    return {
        **verdict,
        "status": case((seated, EntryStatus.SEATED.value), else_=table.c.status),
        "booking_code": func.coalesce(table.c.booking_code, code),
        "health_checked_at": func.coalesce(checked_at, table.c.health_checked_at),
    }


def _seat_entries(entry_ids: list[int], stamps: dict[int, health.Stamp]) -> None:
    """Mark these workers seated, each with a booking code (kept across legs): a worker
    already through an earlier leg's door stays "boarded". The health check this allocation
    made of each (left in ``stamps`` by ``health.check_entries``; taken from there) is written
    by the same UPDATE: a campaign seats 230,000 workers, and writing the check and the seat
    apart cost 11 and 10 process-seconds. On PostgreSQL one UPDATE of four arrays (an
    executemany was 110 µs a worker), elsewhere an executemany."""
    table = RosterEntry.__table__
    codes = [new_booking_code() for _ in entry_ids]
    checks = [stamps.pop(entry_id, None) for entry_id in entry_ids]
    if db.session.get_bind().dialect.name == "postgresql":
        given = (
            func.unnest(
                cast(bindparam("ids"), ARRAY(Integer)),
                cast(bindparam("codes"), ARRAY(String)),
                cast(bindparam("checked"), ARRAY(DateTime(timezone=True))),
                cast(bindparam("plain"), ARRAY(Boolean)),
            )
            .table_valued(
                column("id", Integer),
                column("code", String),
                column("checked_at", DateTime(timezone=True)),
                column("plainly_cleared", Boolean),
            )
            .render_derived("given")
        )
        db.session.execute(
            update(table)
            .where(table.c.id == given.c.id)
            .values(_seated_values(given.c.code, given.c.checked_at, given.c.plainly_cleared)),
            {
                "ids": entry_ids,
                "codes": codes,
                "checked": [check.at if check else None for check in checks],
                "plain": [bool(check and check.plainly_cleared) for check in checks],
            },
        )
    else:
        checked_at = bindparam("checked_at", type_=table.c.health_checked_at.type)
        db.session.execute(
            table.update()
            .where(table.c.id == bindparam("entry_id"))
            .values(
                _seated_values(
                    bindparam("code"), checked_at, bindparam("plainly_cleared", type_=Boolean)
                )
            ),
            [
                {
                    "entry_id": entry_id,
                    "code": code,
                    "checked_at": check.at if check else None,
                    "plainly_cleared": bool(check and check.plainly_cleared),
                }
                for entry_id, code, check in zip(entry_ids, codes, checks, strict=True)
            ],
        )
    for entry_id in entry_ids:  # the session reads the new values back when next used
        entry = db.session.identity_map.get(identity_key(RosterEntry, entry_id))
        if entry is not None:
            db.session.expire(entry, ["status", "booking_code"])


def find_booking(code_text: str | None, last4: str | None) -> RosterEntry | None:
    """The worker's place for a booking code and the last four digits of their mobile, or
    None — the same answer, after the same work, whether the code or the digits are wrong."""
    code = normalize_booking_code(code_text)
    entry = (
        db.session.scalar(
            select(RosterEntry)
            .options(joinedload(RosterEntry.worker))  # one query, found or not
            .where(RosterEntry.booking_code == code)
        )
        if code
        else None
    )
    expected = entry.worker.phone_last4 if entry is not None else "\0\0\0\0"
    typed = normalize_identifier(last4 or "")  # ０００３ from a Chinese keyboard is 0003
    matches = hmac.compare_digest(expected.encode(), typed.encode())
    return entry if entry is not None and matches else None


# --- at the vehicle door -------------------------------------------------------------------


BOARDING_VERDICTS = (
    "boarded",
    "already_boarded",
    "wrong_trip",
    "not_seated",
    "bad_code",
    "unknown_code",
    "health_blocked",
    "fever",
    "missed_connection",
)


@dataclass
class BoardingVerdict:
    code: str  # one of BOARDING_VERDICTS
    name: str | None = None
    seat: str | None = None
    their_trip: Trip | None = None
    reasons: tuple[str, ...] = ()  # health reason codes, for "health_blocked"


def health_refusal(entry: RosterEntry, trip: Trip) -> tuple[str, ...]:
    """The health reasons for which the door of ``trip`` refuses this worker, as things stand
    now (none: it lets them on): their newest certificate judged at the trip's departure with
    its freshness rule, unless a coordinator's written override covers every reason. Only a
    first leg's door judges health (later legs take those who boarded the one feeding them)."""
    verdict = health.door_verdict(entry.worker, trip.departs_at, trip.health_freshness_hours)
    return verdict.reasons if health.refuses(entry, verdict) else ()


def board(trip_id: int, code_text: str, celsius: Decimal, actor: User) -> BoardingVerdict:
    """A scanned or typed boarding pass and a temperature: boarded, or why not. A repeated
    scan records nothing twice."""
    trip = lock_trip(trip_id)
    if trip.status != TripStatus.LOCKED:
        raise DomainError("boarding.not_open")
    code = normalize_booking_code(code_text)
    if code is None:
        return BoardingVerdict("bad_code")
    entry = db.session.scalar(select(RosterEntry).where(RosterEntry.booking_code == code))
    if entry is None:
        return BoardingVerdict("unknown_code")
    name = entry.worker.name
    seat = _assignment(trip.id, entry.id)
    if seat is None:
        other = db.session.scalar(
            select(Trip)
            .join(SeatAssignment)
            .where(
                SeatAssignment.roster_entry_id == entry.id,
                Trip.status.in_([s.value for s in RUNNING_STATUSES]),
            )
            .order_by(Trip.departs_at)
            .limit(1)
        )
        return BoardingVerdict("wrong_trip" if other else "not_seated", name, their_trip=other)
    shown = _seat_text(trip, seat.seat_label)
    if seat.boarding == "boarded":
        return BoardingVerdict("already_boarded", name, shown)
    if seat.boarding == "isolated":
        return BoardingVerdict("fever", name, shown)
    if trip.connects_from_id is not None:
        # Only those who boarded the feeding trip ride on: not one isolated with fever or
        # marked as not there at its door.
        before = _assignment(trip.connects_from_id, entry.id)
        if before is None or before.boarding != "boarded":
            record_audit("boarding.missed_connection", seat, actor, trip_id=trip.id)
            isolated = before is not None and before.boarding == "isolated"
            return BoardingVerdict("fever" if isolated else "missed_connection", name, shown)
    else:  # the health certificate, judged at the door
        refused = health_refusal(entry, trip)
        if refused:
            record_audit("boarding.health_blocked", seat, actor, trip_id=trip.id)
            return BoardingVerdict("health_blocked", name, shown, reasons=refused)
    fever = "fever" in evaluate_temperature(celsius, health.policy()).reasons
    seat.boarding = "isolated" if fever else "boarded"
    seat.boarded_at, seat.temperature, seat.boarding_by_id = utcnow(), celsius, actor.id
    if fever:
        entry.status, entry.block_reason = EntryStatus.NO_SHOW.value, "fever"
    elif entry.status == EntryStatus.SEATED:
        entry.status = EntryStatus.BOARDED.value
    db.session.flush()
    record_audit(f"boarding.{seat.boarding}", seat, actor, trip_id=trip.id)
    if fever:
        _tell_staff_of_fever(trip, entry, celsius)
        return BoardingVerdict("fever", name, shown)
    return BoardingVerdict("boarded", name, shown)


def _tell_staff_of_fever(trip: Trip, entry: RosterEntry, celsius: Decimal) -> None:
    request = entry.request
    notify_users(
        f"boarding.fever:{trip.id}:{entry.id}",
        [
            *organization_users(request.organization_id),
            *region_coordinators(trip.origin_region_code, trip.destination_region_code),
        ],
        "worker_fever",
        {
            "name": entry.worker.name,
            "trip": trip.reference,
            "reference": request.reference,
            "celsius": str(celsius),
            "place": trip.origin_point,
            "url": link(f"/requests/{request.id}"),
        },
        about=trip,
    )


def mark_no_show(trip_id: int, entry_id: int, actor: User) -> None:
    trip = lock_trip(trip_id)
    if trip.status != TripStatus.LOCKED:
        raise DomainError("boarding.not_open")
    seat = _assignment(trip.id, entry_id)
    if seat is None:
        raise DomainError("seat.not_seated")
    if seat.boarding is not None:
        raise DomainError("boarding.already_recorded")
    seat.boarding, seat.boarding_by_id = "no_show", actor.id
    entry = seat.entry
    entry.status = EntryStatus.NO_SHOW.value
    db.session.flush()
    record_audit("boarding.no_show", seat, actor, trip_id=trip.id)


def boarding_counts(trip_id: int) -> dict[str, int]:
    """Seated, and of them boarded / no-show (isolated counted apart) / still expected."""
    rows = db.session.execute(
        select(SeatAssignment.boarding, func.count())
        .where(SeatAssignment.trip_id == trip_id)
        .group_by(SeatAssignment.boarding)
    ).all()
    counts = {state or "waiting": n for state, n in rows}
    return {
        "seated": sum(counts.values()),
        "boarded": counts.get("boarded", 0),
        "no_show": counts.get("no_show", 0),
        "isolated": counts.get("isolated", 0),
        "waiting": counts.get("waiting", 0),
    }


def depart(trip_id: int, actor: User) -> None:
    """Nobody is lost: the trip leaves only when every seated worker is boarded or marked
    no-show (or isolated). Employers hear their workers are on the way."""
    trip = lock_trip(trip_id)
    if trip.status != TripStatus.LOCKED:
        raise DomainError("trip.cannot_depart")
    if boarding_counts(trip.id)["waiting"]:
        raise DomainError("trip.unaccounted")
    trip.status, trip.departed_at = TripStatus.DEPARTED.value, utcnow()
    db.session.flush()
    record_audit("trip.departed", trip, actor)
    _tell_employers(trip, "trip_departed")


def arrive(trip_id: int, actor: User) -> str:
    """The trip is at its stop. Returns what follows: "handover" (the employers are asked to
    it), or the trip is closed at once: "rides_on" (everyone who boarded rides on) or "empty"
    (nobody boarded)."""
    trip = lock_trip(trip_id)
    if trip.status != TripStatus.DEPARTED:
        raise DomainError("trip.cannot_arrive")
    trip.status, trip.arrived_at = TripStatus.ARRIVED.value, utcnow()
    db.session.flush()
    record_audit("trip.arrived", trip, actor)
    _tell_employers(trip, "trip_arrived")
    if handover_due(trip):
        return "handover"
    trip.status = TripStatus.CLOSED.value  # nothing to hand over here
    return "rides_on" if boarding_counts(trip.id)["boarded"] else "empty"


def _boarded_by_request(trip: Trip) -> dict[int, list[SeatAssignment]]:
    seats: dict[int, list[SeatAssignment]] = defaultdict(list)
    for seat in assignments(trip.id, with_workers=True):
        if seat.boarding == "boarded":
            seats[seat.entry.request_id].append(seat)
    return seats


def _rides_on(trip: Trip) -> set[int]:
    """Entries with a seat on a leg this trip feeds."""
    return set(
        db.session.scalars(
            select(SeatAssignment.roster_entry_id)
            .join(Trip)
            .where(Trip.connects_from_id == trip.id, Trip.status != TripStatus.CANCELLED)
        )
    )


def handover_due(trip: Trip) -> dict[int, int]:
    """Per request: workers this trip brings to their final stop (boarded here, no onward
    leg) whose handover is not confirmed yet."""
    onward = _rides_on(trip)
    done = set(db.session.scalars(select(Handover.request_id).where(Handover.trip_id == trip.id)))
    due = {}
    for request_id, seats in _boarded_by_request(trip).items():
        final = [s for s in seats if s.roster_entry_id not in onward]
        if final and request_id not in done:
            due[request_id] = len(final)
    return due


def _tell_employers(trip: Trip, template: str) -> None:
    onward = _rides_on(trip)
    for request_id, seats in _boarded_by_request(trip).items():
        request = seats[0].entry.request
        final = sum(1 for s in seats if s.roster_entry_id not in onward)
        notify_users(
            f"{template}:{trip.id}:{request_id}",
            organization_users(request.organization_id),
            template,
            {
                "trip": trip.reference,
                "reference": request.reference,
                "vehicle": vehicle_text(trip),
                "workers": len(seats),
                "final": final,
                "destination": trip.destination_point,
                "url": link(f"/requests/{request_id}/handover/{trip.id}"),
            },
            about=trip,
        )


def confirm_handover(
    trip_id: int, request_id: int, received: int, representative: str, note: str, actor: User
) -> Handover:
    """The employer's representative signs for the workers received; a count that differs
    needs a note. Confirmed once: a second submission is refused, nothing recorded twice."""
    trip = lock_trip(trip_id)
    if trip.status not in (TripStatus.ARRIVED, TripStatus.CLOSED):
        raise DomainError("handover.not_arrived")
    request = _lock_requests([request_id])[0]
    if db.session.scalar(
        select(Handover.id).where(Handover.trip_id == trip.id, Handover.request_id == request_id)
    ):
        raise DomainError("handover.done")
    due = handover_due(trip)
    if request_id not in due:
        raise DomainError("handover.nothing_due")
    if received < 0:
        raise DomainError("handover.count", "received")
    if not representative.strip():
        raise DomainError("handover.representative_missing", "representative_name")
    if received != due[request_id] and not note.strip():
        raise DomainError("handover.note_needed", "note")
    handover = Handover(
        trip_id=trip.id,
        request_id=request_id,
        expected=due[request_id],
        received=received,
        representative_name=representative.strip(),
        note=note.strip() or None,
        confirmed_by_id=actor.id,
    )
    db.session.add(handover)
    onward = _rides_on(trip)
    arrived = [
        s.roster_entry_id
        for s in _boarded_by_request(trip).get(request_id, [])
        if s.roster_entry_id not in onward
    ]
    _mark_entries(arrived, EntryStatus.ARRIVED, only_from=[EntryStatus.BOARDED])
    db.session.flush()
    record_audit(
        "trip.handover",
        trip,
        actor,
        request_id=request_id,
        expected=handover.expected,
        received=received,
    )
    _complete_if_done(request)
    if not handover_due(trip):
        trip.status = TripStatus.CLOSED.value
        db.session.flush()
    return handover


def _complete_if_done(request: TransportRequest) -> None:
    """A request is completed when each of its workers arrived, did not show or withdrew."""
    open_entries = db.session.scalar(
        select(func.count()).where(
            RosterEntry.request_id == request.id,
            RosterEntry.status.not_in(
                [EntryStatus.ARRIVED, EntryStatus.NO_SHOW, EntryStatus.WITHDRAWN]
            ),
        )
    )
    if not open_entries and request.status in (RequestStatus.APPROVED, RequestStatus.SCHEDULED):
        request.status = RequestStatus.COMPLETED.value
        db.session.flush()
        record_audit("request.completed", request, None)


def _handed_over_any(request_id: int) -> bool:
    return (
        db.session.scalar(
            select(RosterEntry.id)
            .where(RosterEntry.request_id == request_id, RosterEntry.status == EntryStatus.ARRIVED)
            .limit(1)
        )
        is not None
    )


# --- withdrawals and cancelled requests ------------------------------------------------------


def _free_seats_of(entry_ids: set[int]) -> None:
    """Before a worker or a request leaves: their seats on trips not yet gone are freed (a
    worker already through a vehicle door cannot withdraw)."""
    seats = db.session.scalars(
        select(SeatAssignment).join(Trip).where(SeatAssignment.roster_entry_id.in_(entry_ids))
    ).all()
    live = [s for s in seats if s.trip.status != TripStatus.CANCELLED]
    if any(s.trip.status not in SEATING_STATUSES or s.boarding for s in live):
        raise DomainError("entry.cannot_withdraw")
    trips = {s.trip_id: s.trip for s in live}
    for trip_id in sorted(trips):
        lock_trip(trip_id)
    if live:  # their reminders are taken back with the seats
        _free(list(trips.values()), entry_ids)


def withdraw_from_travel(entry_id: int, actor: User | None) -> None:
    """A worker will not travel: withdrawn by the employer (``actor``) or by whoever holds the
    worker's link ("I can't go", ``actor`` None). Seats are freed, the place on the request
    too; the coordinators (and, when the worker withdrew, the employer) are told."""
    entry = db.session.get(RosterEntry, entry_id)
    if entry is None:
        raise DomainError("entry.cannot_withdraw")
    _lock_requests([entry.request_id])
    db.session.refresh(entry)
    had_seat = entry.status == EntryStatus.SEATED
    _free_seats_of({entry.id})
    db.session.refresh(entry)
    demand.withdraw_entry(entry, actor)
    _update_requests([entry.request_id])  # the others may all be seated: scheduled again
    request = entry.request
    # The last worker still open after the others were handed over: the request is done.
    if _handed_over_any(request.id):
        _complete_if_done(request)
    told = (
        region_coordinators(request.origin_region_code, request.destination_region_code)
        if had_seat
        else []
    )
    if actor is None:
        told = [*organization_users(request.organization_id), *told]
    notify_users(
        f"entry.withdrawn:{entry.id}",
        told,
        "worker_withdrew",
        {
            "name": entry.worker.name,
            "reference": request.reference,
            "by_worker": actor is None,
            "url": link(f"/requests/{request.id}"),
        },
        about=request,
    )


def cancel_request_travel(request_id: int, actor: User) -> None:
    """The employer cancels a request: its workers' seats are freed first."""
    request = _lock_requests([request_id])[0]
    _free_seats_of({entry.id for entry in request.entries})
    db.session.refresh(request)
    demand.cancel_request(request, actor)
