"""Seat-map templates: the shipped ones, malformed ones refused by name, multi-carriage vehicles."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.trips.seatmaps import (
    Seat,
    SeatMap,
    SeatMapError,
    available_templates,
    build_vehicle,
    load_template,
)

SHIPPED = {
    "coach-33": 33,
    "coach-45": 45,
    "coach-53": 53,
    "train-hard-seat-118": 118,
    "train-second-class-90": 90,
    "aircraft-180": 180,
}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refused(directory: Path, name: str, text: str) -> str:
    write(directory, name, text)
    with pytest.raises(SeatMapError) as caught:
        load_template(name, directory)
    return str(caught.value)


# -- shipped templates ---------------------------------------------------------------------


def test_every_shipped_template_is_listed():
    assert set(SHIPPED) <= set(available_templates())


@pytest.mark.parametrize(("name", "count"), sorted(SHIPPED.items()))
def test_shipped_template_loads_with_its_seat_count(name, count):
    seat_map = load_template(name)
    assert len(seat_map) == count
    assert seat_map.carriages == (1,)
    labels = [s.label for s in seat_map]
    assert len(set(labels)) == count
    for seat in seat_map:
        for other in seat.adjacent:
            peer = seat_map.seat(other)
            assert seat.label in peer.adjacent
            assert (peer.carriage, peer.row) == (seat.carriage, seat.row)
    keys = [s.order_key for s in seat_map]
    assert keys == sorted(keys)


def test_coach_45_layout():
    coach = load_template("coach-45")
    assert coach.kind == "coach"
    assert coach.rows(1) == tuple(range(1, 12))
    assert [s.label for s in coach.seats_in(1, 1)] == ["1A", "1B", "1C", "1D"]
    assert coach.seat("1B").adjacent == {"1A"}  # the aisle is between B and C
    assert coach.seat("1C").adjacent == {"1D"}
    back = coach.seats_in(1, 11)
    assert [s.label for s in back] == ["11A", "11B", "11C", "11D", "11E"]
    assert all(s.back_row for s in back)
    assert coach.seat("11C").adjacent == {"11B", "11D"}  # the middle seat spans the aisle
    assert coach.seat("11C").position == 3
    assert not coach.seat("10D").back_row


def test_hard_seat_carriage_is_numbered_the_chinese_way():
    carriage = load_template("train-hard-seat-118")
    assert carriage.kind == "carriage"
    first_row = carriage.seats_in(1, 1)
    assert [s.local for s in first_row] == ["001", "002", "003", "004", "005"]
    assert carriage.seat("1-003").adjacent == {"1-002"}  # aisle between 003 and 004
    assert carriage.seat("1-004").adjacent == {"1-005"}
    assert [s.local for s in carriage.seats_in(1, 24)] == ["116", "117", "118"]
    assert carriage.seat("1-045").display == "01车 045号"


def test_second_class_has_no_e_seat():
    carriage = load_template("train-second-class-90")
    assert [s.local for s in carriage.seats_in(1, 8)] == ["08A", "08B", "08C", "08D", "08F"]
    assert carriage.seat("1-08D").adjacent == {"1-08F"}


# -- vehicles -----------------------------------------------------------------------------


def test_train_of_six_hard_seat_carriages_labels_seats_uniquely():
    train = build_vehicle("train-hard-seat-118", 6)
    assert len(train) == 6 * 118
    assert train.carriages == (1, 2, 3, 4, 5, 6)
    assert len({s.label for s in train}) == 6 * 118
    seat = train.seat("3-045")
    assert (seat.carriage, seat.local, seat.display) == (3, "045", "03车 045号")
    assert seat.adjacent == {"3-044"}
    assert train.seat_count(3) == 118
    assert train.seats[118].label == "2-001"  # seat order: carriage first


def test_reserved_carriages_keep_their_numbers():
    train = build_vehicle("train-second-class-90", range(5, 8))
    assert train.carriages == (5, 6, 7)
    assert train.seat("7-18F").display == "07车 18F号"
    assert "1-01A" not in train


def test_one_coach_uses_plain_labels_a_double_decker_prefixes_the_deck():
    assert load_template("coach-45").seats[0].label == "1A"
    double = build_vehicle("coach-45", 2)
    assert double.seat("2-11E").local == "11E"
    assert double.seat("2-11E").adjacent == {"2-11D"}
    assert len({s.label for s in double}) == 90


@pytest.mark.parametrize("carriages", [0, [], [0, 1], [2, 2]])
def test_bad_carriage_numbers_are_refused(carriages):
    with pytest.raises(SeatMapError):
        build_vehicle("coach-45", carriages)


def test_clusters_split_by_carriage_and_row_gaps():
    train = build_vehicle("train-hard-seat-118", 2)
    pieces = train.clusters(["1-001", "1-006", "1-011", "1-021", "2-001"])
    assert pieces == [["1-001", "1-006", "1-011"], ["1-021"], ["2-001"]]


def test_seat_map_built_by_hand_is_validated():
    with pytest.raises(SeatMapError, match="1B is not adjacent to 1A"):
        SeatMap("custom", "coach", (Seat("1A", 1, 1, 1, frozenset({"1B"})), Seat("1B", 1, 1, 2)))


# -- malformed templates ---------------------------------------------------------------------


def test_duplicate_label_is_refused(tmp_path):
    message = refused(
        tmp_path,
        "dup",
        """
        [[rows]]
        first = 1
        pattern = "AB_CD"

        [[seat]]
        label = "1A"
        row = 2
        position = 1
        """,
    )
    assert message == "dup.toml: seat 1A is defined twice"


def test_duplicate_explicit_seats_are_refused(tmp_path):
    message = refused(
        tmp_path,
        "dup2",
        """
        [[seat]]
        label = "12A"
        row = 12
        position = 1

        [[seat]]
        label = "12A"
        row = 12
        position = 2
        """,
    )
    assert message == "dup2.toml: seat 12A is defined twice"


def test_adjacency_to_a_missing_seat_is_refused(tmp_path):
    message = refused(
        tmp_path,
        "coach-45",
        """
        [[seat]]
        label = "12A"
        row = 12
        position = 1
        adjacent = ["12Z"]
        """,
    )
    assert message == "coach-45.toml: seat 12A is adjacent to 12Z, which does not exist"


def test_asymmetric_adjacency_is_refused_not_repaired(tmp_path):
    message = refused(
        tmp_path,
        "odd",
        """
        [[seat]]
        label = "3A"
        row = 3
        position = 1
        adjacent = ["3B"]

        [[seat]]
        label = "3B"
        row = 3
        position = 2
        """,
    )
    assert message == "odd.toml: seat 3A is adjacent to 3B, but 3B is not adjacent to 3A"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[[seat]]\nlabel = "1A"\nrow = 1\nposition = 1\nadjacent = ["1A"]\n',
            "bad.toml: seat 1A is adjacent to itself",
        ),
        (
            '[[seat]]\nlabel = "1A"\nrow = 1\nposition = 1\nadjacent = ["2A"]\n'
            '[[seat]]\nlabel = "2A"\nrow = 2\nposition = 1\nadjacent = ["1A"]\n',
            "bad.toml: seat 1A is adjacent to 2A, which is in another row",
        ),
        (
            '[[seat]]\nlabel = "1A"\nrow = 1\nposition = 1\n'
            '[[seat]]\nlabel = "1B"\nrow = 1\nposition = 1\n',
            "bad.toml: seats 1A and 1B both sit at carriage 1, row 1, position 1",
        ),
        ('seats = 5\n[[rows]]\nfirst = 1\npattern = "AB_CD"\n', "bad.toml: declares 5 seats"),
        (
            '[[rows]]\nfirst = 1\nlast = 2\npattern = "AB"\n[[rows]]\nfirst = 2\npattern = "A"\n',
            "bad.toml: row 2 is described twice",
        ),
        (
            '[[rows]]\nfirst = 1\npattern = "AB"\n[[seat]]\nlabel = "1C"\nrow = 1\nposition = 3\n',
            "bad.toml: seat 1C is in row 1, which a [[rows]] pattern already describes",
        ),
        ('omit = ["9Z"]\n[[rows]]\nfirst = 1\npattern = "AB"\n', "bad.toml: omit names seat 9Z"),
        ('[[rows]]\nfirst = 1\npattern = "AA"\n', "bad.toml: [[rows]] section 1: pattern"),
        ('[[rows]]\nfirst = 0\npattern = "AB"\n', "bad.toml: [[rows]] section 1: first must"),
        ('[[rows]]\nfirst = 1\npatern = "AB"\n', "bad.toml: [[rows]] section 1 has unknown key"),
        ('[[seat]]\nlabel = "1 A"\nrow = 1\nposition = 1\n', "bad.toml: seat label '1 A'"),
        ('kind = "bus"\n', "bad.toml: kind must be one of"),
        ("this is not toml", "bad.toml: not valid TOML"),
        ("", "bad.toml: describes no seats"),
    ],
)
def test_malformed_template_is_refused_naming_the_file(tmp_path, body, expected):
    assert refused(tmp_path, "bad", body).startswith(expected)


def test_missing_template_and_bad_names_are_refused(tmp_path):
    with pytest.raises(SeatMapError, match=r"nope\.toml: no such seat-map template"):
        load_template("nope", tmp_path)
    with pytest.raises(SeatMapError, match="not a template name"):
        load_template("../coach-45", tmp_path)


def test_explicit_odd_layout_and_omitted_seats(tmp_path):
    write(
        tmp_path,
        "minibus",
        """
        kind = "coach"
        seats = 7
        omit = ["1B"]

        [[rows]]
        first = 1
        pattern = "AB_CD"   # 1B is the door

        [[seat]]
        label = "2A"
        row = 2
        position = 1
        adjacent = ["2B"]

        [[seat]]
        label = "2B"
        row = 2
        position = 2
        adjacent = ["2A", "2C"]

        [[seat]]
        label = "2C"
        row = 2
        position = 3
        adjacent = ["2B"]
        back_row = true

        [[seat]]
        label = "2D"
        row = 2
        position = 5
        """,
    )
    minibus = load_template("minibus", tmp_path)
    assert [s.label for s in minibus] == ["1A", "1C", "1D", "2A", "2B", "2C", "2D"]
    assert minibus.seat("1A").adjacent == frozenset()
    assert minibus.seat("2B").adjacent == {"2A", "2C"}
    assert minibus.seat("2C").back_row
    assert available_templates(tmp_path) == ["minibus"]


def test_an_edited_template_is_read_again(tmp_path):
    write(tmp_path, "grow", '[[rows]]\nfirst = 1\npattern = "AB"\n')
    assert len(load_template("grow", tmp_path)) == 2
    write(tmp_path, "grow", '[[rows]]\nfirst = 1\nlast = 2\npattern = "AB_CD"\n')
    assert len(load_template("grow", tmp_path)) == 8


@settings(max_examples=40, deadline=None)
@given(
    pattern=st.text(alphabet="ABCDEF_.", min_size=1, max_size=9).filter(
        lambda p: any(c.isalpha() for c in p)
    ),
    rows=st.integers(min_value=1, max_value=6),
)
def test_any_pattern_expands_to_symmetric_adjacency(tmp_path_factory, pattern, rows):
    letters = [c for c in pattern if c.isalpha()]
    directory = tmp_path_factory.mktemp("patterns")
    body = f'[[rows]]\nfirst = 1\nlast = {rows}\npattern = "{pattern}"\n'
    write(directory, "p", body)
    if len(set(letters)) != len(letters):
        with pytest.raises(SeatMapError, match="repeats a letter"):
            load_template("p", directory)
        return
    seat_map = load_template("p", directory)
    assert len(seat_map) == len(letters) * rows
    for seat in seat_map:
        for other in seat.adjacent:
            assert seat.label in seat_map.seat(other).adjacent
            assert abs(seat_map.seat(other).position - seat.position) == 1
