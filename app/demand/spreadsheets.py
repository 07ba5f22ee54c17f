"""Reading and writing tables as .xlsx and .csv (pure: no Flask, no database).

``read_table`` turns an uploaded file into a header row and numbered data rows; it knows nothing
of what the columns mean. Values are handed back as the file holds them: an .xlsx number stays a
number, so the caller can tell that an ID number was typed into a numeric cell (and has lost its
last digits). ``write_xlsx`` and ``write_csv`` produce files that Excel on Chinese Windows opens
correctly, with long digit strings kept as text and formula injection defused.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import unicodedata
import zipfile
from collections.abc import Callable, Collection, Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice
from xml.etree.ElementTree import iterparse  # nosec B405

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.reader.excel import ExcelReader
from openpyxl.styles import Font
from openpyxl.styles.stylesheet import apply_stylesheet
from openpyxl.utils import get_column_letter
from openpyxl.utils.cell import coordinate_to_tuple
from openpyxl.worksheet._reader import INLINE_STRING, ROW_TAG, WorkSheetParser
from openpyxl.xml.constants import SHEET_MAIN_NS

# Columns beyond this are ignored on reading: no roster is that wide, and a tiny file with one
# cell in column XFD of every row would otherwise make every row 16,384 cells long.
MAX_COLUMNS = 256
# An .xlsx is a zip; refuse one whose parts would unpack to more than this (a zip bomb).
MAX_XLSX_UNCOMPRESSED = 256 * 1024 * 1024
# The largest file imported. A CSV cell may be as long as that (Python's csv stops at 128 KiB
# and the whole file would be "unreadable"): a cell too long for its column is then named at
# its row and column, as in an .xlsx, and no cell holds more than the file already did.
MAX_FILE_BYTES = 10 * 1024 * 1024
# Tried in this order: UTF-8 (with or without BOM), then what Chinese Excel saves as "CSV".
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
CSV_DELIMITERS = ",;\t"
_SNIFF_CHARS = 16 * 1024
_SNIFF_LINES = 50

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and password-protected .xlsx
_ZIP_MAGIC = b"PK\x03\x04"

# Every Unicode whitespace character (full-width space U+3000, NBSP...) plus the invisible ones
# that copy-paste leaves behind (zero-width space, word joiner, BOM).
_STRIP_CHARS = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()) + (
    "\u200b\u200c\u200d\u2060\ufeff"
)

_INJECTION_START = ("=", "+", "-", "@", "\t", "\r")
_PHONE_NUMBER = re.compile(r"\+?\d+")  # a phone number, or any plain digit string

_WIDTH_SAMPLE_ROWS = 100
_MIN_WIDTH = 8
_MAX_WIDTH = 50
_TEXT_MIN_WIDTH = 20  # an 18-digit ID number must show in full
_EXACT_FLOAT = 2**53  # every integer up to this is exact as a float
_TEXT_TAG = f"{{{SHEET_MAIN_NS}}}t"

# How far into each part of an .xlsx to look for the end of its prolog (see _declares_dtd).
_PROLOG_PEEK = 64 * 1024
_PROLOG_ITEM = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->)", re.DOTALL)


class SpreadsheetError(Exception):
    """A file that cannot be read as a table.

    ``reason`` is one of:

    - ``"format"``: not .xlsx or .csv by its name, or an old binary Excel file (.xls, or one
      renamed to .xlsx, or a password-protected workbook);
    - ``"unreadable"``: a corrupt .xlsx, or a .csv that is neither UTF-8 nor GB18030 text;
    - ``"empty"``: no non-empty row, so no header row;
    - ``"too_many_rows"``: more data rows than allowed; ``detail`` is the limit.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Table:
    """``headers``: the header row's cells as stripped str ("" for an empty one), trailing empty
    ones dropped. ``rows``: ``(row number as Excel shows it, cells)`` for every non-empty row below
    the header; cells are padded with None to the header width and are longer only when the row
    has non-empty cells beyond it."""

    headers: list[str]
    rows: list[tuple[int, list[object]]]


# --- reading ------------------------------------------------------------------------------------


def read_table(filename: str, data: bytes, max_rows: int = 50_000) -> Table:
    extension = os.path.splitext(filename.strip())[1].lower()
    if extension == ".xlsx":
        return _build_table(_xlsx_rows, data, max_rows)
    if extension == ".csv":
        return _read_csv(data, max_rows)
    raise SpreadsheetError("format", extension.lstrip(".") or "no extension")


def _strip(value: str) -> str:
    """Trimmed, and without the ``'`` that our own exports put before a formula-like value
    (see ``_defuse``), so an exported file imports back unchanged."""
    value = value.strip(_STRIP_CHARS)
    if value.startswith("'") and value[1:2] and value[1] in _INJECTION_START:
        return value[1:].strip(_STRIP_CHARS)
    return value


def _clean_row(raw: Sequence[object]) -> list[object]:
    """Stripped cells, empty strings as None, trailing empty cells dropped ([] for a blank row)."""
    cells: list[object] = []
    for value in islice(raw, MAX_COLUMNS):
        if isinstance(value, str):
            value = _strip(value) or None
        cells.append(value)
    while cells and cells[-1] is None:
        cells.pop()
    return cells


def _build_table(
    source: Callable[[bytes], Generator[tuple[int, Sequence[object]], None, None]],
    data: bytes,
    max_rows: int,
) -> Table:
    headers: list[str] | None = None
    rows: list[tuple[int, list[object]]] = []
    # closing(): stopping early closes the workbook now, not when the generator is collected.
    with closing(source(data)) as numbered_rows:
        for number, raw in numbered_rows:
            cells = _clean_row(raw)
            if not cells:
                continue
            if headers is None:
                headers = ["" if value is None else _strip(str(value)) for value in cells]
                continue
            if len(rows) >= max_rows:
                raise SpreadsheetError("too_many_rows", str(max_rows))
            if len(cells) < len(headers):
                cells.extend([None] * (len(headers) - len(cells)))
            rows.append((number, cells))
    if headers is None:
        raise SpreadsheetError("empty")
    return Table(headers=headers, rows=rows)


class _SheetParser(WorkSheetParser):
    """openpyxl's streaming parser of a sheet's XML, for its rows only. A plain inline string
    (one ``<t>``, as openpyxl itself writes every string: our templates and exports) is taken
    from its text; openpyxl builds a rich-text object for each, a third of the parse."""

    def parse(self):
        """The rows, read by the standard library's C parser. openpyxl takes defusedxml's
        pure-Python one whenever that happens to be installed (here a development tool
        brings it): a roster read twice as slowly, and only where it is installed. What it
        guarded against, a DTD, ``_refuse_dtds`` refuses in every part before any parsing."""
        # DTDs refused before (_refuse_dtds):
        for _event, element in iterparse(self.source):  # noqa: S314  # nosec B314
            if element.tag == ROW_TAG:
                yield self.parse_row(element)
                element.clear()

    def parse_cell(self, element):
        string = element.find(INLINE_STRING) if element.get("t") == "inlineStr" else None
        if string is None or len(string) != 1 or string[0].tag != _TEXT_TAG:
            return super().parse_cell(element)
        # The column as WorkSheetParser.parse_cell counts it; the row comes from parse_row.
        coordinate = element.get("r")
        if coordinate:
            self.col_counter = coordinate_to_tuple(coordinate)[1]
        else:
            self.col_counter += 1
        return {"column": self.col_counter, "value": string[0].text or ""}


def _xlsx_rows(data: bytes) -> Generator[tuple[int, Sequence[object]], None, None]:
    if data.startswith(_OLE_MAGIC):
        raise SpreadsheetError("format", "xls")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except Exception as exc:
        raise SpreadsheetError("unreadable", f"not a zip archive: {exc}") from exc
    if unpacked > MAX_XLSX_UNCOMPRESSED:
        raise SpreadsheetError("unreadable", f"unpacks to {unpacked} bytes")
    _refuse_dtds(data)

    # What load_workbook(read_only=True) reads, up to the sheets: it then opens every sheet
    # and looks for its <dimension>, parsing the whole sheet when there is none (as in files
    # openpyxl writes) only for a size that is often wrong anyway.
    try:
        reader = ExcelReader(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise SpreadsheetError("unreadable", f"{type(exc).__name__}: {exc}") from exc
    try:
        reader.read_manifest()
        reader.read_strings()
        reader.read_workbook()
        apply_stylesheet(reader.archive, reader.wb)  # which number formats are dates
        # The first worksheet (not a chart sheet), as workbook.worksheets[0].
        path = next(
            (
                rel.target
                for _sheet, rel in reader.parser.find_sheets()
                if rel.target in reader.valid_files and "chartsheet" not in rel.Type
            ),
            None,
        )
        if path is None:
            return
        workbook = reader.wb
        with reader.archive.open(path) as source:
            parser = _SheetParser(
                source,
                reader.shared_strings,
                data_only=True,
                epoch=workbook.epoch,
                date_formats=workbook._date_formats,
                timedelta_formats=workbook._timedelta_formats,
            )
            last = 0
            for number, cells in parser.parse():
                # As openpyxl's read-only sheet: a row out of order is dropped, and a row is as
                # wide as its last cell says.
                if number <= last:
                    continue
                last = number
                width = min(cells[-1]["column"], MAX_COLUMNS) if cells else 0
                values: list[object] = [None] * width
                for cell in cells:
                    if cell["column"] <= width:
                        values[cell["column"] - 1] = cell["value"]
                yield number, values
    except SpreadsheetError:
        raise
    except Exception as exc:
        # The sheet's XML is parsed while iterating: corruption shows up here too.
        raise SpreadsheetError("unreadable", f"{type(exc).__name__}: {exc}") from exc
    finally:
        reader.archive.close()


def _refuse_dtds(data: bytes) -> None:
    """No part of a workbook may declare a DTD. A spreadsheet has no use for one, and it is
    what XML bombs need (entities expanding a billion times, or quadratically); the Expat of
    older Pythons does not stop them all."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                with archive.open(info) as part:
                    if _declares_dtd(part.read(_PROLOG_PEEK)):
                        raise SpreadsheetError("unreadable", f"{info.filename}: a DTD")
    except SpreadsheetError:
        raise
    except Exception as exc:  # a damaged archive fails in many ways (zlib, seeks, CRCs)
        raise SpreadsheetError("unreadable", f"{type(exc).__name__}: {exc}") from exc


def _declares_dtd(head: bytes) -> bool:
    """Whether this start of an XML part declares a DTD (or its prolog does not end within
    it). A DTD can only stand in the prolog, before the root element, among the XML
    declaration, processing instructions and comments; a part that is not XML (a picture)
    starts with no ``<``."""
    encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if not text.lstrip().startswith("<"):
        return False
    position = 0
    while item := _PROLOG_ITEM.match(text, position):
        position = item.end()
    rest = text[position:].lstrip()
    if rest.startswith("<!"):
        return True
    return not rest.startswith("<") and len(head) == _PROLOG_PEEK


def _read_csv(data: bytes, max_rows: int) -> Table:
    head = data[: 4 * _SNIFF_CHARS]
    if head.startswith((_ZIP_MAGIC, _OLE_MAGIC)) or b"\x00" in head:
        raise SpreadsheetError("unreadable", "binary file, not CSV text")
    for encoding in CSV_ENCODINGS:
        try:
            return _build_table(partial(_csv_rows, encoding=encoding), data, max_rows)
        except UnicodeDecodeError:
            continue
    raise SpreadsheetError("unreadable", "neither UTF-8 nor GB18030 text")


def _text(data: bytes, encoding: str) -> io.TextIOWrapper:
    # Decoded as it is read, so a huge file stops being read at the row limit.
    return io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="strict", newline="")


def _csv_rows(data: bytes, encoding: str) -> Generator[tuple[int, Sequence[object]], None, None]:
    sample = _text(data, encoding).read(_SNIFF_CHARS)
    if len(sample) == _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    sample = "\n".join(sample.splitlines()[:_SNIFF_LINES])
    delimiter = _sniff_delimiter(sample)
    # The limit is the process's, not the reader's: every call sets the same value.
    csv.field_size_limit(MAX_FILE_BYTES)
    reader = csv.reader(_text(data, encoding), delimiter=delimiter)
    try:
        # A record is one Excel row, even when a quoted cell spans several lines.
        yield from enumerate(reader, start=1)
    except csv.Error as exc:
        raise SpreadsheetError("unreadable", f"CSV: {exc}") from exc


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        pass
    # The sniffer wants consistent lines; failing that, trust the header line.
    first = next((line for line in sample.splitlines() if line.strip()), "")
    count, delimiter = max((first.count(d), d) for d in CSV_DELIMITERS)
    return delimiter if count else ","


# --- writing ------------------------------------------------------------------------------------


def _defuse(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with ``'``.

    Phone numbers in E.164 (``+8613800138000``) and plain digit strings are left alone.
    """
    if value.startswith(_INJECTION_START) and not _PHONE_NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_xlsx(
    headers: list[str],
    rows: Iterable[Sequence[object]],
    text_columns: Collection[int] = (),
    sheet_title: str = "Sheet1",
) -> bytes:
    text_columns = frozenset(text_columns)
    rows = iter(rows)
    sample = list(islice(rows, _WIDTH_SAMPLE_ROWS))

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=_sheet_title(sheet_title))
    width = max([len(headers), *(len(row) for row in sample)])
    for index in range(width):
        column = sheet.column_dimensions[get_column_letter(index + 1)]
        texts = [headers[index]] if index < len(headers) else []
        texts += [_xlsx_text(row[index]) for row in sample if index < len(row)]
        column.width = _column_width(texts, index in text_columns)
        if index in text_columns:
            # New cells typed into the column are text too (an empty template stays safe).
            column.number_format = "@"
    sheet.freeze_panes = "A2"

    bold = Font(bold=True)
    header_cells = []
    for header in headers:
        cell = WriteOnlyCell(sheet, value=_xlsx_value(header))
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)

    for row in chain(sample, rows):
        cells: list[object] = []
        for index, value in enumerate(row):
            if index in text_columns:
                cell = WriteOnlyCell(sheet, value=_xlsx_value(_as_text(value)))
                cell.number_format = "@"
                cells.append(cell)
            else:
                cells.append(_xlsx_value(value))
        sheet.append(cells)

    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def write_csv(
    headers: list[str], rows: Iterable[Sequence[object]], text_columns: Collection[int] = ()
) -> bytes:
    text_columns = frozenset(text_columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow([_csv_value(header) for header in headers])
    for row in rows:
        writer.writerow(
            [
                _csv_text(value) if index in text_columns else _csv_value(value)
                for index, value in enumerate(row)
            ]
        )
    return buffer.getvalue().encode("utf-8-sig")


def _csv_value(value: object) -> object:
    return _defuse(value) if isinstance(value, str) else value


def _csv_text(value: object) -> str | None:
    """A text column's cell. A .csv has no cell types: Excel opens a bare 18-digit ID number as
    3.70102E+17 (its last digits lost) and drops a leading zero, but keeps a cell that starts
    with a tab as text. The reader strips the tab again, so an exported file imports back."""
    text = _as_text(value)
    if text is not None and _PHONE_NUMBER.fullmatch(text):
        return "\t" + text
    return _csv_value(text)


def _xlsx_value(value: object) -> object:
    if isinstance(value, str):
        # Control characters make openpyxl refuse to save, and Excel refuse to open.
        return _defuse(ILLEGAL_CHARACTERS_RE.sub("", value))
    return value


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT:
        return str(int(value))  # 12345.0 -> "12345"
    # A float beyond 2**53 has lost digits: "3.70102199001011e+17" shows it, where the integer
    # "370102199001011200" would look like a valid but wrong ID number.
    return str(value)


def _xlsx_text(value: object) -> str:
    return "" if value is None else str(value)


def _display_width(text: str) -> int:
    """Columns the text needs in Excel: Chinese characters count double; the widest line counts."""
    return max(
        sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line[:_MAX_WIDTH])
        for line in text.split("\n")
    )


def _column_width(texts: list[str], is_text: bool) -> int:
    widest = max((_display_width(text) for text in texts), default=0) + 2
    return min(max(widest, _TEXT_MIN_WIDTH if is_text else _MIN_WIDTH), _MAX_WIDTH)


def _sheet_title(title: str) -> str:
    # Excel: at most 31 characters, none of \ / ? * [ ] :
    cleaned = re.sub(r"[\\/?*\[\]:]", "_", ILLEGAL_CHARACTERS_RE.sub("", title)).strip("'")
    return cleaned[:31] or "Sheet1"
