"""Benchmark: planning vehicles and allocating seats (the pure modules, no database).

    .venv/bin/python -m benchmarks.allocation [--repeat 5] [--workers 10000] [--coaches 250]

1. K4016: 476 workers of 10 Jinan construction companies (82 … 17 workers, each in village
   groups) on one special train of hard-seat carriages at the 2020 train rule (50%, alternate
   seats): as many carriages as needed (9 x 59 seats). Timed: ``plan`` + ``split_passengers`` +
   ``allocate`` on the whole train. Target < 20 ms.
2. A campaign day: N workers (10,000) in employer requests of realistic sizes (3–160, village
   subgroups) over a fleet of C coaches (250: 60% 53-seat, 40% 45-seat) at full load with the
   two-row isolation area kept (44 and 36 seats), so the fleet is nearly full. Timed: ``plan`` +
   ``split_passengers`` + ``build_vehicle`` + ``allocate`` for every coach. Target < 1 s.
3. For scale, ``plan`` alone for the same workers at the strict 2020 coach rule (50% and the
   isolation area): the fleet is short, and the plan says how many seats are missing.

Each is run ``--repeat`` times (template caches warm after the first run; a cold
``build_vehicle`` of a 9-carriage train is timed alone too); the table shows the median and a
verdict. Afterwards every result is checked: everyone seated once, no seat twice, per-carriage
capacity and alternate seating kept, each plan piece seated together.

Exit status: 0 when every target is met, 1 when one is missed, 2 when a result is wrong.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

from app.trips import seatmaps
from app.trips.allocation import (
    COACH_2020,
    TRAIN_2020,
    Allocation,
    Passenger,
    Plan,
    Policy,
    VehicleOption,
    allocate,
    carriage_capacity,
    plan,
    split_passengers,
)
from app.trips.seatmaps import build_vehicle

K4016_EMPLOYERS = {
    "中建八局": 82,
    "中铁十局": 71,
    "山东建工": 64,
    "济南城建": 55,
    "中建五局": 48,
    "山东路桥": 44,
    "济南一建": 38,
    "天元建设": 32,
    "中铁十四局": 25,
    "济南四建": 17,
}
VILLAGES = ("龙洞村", "双河村", "桂花村", "青龙村", "石门村", "红岩村", "新华村", "黄泥村")
HARD_SEAT = "train-hard-seat-118"
LATE_2020 = Policy(max_load=Fraction(1), isolation_rows=2)  # full load, isolation area kept


def village_passengers(rng: random.Random, request: str, size: int, first_id: int) -> list:
    """A request's workers in village groups of 2–25."""
    people, pid = [], first_id
    while len(people) < size:
        village = rng.choice(VILLAGES)
        for _ in range(min(rng.randint(2, 25), size - len(people))):
            people.append(Passenger(pid, (request, village)))
            pid += 1
    return people


def k4016_case(seed: int) -> tuple[list[tuple[str, int]], list[Passenger], VehicleOption]:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    groups = list(K4016_EMPLOYERS.items())
    people: list[Passenger] = []
    for request, size in groups:
        people += village_passengers(rng, request, size, 1 + len(people))
    per_carriage = 59  # floor(118 / 2); the alternate pattern has 71
    carriages = -(-len(people) // per_carriage)
    train = VehicleOption(template=HARD_SEAT, carriages=carriages, policy=TRAIN_2020)
    return groups, people, train


def campaign_case(workers: int, coaches: int, seed: int):
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    groups: list[tuple[str, int]] = []
    people: list[Passenger] = []
    while len(people) < workers:
        size = rng.choice([rng.randint(3, 30), rng.randint(20, 80), rng.randint(60, 160)])
        size = min(size, workers - len(people))
        request = f"req-{len(groups) + 1:05d}"
        groups.append((request, size))
        people += village_passengers(rng, request, size, 1 + len(people))
    big = coaches * 6 // 10
    fleet = [
        VehicleOption(template="coach-53", policy=LATE_2020, count_available=big),
        VehicleOption(template="coach-45", policy=LATE_2020, count_available=coaches - big),
    ]
    return groups, people, fleet


def run_trips(groups, people, fleet) -> tuple[Plan, list[tuple[object, list, Allocation]]]:
    """The coordinator's path: plan, hand out passengers, seat each vehicle."""
    the_plan = plan(groups, fleet)
    riders, _ = split_passengers(the_plan, people)
    trips = []
    for vehicle, passengers in zip(the_plan.vehicles, riders, strict=True):
        seat_map = build_vehicle(vehicle.template, vehicle.carriages)
        policy = fleet[vehicle.option].policy
        trips.append((seat_map, passengers, allocate(seat_map, policy, set(), {}, passengers)))
    return the_plan, trips


def check(the_plan: Plan, trips, people, fleet) -> list[str]:
    problems = []
    if not the_plan.ok:
        problems.append(f"plan short of {the_plan.missing_seats} seats")
    seated: Counter = Counter()
    for (seat_map, passengers, result), vehicle in zip(trips, the_plan.vehicles, strict=True):
        policy = fleet[vehicle.option].policy
        name = f"{vehicle.template} #{vehicle.number}"
        if result.unplaced:
            problems.append(f"{name}: {len(result.unplaced)} unplaced")
        seats = list(result.assigned.values())
        if len(set(seats)) != len(seats):
            problems.append(f"{name}: a seat given twice")
        load = Counter(seat_map.seat(label).carriage for label in seats)
        caps = carriage_capacity(seat_map, policy)
        if any(load[c] > caps[c] for c in load):
            problems.append(f"{name}: over capacity")
        taken = set(seats)
        if policy.alternate_seats and any(seat_map.seat(s).adjacent & taken for s in seats):
            problems.append(f"{name}: neighbours seated side by side")
        for request, n in scattered(seat_map, policy, passengers, result):
            problems.append(f"{name}: {request} seated in {n} pieces")
        seated.update(result.assigned.keys())
    if len(seated) != len(people) or max(seated.values(), default=1) != 1:
        problems.append(f"{len(seated)} of {len(people)} seated, or someone twice")
    return problems


def scattered(seat_map, policy, passengers, result) -> list[tuple[str, int]]:
    """Groups seated in more pieces than needed: 1 on a coach, ceil(n / carriage) + 1 on a train."""
    by_group: dict[str, list[str]] = {}
    for p in passengers:
        by_group.setdefault(p.request, []).append(result.assigned[p.id])
    per_carriage = min(carriage_capacity(seat_map, policy).values())
    bad = []
    for request, labels in by_group.items():
        pieces = len(seat_map.clusters(labels))
        limit = 1 if len(seat_map.carriages) == 1 else -(-len(labels) // per_carriage) + 1
        if pieces > limit:
            bad.append((request, pieces))
    return bad


def timed(function: Callable[[], object], repeat: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def print_table(rows: list[tuple[str, str, float, float | None]]) -> None:
    header = ("case", "size", "median ms", "target ms", "verdict")
    lines = [
        (
            name,
            size,
            f"{seconds * 1000:,.2f}",
            "-" if target is None else f"{target * 1000:,.0f}",
            "-" if target is None else ("ok" if seconds < target else "MISSED"),
        )
        for name, size, seconds, target in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    for index, cells in enumerate([header, *lines]):
        print(
            " | ".join(
                cell.ljust(width) if column < 2 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
        )
        if index == 0:
            print("-+-".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; the median is shown")
    parser.add_argument("--workers", type=int, default=10_000, help="workers on the campaign day")
    parser.add_argument("--coaches", type=int, default=250, help="coaches available that day")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, float, float | None]] = []
    problems: list[str] = []

    groups, people, train = k4016_case(seed=4016)
    seatmaps._build.cache_clear()
    seatmaps._parse.cache_clear()
    start = time.perf_counter()
    build_vehicle(train.template, train.carriages)
    cold_build = time.perf_counter() - start
    seconds, outcome = timed(lambda: run_trips(groups, people, [train]), args.repeat)
    k_plan, k_trips = outcome  # type: ignore[misc]
    problems += [f"K4016: {p}" for p in check(k_plan, k_trips, people, [train])]
    size = f"{len(people)} workers, 10 employers, {train.carriages} x {HARD_SEAT}"
    rows.append(("K4016 plan + allocate (50%, alternate)", size, seconds, 0.020))
    seat_map, passengers, _ = k_trips[0]
    seconds, _ = timed(lambda: allocate(seat_map, TRAIN_2020, set(), {}, passengers), args.repeat)
    rows.append(("K4016 allocate alone", f"{len(seat_map)} seats", seconds, None))
    rows.append(("K4016 build_vehicle, cold", f"{train.carriages} carriages", cold_build, None))

    groups, people, fleet = campaign_case(args.workers, args.coaches, seed=2020)
    seconds, outcome = timed(lambda: run_trips(groups, people, fleet), args.repeat)
    c_plan, c_trips = outcome  # type: ignore[misc]
    problems += [f"campaign: {p}" for p in check(c_plan, c_trips, people, fleet)]
    size = f"{len(people):,} workers, {len(groups)} requests, {args.coaches} coaches"
    rows.append(("campaign plan + allocate (full, isolation)", size, seconds, 1.0))
    seconds, _ = timed(lambda: plan(groups, fleet), args.repeat)
    rows.append(("campaign plan alone", f"{len(c_plan.vehicles)} coaches used", seconds, None))
    strict = [
        VehicleOption(template=o.template, policy=COACH_2020, count_available=o.count_available)
        for o in fleet
    ]
    seconds, short = timed(lambda: plan(groups, strict), args.repeat)
    rows.append(
        ("campaign plan at 50% (refused)", f"{short.missing_seats:,} seats missing", seconds, None)
    )

    print(f"seat allocation benchmark: median of {args.repeat} runs\n")
    print_table(rows)
    splits = sum(1 for n in c_plan.pieces.values() if n > 1)
    print(
        f"\ncampaign: {len(c_plan.vehicles)} of {args.coaches} coaches used, "
        f"{splits} of {len(groups)} requests split across coaches "
        f"(max {max(c_plan.pieces.values())} pieces); K4016 pieces per employer: "
        f"{dict(k_trips[0][2].pieces)}"
    )
    if problems:
        print(f"\nFAILED: {len(problems)} wrong results, e.g. {problems[:3]}", file=sys.stderr)
        return 2
    missed = [name for name, _, seconds, target in rows if target is not None and seconds >= target]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
