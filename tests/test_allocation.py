"""Seat allocation and trip planning: hand-checked cases, then properties (hypothesis)."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.trips.allocation import (
    COACH_2020,
    FULL,
    MOVE_REFUSALS,
    TRAIN_2020,
    Passenger,
    Policy,
    VehicleOption,
    allocate,
    alternate_labels,
    capacity,
    carriage_capacity,
    check_move,
    isolation_labels,
    plan,
    split_passengers,
    usable_seats,
)
from app.trips.seatmaps import build_vehicle, load_template


def crowd(sizes: dict[str, int], start: int = 1, tag: str | None = None) -> list[Passenger]:
    """Passengers of several requests, ids consecutive from ``start``."""
    people, pid = [], start
    for request, size in sizes.items():
        for _ in range(size):
            group = (request,) if tag is None else (request, tag)
            people.append(Passenger(pid, group))
            pid += 1
    return people


def seats_of(allocation, people, request):
    return [allocation.assigned[p.id] for p in people if p.group[0] == request]


def consecutive_in(seat_map, usable, labels) -> bool:
    order = [s.label for s in usable]
    places = sorted(order.index(label) for label in labels)
    return places == list(range(places[0], places[0] + len(places)))


# -- policy ----------------------------------------------------------------------------------


def test_policy_normalises_max_load():
    assert Policy(max_load=0.5).max_load == Fraction(1, 2)
    assert Policy(max_load=0.55).max_load == Fraction(11, 20)
    assert Policy(max_load=1).max_load == 1
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="max_load"):
            Policy(max_load=bad)
    with pytest.raises(ValueError, match="isolation_rows"):
        Policy(isolation_rows=-1)


def test_coach_45_at_half_load_with_isolation_area():
    coach = load_template("coach-45")
    assert isolation_labels(coach, COACH_2020) == {
        "10A", "10B", "10C", "10D", "11A", "11B", "11C", "11D", "11E"
    }  # fmt: skip
    assert len(usable_seats(coach, COACH_2020)) == 36  # rows 1-9
    assert capacity(coach, COACH_2020) == 22  # floor(45 / 2), under the 36 usable
    people = crowd({"云阳建工": 30})
    result = allocate(coach, COACH_2020, set(), {}, people)
    assert len(result.assigned) == 22
    expected = [f"{row}{letter}" for row in range(1, 6) for letter in "ABCD"] + ["6A", "6B"]
    assert sorted(result.assigned.values(), key=coach.index) == expected
    assert result.unplaced == [p.id for p in people[22:]]
    assert set(result.reasons.values()) == {"capacity"}


def test_three_employers_on_a_53_seat_coach_each_sit_together():
    coach = load_template("coach-53")
    people = crowd({"中建八局": 20, "济南城建": 15, "山东路桥": 9})
    result = allocate(coach, FULL, set(), {}, people)
    assert not result.unplaced
    usable = usable_seats(coach, FULL)
    for request in ("中建八局", "济南城建", "山东路桥"):
        labels = seats_of(result, people, request)
        assert consecutive_in(coach, usable, labels)
        assert len(coach.clusters(labels)) == 1
        assert result.pieces[request] == 1
    # Largest first, in seat order: rows 1-5, then the next 15, then 9.
    assert sorted(seats_of(result, people, "中建八局"), key=coach.index)[0] == "1A"
    assert sorted(seats_of(result, people, "济南城建"), key=coach.index)[0] == "6A"
    assert sorted(seats_of(result, people, "山东路桥"), key=coach.index)[0] == "9D"


def test_villages_stay_together_inside_their_employer():
    coach = load_template("coach-53")
    people = [Passenger(i, ("中建八局", "龙洞村" if i % 3 else "双河村")) for i in range(1, 31)]
    result = allocate(coach, FULL, set(), {}, people)
    usable = usable_seats(coach, FULL)
    for village in ("龙洞村", "双河村"):
        labels = [result.assigned[p.id] for p in people if p.group[1] == village]
        assert consecutive_in(coach, usable, labels)


def test_a_group_larger_than_a_carriage_is_split_over_neighbouring_carriages():
    train = build_vehicle("train-second-class-90", 3)
    people = crowd({"big": 130, "small": 20})
    result = allocate(train, FULL, set(), {}, people)
    assert not result.unplaced
    big = seats_of(result, people, "big")
    assert result.pieces["big"] == 2  # ceil(130 / 90): as few pieces as possible
    assert {train.seat(label).carriage for label in big} == {1, 2}
    assert len(train.clusters(big)) == 2
    small = seats_of(result, people, "small")
    assert result.pieces["small"] == 1
    assert len(train.clusters(small)) == 1


def test_incremental_additions_never_move_existing_seats():
    coach = load_template("coach-45")
    first = crowd({"A": 8, "B": 6})
    before = allocate(coach, FULL, set(), {}, first)
    existing = dict(before.assigned)
    later = crowd({"A": 3, "C": 5}, start=100)
    after = allocate(coach, FULL, set(), existing, later + first[:2])
    assert after.already_seated == [first[0].id, first[1].id]
    assert set(after.assigned) == {p.id for p in later}
    assert not set(after.assigned.values()) & set(existing.values())
    assert set(existing.items()) == set(before.assigned.items())
    again = allocate(coach, FULL, set(), existing, list(reversed(later + first[:2])))
    assert again == after


def test_late_additions_join_their_seated_colleagues():
    coach = load_template("coach-45")
    existing = dict(enumerate(["1A", "1B", "1C", "1D", "2A", "2B"], 1))
    existing |= {50: "6A", 51: "6B", 52: "6C", 53: "6D"}  # someone seated by hand
    groups = dict.fromkeys(range(1, 7), ("A",)) | dict.fromkeys(range(50, 54), ("X",))
    later = crowd({"A": 3, "C": 10}, start=100)
    joined = allocate(coach, FULL, set(), existing, later, existing_groups=groups)
    assert sorted(seats_of(joined, later, "A"), key=coach.index) == ["2C", "2D", "3A"]
    # Requests with seated colleagues go first; C then takes the best-fitting block 3B-5D.
    assert sorted(seats_of(joined, later, "C"), key=coach.index)[0] == "3B"
    assert joined.pieces == {"A": 1, "C": 1}
    # Without the groups of the seated, the larger request goes first and A ends up apart.
    blind = allocate(coach, FULL, set(), existing, later)
    assert sorted(seats_of(blind, later, "C"), key=coach.index)[0] == "2C"
    assert sorted(seats_of(blind, later, "A"), key=coach.index) == ["5A", "5B", "5C"]


def test_blocked_seats_are_never_given_and_reduce_capacity():
    coach = load_template("coach-45")
    blocked = {"1A", "1B", "5C"}  # driver's helper, a broken seat
    assert capacity(coach, FULL, blocked) == 42
    people = crowd({"A": 45})
    result = allocate(coach, FULL, blocked, {}, people)
    assert len(result.assigned) == 42
    assert not set(result.assigned.values()) & blocked
    assert len(result.unplaced) == 3
    with pytest.raises(ValueError, match="blocked names seats"):
        usable_seats(coach, FULL, {"99Z"})


def test_capacity_boundary_exactly_full_then_one_more():
    coach = load_template("coach-45")
    full = allocate(coach, COACH_2020, set(), {}, crowd({"A": 12, "B": 10}))
    assert len(full.assigned) == 22
    assert not full.unplaced
    over = allocate(coach, COACH_2020, set(), {}, crowd({"A": 12, "B": 11}))
    assert len(over.assigned) == 22
    assert len(over.unplaced) == 1
    assert over.reasons == {over.unplaced[0]: "capacity"}
    # Existing passengers count against capacity.
    existing = {1000 + i: label for i, label in enumerate(["1A", "1B", "9C", "9D"])}
    late = allocate(coach, COACH_2020, set(), existing, crowd({"C": 19}))
    assert len(late.assigned) == 18
    assert len(late.unplaced) == 1


def test_alternate_seats_on_a_hard_seat_carriage():
    carriage = build_vehicle("train-hard-seat-118", 1)
    pattern = alternate_labels(carriage)
    row1 = [s.label for s in carriage.seats_in(1, 1) if s.label in pattern]
    assert row1 == ["1-001", "1-003", "1-005"]  # both windows and the 3-side aisle
    assert len(usable_seats(carriage, TRAIN_2020)) == 23 * 3 + 2
    assert capacity(carriage, TRAIN_2020) == 59  # floor(118 / 2)
    result = allocate(carriage, TRAIN_2020, set(), {}, crowd({"A": 40, "B": 30}))
    assert len(result.assigned) == 59
    taken = set(result.assigned.values())
    assert all(not carriage.seat(label).adjacent & taken for label in taken)
    # Someone seated by hand off the pattern keeps both neighbours empty.
    existing = {999: "1-002"}
    result = allocate(carriage, TRAIN_2020, set(), existing, crowd({"A": 10}))
    assert not {"1-001", "1-003"} & set(result.assigned.values())


def test_second_class_alternate_pattern():
    carriage = build_vehicle("train-second-class-90", 1)
    pattern = alternate_labels(carriage)
    assert [s.local for s in carriage.seats_in(1, 1) if s.label in pattern] == ["01A", "01C", "01F"]
    coach = load_template("coach-45")
    assert [s.label for s in coach.seats_in(1, 1) if s.label in alternate_labels(coach)] == [
        "1A",
        "1D",
    ]
    back = [s.label for s in coach.seats_in(1, 11) if s.label in alternate_labels(coach)]
    assert back == ["11A", "11C", "11E"]


def test_per_carriage_capacity_spreads_a_train():
    train = build_vehicle("train-hard-seat-118", 3)
    result = allocate(train, TRAIN_2020, set(), {}, crowd({"A": 150}))
    per_carriage = Counter(train.seat(label).carriage for label in result.assigned.values())
    assert per_carriage == {1: 59, 2: 59, 3: 32}


def test_check_move_refusals():
    coach = load_template("coach-45")
    existing = {1: "1A", 2: "3A"}
    blocked = {"2C"}
    alternate = Policy(max_load=Fraction(1, 2), isolation_rows=2, alternate_seats=True)
    assert check_move(coach, COACH_2020, blocked, existing, 1, "1A") is None  # own seat
    assert check_move(coach, COACH_2020, blocked, existing, 1, "4D") is None
    assert check_move(coach, COACH_2020, blocked, existing, 3, "4D") is None  # a new passenger
    assert check_move(coach, COACH_2020, blocked, existing, 1, "12Z") == "no_such_seat"
    assert check_move(coach, COACH_2020, blocked, existing, 1, "3A") == "taken"
    assert check_move(coach, COACH_2020, blocked, existing, 1, "2C") == "blocked"
    assert check_move(coach, COACH_2020, blocked, existing, 1, "10B") == "isolation"
    assert check_move(coach, COACH_2020, blocked, existing, 1, "11E") == "isolation"
    assert check_move(coach, alternate, blocked, existing, 1, "3B") == "policy_adjacent"
    assert check_move(coach, alternate, blocked, existing, 1, "1B") is None  # 1A is their own
    assert check_move(coach, alternate, blocked, existing, 3, "1B") == "policy_adjacent"
    full = {i: s.label for i, s in enumerate(usable_seats(coach, COACH_2020)[:22], 1)}
    assert check_move(coach, COACH_2020, set(), full, 99, "9D") == "capacity"
    assert check_move(coach, COACH_2020, set(), full, 1, "9D") is None  # a move, not an add
    assert set(MOVE_REFUSALS) == {
        "no_such_seat", "taken", "blocked", "isolation", "policy_adjacent", "capacity"
    }  # fmt: skip


def test_inconsistent_input_is_refused():
    coach = load_template("coach-45")
    with pytest.raises(ValueError, match="existing names seats"):
        allocate(coach, FULL, set(), {1: "12Z"}, [])
    with pytest.raises(ValueError, match="one seat to two"):
        allocate(coach, FULL, set(), {1: "1A", 2: "1A"}, [])
    with pytest.raises(ValueError, match="given twice"):
        allocate(coach, FULL, set(), {}, [Passenger(1), Passenger(1)])


# -- planning --------------------------------------------------------------------------------

K4016_EMPLOYERS = {  # 476 workers for 10 construction companies in Jinan
    "中建八局": 82, "中铁十局": 71, "山东建工": 64, "济南城建": 55, "中建五局": 48,
    "山东路桥": 44, "济南一建": 38, "天元建设": 32, "中铁十四局": 25, "济南四建": 17,
}  # fmt: skip


def test_k4016_on_six_hard_seat_carriages_at_half_load_is_short_of_seats():
    assert sum(K4016_EMPLOYERS.values()) == 476
    six = VehicleOption(template="train-hard-seat-118", carriages=6, policy=TRAIN_2020)
    result = plan(list(K4016_EMPLOYERS.items()), [six])
    # 6 carriages x floor(118 / 2) = 354 seats: 122 short. The caller refuses the plan.
    assert not result.ok
    assert result.missing_seats == 476 - 354
    assert sum(n for _, n in result.unplaced) == 122


def test_k4016_on_nine_hard_seat_carriages_fits_and_seats_every_employer():
    train_option = VehicleOption(template="train-hard-seat-118", carriages=9, policy=TRAIN_2020)
    result = plan(list(K4016_EMPLOYERS.items()), [train_option])
    assert result.ok
    assert len(result.vehicles) == 1
    assert result.vehicles[0].passengers == 476
    people = crowd(K4016_EMPLOYERS)
    train = build_vehicle("train-hard-seat-118", 9)
    riders, leftover = split_passengers(result, people)
    assert not leftover
    seated = allocate(train, TRAIN_2020, set(), {}, riders[0])
    assert len(seated.assigned) == 476
    per_carriage = Counter(train.seat(label).carriage for label in seated.assigned.values())
    assert max(per_carriage.values()) <= 59
    for employer, size in K4016_EMPLOYERS.items():
        pieces = len(train.clusters(seats_of(seated, people, employer)))
        assert pieces <= math.ceil(size / 59) + 1
        assert seated.pieces[employer] == pieces


def campaign_groups(total: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    groups, left = [], total
    while left:
        size = min(
            left, rng.choice([rng.randint(3, 30), rng.randint(20, 80), rng.randint(60, 160)])
        )
        groups.append((f"req-{len(groups) + 1:04d}", size))
        left -= size
    return groups


def test_ten_thousand_workers_over_250_coaches():
    groups = campaign_groups(10_000, seed=7)
    late_2020 = Policy(max_load=1, isolation_rows=2)
    fleet = [
        VehicleOption(template="coach-53", policy=late_2020, count_available=150),
        VehicleOption(template="coach-45", policy=late_2020, count_available=100),
    ]
    result = plan(groups, fleet)
    assert result.ok
    # Fewest vehicles: all 44-seat coaches, then as many 36-seat ones as needed.
    assert len(result.vehicles) == 150 + math.ceil((10_000 - 150 * 44) / 36)
    for vehicle in result.vehicles:
        assert vehicle.passengers <= vehicle.capacity
    loaded = Counter()
    for vehicle in result.vehicles:
        for key, count in vehicle.loads:
            loaded[key] += count
    assert loaded == dict(groups)
    for key, size in groups:
        assert result.pieces[key] >= math.ceil(size / 44)
        if size <= 36 and result.pieces[key] > 1:  # split only by tight packing, in two
            assert result.pieces[key] == 2
    people = [
        Passenger(pid, (key, f"村{pid % 3}"))
        for key, size in groups
        for pid in range(int(key[4:]) * 1000, int(key[4:]) * 1000 + size)
    ]
    riders, leftover = split_passengers(result, people)
    assert not leftover
    for vehicle, passengers in zip(result.vehicles, riders, strict=True):
        coach = build_vehicle(vehicle.template, vehicle.carriages)
        seated = allocate(coach, fleet[vehicle.option].policy, set(), {}, passengers)
        assert not seated.unplaced
        for key, _ in vehicle.loads:  # each group's piece sits together on its coach
            assert seated.pieces[key] == 1


def test_cannot_carry_everyone_reports_missing_seats():
    groups = campaign_groups(10_000, seed=8)
    fleet = [VehicleOption(template="coach-45", policy=COACH_2020, count_available=250)]
    result = plan(groups, fleet)
    assert not result.ok
    assert result.missing_seats == 10_000 - 250 * 22
    assert len(result.vehicles) == 250
    assert sum(n for _, n in result.unplaced) == result.missing_seats


def test_plan_keeps_groups_whole_when_they_fit_and_is_deterministic():
    fleet = [VehicleOption(template="coach-45", policy=COACH_2020, count_available=5)]
    groups = [("a", 10), ("b", 12), ("c", 22), ("d", 5), ("e", 7)]
    result = plan(groups, fleet)
    assert result.ok
    assert len(result.vehicles) == 3  # 56 workers, 22 a coach
    assert all(n == 1 for n in result.pieces.values())
    assert plan(groups, fleet) == result
    with pytest.raises(ValueError, match="given twice"):
        plan([("a", 1), ("a", 2)], fleet)


def test_plan_splits_an_oversize_group_into_fewest_pieces():
    fleet = [VehicleOption(template="coach-45", policy=COACH_2020, count_available=10)]
    result = plan([("big", 50), ("x", 3)], fleet)
    assert result.pieces["big"] == 3  # ceil(50 / 22)
    assert len(result.vehicles) == 3


# -- properties --------------------------------------------------------------------------------

TEMPLATES = ("coach-33", "coach-45", "train-second-class-90", "train-hard-seat-118")


@st.composite
def scenarios(draw):
    template = draw(st.sampled_from(TEMPLATES))
    carriages = draw(st.integers(min_value=1, max_value=2))
    seat_map = build_vehicle(template, carriages)
    labels = [s.label for s in seat_map]
    policy = Policy(
        max_load=draw(st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(3, 4)])),
        isolation_rows=draw(st.integers(min_value=0, max_value=2)),
        alternate_seats=draw(st.booleans()),
    )
    blocked = set(draw(st.lists(st.sampled_from(labels), max_size=6)))
    taken = draw(st.lists(st.sampled_from(labels), max_size=12, unique=True))
    existing = {10_000 + i: label for i, label in enumerate(taken)}
    requests = draw(st.lists(st.integers(min_value=1, max_value=70), min_size=0, max_size=6))
    people, pid = [], 1
    for r, size in enumerate(requests):
        for _ in range(size):
            people.append(Passenger(pid, (f"R{r}", draw(st.sampled_from(["甲", "乙"])))))
            pid += 1
    if existing and draw(st.booleans()):  # some given passengers are already seated
        people.append(Passenger(next(iter(existing)), ("R0", "甲")))
    return seat_map, policy, blocked, existing, people


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_allocation_properties(scenario, rng):
    seat_map, policy, blocked, existing, people = scenario
    result = allocate(seat_map, policy, blocked, existing, people)
    new_ids = [p.id for p in people if p.id not in existing]
    # No passenger twice; every new passenger either seated or unplaced with a reason.
    assert not set(result.assigned) & set(result.unplaced)
    assert sorted([*result.assigned, *result.unplaced]) == sorted(new_ids)
    assert set(result.reasons) == set(result.unplaced)
    assert set(result.assigned).isdisjoint(existing)
    # No seat twice, existing seats untouched.
    seats = list(result.assigned.values())
    assert len(seats) == len(set(seats))
    assert not set(seats) & set(existing.values())
    # Policy: usable seats only, never adjacent under alternate, carriage capacity kept.
    usable = {s.label for s in usable_seats(seat_map, policy, blocked)}
    assert set(seats) <= usable
    assert not set(seats) & blocked
    if policy.alternate_seats:
        occupied = set(seats) | set(existing.values())
        for label in seats:
            assert not seat_map.seat(label).adjacent & occupied
    caps = carriage_capacity(seat_map, policy, blocked)
    new_load = Counter(seat_map.seat(label).carriage for label in seats)
    old_load = Counter(seat_map.seat(label).carriage for label in existing.values())
    for carriage, count in new_load.items():
        assert count + old_load[carriage] <= caps[carriage]
    # Nobody left out while room was left: after unplaced ones, nobody else fits either.
    if result.unplaced:
        again = allocate(
            seat_map, policy, blocked, {**existing, **result.assigned}, [Passenger(-1, ("x",))]
        )
        assert again.unplaced == [-1]
    # Determinism, and independence from the input order.
    assert allocate(seat_map, policy, blocked, existing, people) == result
    shuffled = list(people)
    rng.shuffle(shuffled)
    assert allocate(seat_map, policy, blocked, dict(existing), shuffled) == result


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=120), min_size=1, max_size=25),
    st.integers(min_value=1, max_value=20),
    st.sampled_from([FULL, COACH_2020, TRAIN_2020]),
)
def test_plan_properties(sizes, available, policy):
    groups = [(f"g{i}", size) for i, size in enumerate(sizes)]
    fleet = [
        VehicleOption(template="coach-45", policy=policy, count_available=available),
        VehicleOption(template="coach-33", policy=policy, count_available=available),
    ]
    result = plan(groups, fleet)
    assert plan(groups, fleet) == result
    carried = Counter()
    for vehicle in result.vehicles:
        assert 0 < vehicle.passengers <= vehicle.capacity or not vehicle.loads
        for key, count in vehicle.loads:
            carried[key] += count
    left = Counter(dict(result.unplaced))
    for key, size in groups:
        assert carried[key] + left[key] == size
    assert result.missing_seats == sum(left.values())
    caps = sorted((v.capacity for v in result.vehicles), reverse=True)
    if result.ok:  # the fewest vehicles: one fewer could not hold everyone
        assert sum(caps[:-1]) < sum(sizes)
