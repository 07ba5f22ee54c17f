"""Seat allocation and trip planning (pure: no Flask, no database, no clock).

Distancing policy
-----------------
``Policy(max_load, isolation_rows, alternate_seats)``: at most ``max_load`` of each carriage's
rated seats are occupied (``floor(max_load * seats)``, per carriage, so a train cannot pack one
carriage and leave another empty); the last ``isolation_rows`` rows of each carriage stay empty
(the fever isolation area); with ``alternate_seats`` no two occupied seats are adjacent.
Presets: ``FULL``, ``COACH_2020`` (50%, last two rows empty) and ``TRAIN_2020`` (50%, alternate
seats). ``max_load`` is kept as an exact ``Fraction`` (a float 0.55 means 55/100).

``usable_seats(seat_map, policy, blocked)``
    The seats the allocator may use, in seat order: not blocked, not in the isolation rows and,
    with ``alternate_seats``, on the fixed alternate pattern — in each run of adjacent seats,
    every other seat starting from the window (2+2: A and D; 3+2: A, C and the 2-side window;
    3+3: A, C, D, F). The pattern is fixed by the layout, so it does not shift when a seat is
    blocked or when passengers are added later.
``capacity(seat_map, policy, blocked)``
    Sum over carriages of ``min(usable seats, floor(max_load * rated seats))``.
``allocate(seat_map, policy, blocked, existing, passengers, *, existing_groups=None)``
    Seats new passengers; returns an ``Allocation`` (``assigned``: passenger id -> seat label
    for the new passengers only, ``unplaced``, ``reasons``, ``pieces``, ``already_seated``).
``check_move(seat_map, policy, blocked, existing, passenger_id, to_seat)``
    ``None`` when a coordinator may put the passenger on that seat by hand, else a reason code
    from ``MOVE_REFUSALS``.
``plan(groups, vehicles, directory=DEFAULT_DIR)`` and ``split_passengers(plan, passengers)``
    Which groups ride which vehicle, then which passengers.

Allocation rules
----------------
- Existing assignments never move; they count against each carriage's capacity, and with
  ``alternate_seats`` the seats next to them are not used (even if someone was seated off the
  pattern by hand). Passengers already in ``existing`` are reported in ``already_seated``.
- Passengers are grouped by ``group[0]`` (the request / employer) and within it by the rest of
  the tuple (village, family). Requests are placed largest first (ties: key); inside a request,
  subgroups largest first (ties: key), then passenger ids. With ``existing_groups``, requests
  that already have seated members go before the others (they claim the space next to their
  colleagues). The result depends only on the input *set*, not on its order.
- Free space is a list of *blocks*: runs of usable seats, consecutive in seat order within one
  carriage, none taken (an occupied seat ends a block). A block's room is its length capped by
  its carriage's remaining capacity.
- A request that fits a block goes whole into the best-fitting block (least room, then seat
  order; with ``existing_groups``, first the block nearest to the request's seated members).
  One that fits none is split: the roomiest block is filled (ties: seat order), and so on until
  the remainder fits a block, which then gets it by best fit. Taking the largest blocks first
  gives the fewest pieces; the pieces are then filled in seat order, so subgroups stay together
  except where a piece ends. When no room is left, the remaining passengers are unplaced with
  reason ``"capacity"`` (the policy's capacity is used up) or ``"no_seat"`` (capacity remains
  but no free usable seat does).

Planning heuristic
------------------
``plan`` gets ``(group key, size)`` pairs and ``VehicleOption`` s (template, carriages, policy,
how many are available). Each available vehicle's capacity is computed from its seat map and
policy. The fewest vehicles are the largest ones: vehicles are taken by capacity, largest first
(ties: option order), until their capacity covers everyone — a lower bound on the count, so
the plan uses the minimum number of vehicles. Groups are then packed into those vehicles by
best-fit decreasing (largest group first, ties: input order; into the vehicle with the least
room that still holds the whole group). A group no vehicle can hold whole is split like a
request in ``allocate``: roomiest vehicle first, the remainder by best fit. If all the vehicles
available cannot carry everyone, ``Plan.missing_seats`` says how many seats are missing; the
packing of what fits is still shown, but the caller must refuse the plan (never half-apply).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from app.trips.seatmaps import DEFAULT_DIR, Seat, SeatMap, build_vehicle

MOVE_REFUSALS: tuple[str, ...] = (
    "no_such_seat",
    "taken",
    "blocked",
    "isolation",
    "policy_adjacent",
    "capacity",
)
UNPLACED_REASONS: tuple[str, ...] = ("capacity", "no_seat")


@dataclass(frozen=True)
class Policy:
    """A trip's distancing rules. ``max_load`` is normalised to a ``Fraction`` in (0, 1]."""

    max_load: Fraction = Fraction(1)
    isolation_rows: int = 0
    alternate_seats: bool = False

    def __post_init__(self) -> None:
        value = self.max_load
        if isinstance(value, bool):
            raise ValueError(f"max_load must be a number, not {value!r}")
        if isinstance(value, float | Decimal | str):
            value = Fraction(str(value))
        value = Fraction(value)
        if not 0 < value <= 1:
            raise ValueError(f"max_load must be in (0, 1], not {value}")
        object.__setattr__(self, "max_load", value)
        if not isinstance(self.isolation_rows, int) or self.isolation_rows < 0:
            raise ValueError(f"isolation_rows must be >= 0, not {self.isolation_rows!r}")

    @classmethod
    def of_percent(cls, percent: int, isolation_rows: int, alternate_seats: bool) -> Policy:
        """As stored on a trip: the maximum load as a whole percentage."""
        return cls(Fraction(percent, 100), isolation_rows, alternate_seats)

    def load_cap(self, rated_seats: int) -> int:
        """The most passengers ``rated_seats`` seats may carry under ``max_load``."""
        return math.floor(self.max_load * rated_seats)


FULL = Policy()
COACH_2020 = Policy(max_load=Fraction(1, 2), isolation_rows=2)
TRAIN_2020 = Policy(max_load=Fraction(1, 2), alternate_seats=True)


@dataclass(frozen=True)
class Passenger:
    """A worker to seat. ``group`` = (request or employer key, village/family tag, ...)."""

    id: int
    group: tuple[str, ...] = ()

    @property
    def request(self) -> str:
        return self.group[0] if self.group else ""


@dataclass
class Allocation:
    """What ``allocate`` decided. Only new passengers appear in ``assigned``."""

    assigned: dict[int, str] = field(default_factory=dict)  # passenger id -> seat label
    unplaced: list[int] = field(default_factory=list)  # ids, in placement order
    reasons: dict[int, str] = field(default_factory=dict)  # unplaced id -> UNPLACED_REASONS
    pieces: dict[str, int] = field(default_factory=dict)  # request -> blocks its new seats use
    already_seated: list[int] = field(default_factory=list)  # given but already in existing


# -- the policy applied to a map ------------------------------------------------------------


def isolation_labels(seat_map: SeatMap, policy: Policy) -> frozenset[str]:
    """Seats in the last ``policy.isolation_rows`` rows of each carriage."""
    if policy.isolation_rows == 0:
        return frozenset()
    rows = {(c, r) for c in seat_map.carriages for r in seat_map.rows(c)[-policy.isolation_rows :]}
    return frozenset(s.label for s in seat_map.seats if (s.carriage, s.row) in rows)


def alternate_labels(seat_map: SeatMap) -> frozenset[str]:
    """The fixed alternate pattern: no two of these seats are adjacent (see module docstring)."""
    picked: set[str] = set()
    by_row: dict[tuple[int, int], list[Seat]] = defaultdict(list)
    for seat in seat_map.seats:
        by_row[(seat.carriage, seat.row)].append(seat)
    for row in by_row.values():  # each in position order
        lowest, highest = row[0].position, row[-1].position
        seen: set[str] = set()
        for seat in row:
            if seat.label in seen:
                continue
            run = _run(seat_map, seat, seen)
            if highest in {s.position for s in run} and lowest not in {s.position for s in run}:
                run.reverse()  # start from the window on the right-hand side
            for s in run:
                if not s.adjacent & picked:
                    picked.add(s.label)
    return frozenset(picked)


def _run(seat_map: SeatMap, start: Seat, seen: set[str]) -> list[Seat]:
    """The seats connected to ``start`` by adjacency, in position order."""
    stack, found = [start], []
    seen.add(start.label)
    while stack:
        seat = stack.pop()
        found.append(seat)
        for label in seat.adjacent:
            if label not in seen:
                seen.add(label)
                stack.append(seat_map.seat(label))
    return sorted(found, key=lambda s: s.position)


def usable_seats(
    seat_map: SeatMap, policy: Policy, blocked: Collection[str] = frozenset()
) -> list[Seat]:
    """Seats the allocator may use under ``policy``, minus ``blocked``, in seat order."""
    _known(seat_map, blocked, "blocked")
    excluded = set(blocked) | isolation_labels(seat_map, policy)
    pattern = alternate_labels(seat_map) if policy.alternate_seats else None
    return [
        s
        for s in seat_map.seats
        if s.label not in excluded and (pattern is None or s.label in pattern)
    ]


def carriage_capacity(
    seat_map: SeatMap, policy: Policy, blocked: Collection[str] = frozenset()
) -> dict[int, int]:
    """Per carriage: ``min(usable seats, floor(max_load * rated seats))``."""
    usable: dict[int, int] = dict.fromkeys(seat_map.carriages, 0)
    for seat in usable_seats(seat_map, policy, blocked):
        usable[seat.carriage] += 1
    return {c: min(usable[c], policy.load_cap(seat_map.seat_count(c))) for c in seat_map.carriages}


def capacity(seat_map: SeatMap, policy: Policy, blocked: Collection[str] = frozenset()) -> int:
    """The most passengers the vehicle may carry under ``policy`` with ``blocked`` seats."""
    return sum(carriage_capacity(seat_map, policy, blocked).values())


def _known(seat_map: SeatMap, labels: Collection[str], what: str) -> None:
    unknown = [label for label in labels if label not in seat_map]
    if unknown:
        raise ValueError(f"{what} names seats {sorted(unknown)[:5]} not in {seat_map.template}")


# -- allocation ------------------------------------------------------------------------------


class _Block:
    """A run of free usable seats in one carriage; ``start`` moves forward as seats are taken."""

    __slots__ = ("carriage", "seats", "start")

    def __init__(self, carriage: int, seats: list[Seat]) -> None:
        self.carriage = carriage
        self.seats = seats
        self.start = 0

    def head(self, seat_map: SeatMap) -> int:
        return seat_map.index(self.seats[self.start].label)


def allocate(
    seat_map: SeatMap,
    policy: Policy,
    blocked: Collection[str],
    existing: Mapping[int, str],
    passengers: Sequence[Passenger],
    *,
    existing_groups: Mapping[int, tuple[str, ...]] | None = None,
) -> Allocation:
    """Seat ``passengers`` around the ``existing`` assignments (which never move).

    ``existing_groups`` (optional: passenger id -> group of the already seated) lets late
    additions to a request sit next to their colleagues. See the module docstring for the
    rules. Raises ``ValueError`` on inconsistent input (unknown seat, a seat or an id twice).
    """
    _known(seat_map, existing.values(), "existing")
    if len(set(existing.values())) != len(existing):
        raise ValueError("existing gives one seat to two passengers")
    ids = [p.id for p in passengers]
    if len(set(ids)) != len(ids):
        raise ValueError("a passenger is given twice")

    result = Allocation()
    occupied = set(existing.values())
    remaining = carriage_capacity(seat_map, policy, blocked)
    for label in occupied:
        remaining[seat_map.seat(label).carriage] -= 1
    for carriage, room in remaining.items():
        remaining[carriage] = max(room, 0)

    blocks: list[_Block] = []
    current: _Block | None = None
    for seat in usable_seats(seat_map, policy, blocked):
        free = seat.label not in occupied and not (
            policy.alternate_seats and seat.adjacent & occupied
        )
        if not free:
            current = None
        elif current is None or current.carriage != seat.carriage:
            current = _Block(seat.carriage, [seat])
            blocks.append(current)
        else:
            current.seats.append(seat)

    anchors: dict[str, int] = {}
    for pid, group in (existing_groups or {}).items():
        if pid in existing and group:
            place = seat_map.index(existing[pid])
            anchors[group[0]] = max(anchors.get(group[0], place), place)

    def room(block: _Block) -> int:
        return min(len(block.seats) - block.start, remaining[block.carriage])

    units = _units(passengers, existing, result)
    units.sort(key=lambda unit: unit[0] not in anchors)  # stable: joiners first, then by size
    for request, members in units:
        need = len(members)
        anchor = anchors.get(request)
        choices: list[tuple[int, list[Seat]]] = []  # (seat-order index, seats taken)
        while need:
            candidates = [(room(b), b.head(seat_map), b) for b in blocks if room(b) > 0]
            if not candidates:
                break
            fitting = [c for c in candidates if c[0] >= need]
            if fitting:
                near = anchor if anchor is not None else 0
                factor = 1 if anchor is not None else 0
                _, head, block = min(fitting, key=lambda c: (factor * abs(c[1] - near), c[0], c[1]))
                take = need
            else:
                take, head, block = max(candidates, key=lambda c: (c[0], -c[1]))
            choices.append((head, block.seats[block.start : block.start + take]))
            block.start += take
            remaining[block.carriage] -= take
            need -= take
        choices.sort(key=lambda c: c[0])
        seats = [seat for _, piece in choices for seat in piece]
        for passenger, seat in zip(members, seats, strict=False):
            result.assigned[passenger.id] = seat.label
        taken = len(seats)
        if choices:
            result.pieces[request] = len(choices)
        if need:
            reason = "capacity" if sum(remaining.values()) == 0 else "no_seat"
            for passenger in members[taken:]:
                result.unplaced.append(passenger.id)
                result.reasons[passenger.id] = reason
    return result


def _units(
    passengers: Sequence[Passenger], existing: Mapping[int, str], result: Allocation
) -> list[tuple[str, list[Passenger]]]:
    """Requests in placement order, each with its passengers in seating order."""
    by_request: dict[str, dict[tuple[str, ...], list[Passenger]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for passenger in passengers:
        if passenger.id in existing:
            result.already_seated.append(passenger.id)
            continue
        by_request[passenger.request][passenger.group[1:]].append(passenger)
    result.already_seated.sort()
    units = []
    for request, subgroups in by_request.items():
        members = []
        for key in sorted(subgroups, key=lambda k: (-len(subgroups[k]), k)):
            members.extend(sorted(subgroups[key], key=lambda p: p.id))
        units.append((request, members))
    units.sort(key=lambda unit: (-len(unit[1]), unit[0]))
    return units


def seating_order(passengers: Sequence[Passenger]) -> list[Passenger]:
    """The passengers in the order ``allocate`` seats them (requests largest first, within
    each subgroups largest first, then ids): the first n of a request are the ones a vehicle
    planned to carry n of them takes, so a group is cut at most once."""
    return [p for _, members in _units(passengers, {}, Allocation()) for p in members]


# -- checking a move by hand ---------------------------------------------------------------


def check_move(
    seat_map: SeatMap,
    policy: Policy,
    blocked: Collection[str],
    existing: Mapping[int, str],
    passenger_id: int,
    to_seat: str,
) -> str | None:
    """May ``passenger_id`` (seated in ``existing`` or not yet) take ``to_seat``?

    ``None`` if so, else the first reason of ``MOVE_REFUSALS`` that applies. Alternate seating
    is checked against the real neighbours, not the fixed pattern: a seat off the pattern with
    both neighbours empty is allowed. Moving onto one's own seat is allowed.
    """
    if to_seat not in seat_map:
        return "no_such_seat"
    current = existing.get(passenger_id)
    if current == to_seat:
        return None
    others = {label for pid, label in existing.items() if pid != passenger_id}
    if to_seat in others:
        return "taken"
    if to_seat in blocked:
        return "blocked"
    if to_seat in isolation_labels(seat_map, policy):
        return "isolation"
    seat = seat_map.seat(to_seat)
    if policy.alternate_seats and seat.adjacent & others:
        return "policy_adjacent"
    cap = carriage_capacity(seat_map, policy, blocked)[seat.carriage]
    load = sum(1 for label in others if seat_map.seat(label).carriage == seat.carriage)
    if load + 1 > cap:
        return "capacity"
    return None


# -- planning several vehicles ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class VehicleOption:
    """Vehicles of one kind the planner may use, e.g. 12 coaches of coach-45 at 50%."""

    template: str
    policy: Policy = FULL
    carriages: int | tuple[int, ...] = 1  # a count, or the carriage numbers (build_vehicle)
    count_available: int = 1
    blocked: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PlannedVehicle:
    """One vehicle of a plan: ``number`` counts 1.. within ``vehicles[option]``."""

    option: int
    number: int
    template: str
    carriages: int | tuple[int, ...]
    capacity: int
    loads: tuple[tuple[str, int], ...]  # (group key, passengers), in packing order

    @property
    def passengers(self) -> int:
        return sum(count for _, count in self.loads)


@dataclass(frozen=True)
class Plan:
    """Vehicles used (in option, number order). ``missing_seats > 0``: refuse the plan."""

    vehicles: tuple[PlannedVehicle, ...]
    missing_seats: int
    pieces: dict[str, int]  # group key -> vehicles it rides (0 if unplaced)
    unplaced: tuple[tuple[str, int], ...] = ()  # (group key, passengers left) when missing

    @property
    def ok(self) -> bool:
        return self.missing_seats == 0


def plan(
    groups: Sequence[tuple[str, int]],
    vehicles: Sequence[VehicleOption],
    directory: Path = DEFAULT_DIR,
) -> Plan:
    """Pack groups onto as few vehicles as possible (heuristic in the module docstring)."""
    keys = [key for key, _ in groups]
    if len(set(keys)) != len(keys):
        raise ValueError("a group key is given twice")
    for key, size in groups:
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"group {key}: size must be a whole number >= 0, not {size!r}")
    instances: list[tuple[int, int, int]] = []  # (capacity, option, number)
    for n, option in enumerate(vehicles):
        seat_map = build_vehicle(option.template, option.carriages, directory)
        cap = capacity(seat_map, option.policy, option.blocked)
        if cap > 0:
            instances.extend((cap, n, number) for number in range(1, option.count_available + 1))
    instances.sort(key=lambda v: (-v[0], v[1], v[2]))

    total = sum(size for _, size in groups)
    chosen, covered = [], 0
    for instance in instances:
        if covered >= total:
            break
        chosen.append(instance)
        covered += instance[0]
    missing = max(total - covered, 0)

    room = [cap for cap, _, _ in chosen]
    loads: list[list[tuple[str, int]]] = [[] for _ in chosen]
    pieces: dict[str, int] = {}
    unplaced = []
    order = sorted(range(len(groups)), key=lambda i: (-groups[i][1], i))
    for i in order:
        key, need = groups[i]
        pieces[key] = 0
        while need:
            open_bins = [b for b in range(len(chosen)) if room[b] > 0]
            if not open_bins:
                unplaced.append((key, need))
                break
            fitting = [b for b in open_bins if room[b] >= need]
            if fitting:
                b = min(fitting, key=lambda b: (room[b], b))
                take = need
            else:
                b = max(open_bins, key=lambda b: (room[b], -b))
                take = room[b]
            loads[b].append((key, take))
            room[b] -= take
            need -= take
            pieces[key] += 1
    planned = [
        PlannedVehicle(
            option=n,
            number=number,
            template=vehicles[n].template,
            carriages=vehicles[n].carriages,
            capacity=cap,
            loads=tuple(loads[b]),
        )
        for b, (cap, n, number) in enumerate(chosen)
    ]
    planned.sort(key=lambda v: (v.option, v.number))
    return Plan(tuple(planned), missing, pieces, tuple(unplaced))


def split_passengers(
    plan: Plan, passengers: Sequence[Passenger]
) -> tuple[list[list[Passenger]], list[Passenger]]:
    """Hand each planned vehicle its passengers; the rest (a refused plan's) come back second.

    A group key of the plan is matched with ``Passenger.request``; each group's passengers are
    taken in the order ``allocate`` seats them (subgroups largest first, then ids), so a split
    group is cut between vehicles at most once per piece and villages stay together otherwise.
    """
    queues: dict[str, list[Passenger]] = dict(_units(passengers, {}, Allocation()))
    taken: dict[str, int] = defaultdict(int)
    per_vehicle = []
    for vehicle in plan.vehicles:
        riders = []
        for key, count in vehicle.loads:
            queue = queues.get(key, [])
            riders.extend(queue[taken[key] : taken[key] + count])
            taken[key] += count
        per_vehicle.append(riders)
    leftover = [p for key, queue in queues.items() for p in queue[taken[key] :]]
    return per_vehicle, leftover
