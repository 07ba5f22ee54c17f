"""Roster rows: which column is which, and whether each row is a worker we can take (pure).

The same checks serve the one-worker form, the file import and the API. Every problem names the
row as the user sees it in Excel, the column as headed in their file, the value masked, and a
reason code that the caller turns into a sentence in the user's language.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from app.core.identity import (
    InvalidIdentifier,
    check_age,
    mask_id_number,
    mask_mobile,
    mask_numbers_in,
    normalize_mobile,
    validate_id_number,
    validate_region_code,
)
from app.demand.spreadsheets import Table


@dataclass(frozen=True)
class Column:
    field: str
    header: str  # the template's Chinese header
    english: str  # the template's English header
    aliases: tuple[str, ...] = ()
    required: bool = False
    max_length: int = 100


COLUMNS: tuple[Column, ...] = (
    Column("name", "姓名", "Name", ("worker name", "full name"), required=True, max_length=50),
    Column(
        "id_number",
        "身份证号",
        "ID number",
        ("身份证号码", "身份证", "居民身份证号码", "resident id number", "id"),
        required=True,
    ),
    Column(
        "phone",
        "手机号",
        "Mobile",
        ("手机号码", "手机", "联系电话", "mobile number", "phone"),
        required=True,
    ),
    Column(
        "home_region_code",
        "户籍地区代码",
        "Home county code",
        ("户籍地代码", "行政区划代码", "区划代码", "home region code"),
        required=True,
    ),
    Column("home_region_name", "户籍地区", "Home county", ("户籍所在地", "户籍地", "home region")),
    Column("group_tag", "分组", "Group", ("同乡分组", "村组", "group tag"), max_length=50),
    Column("emergency_contact_name", "紧急联系人", "Emergency contact", (), max_length=50),
    Column(
        "emergency_contact_phone",
        "紧急联系人电话",
        "Emergency contact phone",
        ("紧急联系电话", "emergency phone"),
    ),
    # The text of the worker's health-pass QR code (app/health/passes.py reads it).
    Column("health_pass", "健康码", "Health pass", ("健康通行证", "health code"), max_length=4096),
)
COLUMNS_BY_FIELD = {column.field: column for column in COLUMNS}


def _header_key(text: str) -> str:
    """Headers as people write them: full-width, spaced, starred as required, any case."""
    folded = unicodedata.normalize("NFKC", text or "").lower()
    folded = re.sub(r"[(（].*?[)）]", "", folded)  # "手机号（必填）"
    return re.sub(r"[\s*_:：]+", "", folded)


_HEADER_KEYS = {
    _header_key(name): column.field
    for column in COLUMNS
    for name in (column.header, column.english, column.field, *column.aliases)
}


LANDLINE = re.compile(r"0\d{2,3}-?\d{7,8}")
_SPACES = re.compile(r"\s+")  # compiled once: _text runs for six cells of every row


@dataclass(frozen=True)
class Problem:
    row: int
    column: str  # as headed in the user's file
    value: str  # masked
    reason: str  # "<field>.<reason>", e.g. "id_number.check"
    other_row: int | None = None
    place: str | None = None  # another request, when the reason is a clash with it


@dataclass
class ColumnMap:
    indexes: dict[str, int]  # field -> column index
    headers: dict[str, str]  # field -> header as written in the file
    unknown: list[str]
    problems: list[Problem]


def map_columns(headers: Sequence[str]) -> ColumnMap:
    indexes: dict[str, int] = {}
    written: dict[str, str] = {}
    unknown: list[str] = []
    problems: list[Problem] = []
    for index, header in enumerate(headers):
        if not header:
            continue
        known = _HEADER_KEYS.get(_header_key(header))
        if known is None:
            unknown.append(header)
        elif known in indexes:
            problems.append(Problem(1, header, "", "columns.duplicate", other_row=None))
        else:
            indexes[known] = index
            written[known] = header
    for column in COLUMNS:
        if column.required and column.field not in indexes:
            problems.append(Problem(1, column.header, "", "columns.missing"))
    return ColumnMap(indexes, written, unknown, problems)


def find_header_row(table: Table, look_at: int = 5) -> Table:
    """Offices often put a title row ("2027年返岗人员名单") above the headers: the header row is
    the first of the first few rows that names a required column."""
    candidates = [(1, list(table.headers)), *table.rows[: look_at - 1]]
    for position, (_row, cells) in enumerate(candidates):
        headers = ["" if cell is None else str(cell).strip() for cell in cells]
        found = map_columns(headers)
        if any(field in found.indexes for field in ("name", "id_number")):
            if position == 0:
                return table
            return Table(headers=headers, rows=table.rows[position:])
    return table


@dataclass
class WorkerData:
    """One valid worker, normalised: ID upper-case, phones in E.164."""

    name: str
    id_number: str
    phone: str
    home_region_code: str
    home_region_name: str | None = None
    group_tag: str | None = None
    emergency_contact_name: str | None = None
    emergency_contact_phone: str | None = None
    health_pass: str | None = None
    row: int = 0


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """What the checks against saved data need of a row refused for its cells, as far as those
    cells are valid: a row with a bad phone is still checked for a clash on its ID number."""

    row: int
    id_number: str | None
    name: str | None
    health_pass: str | None


@dataclass
class RosterCheck:
    workers: list[WorkerData] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    refused: list[RefusedRow] = field(default_factory=list)


@dataclass(frozen=True)
class AgeRule:
    travel_date: date
    min_age: int
    max_age: int


def _mask(field_name: str, value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if field_name == "id_number":
        return mask_id_number(text)
    if field_name in ("phone", "emergency_contact_phone"):
        return mask_mobile(text)
    if field_name == "health_pass":
        return text[:12] + "…" if len(text) > 12 else text  # the rest holds the ID number
    text = mask_numbers_in(text)
    return text if len(text) <= 30 else text[:29] + "…"


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = unicodedata.normalize("NFC", str(value)).strip()
    return _SPACES.sub(" ", text) or None


def check_worker(
    values: dict[str, object],
    today: date,
    age_rule: AgeRule,
    row: int = 0,
    headers: dict[str, str] | None = None,
) -> WorkerData | list[Problem]:
    """One worker's fields (as typed or as read from a cell) -> WorkerData, or its problems."""
    cleaned, problems = _clean_fields(values, today, age_rule, row, headers or {})
    return problems or _worker_data(cleaned, row)


def _clean_fields(
    values: dict[str, object],
    today: date,
    age_rule: AgeRule,
    row: int,
    headers: dict[str, str],
) -> tuple[dict[str, object], list[Problem]]:
    """The fields that are valid, normalised, and the problems of the others."""
    problems: list[Problem] = []

    def problem(field_name: str, reason: str) -> None:
        column = headers.get(field_name) or COLUMNS_BY_FIELD[field_name].header
        problems.append(
            Problem(
                row, column, _mask(field_name, values.get(field_name)), f"{field_name}.{reason}"
            )
        )

    cleaned: dict[str, object] = {}
    for column in COLUMNS:
        raw = values.get(column.field)
        if isinstance(raw, str) and "\x00" in raw:
            # Invisible, and no database column can hold it (PostgreSQL refuses the row).
            problem(column.field, "nul_byte")
            continue
        if column.field == "id_number":
            try:
                id_number = validate_id_number(raw, today)
                check_age(id_number, age_rule.travel_date, age_rule.min_age, age_rule.max_age)
            except InvalidIdentifier as error:
                problem("id_number", error.reason)
            else:
                cleaned["id_number"] = id_number
            continue
        if column.field in ("phone", "emergency_contact_phone"):
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if column.required:
                    problem(column.field, "empty")
                continue
            try:
                cleaned[column.field] = normalize_mobile(raw)
            except InvalidIdentifier as error:
                landline = LANDLINE.fullmatch(re.sub(r"[\s()（）]", "", str(raw)))
                if column.field == "emergency_contact_phone" and landline:
                    # The family at home may have only a fixed line; nobody texts this number.
                    cleaned[column.field] = landline.group(0)
                else:
                    problem(column.field, error.reason)
            continue
        text = _text(raw)
        if text is None:
            if column.required:
                problem(column.field, "empty")
            continue
        if column.field == "home_region_code":
            try:
                text = validate_region_code(text)
            except InvalidIdentifier as error:
                problem(column.field, error.reason)
                continue
        elif len(text) > column.max_length:
            problem(column.field, "too_long")
            continue
        cleaned[column.field] = text
    return cleaned, problems


def _worker_data(cleaned: dict[str, object], row: int) -> WorkerData:
    return WorkerData(
        name=str(cleaned["name"]),
        id_number=str(cleaned["id_number"]),
        phone=str(cleaned["phone"]),
        home_region_code=str(cleaned["home_region_code"]),
        home_region_name=cleaned.get("home_region_name"),  # type: ignore[arg-type]
        group_tag=cleaned.get("group_tag"),  # type: ignore[arg-type]
        emergency_contact_name=cleaned.get("emergency_contact_name"),  # type: ignore[arg-type]
        emergency_contact_phone=cleaned.get("emergency_contact_phone"),  # type: ignore[arg-type]
        health_pass=cleaned.get("health_pass"),  # type: ignore[arg-type]
        row=row,
    )


def _valid_id_number(value: object, today: date) -> str | None:
    try:
        return validate_id_number(value, today)
    except InvalidIdentifier:
        return None


def check_rows(
    rows: Sequence[tuple[int, Sequence[object]]],
    columns: ColumnMap,
    today: date,
    age_rule: AgeRule,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 500,
) -> RosterCheck:
    """Every row checked; nothing stops at the first problem. The same ID number twice in the
    file is a problem on both rows, each naming the other. Refused rows keep their valid
    cells in ``refused``, for the checks against what is saved."""
    result = RosterCheck()
    first_row_of: dict[str, int] = {}
    header = columns.headers.get("id_number", COLUMNS_BY_FIELD["id_number"].header)
    for done, (row, cells) in enumerate(rows, start=1):
        values = {
            name: cells[index] if index < len(cells) else None
            for name, index in columns.indexes.items()
        }
        cleaned, problems = _clean_fields(values, today, age_rule, row, columns.headers)
        if problems:
            result.problems.extend(problems)
            # Valid even when the worker is outside the age range: the clashes still count.
            id_number = _valid_id_number(values.get("id_number"), today)
            name, health_pass = cleaned.get("name"), cleaned.get("health_pass")
            result.refused.append(RefusedRow(row, id_number, name, health_pass))  # type: ignore[arg-type]
        else:
            result.workers.append(_worker_data(cleaned, row))
            id_number = str(cleaned["id_number"])
        if id_number is not None:
            # Found even when one of the two rows has other problems: fixing those must not
            # reveal a duplicate only at the next import.
            first = first_row_of.setdefault(id_number, row)
            if first != row:
                masked = mask_id_number(id_number)
                result.problems.append(
                    Problem(row, header, masked, "id_number.duplicate_in_file", other_row=first)
                )
                result.problems.append(
                    Problem(first, header, masked, "id_number.duplicate_in_file", other_row=row)
                )
        if on_progress and done % progress_every == 0:
            on_progress(done)
    refused = {problem.row for problem in result.problems}
    for worker in result.workers:
        if worker.row in refused:  # valid cells, but a duplicate in the file
            result.refused.append(
                RefusedRow(worker.row, worker.id_number, worker.name, worker.health_pass)
            )
    result.workers = [worker for worker in result.workers if worker.row not in refused]
    result.problems = in_file_order(result.problems, columns)
    return result


def in_file_order(problems: list[Problem], columns: ColumnMap) -> list[Problem]:
    """Row by row, and within a row column by column as the file has them: the order the
    user reads the file in (and the first 500 shown are the first rows' problems)."""
    position = {header: columns.indexes[name] for name, header in columns.headers.items()}
    return sorted(problems, key=lambda p: (p.row, position.get(p.column, len(position))))
