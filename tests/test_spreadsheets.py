"""Reading and writing .xlsx and .csv tables, with real files built in memory."""

from __future__ import annotations

import ast
import csv
import io
import os
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from app.demand import spreadsheets
from app.demand.spreadsheets import SpreadsheetError, Table, read_table, write_csv, write_xlsx

ID_NUMBER = "370102199001011234"  # 18 digits: more than a float holds exactly
HEADERS = ["姓名", "身份证号", "手机号"]


def xlsx_bytes(rows: list[list[object]], *, text_cells: tuple[str, ...] = ()) -> bytes:
    """A workbook whose first sheet holds ``rows`` from A1; ``text_cells`` get format "@"."""
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    for coordinate in text_cells:
        sheet[coordinate].number_format = "@"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def assert_error(reason: str, filename: str, data: bytes, **kwargs: object) -> SpreadsheetError:
    with pytest.raises(SpreadsheetError) as caught:
        read_table(filename, data, **kwargs)
    assert caught.value.reason == reason
    return caught.value


# --- .xlsx --------------------------------------------------------------------------------------


def test_xlsx_keeps_numbers_as_numbers_and_text_as_text():
    data = xlsx_bytes(
        [
            HEADERS,
            ["张三", int(ID_NUMBER), 13800138000],  # typed into a General cell
            ["李四", 3.70102199001011e17, "13900139000"],  # what Excel really stores
            ["王五", ID_NUMBER, "+8613800138000"],  # a text-formatted cell
        ],
        text_cells=("B4",),
    )

    table = read_table("名单.xlsx", data)

    assert table.headers == HEADERS
    assert [number for number, _ in table.rows] == [2, 3, 4]
    (_, zhang), (_, li), (_, wang) = table.rows
    # Numbers, not text: the caller can tell that these ID numbers have lost digits.
    assert isinstance(zhang[1], int | float)
    assert isinstance(li[1], float)
    assert isinstance(zhang[2], int)
    assert wang == ["王五", ID_NUMBER, "+8613800138000"]


def test_xlsx_skips_blank_rows_and_keeps_the_files_row_numbers():
    data = xlsx_bytes(
        [
            [None, None],
            HEADERS,
            ["张三", ID_NUMBER, "13800138000"],
            [],
            [None, "   ", "\u3000"],  # only whitespace: blank too
            ["李四", "110101199003074578", "13900139000"],
        ]
    )

    table = read_table("x.xlsx", data)

    assert table.headers == HEADERS
    assert [number for number, _ in table.rows] == [3, 6]
    assert table.rows[1][1][0] == "李四"


def test_xlsx_strips_every_kind_of_space_and_empty_strings_become_none():
    data = xlsx_bytes(
        [
            [" 姓名 ", "\u3000身份证号\u3000", "手机号\xa0", None, ""],
            ["张三 ", f"\u3000{ID_NUMBER}\u3000", "\xa013800138000\u200b", None, None],
            ["\t李四\n", "", "  ", "", None],
        ]
    )

    table = read_table("x.xlsx", data)

    assert table.headers == HEADERS  # trailing empty header cells are dropped
    assert table.rows == [
        (2, ["张三", ID_NUMBER, "13800138000"]),
        (3, ["李四", None, None]),
    ]


def test_xlsx_pads_short_rows_and_keeps_values_beyond_the_headers():
    data = xlsx_bytes([HEADERS, ["张三"], ["李四", None, None, None, "备注"]])

    table = read_table("x.xlsx", data)

    assert table.rows == [
        (2, ["张三", None, None]),
        (3, ["李四", None, None, None, "备注"]),
    ]


def test_xlsx_hands_back_dates_and_booleans_as_they_are():
    data = xlsx_bytes([["到岗日期", "已确认"], [datetime(2024, 2, 20, 8, 30), True]])  # noqa: DTZ001

    table = read_table("x.xlsx", data)

    assert table.rows == [(2, [datetime(2024, 2, 20, 8, 30), True])]  # noqa: DTZ001


def test_xlsx_header_cells_become_strings():
    data = xlsx_bytes([["序号", 2024, None, "备注"], [1, 2, 3, 4]])

    table = read_table("x.xlsx", data)

    assert table.headers == ["序号", "2024", "", "备注"]
    assert table.rows == [(2, [1, 2, 3, 4])]


def test_xlsx_reads_the_first_worksheet_even_when_another_is_active():
    workbook = Workbook()
    workbook.active.append(["第一页"])
    second = workbook.create_sheet("第二页")
    second.append(["第二页"])
    workbook.active = 1
    buffer = io.BytesIO()
    workbook.save(buffer)

    assert read_table("x.xlsx", buffer.getvalue()).headers == ["第一页"]


def test_xlsx_extension_is_case_insensitive():
    assert read_table("名单.XLSX", xlsx_bytes([HEADERS])).headers == HEADERS


def test_xlsx_ignores_columns_beyond_the_limit():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["姓名"])
    sheet.cell(row=2, column=1, value="张三")
    sheet.cell(row=2, column=16384, value="XFD")  # the last column Excel has
    buffer = io.BytesIO()
    workbook.save(buffer)

    assert read_table("x.xlsx", buffer.getvalue()).rows == [(2, ["张三"])]


# --- .csv ---------------------------------------------------------------------------------------

CSV_TEXT = (
    f"姓名,身份证号,手机号\r\n张三,{ID_NUMBER},13800138000\r\n李四 ,\u3000,+8613800138000\r\n"
)
CSV_ROWS = [(2, ["张三", ID_NUMBER, "13800138000"]), (3, ["李四", None, "+8613800138000"])]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(CSV_TEXT.encode("utf-8"), id="utf-8"),
        pytest.param(CSV_TEXT.encode("utf-8-sig"), id="utf-8 with BOM"),
        pytest.param(CSV_TEXT.encode("gb18030"), id="gb18030"),
        pytest.param(CSV_TEXT.replace(",", ";").encode("utf-8"), id="semicolons"),
        pytest.param(CSV_TEXT.replace(",", "\t").encode("gb18030"), id="tabs"),
        pytest.param(CSV_TEXT.replace("\r\n", "\n").encode("utf-8"), id="LF line ends"),
    ],
)
def test_csv_encodings_and_delimiters(data: bytes):
    table = read_table("名单.csv", data)

    assert table.headers == HEADERS
    assert not table.headers[0].startswith("\ufeff")
    assert table.rows == CSV_ROWS


def test_csv_gb18030_is_really_not_utf8():
    data = "姓名,身份证号,手机号\r\n".encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert read_table("x.CSV", data).headers == HEADERS


def test_csv_semicolons_when_cells_contain_commas():
    data = '姓名;地址\n张三;"济南市,历下区"\n李四;青岛市\n'.encode()

    table = read_table("x.csv", data)

    assert table.headers == ["姓名", "地址"]
    assert table.rows == [(2, ["张三", "济南市,历下区"]), (3, ["李四", "青岛市"])]


def test_csv_with_a_single_column():
    assert read_table("x.csv", "姓名\n张三\n".encode()).rows == [(2, ["张三"])]


def test_csv_header_only_with_one_line_picks_the_delimiter_from_it():
    table = read_table("x.csv", "姓名;身份证号;手机号".encode())

    assert table == Table(headers=HEADERS, rows=[])


def test_csv_row_numbers_count_records_and_blank_lines():
    data = '\n姓名,备注\n张三,"第一行\n第二行"\n\n, ,\n李四,\n'.encode()

    table = read_table("x.csv", data)

    assert table.headers == ["姓名", "备注"]
    # As Excel shows it: the quoted cell spanning two lines is one row.
    assert table.rows == [(3, ["张三", "第一行\n第二行"]), (6, ["李四", None])]


def test_csv_values_are_strings():
    table = read_table("x.csv", b"a,b\n1,2.5\n")

    assert table.rows == [(2, ["1", "2.5"])]


def test_csv_cells_beyond_pythons_field_limit_are_read_whole():
    long = "长" * (131_072 + 1)  # Python's default limit, plus one
    data = f"姓名,备注\n张三,{long}\n".encode()

    assert read_table("x.csv", data).rows == [(2, ["张三", long])]


def test_a_csv_cell_beyond_the_largest_file_imported_is_not_read():
    data = b"a,b\n1," + b"x" * (spreadsheets.MAX_FILE_BYTES + 1) + b"\n"
    assert_error("unreadable", "x.csv", data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xfe\x00a\x00,\x00b", id="utf-16"),
        pytest.param(b"a,b\n\x80\x80\n", id="invalid in both encodings"),
        pytest.param(b"a,b\x00c\n", id="NUL byte"),
    ],
)
def test_csv_unreadable(data: bytes):
    assert_error("unreadable", "x.csv", data)


def test_an_xlsx_named_csv_is_unreadable():
    assert_error("unreadable", "x.csv", xlsx_bytes([HEADERS]))


# --- empty, header only, too many rows ----------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("x.csv", b""),
        ("x.csv", b"\xef\xbb\xbf"),
        ("x.csv", b"\r\n\r\n , ,\r\n"),
        ("x.xlsx", xlsx_bytes([])),
        ("x.xlsx", xlsx_bytes([[None, " "], [], ["\u3000"]])),
    ],
)
def test_empty_files(filename: str, data: bytes):
    assert_error("empty", filename, data)


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("x.csv", "姓名,身份证号,手机号\r\n".encode("gb18030")),
        ("x.csv", "姓名,身份证号,手机号\r\n,,\r\n".encode()),
        ("x.xlsx", xlsx_bytes([HEADERS])),
        ("x.xlsx", xlsx_bytes([HEADERS, [None, "", " "]])),
    ],
)
def test_header_only(filename: str, data: bytes):
    assert read_table(filename, data) == Table(headers=HEADERS, rows=[])


@pytest.mark.parametrize("filename", ["x.csv", "x.xlsx"])
def test_too_many_rows(filename: str):
    rows = [HEADERS] + [[f"工人{i}", ID_NUMBER, "13800138000"] for i in range(4)]
    data = write_csv(rows[0], rows[1:]) if filename.endswith(".csv") else xlsx_bytes(rows)

    assert len(read_table(filename, data, max_rows=4).rows) == 4
    error = assert_error("too_many_rows", filename, data, max_rows=3)
    assert error.detail == "3"


def test_too_many_rows_stops_reading_a_csv_early():
    # The bytes after the limit are not even decoded: this is not "unreadable".
    data = "姓名\n".encode() + "张三\n".encode() * 10_000 + b"\xff\xff\xff\n"

    assert_error("too_many_rows", "x.csv", data, max_rows=5_000)
    assert_error("unreadable", "x.csv", data, max_rows=20_000)


def test_too_many_rows_stops_reading_an_xlsx_early():
    rows = [HEADERS] + [[f"工人{i}", ID_NUMBER, "13800138000"] for i in range(2000)]
    source = zipfile.ZipFile(io.BytesIO(xlsx_bytes(rows)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as damaged:
        for info in source.infolist():
            part = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                part = part[: len(part) // 2]  # cut off in the middle of the rows
            damaged.writestr(info, part)
    data = buffer.getvalue()

    assert_error("too_many_rows", "x.xlsx", data, max_rows=10)
    assert_error("unreadable", "x.xlsx", data)


# --- formats and corrupt files ------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename", ["名单.xls", "名单.XLS", "名单.txt", "名单.xlsm", "名单", "xlsx", "名单.xlsx.pdf"]
)
def test_other_formats_are_refused_by_name(filename: str):
    error = assert_error("format", filename, xlsx_bytes([HEADERS]))
    assert error.detail


def test_an_old_xls_renamed_to_xlsx_is_a_format_error():
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(2000)

    assert assert_error("format", "x.xlsx", ole).detail == "xls"


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _with_part(data: bytes, name: str, content: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    parts = {info.filename: source.read(info) for info in source.infolist()}
    parts[name] = content
    return _zip(parts)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(os.urandom(4096), id="random bytes"),
        pytest.param(CSV_TEXT.encode("utf-8"), id="a CSV renamed"),
        pytest.param(xlsx_bytes([HEADERS])[:500], id="truncated"),
        pytest.param(_zip({"hello.txt": b"hello"}), id="a zip that is no workbook"),
        pytest.param(
            _with_part(xlsx_bytes([HEADERS]), "xl/workbook.xml", b"<not xml"), id="bad workbook"
        ),
        pytest.param(
            _with_part(xlsx_bytes([HEADERS]), "xl/worksheets/sheet1.xml", b"<worksheet"),
            id="bad sheet",
        ),
    ],
)
def test_corrupt_xlsx_is_unreadable(data: bytes):
    assert_error("unreadable", "x.xlsx", data)


def _entity(n: int) -> bytes:
    """Entity n: ten of entity n - 1 (the first: "lol")."""
    value = "lol" if n == 0 else f"&lol{n - 1};" * 10
    return f'<!ENTITY lol{n} "{value}">'.encode()


_LAUGHS = b"<!DOCTYPE worksheet [" + b"".join(_entity(n) for n in range(10)) + b"]>"


def _sheet_of(data: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")


_DECLARATION = '<?xml version="1.0" encoding="{}" standalone="yes"?>\n'


def test_an_xlsx_declaring_a_dtd_is_refused_before_it_is_parsed():
    """An XML bomb in any part (here a billion &lol9; in a cell): refused as unreadable,
    whatever XML parser openpyxl would have taken."""
    data = xlsx_bytes([HEADERS, ["张三"]])
    sheet = _sheet_of(data)
    bomb = _LAUGHS + sheet.replace("张三".encode(), b"&lol9;")
    error = assert_error("unreadable", "x.xlsx", _with_part(data, "xl/worksheets/sheet1.xml", bomb))
    assert error.detail == "xl/worksheets/sheet1.xml: a DTD"

    # In another part, after an XML declaration, or in UTF-16: refused all the same.
    styles = zipfile.ZipFile(io.BytesIO(data)).read("xl/styles.xml")
    utf16 = _DECLARATION.format("UTF-16") + (_LAUGHS + sheet).decode()
    for name, part in (
        ("xl/styles.xml", _LAUGHS + styles),
        ("xl/worksheets/sheet1.xml", _DECLARATION.format("UTF-8").encode() + _LAUGHS + sheet),
        ("xl/worksheets/sheet1.xml", utf16.encode("utf-16")),
    ):
        error = assert_error("unreadable", "x.xlsx", _with_part(data, name, part))
        assert error.detail == f"{name}: a DTD"


def test_comments_and_instructions_before_a_sheet_are_no_dtd():
    data = xlsx_bytes([HEADERS, ["张三"]])
    prolog = b"<!-- written <!DOCTYPE by hand --> <?fangang note?>\n<!---->"
    sheet = _DECLARATION.format("UTF-8").encode() + prolog + _sheet_of(data)
    table = read_table("x.xlsx", _with_part(data, "xl/worksheets/sheet1.xml", sheet))
    assert table.rows == [(2, ["张三", None, None])]


def test_an_xlsx_that_unpacks_too_big_is_unreadable(monkeypatch: pytest.MonkeyPatch):
    data = xlsx_bytes([HEADERS, ["张" * 5000]])
    assert read_table("x.xlsx", data).rows

    monkeypatch.setattr(spreadsheets, "MAX_XLSX_UNCOMPRESSED", 10_000)

    assert_error("unreadable", "x.xlsx", data)


def test_spreadsheet_error_carries_reason_and_detail():
    error = SpreadsheetError("too_many_rows", "50000")

    assert (error.reason, error.detail) == ("too_many_rows", "50000")
    assert SpreadsheetError("empty").detail == ""
    assert "too_many_rows" in str(error)


# --- writing ------------------------------------------------------------------------------------

ROWS = [
    ["张三", ID_NUMBER, "13800138000", 3],
    ["李四", "11010119900307457X", "+8613900139000", None],
]


def test_write_xlsx_round_trip_keeps_id_numbers_as_text():
    data = write_xlsx([*HEADERS, "人数"], iter(ROWS), text_columns={1, 2})

    table = read_table("x.xlsx", data)

    assert table.headers == [*HEADERS, "人数"]
    assert table.rows == [(2, ROWS[0]), (3, ROWS[1])]
    assert isinstance(table.rows[0][1][1], str)
    assert isinstance(table.rows[0][1][3], int)


def test_write_xlsx_text_columns_turn_numbers_into_text():
    data = write_xlsx(["编号", "身份证号"], [[12345, 12345.0], [None, 3.70102199001011e17]], [1])

    table = read_table("x.xlsx", data)

    assert table.rows == [(2, [12345, "12345"]), (3, [None, "3.70102199001011e+17"])]


def test_write_xlsx_layout():
    headers = ["姓名", "身份证号", "备注说明备注说明备注说明备注说明备注说明备注说明备注说明", "id"]
    data = write_xlsx(headers, [["张三", ID_NUMBER, "", ""]], text_columns=[1], sheet_title="名单")

    sheet = load_workbook(io.BytesIO(data)).worksheets[0]

    assert sheet.title == "名单"
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.b for cell in sheet[1])
    assert not sheet["A2"].font.b
    assert sheet["B2"].number_format == "@"
    assert sheet["B2"].data_type == "s"
    # New cells typed into the ID column are text as well.
    assert sheet.column_dimensions["B"].number_format == "@"
    assert sheet.column_dimensions["A"].number_format == "General"
    widths = {letter: sheet.column_dimensions[letter].width for letter in "ABCD"}
    assert widths["B"] >= 20  # 18 digits show in full
    assert widths["A"] > widths["D"] or widths["D"] == widths["A"] == 8
    assert widths["C"] == 50  # capped


def test_write_xlsx_width_counts_chinese_characters_double():
    data = write_xlsx(["户籍所在地址全称", "home address"], [])

    sheet = load_workbook(io.BytesIO(data)).worksheets[0]

    assert sheet.column_dimensions["A"].width > sheet.column_dimensions["B"].width


def test_write_xlsx_header_only_template():
    data = write_xlsx(HEADERS, [], text_columns=[1, 2])

    assert read_table("模板.xlsx", data) == Table(headers=HEADERS, rows=[])


@pytest.mark.parametrize(
    ("title", "expected"),
    [("名单/2024:春节", "名单_2024_春节"), ("x" * 40, "x" * 31), ("", "Sheet1")],
)
def test_write_xlsx_sheet_title_is_made_valid(title: str, expected: str):
    data = write_xlsx(["a"], [], sheet_title=title)

    assert load_workbook(io.BytesIO(data)).sheetnames == [expected]


def test_write_xlsx_drops_control_characters():
    data = write_xlsx(["姓名"], [["张\x00三\x0b"]])

    assert read_table("x.xlsx", data).rows == [(2, ["张三"])]


def test_write_csv_round_trip():
    data = write_csv([*HEADERS, "人数"], iter(ROWS))

    assert data.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    table = read_table("x.csv", data)
    assert table.headers == [*HEADERS, "人数"]
    assert table.rows == [
        (2, ["张三", ID_NUMBER, "13800138000", "3"]),
        (3, ["李四", "11010119900307457X", "+8613900139000", None]),
    ]


def test_write_csv_quotes_only_when_needed():
    data = write_csv(["a", "b"], [["济南市,历下区", 'say "hi"'], ["x\ny", None]])

    text = data.decode("utf-8-sig")
    assert text == 'a,b\r\n"济南市,历下区","say ""hi"""\r\n"x\ny",\r\n'


# --- formula injection --------------------------------------------------------------------------

DANGEROUS = ["=1+1", '=HYPERLINK("http://x")', "+1+1", "-2+3", "-", "@SUM(A1)", "\tx", "\r=x"]
HARMLESS = ["+8613800138000", "13800138000", ID_NUMBER, "张三", "a=b", "1-2", "'x"]


@pytest.mark.parametrize("value", DANGEROUS)
def test_csv_defuses_formulas(value: str):
    data = write_csv(["姓名", value], [["张三", value]])

    written = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert written == [["姓名", f"'{value}"], ["张三", f"'{value}"]]
    # Read back, the guard comes off again: an exported roster imports unchanged.
    table = read_table("x.csv", data)
    assert table.headers == ["姓名", value.strip()]
    assert table.rows == [(2, ["张三", value.strip()])]


@pytest.mark.parametrize("value", HARMLESS)
def test_csv_leaves_harmless_values_alone(value: str):
    assert read_table("x.csv", write_csv(["a"], [[value]])).rows == [(2, [value])]


@pytest.mark.parametrize("text_columns", [(), (0,)])
@pytest.mark.parametrize("value", DANGEROUS)
def test_xlsx_defuses_formulas(value: str, text_columns: tuple[int, ...]):
    data = write_xlsx([value], [[value]], text_columns=text_columns)

    sheet = load_workbook(io.BytesIO(data)).worksheets[0]  # formulas as written, not values
    for cell in (sheet["A1"], sheet["A2"]):
        assert cell.data_type == "s"
        assert cell.value == f"'{value}".replace("\r", "\n")  # XML turns CR into LF


@pytest.mark.parametrize("value", HARMLESS)
def test_xlsx_leaves_harmless_values_alone(value: str):
    data = write_xlsx(["a"], [[value]], text_columns=[0])

    assert read_table("x.xlsx", data).rows == [(2, [value])]


def test_csv_text_columns_keep_digit_strings_as_text_for_excel():
    rows = [[ID_NUMBER, "+8613800138000", "0531", 370102, "11010119900307457X", "=1+1", None]]
    data = write_csv(list("abcdefg"), rows, text_columns=range(7))

    written = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert written[1] == [
        f"\t{ID_NUMBER}",
        "\t+8613800138000",
        "\t0531",
        "\t370102",
        "11010119900307457X",  # not a number to Excel
        "'=1+1",  # still defused
        "",
    ]
    # Read back, the tab comes off: an exported roster imports unchanged.
    assert read_table("x.csv", data).rows == [
        (2, [ID_NUMBER, "+8613800138000", "0531", "370102", "11010119900307457X", "=1+1", None])
    ]


def test_non_string_values_are_not_prefixed():
    rows = [[-5, -2.5]]

    assert read_table("x.xlsx", write_xlsx(["a", "b"], rows)).rows == [(2, [-5, -2.5])]
    assert read_table("x.csv", write_csv(["a", "b"], rows)).rows == [(2, ["-5", "-2.5"])]


def test_the_module_is_pure():
    tree = ast.parse(Path(spreadsheets.__file__).read_text(encoding="utf-8"))
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
        )
    }

    assert imported - sys.stdlib_module_names == {"openpyxl"}
