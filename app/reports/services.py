"""Campaign figures and trip costs (政府买单).

The read functions aggregate in SQL (GROUP BY): a handful of queries per page however many
workers there are. Python only folds grouped rows — statuses, reason-code strings, distinct
seat-map and policy combinations, (trip, employer, origin) slices — never one row per worker.

Who sees what: a coordinator the requests and trips leaving from or going to their region
(``visible_to`` of the models), an admin everything, an employer their own organization's
requests and workers, and their share of the trips that carried them.

``record_trip_costs`` is the one write: it validates, upserts, audits and flushes; the view
commits.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
    String,
    and_,
    case,
    cast,
    distinct,
    func,
    literal_column,
    or_,
    select,
    union_all,
)

from app.accounts.models import Organization, User
from app.core.access import Role
from app.core.clock import utcnow
from app.core.errors import DomainError
from app.core.services import record_audit
from app.demand.models import EntryStatus, RequestStatus, RosterEntry, TransportRequest
from app.extensions import db
from app.fleet.models import Vehicle, VehicleKind
from app.notify.models import Channel, Notification, NotificationStatus
from app.trips.allocation import Policy, capacity
from app.trips.models import SeatAssignment, Trip, TripCost, TripStatus
from app.trips.seatmaps import build_vehicle

FUNNEL_STAGES = ("registered", "cleared", "seated", "boarded", "arrived")
# How far along the funnel each roster-entry status has come (an index into FUNNEL_STAGES):
# a no-show had a seat (no-shows are marked at the vehicle door), a blocked worker is only
# registered. Withdrawn workers leave the funnel and are counted apart.
_REACHED = {
    EntryStatus.PENDING: 0,
    EntryStatus.BLOCKED: 0,
    EntryStatus.CLEARED: 1,
    EntryStatus.SEATED: 2,
    EntryStatus.NO_SHOW: 2,
    EntryStatus.BOARDED: 3,
    EntryStatus.ARRIVED: 4,
}
# Workers count on requests that reached the coordinators and were not turned down.
COUNTED_REQUESTS = (
    RequestStatus.SUBMITTED,
    RequestStatus.APPROVED,
    RequestStatus.SCHEDULED,
    RequestStatus.COMPLETED,
)
# Before a trip leaves, every seated worker counts as carried; once it has left, the boarded.
BEFORE_DEPARTURE = (TripStatus.PLANNED, TripStatus.OPEN, TripStatus.LOCKED)
MODES = tuple(kind.value for kind in VehicleKind)
COST_PARTS = ("hire", "meals", "tolls")
MAX_AMOUNT = Decimal("9999999999.99")  # Numeric(12, 2)
CENT = Decimal("0.01")
MAX_WINDOW_DAYS = 366
TOP_PLACES = 10
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


# --- the date window ---------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Local days ``first`` .. ``last`` (inclusive): requests whose departure window overlaps
    them, trips departing on them."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), self.zone)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(0), self.zone)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def default_window(today: date, zone: ZoneInfo) -> Window:
    """The last 30 days to 30 days ahead."""
    return Window(today - timedelta(days=30), today + timedelta(days=30), zone)


def _requests_in(user: User, window: Window):
    return and_(
        TransportRequest.visible_to(user),
        TransportRequest.latest_departure >= window.first,
        TransportRequest.earliest_departure <= window.last,
    )


def _trip_scope(user: User):
    """Staff see trips by region (admins all); an employer the trips with their workers."""
    if user.role == Role.EMPLOYER:
        # Not correlated: the database reads the employer's trips once per statement.
        return Trip.id.in_(
            select(SeatAssignment.trip_id)
            .join(RosterEntry, RosterEntry.id == SeatAssignment.roster_entry_id)
            .join(TransportRequest, TransportRequest.id == RosterEntry.request_id)
            .where(TransportRequest.organization_id == user.organization_id)
        )
    return Trip.visible_to(user)


def _trips_in(user: User, window: Window):
    return and_(_trip_scope(user), Trip.departs_at >= window.start, Trip.departs_at < window.end)


def _local_day(column, window: Window):
    """The local calendar day of a UTC timestamp column, in SQL."""
    if db.engine.dialect.name == "postgresql":
        return cast(func.timezone(window.zone.key, column), Date)
    # SQLite keeps UTC text: shift it by the zone's offset, piecewise where the offset
    # changes inside the window (daylight saving time).
    pieces = offset_pieces(window.start, window.end, window.zone)
    shifted = [func.date(column, f"{minutes:+d} minutes") for _, minutes in pieces]
    if len(pieces) == 1:
        return shifted[0]
    whens = [(column < until, expr) for (until, _), expr in zip(pieces, shifted, strict=True)]
    return case(*whens[:-1], else_=shifted[-1])


def offset_pieces(
    start: datetime, end: datetime, zone: ZoneInfo
) -> list[tuple[datetime | None, int]]:
    """``(until, offset in minutes)`` for each stretch of ``[start, end)`` with one UTC
    offset; the last stretch's ``until`` is None."""

    def offset(moment: datetime) -> int:
        return int(moment.astimezone(zone).utcoffset().total_seconds() // 60)

    pieces: list[tuple[datetime | None, int]] = []
    current, moment = offset(start), start
    while moment < end:
        following = moment + timedelta(hours=1)
        if offset(following) != current:
            change = moment
            while offset(change) == current:  # to the minute
                change += timedelta(minutes=1)
            pieces.append((change, current))
            current, moment = offset(change), change
            continue
        moment = following
    pieces.append((None, current))
    return pieces


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


# --- requests and workers ------------------------------------------------------------------


def requests_by_status(user: User, window: Window) -> dict[str, int]:
    rows = db.session.execute(
        select(TransportRequest.status, func.count())
        .where(_requests_in(user, window))
        .group_by(TransportRequest.status)
    ).all()
    counts = dict.fromkeys((status.value for status in RequestStatus), 0)
    counts.update(dict(rows))
    return counts


@dataclass
class WorkerFigures:
    funnel: list[tuple[str, int]]  # (stage, workers who reached it)
    blocked: list[tuple[str, int]]  # (health reason code, blocked workers with it), most first
    blocked_workers: int
    no_show: int
    fever: int  # of the no-shows: kept off the vehicle with a fever
    withdrawn: int


def _counted_entries(user: User, window: Window):
    return and_(
        _requests_in(user, window),
        TransportRequest.status.in_([status.value for status in COUNTED_REQUESTS]),
    )


def worker_figures(user: User, window: Window) -> WorkerFigures:
    """One query: roster entries grouped by status and block reason."""
    rows = db.session.execute(
        select(RosterEntry.status, RosterEntry.block_reason, func.count())
        .join(TransportRequest, TransportRequest.id == RosterEntry.request_id)
        .where(_counted_entries(user, window))
        .group_by(RosterEntry.status, RosterEntry.block_reason)
    ).all()
    reached = [0] * len(FUNNEL_STAGES)
    reasons: Counter[str] = Counter()
    blocked = no_show = fever = withdrawn = 0
    for status, reason, n in rows:
        codes = [code for code in (reason or "").split(",") if code]
        if status == EntryStatus.WITHDRAWN:
            withdrawn += n
            continue
        for stage in range(_REACHED.get(status, 0) + 1):
            reached[stage] += n
        if status == EntryStatus.BLOCKED:
            blocked += n
            for code in codes:
                reasons[code] += n
        elif status == EntryStatus.NO_SHOW:
            no_show += n
            if "fever" in codes:
                fever += n
    return WorkerFigures(
        funnel=list(zip(FUNNEL_STAGES, reached, strict=True)),
        blocked=sorted(reasons.items(), key=lambda item: (-item[1], item[0])),
        blocked_workers=blocked,
        no_show=no_show,
        fever=fever,
        withdrawn=withdrawn,
    )


def top_places(
    user: User, window: Window, limit: int = TOP_PLACES
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Workers (not withdrawn) by request origin and by destination: the top ``limit`` each,
    from one query grouped by (origin, destination)."""
    rows = db.session.execute(
        select(
            TransportRequest.origin_region_name,
            TransportRequest.destination_region_name,
            func.count(),
        )
        .join(RosterEntry, RosterEntry.request_id == TransportRequest.id)
        .where(_counted_entries(user, window), RosterEntry.status != EntryStatus.WITHDRAWN)
        .group_by(TransportRequest.origin_region_name, TransportRequest.destination_region_name)
    ).all()
    origins: Counter[str] = Counter()
    destinations: Counter[str] = Counter()
    for origin, destination, n in rows:
        origins[origin] += n
        destinations[destination] += n

    def top(counter: Counter[str]) -> list[tuple[str, int]]:
        return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:limit]

    return top(origins), top(destinations)


# --- trips and seats -----------------------------------------------------------------------


@dataclass
class DayFigures:
    day: date
    trips: int
    workers: int  # distinct workers with a seat on a trip departing that day


@dataclass
class TripFigures:
    by_status: dict[str, dict[str, int]]  # status -> mode -> trips
    status_totals: dict[str, int]
    mode_totals: dict[str, int]  # trips not cancelled
    total: int
    seats_offered: int  # policy capacity of the trips not cancelled
    seats_used: int
    days: list[DayFigures]


def trip_figures(user: User, window: Window) -> TripFigures:
    """Four queries: trips by (status, mode); distinct (seat map, policy, blocked seats)
    combinations with their trip count; trips per local departure day; seats per day."""
    in_window = _trips_in(user, window)
    running = and_(in_window, Trip.status != TripStatus.CANCELLED)

    by_status = {status.value: dict.fromkeys(MODES, 0) for status in TripStatus}
    for status, kind, n in db.session.execute(
        select(Trip.status, Vehicle.kind, func.count())
        .join(Vehicle, Vehicle.id == Trip.vehicle_id)
        .where(in_window)
        .group_by(Trip.status, Vehicle.kind)
    ):
        by_status[status][kind] += n
    status_totals = {status: sum(modes.values()) for status, modes in by_status.items()}
    mode_totals = {
        mode: sum(
            modes[mode]
            for status, modes in by_status.items()
            if status != TripStatus.CANCELLED.value
        )
        for mode in MODES
    }

    offered = _seats_offered(running)

    day = _local_day(Trip.departs_at, window)
    trips_per_day = {
        _day(value): n
        for value, n in db.session.execute(select(day, func.count()).where(running).group_by(day))
    }
    seats_used = 0
    workers_per_day: dict[date, int] = {}
    for travel_date, seats, workers in db.session.execute(
        select(
            SeatAssignment.travel_date,
            func.count(),
            func.count(distinct(SeatAssignment.roster_entry_id)),
        )
        .join(Trip, Trip.id == SeatAssignment.trip_id)
        .where(running)
        .group_by(SeatAssignment.travel_date)
    ):
        seats_used += seats
        workers_per_day[_day(travel_date)] = workers
    days = [
        DayFigures(d, trips_per_day.get(d, 0), workers_per_day.get(d, 0)) for d in window.days()
    ]
    return TripFigures(
        by_status=by_status,
        status_totals=status_totals,
        mode_totals=mode_totals,
        total=sum(status_totals.values()),
        seats_offered=offered,
        seats_used=seats_used,
        days=days,
    )


def _seats_offered(condition) -> int:
    """Policy capacity summed over trips: SQL groups the trips by everything capacity depends
    on, Python computes it once per distinct combination. The JSON seat lists are grouped as
    text (PostgreSQL's json type has no equality)."""
    vehicle_blocked = cast(Vehicle.blocked_seats, String)
    trip_blocked = cast(Trip.blocked_seats, String)
    rows = db.session.execute(
        select(
            Vehicle.seatmap_template,
            Vehicle.first_carriage,
            Vehicle.carriages,
            Trip.max_load_percent,
            Trip.isolation_rows,
            Trip.alternate_seats,
            vehicle_blocked.label("vehicle_blocked"),
            trip_blocked.label("trip_blocked"),
            func.count(),
        )
        .join(Vehicle, Vehicle.id == Trip.vehicle_id)
        .where(condition)
        .group_by(
            Vehicle.seatmap_template,
            Vehicle.first_carriage,
            Vehicle.carriages,
            Trip.max_load_percent,
            Trip.isolation_rows,
            Trip.alternate_seats,
            vehicle_blocked,
            trip_blocked,
        )
    ).all()
    total = 0
    for template, first, carriages, percent, rows_kept, alternate, v_blocked, t_blocked, n in rows:
        seat_map = build_vehicle(template, range(first, first + carriages))
        blocked = frozenset(json.loads(v_blocked or "[]") or ()) | frozenset(
            json.loads(t_blocked or "[]") or ()
        )
        total += n * capacity(seat_map, Policy.of_percent(percent, rows_kept, alternate), blocked)
    return total


def notification_counts(user: User, window: Window) -> dict[str, dict[str, int]]:
    """Messages written in the window about the user's region (a request's or trip's, see
    ``Notification``), by channel and status."""
    counts = {
        channel.value: dict.fromkeys((s.value for s in NotificationStatus), 0)
        for channel in Channel
    }
    for channel, status, n in db.session.execute(
        select(Notification.channel, Notification.status, func.count())
        .where(
            Notification.visible_to(user),
            Notification.created_at >= window.start,
            Notification.created_at < window.end,
        )
        .group_by(Notification.channel, Notification.status)
    ):
        counts[channel][status] = n
    return counts


# --- costs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TripCosts:
    """One trip's recorded costs (None: not recorded)."""

    trip_id: int
    mode: str
    hire: Decimal | None
    meals: Decimal | None
    tolls: Decimal | None

    def part(self, name: str) -> Decimal | None:
        return getattr(self, name)


@dataclass(frozen=True)
class Slice:
    """Workers of one employer, from one origin, carried on one trip."""

    trip_id: int
    organization_id: int
    organization_name: str
    origin: str
    workers: int


@dataclass
class CostRow:
    """Shares of trip costs added up for an employer, an origin, a mode or everything."""

    key: str
    name: str
    trips: set[int] = field(default_factory=set)
    workers: int = 0
    sums: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(COST_PARTS, Decimal(0)))
    # Trips whose amount for a part is not recorded: that part is "not recorded" for the
    # row when no trip of it has the amount.
    missing: dict[str, set[int]] = field(default_factory=lambda: {p: set() for p in COST_PARTS})

    def add(self, costs: TripCosts, workers: int, share: int, of: int) -> None:
        """``share / of`` of the trip's costs, for ``workers`` carried."""
        self.trips.add(costs.trip_id)
        self.workers += workers
        for part in COST_PARTS:
            value = costs.part(part)
            if value is None:
                self.missing[part].add(costs.trip_id)
            else:
                self.sums[part] += value * share / of

    def amount(self, part: str) -> Decimal | None:
        if len(self.missing[part]) == len(self.trips):
            return None
        return self.sums[part].quantize(CENT, ROUND_HALF_UP)

    def not_recorded(self, part: str) -> int:
        """Trips of this row without the amount."""
        return len(self.missing[part])

    @property
    def hire(self) -> Decimal | None:
        return self.amount("hire")

    @property
    def meals(self) -> Decimal | None:
        return self.amount("meals")

    @property
    def tolls(self) -> Decimal | None:
        return self.amount("tolls")

    @property
    def total(self) -> Decimal | None:
        amounts = [a for a in (self.amount(p) for p in COST_PARTS) if a is not None]
        return sum(amounts, Decimal(0)).quantize(CENT) if amounts else None

    @property
    def per_worker(self) -> Decimal | None:
        total = self.total
        if total is None or not self.workers:
            return None
        return (total / self.workers).quantize(CENT, ROUND_HALF_UP)


@dataclass
class SharedCosts:
    by_employer: list[CostRow]
    by_origin: list[CostRow]
    by_mode: list[CostRow]
    total: CostRow
    unshared: CostRow  # trips with a cost but nobody carried (say, cancelled after hire)


def share_costs(
    trips: Iterable[TripCosts], slices: Iterable[Slice], organization_id: int | None = None
) -> SharedCosts:
    """Each trip's cost shared among the employers (and origins) on it in proportion to their
    workers carried on it. Pure. With ``organization_id``, only that employer's shares are
    added up (the other slices still count in each trip's total of workers)."""
    trips = {t.trip_id: t for t in trips}
    slices = [s for s in slices if s.trip_id in trips]
    on_trip: Counter[int] = Counter()
    for piece in slices:
        on_trip[piece.trip_id] += piece.workers
    employers: dict[str, CostRow] = {}
    origins: dict[str, CostRow] = {}
    modes: dict[str, CostRow] = {}
    total = CostRow("all", "")
    unshared = CostRow("unshared", "")
    for piece in slices:
        if organization_id is not None and piece.organization_id != organization_id:
            continue
        costs, of = trips[piece.trip_id], on_trip[piece.trip_id]
        if not piece.workers:
            continue
        key = str(piece.organization_id)
        for rows, row_key, name in (
            (employers, key, piece.organization_name),
            (origins, piece.origin, piece.origin),
            (modes, costs.mode, costs.mode),
        ):
            row = rows.get(row_key)
            if row is None:  # not setdefault: it would build a row for every slice
                row = rows[row_key] = CostRow(row_key, name)
            row.add(costs, piece.workers, piece.workers, of)
        total.add(costs, piece.workers, piece.workers, of)
    if organization_id is None:
        for trip_id, costs in trips.items():
            if not on_trip[trip_id]:
                unshared.add(costs, 0, 1, 1)
                total.add(costs, 0, 1, 1)

    def ordered(rows: dict[str, CostRow]) -> list[CostRow]:
        return sorted(rows.values(), key=lambda r: (-(r.total or 0), r.name, r.key))

    return SharedCosts(ordered(employers), ordered(origins), ordered(modes), total, unshared)


def _carried():
    """Seats that count as carried: every seat before departure, the boarded ones after."""
    return or_(
        Trip.status.in_([s.value for s in BEFORE_DEPARTURE]),
        SeatAssignment.boarding == "boarded",
    )


def _costed_seats(select_stmt, condition, costed: bool = True):
    """Seats carried on the trips matching ``condition`` (only trips with costs: ``costed``)."""
    query = select_stmt.select_from(SeatAssignment).join(Trip, Trip.id == SeatAssignment.trip_id)
    if costed:
        query = query.join(TripCost, TripCost.trip_id == Trip.id)
    return (
        query.join(Vehicle, Vehicle.id == Trip.vehicle_id)
        .join(RosterEntry, RosterEntry.id == SeatAssignment.roster_entry_id)
        .join(TransportRequest, TransportRequest.id == RosterEntry.request_id)
        .where(condition, _carried())
    )


def _trip_costs(condition) -> list[TripCosts]:
    return [
        TripCosts(trip_id, kind, hire, meals, tolls)
        for trip_id, kind, hire, meals, tolls in db.session.execute(
            select(Trip.id, Vehicle.kind, TripCost.hire, TripCost.meals, TripCost.tolls)
            .join(Vehicle, Vehicle.id == Trip.vehicle_id)
            .join(TripCost, TripCost.trip_id == Trip.id)
            .where(condition)
        )
    ]


def _slices(condition, costed: bool = True) -> list[Slice]:
    query = _costed_seats(
        select(
            SeatAssignment.trip_id,
            TransportRequest.organization_id,
            Organization.name,
            TransportRequest.origin_region_name,
            func.count(),
        ),
        condition,
        costed,
    ).join(Organization, Organization.id == TransportRequest.organization_id)
    return [
        Slice(*row)
        for row in db.session.execute(
            query.group_by(
                SeatAssignment.trip_id,
                TransportRequest.organization_id,
                Organization.name,
                TransportRequest.origin_region_name,
            )
        )
    ]


def _distinct_workers(condition) -> Counter[tuple[str, str]]:
    """Distinct workers carried on costed trips, per employer, origin, mode and overall (a
    worker on a train and then a coach is one worker). A worker travels on one request, so
    has one employer and one origin: the distinct counts per (employer, origin) add up to
    those per employer, per origin and overall. A mode needs its own count (a worker may ride
    a train, then a coach). Two grouped passes, in one UNION ALL statement."""
    count = func.count(distinct(SeatAssignment.roster_entry_id)).label("n")
    organization = cast(TransportRequest.organization_id, String)
    pairs = _costed_seats(
        select(
            literal_column("'pair'").label("dimension"),
            organization.label("a"),
            TransportRequest.origin_region_name.label("b"),
            count,
        ),
        condition,
    ).group_by(organization, TransportRequest.origin_region_name)
    modes = _costed_seats(
        select(
            literal_column("'mode'").label("dimension"),
            Vehicle.kind.label("a"),
            Vehicle.kind.label("b"),
            count,
        ),
        condition,
    ).group_by(Vehicle.kind)
    workers: Counter[tuple[str, str]] = Counter()
    for dimension, a, b, n in db.session.execute(union_all(pairs, modes)):
        if dimension == "mode":
            workers[("mode", a)] += n
            continue
        workers[("employer", a)] += n
        workers[("origin", b)] += n
        workers[("all", "all")] += n
    return workers


@dataclass
class CostReport:
    shared: SharedCosts
    uncosted: list[Trip]  # the first few trips without any cost recorded (staff only)
    uncosted_count: int


def cost_report(user: User, window: Window, uncosted_limit: int = 20) -> CostReport:
    """Costs of the trips departing in the window, shared among employers. An employer gets
    only its own shares."""
    condition = _trips_in(user, window)
    organization_id = user.organization_id if user.role == Role.EMPLOYER else None
    own = (
        TransportRequest.organization_id == organization_id if organization_id is not None else None
    )
    shared = share_costs(_trip_costs(condition), _slices(condition), organization_id)
    if own is not None:  # the employer's own seats are on the employer's trips by definition
        window_only = and_(Trip.departs_at >= window.start, Trip.departs_at < window.end)
        workers = _distinct_workers(and_(window_only, own))
    else:
        workers = _distinct_workers(condition)
    for dimension, rows in (
        ("employer", shared.by_employer),
        ("origin", shared.by_origin),
        ("mode", shared.by_mode),
    ):
        for row in rows:
            row.workers = workers.get((dimension, row.key), 0)
    shared.total.workers = workers.get(("all", "all"), 0)

    uncosted: list[Trip] = []
    count = 0
    if organization_id is None:
        found = db.session.execute(
            select(Trip, func.count().over())
            .outerjoin(TripCost, TripCost.trip_id == Trip.id)
            .where(condition, Trip.status != TripStatus.CANCELLED, TripCost.trip_id.is_(None))
            .order_by(Trip.departs_at, Trip.id)
            .limit(uncosted_limit)
        ).all()
        uncosted = [trip for trip, _ in found]
        count = found[0][1] if found else 0
    return CostReport(shared, uncosted, count)


@dataclass
class TripSplit:
    carried: int  # workers carried: seated until the trip leaves, then boarded
    shared: SharedCosts

    @property
    def per_worker(self) -> Decimal | None:
        return self.shared.total.per_worker


def trip_split(trip: Trip) -> TripSplit:
    """Who one trip carries, and how its costs are shared among the employers on it."""
    condition = Trip.id == trip.id
    slices = _slices(condition, costed=False)
    return TripSplit(
        sum(piece.workers for piece in slices), share_costs(_trip_costs(condition), slices)
    )


# --- recording a trip's costs ---------------------------------------------------------------


def parse_amount(text: str | None) -> Decimal | None:
    """Yuan as typed: "3200", "3,200.50", "¥ 45", full-width digits. Empty: None (not
    recorded). Raises ValueError when it is not a number; the range is checked apart."""
    cleaned = unicodedata.normalize("NFKC", text or "").strip()
    cleaned = cleaned.removeprefix("¥").removesuffix("元").replace(" ", "")
    if not cleaned:
        return None
    if "," in cleaned:
        # Only as a thousands separator: "45,5" might mean 45.5 and is refused, not guessed.
        if not _THOUSANDS.fullmatch(cleaned):
            raise ValueError("not a number")
        cleaned = cleaned.replace(",", "")
    if not all(c.isdigit() or c in ".-+" for c in cleaned):
        raise ValueError("not a number")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not value.is_finite():
        raise ValueError("not a number")
    return value


def check_amount(value: Decimal | None, part: str) -> Decimal | None:
    """None (not recorded) or a sum of yuan: at least 0 (0 is a real zero: waived), at most
    two decimals (fen), within the column's range."""
    if value is None:
        return None
    if not isinstance(value, Decimal) or not value.is_finite():
        raise DomainError("cost.not_a_number", part)
    if value < 0:
        raise DomainError("cost.negative", part)
    if value != value.quantize(CENT):
        raise DomainError("cost.decimals", part)
    if value > MAX_AMOUNT:
        raise DomainError("cost.too_large", part)
    return value.quantize(CENT)


def _shown(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def record_trip_costs(
    trip: Trip,
    hire: Decimal | None,
    meals: Decimal | None,
    tolls: Decimal | None,
    note: str | None,
    actor: User,
) -> TripCost:
    """Record (or correct) what a trip cost. None leaves a part "not recorded"."""
    amounts = {
        part: check_amount(value, part)
        for part, value in zip(COST_PARTS, (hire, meals, tolls), strict=True)
    }
    note = (note or "").strip() or None
    if note is not None and len(note) > 2000:
        raise DomainError("cost.note_too_long", "note")
    # The trip row is the lock: two coordinators recording at once take turns.
    db.session.scalar(select(Trip.id).where(Trip.id == trip.id).with_for_update())
    cost = db.session.scalar(
        select(TripCost)
        .where(TripCost.trip_id == trip.id)
        .execution_options(populate_existing=True)
    )
    previous = None
    if cost is None:
        cost = TripCost(trip_id=trip.id)
        db.session.add(cost)
    else:
        previous = {part: _shown(getattr(cost, part)) for part in COST_PARTS}
    for part, value in amounts.items():
        setattr(cost, part, value)
    cost.note = note
    cost.recorded_by_id = actor.id
    cost.recorded_at = utcnow()
    db.session.flush()
    # The note is free text (it may hold a phone number): the audit says only that there is one.
    record_audit(
        "trip.costs_recorded",
        trip,
        actor,
        **{part: _shown(value) for part, value in amounts.items()},
        previous=previous,
        note=note is not None,
    )
    return cost


def amounts_of(cost: TripCost | None) -> dict[str, Decimal | None]:
    return {part: (getattr(cost, part) if cost else None) for part in COST_PARTS}


def total_of(values: Sequence[Decimal | None]) -> Decimal | None:
    recorded = [v for v in values if v is not None]
    return sum(recorded, Decimal(0)).quantize(CENT) if recorded else None
