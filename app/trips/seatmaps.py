"""Seat maps: which seats a vehicle has and which sit side by side (pure: no Flask, no database).

A seat-map *template* is a TOML file in ``config/seatmaps/`` (``DEFAULT_DIR``) describing one
coach, one train carriage or one aircraft cabin. A *vehicle* is built from a template and a
number of carriages (a train of six hard-seat carriages; a coach is one "carriage", a
double-decker two). The result is an immutable ``SeatMap`` that the allocator
(``app.trips.allocation``) and the pages use.

API
---
``load_template(name, directory=DEFAULT_DIR) -> SeatMap``
    One carriage (numbered 1) of the template, validated.
``build_vehicle(template, carriages=1, directory=DEFAULT_DIR) -> SeatMap``
    ``carriages`` is a count (numbered 1..n) or the carriage numbers themselves, e.g.
    ``range(3, 9)`` for reserved carriages 03–08 of a special train.
``SeatMap.label_for(text) -> str | None``
    The machine label of a seat as a person types it: the label or the displayed text, with
    or without leading zeros, in any case, full-width or not, between spaces ("03车 045号",
    "03-045", "3-45" all give "3-045"); ``None`` when the vehicle has no such seat.
``available_templates(directory=DEFAULT_DIR) -> list[str]``
    The template names (file stems), sorted.
``SeatMapError(ValueError)``
    A template was refused; the message names the file and the seat, e.g.
    ``"coach-45.toml: seat 12A is adjacent to 12Z, which does not exist"``.

``Seat`` fields: ``label`` (machine label, unique in the map, stable: what the database
stores), ``carriage``, ``row``, ``position`` (column across the vehicle, aisles counted, 1 = the
left window), ``adjacent`` (machine labels of the seats side by side with it in the same row,
across no aisle: "sitting together"), ``back_row``, ``local`` (the label printed on the seat)
and ``display`` (what a ticket shows). Labels: coaches and aircraft use the local label when
the vehicle has one carriage ("12A"); train carriages, and any vehicle with more than one
carriage, prefix the carriage number: ``"3-045"`` displayed ``"03车 045号"``.

``SeatMap.seats`` is in *seat order* — (carriage, row, position) — the order the allocator
fills. ``SeatMap.clusters(labels)`` splits a set of seats into contiguous pieces: two seats are
contiguous when they are in the same carriage and in the same or neighbouring rows.

Template format
---------------
Top-level keys: ``kind`` ("coach", "carriage" for a train carriage, "aircraft"),
``description``, ``seats`` (expected count, checked), ``label`` (format of generated labels,
fields ``row``, ``letter``, ``number`` — the running number of generated seats in seat order,
e.g. ``"{row}{letter}"`` or ``"{number:03d}"``), ``display`` (fields ``carriage`` and
``label``), ``omit`` (labels of generated seats that do not exist).

``[[rows]]`` sections expand a pattern over rows ``first``..``last`` (``last`` defaults to
``first``): in ``"AB_CD"`` each letter is a seat, ``_`` an aisle and ``.`` a gap; seats next to
each other in the pattern are adjacent. ``back_row = true`` marks the seats as a back row.

``[[seat]]`` entries describe seats one by one — ``label``, ``row``, ``position``, ``adjacent =
[...]`` (local labels), optional ``back_row`` — for layouts no pattern fits. A row is described
either by a pattern or by explicit seats, never both. Adjacency must be symmetric (an asymmetric
pair is refused, not repaired), name existing seats, and stay within one row; two seats may not
share a row and position; labels are letters and digits and unique.

Parsed templates are cached by path, modification time and size, so reloading is cheap and an
edited file is read again. The maps are immutable, so cached vehicles are shared safely.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "config" / "seatmaps"
KINDS = ("coach", "carriage", "aircraft")

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LOCAL_LABEL = re.compile(r"^[0-9A-Za-z]+$")
_GAPS = "_."
_TOP_KEYS = {"kind", "description", "seats", "label", "display", "omit", "rows", "seat"}
_ROWS_KEYS = {"first", "last", "pattern", "back_row"}
_SEAT_KEYS = {"label", "row", "position", "adjacent", "back_row"}


class SeatMapError(ValueError):
    """A seat-map template (or a seat map built by hand) is malformed."""


@dataclass(frozen=True)
class Seat:
    """One seat. ``label`` is unique in its map; ``adjacent`` holds labels of the same map."""

    label: str
    carriage: int
    row: int
    position: int
    adjacent: frozenset[str] = frozenset()
    back_row: bool = False
    local: str = ""  # as printed on the seat; defaults to label
    display: str = ""  # as shown on a ticket; defaults to local

    def __post_init__(self) -> None:
        if not self.local:
            object.__setattr__(self, "local", self.label)
        if not self.display:
            object.__setattr__(self, "display", self.local)

    @property
    def order_key(self) -> tuple[int, int, int]:
        """Seat order: (carriage, row, position)."""
        return (self.carriage, self.row, self.position)


@dataclass(frozen=True)
class SeatMap:
    """A vehicle's seats in seat order, with lookups. Validated on construction."""

    template: str
    kind: str
    seats: tuple[Seat, ...]
    description: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _rows: dict[int, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _row_rank: dict[tuple[int, int], int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seats = tuple(sorted(self.seats, key=lambda s: s.order_key))
        object.__setattr__(self, "seats", seats)
        where = self.template
        index: dict[str, int] = {}
        places: dict[tuple[int, int, int], str] = {}
        for i, seat in enumerate(seats):
            if seat.label in index:
                raise SeatMapError(f"{where}: seat {seat.label} is defined twice")
            if seat.order_key in places:
                raise SeatMapError(
                    f"{where}: seats {places[seat.order_key]} and {seat.label} both sit at "
                    f"carriage {seat.carriage}, row {seat.row}, position {seat.position}"
                )
            index[seat.label] = i
            places[seat.order_key] = seat.label
        for seat in seats:
            for other in sorted(seat.adjacent):
                _check_pair(where, seat, other, index, seats)
        rows: dict[int, list[int]] = {}
        for seat in seats:
            carriage_rows = rows.setdefault(seat.carriage, [])
            if not carriage_rows or carriage_rows[-1] != seat.row:
                carriage_rows.append(seat.row)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_rows", {c: tuple(r) for c, r in rows.items()})
        object.__setattr__(
            self,
            "_row_rank",
            {(c, row): rank for c, r in rows.items() for rank, row in enumerate(r)},
        )

    def __len__(self) -> int:
        return len(self.seats)

    def __iter__(self) -> Iterator[Seat]:
        return iter(self.seats)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def seat(self, label: str) -> Seat:
        """The seat with this machine label; ``KeyError`` if there is none."""
        try:
            return self.seats[self._index[label]]
        except KeyError:
            raise KeyError(f"{self.template}: no seat {label}") from None

    def label_for(self, text: str) -> str | None:
        """The machine label of the seat ``text`` names (see the module's API), or None."""
        key = _typed_key(text)
        return self._typed_labels.get(key) if key else None

    @cached_property
    def _typed_labels(self) -> dict[tuple[str, ...], str | None]:
        """Typed-seat key -> machine label, from each seat's label and displayed text (None
        where two seats would share a key: such a text names no seat)."""
        labels: dict[tuple[str, ...], str | None] = {}
        for seat in self.seats:
            for key in {_typed_key(seat.label), _typed_key(seat.display)}:
                labels[key] = seat.label if labels.get(key, seat.label) == seat.label else None
        return labels

    def index(self, label: str) -> int:
        """The seat's place in seat order (0-based)."""
        return self._index[label]

    @property
    def carriages(self) -> tuple[int, ...]:
        """Carriage numbers, ascending."""
        return tuple(self._rows)

    def rows(self, carriage: int) -> tuple[int, ...]:
        """Row numbers of one carriage, front to back."""
        return self._rows.get(carriage, ())

    def seats_in(self, carriage: int, row: int | None = None) -> tuple[Seat, ...]:
        """The seats of a carriage (or of one of its rows), in seat order."""
        return tuple(
            s for s in self.seats if s.carriage == carriage and (row is None or s.row == row)
        )

    def seat_count(self, carriage: int | None = None) -> int:
        """Rated seats of the vehicle, or of one carriage."""
        if carriage is None:
            return len(self.seats)
        return sum(1 for s in self.seats if s.carriage == carriage)

    def clusters(self, labels: Iterable[str]) -> list[list[str]]:
        """Split seats into contiguous pieces (same carriage, same or neighbouring rows).

        Rows are neighbours when they follow each other in the carriage's row list, so a
        missing row number (no row 13 on some aircraft) does not break contiguity. Pieces come
        in seat order, each in seat order.
        """
        ordered = sorted(set(labels), key=self.index)
        pieces: list[list[str]] = []
        previous: tuple[int, int] | None = None
        for label in ordered:
            seat = self.seat(label)
            rank = self._row_rank[(seat.carriage, seat.row)]
            if previous is None or previous[0] != seat.carriage or rank - previous[1] > 1:
                pieces.append([])
            pieces[-1].append(label)
            previous = (seat.carriage, rank)
        return pieces


def _typed_key(text: str) -> tuple[str, ...]:
    """A seat as typed, reduced to its runs of digits (leading zeros dropped) and of letters
    (upper case), full-width characters folded: anything else, 车 and 号 included, only
    separates them."""
    folded = unicodedata.normalize("NFKC", text).upper()
    return tuple(
        (part.lstrip("0") or "0") if part.isdigit() else part
        for part in re.findall(r"[0-9]+|[A-Z]+", folded)
    )


def _check_pair(where: str, seat: Seat, other: str, index: dict, seats: Sequence[Seat]) -> None:
    name, other_name = seat.local, other
    if other == seat.label:
        raise SeatMapError(f"{where}: seat {name} is adjacent to itself")
    if other not in index:
        raise SeatMapError(
            f"{where}: seat {name} is adjacent to {other_name}, which does not exist"
        )
    peer = seats[index[other]]
    other_name = peer.local
    if seat.label not in peer.adjacent:
        raise SeatMapError(
            f"{where}: seat {name} is adjacent to {other_name}, "
            f"but {other_name} is not adjacent to {name}"
        )
    if (peer.carriage, peer.row) != (seat.carriage, seat.row):
        raise SeatMapError(
            f"{where}: seat {name} is adjacent to {other_name}, which is in another row"
        )


# -- templates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    name: str
    kind: str
    description: str
    display: str
    seats: tuple[Seat, ...]  # local labels, carriage 1


def available_templates(directory: Path = DEFAULT_DIR) -> list[str]:
    """Names of the templates in ``directory`` (file stems), sorted."""
    return sorted(p.stem for p in Path(directory).glob("*.toml") if _NAME.match(p.stem))


def load_template(name: str, directory: Path = DEFAULT_DIR) -> SeatMap:
    """One carriage of template ``name`` (carriage 1), validated. Raises ``SeatMapError``."""
    return build_vehicle(name, 1, directory)


def build_vehicle(
    template: str, carriages: int | Collection[int] = 1, directory: Path = DEFAULT_DIR
) -> SeatMap:
    """A vehicle of ``carriages`` carriages of ``template``.

    ``carriages`` is a count (carriages 1..n) or a collection of carriage numbers (positive,
    distinct). Machine labels are ``"{carriage}-{local}"`` for train carriages and for any
    vehicle with more than one carriage, else the local label.
    """
    if isinstance(carriages, int):
        if carriages < 1:
            raise SeatMapError(f"{template}: a vehicle needs at least one carriage")
        numbers = tuple(range(1, carriages + 1))
    else:
        numbers = tuple(sorted(carriages))
        if not numbers or numbers[0] < 1 or len(set(numbers)) != len(numbers):
            raise SeatMapError(
                f"{template}: carriage numbers must be positive and distinct: {numbers}"
            )
    path = _template_path(template, directory)
    stat = _stat(path)
    return _build(path, stat, numbers)


def _template_path(name: str, directory: Path) -> Path:
    if not _NAME.match(name):
        raise SeatMapError(f"{name}: not a template name (lower-case letters, digits, dashes)")
    return Path(directory).resolve() / f"{name}.toml"


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SeatMapError(f"{path.name}: no such seat-map template in {path.parent}") from None
    return (st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=256)
def _build(path: Path, stat: tuple[int, int], numbers: tuple[int, ...]) -> SeatMap:
    tpl = _parse(path, stat)
    prefixed = tpl.kind == "carriage" or len(numbers) > 1
    seats = []
    for carriage in numbers:

        def machine(local: str, c: int = carriage) -> str:
            return f"{c}-{local}" if prefixed else local

        for s in tpl.seats:
            seats.append(
                Seat(
                    label=machine(s.label),
                    carriage=carriage,
                    row=s.row,
                    position=s.position,
                    adjacent=frozenset(machine(a) for a in s.adjacent),
                    back_row=s.back_row,
                    local=s.label,
                    display=tpl.display.format(carriage=carriage, label=s.label),
                )
            )
    return SeatMap(tpl.name, tpl.kind, tuple(seats), tpl.description)


@lru_cache(maxsize=64)
def _parse(path: Path, stat: tuple[int, int]) -> _Template:  # stat: cache key only
    where = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SeatMapError(f"{where}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SeatMapError(f"{where}: not UTF-8 text") from None

    def fail(message: str) -> SeatMapError:
        return SeatMapError(f"{where}: {message}")

    _no_unknown_keys(where, "the file", data, _TOP_KEYS)
    kind = data.get("kind", "coach")
    if kind not in KINDS:
        raise fail(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    description = _typed(where, "description", data.get("description", ""), str)
    label_format = _typed(where, "label", data.get("label", "{row}{letter}"), str)
    display = _typed(where, "display", data.get("display", "{label}"), str)
    try:
        display.format(carriage=1, label="1A")
    except (KeyError, IndexError, ValueError) as exc:
        raise fail(f"display format {display!r} is not usable: {exc!r}") from None
    omit = set(_typed(where, "omit", data.get("omit", []), list))

    drafts: dict[str, dict] = {}  # local label -> row, position, adjacent, back_row
    pattern_rows: set[int] = set()
    number = 0
    omitted_seen: set[str] = set()
    for n, section in enumerate(_typed(where, "rows", data.get("rows", []), list), 1):
        what = f"[[rows]] section {n}"
        _no_unknown_keys(where, what, section, _ROWS_KEYS)
        first = _positive(where, f"{what}: first", section.get("first"))
        last = _positive(where, f"{what}: last", section.get("last", first))
        if last < first:
            raise fail(f"{what}: last row {last} comes before first row {first}")
        pattern = _typed(where, f"{what}: pattern", section.get("pattern"), str)
        letters = [ch for ch in pattern if ch not in _GAPS]
        if not letters or not all(ch.isalnum() for ch in letters):
            raise fail(f"{what}: pattern {pattern!r} needs seat letters, '_' and '.' only")
        if len(set(letters)) != len(letters):
            raise fail(f"{what}: pattern {pattern!r} repeats a letter")
        back_row = _typed(where, f"{what}: back_row", section.get("back_row", False), bool)
        for row in range(first, last + 1):
            if row in pattern_rows:
                raise fail(f"row {row} is described twice")
            pattern_rows.add(row)
            previous: str | None = None
            for position, ch in enumerate(pattern, 1):
                if ch in _GAPS:
                    previous = None
                    continue
                number += 1
                try:
                    label = label_format.format(row=row, letter=ch, number=number)
                except (KeyError, IndexError, ValueError) as exc:
                    raise fail(f"label format {label_format!r} is not usable: {exc!r}") from None
                if label in omit:
                    omitted_seen.add(label)
                    previous = None
                    continue
                _check_label(where, label)
                if label in drafts:
                    raise fail(f"seat {label} is defined twice")
                drafts[label] = {
                    "row": row,
                    "position": position,
                    "adjacent": set(),
                    "back_row": back_row,
                }
                if previous is not None:
                    drafts[label]["adjacent"].add(previous)
                    drafts[previous]["adjacent"].add(label)
                previous = label
    if omit - omitted_seen:
        raise fail(f"omit names seat {sorted(omit - omitted_seen)[0]}, which does not exist")

    for entry in _typed(where, "seat", data.get("seat", []), list):
        label = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(label, str):
            raise fail(f"a [[seat]] entry has no label: {entry!r}")
        _check_label(where, label)
        what = f"seat {label}"
        _no_unknown_keys(where, what, entry, _SEAT_KEYS)
        if label in drafts:
            raise fail(f"seat {label} is defined twice")
        row = _positive(where, f"{what}: row", entry.get("row"))
        if row in pattern_rows:
            raise fail(f"seat {label} is in row {row}, which a [[rows]] pattern already describes")
        adjacent = _typed(where, f"{what}: adjacent", entry.get("adjacent", []), list)
        if not all(isinstance(a, str) for a in adjacent):
            raise fail(f"{what}: adjacent must list seat labels")
        drafts[label] = {
            "row": row,
            "position": _positive(where, f"{what}: position", entry.get("position")),
            "adjacent": set(adjacent),
            "back_row": _typed(where, f"{what}: back_row", entry.get("back_row", False), bool),
        }

    if not drafts:
        raise fail("describes no seats")
    expected = data.get("seats")
    if expected is not None and expected != len(drafts):
        raise fail(f"declares {expected} seats but describes {len(drafts)}")
    seats = tuple(
        Seat(
            label=label,
            carriage=1,
            row=d["row"],
            position=d["position"],
            adjacent=frozenset(d["adjacent"]),
            back_row=d["back_row"],
        )
        for label, d in drafts.items()
    )
    # SeatMap validates adjacency (existence, symmetry, same row) and places; reuse it so the
    # rules live in one place, naming the file.
    SeatMap(where, kind, seats)
    return _Template(path.stem, kind, description, display, seats)


def _no_unknown_keys(where: str, what: str, table: object, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise SeatMapError(f"{where}: {what} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SeatMapError(f"{where}: {what} has unknown key {unknown[0]!r}")


def _typed(where: str, what: str, value: object, kind: type) -> object:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise SeatMapError(f"{where}: {what} must be a {kind.__name__}, not {value!r}")
    return value


def _positive(where: str, what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SeatMapError(f"{where}: {what} must be a positive whole number, not {value!r}")
    return value


def _check_label(where: str, label: str) -> None:
    if not _LOCAL_LABEL.match(label):
        raise SeatMapError(f"{where}: seat label {label!r} must be letters and digits")
