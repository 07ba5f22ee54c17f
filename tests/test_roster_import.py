"""Roster imports driven the way an HR office does it: real .xlsx and .csv files built here,
uploaded through the pages, the result page read as the user reads it, and the database checked.

Every row is checked first, and the file is saved whole or not at all; every problem names the
row as Excel shows it, the column as headed in the file and the value masked.
"""

from __future__ import annotations

import csv
import html
import io
import re
import time
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from app.core.identity import id_number_check_character
from app.core.models import AuditEntry
from app.core.pii import vault
from app.demand import services
from app.demand.models import (
    ImportStatus,
    RequestStatus,
    RosterEntry,
    RosterImport,
    TransportRequest,
    Worker,
)
from app.extensions import db
from tests.conftest import People, csrf_token, make_app, sign_in, submit

TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()
CN_HEADERS = ["姓名", "身份证号", "手机号", "户籍地区代码"]
EN_HEADERS = ["Name", "ID number", "Mobile", "Home county code"]
HOME = "500235"  # 重庆市云阳县


# --- building files ------------------------------------------------------------------------


def id_number(n: int, born: date | None = None, region: str = HOME) -> str:
    """A valid ID number; ``n`` picks the birth date (1970 onwards) and the sequence."""
    born = born or date(1970, 1, 1) + timedelta(days=n)
    first17 = f"{region}{born:%Y%m%d}{n % 1000:03d}"
    return first17 + id_number_check_character(first17)


ENDS_IN_X = next(id_number(n) for n in range(100, 200) if id_number(n).endswith("X"))


def with_wrong_check(number: str) -> str:
    wrong = "0" if number[17] != "0" else "1"
    return number[:17] + wrong


def mobile(n: int) -> str:
    return f"138{n:08d}"


def worker_row(n: int, name: str | None = None) -> list[object]:
    return [name or f"工人{n}", id_number(n), mobile(n), HOME]


def xlsx(rows: list[list[object] | None]) -> bytes:
    """A workbook holding ``rows`` from A1; ``None`` leaves a row empty."""
    workbook = Workbook()
    sheet = workbook.active
    for number, row in enumerate(rows, start=1):
        for column, value in enumerate(row or [], start=1):
            if value is not None:
                sheet.cell(number, column, value)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_text(rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


# --- the pages -----------------------------------------------------------------------------

IMPORT_URL = re.compile(r"/roster/imports/(\d+)$")
TABLE_BODY = re.compile(r"<tbody>(.*?)</tbody>", re.S)
TABLE_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
TABLE_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


def upload(client: FlaskClient, content: bytes, filename: str, url: str = "/roster/import"):
    return client.post(
        url,
        data={
            "csrf_token": csrf_token(client, "/roster/import"),
            "file": (io.BytesIO(content), filename),
        },
        content_type="multipart/form-data",
    )


def import_file(
    client: FlaskClient, content: bytes, filename: str = "名单.xlsx", url: str = "/roster/import"
) -> tuple[int, str]:
    """Upload, follow to the result page: (import id, the page's text)."""
    response = upload(client, content, filename, url)
    assert response.status_code == 302, response.get_data(as_text=True)
    found = IMPORT_URL.search(response.headers["Location"])
    assert found, response.headers["Location"]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    return int(found.group(1)), page.get_data(as_text=True)


def problems_on(page: str) -> list[tuple[int, str, str, str]]:
    """The problem table: (row, column, value, sentence)."""
    body = TABLE_BODY.search(page)
    if body is None:
        return []
    found = []
    for row in TABLE_ROW.findall(body.group(1)):
        number, column, value, text = (
            html.unescape(cell).strip() for cell in TABLE_CELL.findall(row)
        )
        found.append((int(number), column, value, text))
    return found


def csv_download(client: FlaskClient, url: str) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))


def added_and_updated(page: str) -> tuple[int, int]:
    """The result's counts, whichever language the sentence is in."""
    for pattern in (r"(\d+) workers added, (\d+) updated", r"新增\D*(\d+)\D+更新\D*(\d+)"):
        found = re.search(pattern, page)
        if found:
            return int(found.group(1)), int(found.group(2))
    raise AssertionError(f"no import counts on the page:\n{page}")


def create_request(client: FlaskClient, days_ahead: int = 10) -> int:
    start = TODAY + timedelta(days=days_ahead)
    response = submit(
        client,
        "/requests/new",
        {
            "origin_region_code": HOME,
            "origin_region_name": "重庆市云阳县",
            "pickup_point": "云阳汽车站",
            "destination_region_code": "370100",
            "destination_region_name": "山东省济南市",
            "site_name": "济南东站工地",
            "site_address": "济南市历城区工业北路1号",
            "site_contact_name": "王经理",
            "site_contact_phone": "0531-88886666",
            "earliest_departure": start.isoformat(),
            "latest_departure": (start + timedelta(days=5)).isoformat(),
            "preferred_mode": "coach",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(re.search(r"/requests/(\d+)/workers", response.headers["Location"]).group(1))


def submit_request(client: FlaskClient, request_id: int) -> None:
    response = submit(client, f"/requests/{request_id}/submit", form_url=f"/requests/{request_id}")
    assert response.status_code == 302


def pending_on_request_page(client: FlaskClient, request_id: int) -> int:
    """Workers on the request awaiting travel: checked (cleared or, without a health
    certificate, blocked) or not yet checked."""
    page = client.get(f"/requests/{request_id}").get_data(as_text=True)
    total = 0
    for status in ("pending", "cleared", "blocked"):
        found = re.search(rf'status={status}"[^>]*><strong>(\d+)</strong>', page)
        assert found, page
        total += int(found.group(1))
    return total


# --- the database --------------------------------------------------------------------------


def roster_of(app: Flask, organization_id: int) -> dict[str, SimpleNamespace]:
    """ID number -> the worker as saved, with ID and phone numbers decrypted."""
    with app.app_context():
        pii = vault()
        workers = db.session.scalars(
            select(Worker).where(Worker.organization_id == organization_id)
        ).all()
        saved = {}
        for worker in workers:
            token = worker.emergency_contact_phone_token
            saved[pii.decrypt(worker.id_number_token)] = SimpleNamespace(
                name=worker.name,
                phone=pii.decrypt(worker.phone_token),
                birth_date=worker.birth_date,
                home_region_code=worker.home_region_code,
                home_region_name=worker.home_region_name,
                group_tag=worker.group_tag,
                emergency_contact_name=worker.emergency_contact_name,
                emergency_contact_phone=pii.decrypt(token) if token else None,
            )
        return saved


def import_record(app: Flask, import_id: int) -> dict:
    with app.app_context():
        found = db.session.get(RosterImport, import_id)
        fields = ("status", "total_rows", "processed_rows", "added", "updated", "problem")
        record = {name: getattr(found, name) for name in fields}
        record |= {
            "errors": found.errors,
            "unknown_columns": found.unknown_columns,
            "content": found.content,
            "finished_at": found.finished_at,
            "request_id": found.request_id,
        }
        return record


def count(app: Flask, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


# --- 1. a good file ------------------------------------------------------------------------


def test_good_xlsx_with_chinese_headers_imports_every_row(app, people, client_as):
    client = client_as("employer")
    rows = [worker_row(n) for n in range(1, 21)]  # one page of the roster
    rows[0][0] = "张三"
    import_id, page = import_file(client, xlsx([CN_HEADERS, *rows]))

    assert added_and_updated(page) == (20, 0)
    assert problems_on(page) == []
    record = import_record(app, import_id)
    assert record["status"] == ImportStatus.DONE
    assert (record["total_rows"], record["processed_rows"], record["added"]) == (20, 20, 20)
    assert record["content"] is None  # the file held PII: it is not kept

    saved = roster_of(app, people.organization_a_id)
    assert set(saved) == {row[1] for row in rows}
    first = saved[id_number(1)]
    assert (first.name, first.phone, first.home_region_code) == ("张三", "+8613800000001", HOME)
    assert first.birth_date == date(1970, 1, 2)
    assert roster_of(app, people.organization_b_id) == {}

    roster = client.get("/roster").get_data(as_text=True)
    assert "张三" in roster
    masked = id_number(1)[:4] + "*" * 10 + id_number(1)[-4:]
    assert masked in roster
    assert "138****0001" in roster
    for row in rows:  # never a whole ID or mobile number on the list page
        assert row[1] not in roster
        assert row[2] not in roster


def test_masked_id_number_looks_like_the_design(app, people, client_as):
    # 500235, born 1990-02-08, sequence 123, check character 9: shown as 5002**********1239.
    first17 = "50023519900208123"
    number = first17 + id_number_check_character(first17)
    assert number == "500235199002081239"
    client = client_as("employer")
    import_file(client, xlsx([CN_HEADERS, ["李四", number, mobile(7), HOME]]))
    roster = client.get("/roster").get_data(as_text=True)
    assert "5002**********1239" in roster
    assert number not in roster


def test_english_headers_and_optional_columns_work_too(app, people, client_as):
    client = client_as("employer")
    headers = [*EN_HEADERS, "Home county", "Group", "Emergency contact", "Emergency contact phone"]
    rows = [
        [*worker_row(1, "Zhang San"), "重庆市云阳县", "云阳一组", "张父", mobile(901)],
        [*worker_row(2, "Li Si"), None, None, None, None],
    ]
    _, page = import_file(client, xlsx([headers, *rows]))

    assert added_and_updated(page) == (2, 0)
    saved = roster_of(app, people.organization_a_id)
    zhang = saved[id_number(1)]
    assert zhang.name == "Zhang San"
    assert (zhang.home_region_name, zhang.group_tag) == ("重庆市云阳县", "云阳一组")
    assert (zhang.emergency_contact_name, zhang.emergency_contact_phone) == (
        "张父",
        "+86" + mobile(901),
    )
    assert saved[id_number(2)].group_tag is None


# --- 2. CSV encodings ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_in_utf8_with_or_without_bom_and_gb18030(app, people, client_as, encoding):
    client = client_as("employer")
    headers = [*CN_HEADERS, "户籍地区", "分组"]
    rows = [
        [*worker_row(1, "张三丰"), "重庆市云阳县", "龙角镇"],
        [*worker_row(2, "欧阳娜娜"), "重庆市云阳县", "龙角镇"],
        [*worker_row(3, "䶮"), "重庆市云阳县", "𠀀组"],  # outside GBK: only GB18030 has them
    ]
    content = csv_text([headers, *rows]).encode(encoding)
    assert content.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")

    import_id, page = import_file(client, content, "名单.csv")

    assert added_and_updated(page) == (3, 0), problems_on(page)
    assert import_record(app, import_id)["unknown_columns"] == []
    saved = roster_of(app, people.organization_a_id)
    assert sorted(w.name for w in saved.values()) == sorted(["张三丰", "欧阳娜娜", "䶮"])
    assert {w.group_tag for w in saved.values()} == {"龙角镇", "𠀀组"}
    assert {w.home_region_name for w in saved.values()} == {"重庆市云阳县"}


def test_csv_with_semicolons_and_a_quoted_cell_over_two_lines(app, people, client_as):
    client = client_as("employer")
    text = (
        "姓名;身份证号;手机号;户籍地区代码;户籍地区\r\n"
        f'张三;{id_number(1)};{mobile(1)};{HOME};"重庆市\r\n云阳县"\r\n'
        f"李四;{id_number(2)};{mobile(2)};{HOME};云阳县\r\n"
        f"王五;{with_wrong_check(id_number(3))};{mobile(3)};{HOME};云阳县\r\n"
    )
    _, page = import_file(client, text.encode(), "名单.csv")
    # One record over two lines is still one row: the bad one is row 4, as Excel shows it.
    assert [(row, column) for row, column, _, _ in problems_on(page)] == [(4, "身份证号")]


def test_a_nul_byte_deep_in_a_file_is_named_at_its_row_and_column(app, people, client_as):
    """Past the first 64 KB a CSV was not looked at for NUL bytes: the cell reached
    PostgreSQL, which refused it, and the import ended as "an error on our side"."""
    client = client_as("employer")
    rows = [",".join(map(str, worker_row(n))) for n in range(1, 2001)]
    rows[1499] = rows[1499].replace("工人1500", "工人\x001500")
    text = ",".join(CN_HEADERS) + "\r\n" + "\r\n".join(rows) + "\r\n"
    assert len(text.encode()) > 64 * 1024
    import_id, page = import_file(client, text.encode(), "名单.csv")
    assert [(row, column) for row, column, _, _ in problems_on(page)] == [(1501, "姓名")]
    assert "控制字符" in problems_on(page)[0][3]
    assert import_record(app, import_id)["status"] == "failed"


# --- 3. all or nothing ---------------------------------------------------------------------


def test_one_bad_row_in_500_saves_nothing_and_is_named(app, people, client_as):
    client = client_as("employer")
    rows = [worker_row(n) for n in range(1, 501)]
    bad_id = with_wrong_check(id_number(316))
    rows[315][1] = bad_id  # data row 316 is row 317 in Excel (the header is row 1)
    import_id, page = import_file(client, xlsx([CN_HEADERS, *rows]))

    masked = bad_id[:4] + "*" * 10 + bad_id[-4:]
    [(row, column, value, text)] = problems_on(page)
    assert (row, column, value) == (317, "身份证号", masked)
    assert text  # a sentence, in the user's language
    assert bad_id not in page
    assert "errors.xlsx" in page
    assert "errors.csv" in page
    assert count(app, Worker) == 0
    record = import_record(app, import_id)
    assert record["status"] == ImportStatus.FAILED
    assert (record["total_rows"], record["added"]) == (500, 0)
    assert record["content"] is None

    download = client.get(f"/roster/imports/{import_id}/errors.csv")
    assert "attachment" in download.headers["Content-Disposition"]
    table = csv_download(client, f"/roster/imports/{import_id}/errors.csv")
    assert len(table) == 2
    assert table[1][:3] == ["317", "身份证号", masked]
    assert table[1][3] == text

    download = client.get(f"/roster/imports/{import_id}/errors.xlsx")
    assert download.status_code == 200
    sheet = load_workbook(io.BytesIO(download.data)).active
    cells = list(sheet.iter_rows(values_only=True))
    assert len(cells) == 2
    assert list(cells[1]) == [317, "身份证号", masked, text]
    assert bad_id not in str(cells)

    # Fixed and uploaded again: all 500 go in.
    rows[315][1] = id_number(316)
    _, page = import_file(client, xlsx([CN_HEADERS, *rows]))
    assert added_and_updated(page) == (500, 0)
    assert count(app, Worker) == 500


# --- 4. every problem at once --------------------------------------------------------------


def test_every_problem_in_a_file_is_listed_with_its_excel_row(app, people, client_as):
    client = client_as("employer")
    leap_day = "50023519990229123"  # 29 February 1999 never happened
    future = f"500235{TODAY.year + 5}0101123"
    headers = [*CN_HEADERS, "备注"]
    rows: list[list[object] | None] = [
        headers,  # row 1
        worker_row(1),  # row 2: its ID comes back in row 13
        ["赵二", 3.70102199001011e17, mobile(3), HOME, "数字单元格"],  # 3: numeric cell
        ["钱三", "3.70102E+17", mobile(4), HOME],  # 4: what Excel shows, typed as text
        ["孙四", "370102900101123", mobile(5), HOME],  # 5: first-generation 15 digits
        None,  # 6: empty, skipped
        ["李五", leap_day + id_number_check_character(leap_day), mobile(7), HOME],  # 7
        ["周六", future + id_number_check_character(future), mobile(8), HOME],  # 8
        ["吴七", id_number(9), "+86 138 0000 0009", HOME],  # 9: fine
        ["郑八", id_number(10), "0531-88886666", HOME],  # 10: a landline
        [None, id_number(11), mobile(11), HOME],  # 11: no name
        ["王十", id_number(12), mobile(12), "50023"],  # 12: five-digit region code
        ["冯十一", id_number(1), mobile(13), HOME],  # 13: same ID as row 2
        None,  # 14
        None,  # 15
        ["陈十二", ENDS_IN_X.lower(), mobile(16), HOME],  # 16: lower-case x is fine
    ]
    import_id, page = import_file(client, xlsx(rows))

    found = problems_on(page)
    assert [(row, column) for row, column, _, _ in found] == [
        (2, "身份证号"),
        (3, "身份证号"),
        (4, "身份证号"),
        (5, "身份证号"),
        (7, "身份证号"),
        (8, "身份证号"),
        (10, "手机号"),
        (11, "姓名"),
        (12, "户籍地区代码"),
        (13, "身份证号"),
    ]
    record = import_record(app, import_id)
    reasons = {(p["row"], p["reason"]) for p in record["errors"]}
    assert reasons == {
        (2, "id_number.duplicate_in_file"),
        (3, "id_number.excel_number"),
        (4, "id_number.excel_number"),
        (5, "id_number.old_15_digit"),
        (7, "id_number.birth_date"),
        (8, "id_number.future_birth_date"),
        (10, "phone.landline"),
        (11, "name.empty"),
        (12, "home_region_code.format"),
        (13, "id_number.duplicate_in_file"),
    }
    other_rows = {p["row"]: p.get("other_row") for p in record["errors"]}
    assert (other_rows[2], other_rows[13]) == (13, 2)
    # The duplicate rows each point at the other, in the sentence on the page too.
    by_row = {row: (value, text) for row, _, value, text in found}
    assert re.search(r"(row|第) ?13\b", by_row[2][1])
    assert re.search(r"(row|第) ?2\b", by_row[13][1])
    masked = id_number(1)[:4] + "*" * 10 + id_number(1)[-4:]
    assert by_row[2][0] == by_row[13][0] == masked
    assert by_row[5][0] == "370*********123"
    assert by_row[10][0] == "053*******666"
    assert by_row[11][0] == ""
    assert by_row[12][0] == "50023"
    for value, _ in by_row.values():  # nothing on the page shows a whole number
        assert not re.search(r"\d{11,}", value)
    assert id_number(1) not in page

    # Sentences for the reasons the user must act on, in either language.
    assert "15" in by_row[5][1]
    assert any(word in by_row[3][1] for word in ("Excel", "文本"))

    assert "备注" in page  # unknown column: named, not an error
    assert record["unknown_columns"] == ["备注"]
    assert re.search(r"(共发现 ?|: )10 ?(个问题|problems)", page)
    assert count(app, Worker) == 0


def test_rows_keep_their_excel_numbers_around_empty_rows(app, people, client_as):
    client = client_as("employer")
    rows = [
        None,  # a sheet that starts lower down
        None,
        CN_HEADERS,  # row 3
        worker_row(1),  # 4
        None,  # 5
        ["  ", "\u3000", None, "\u200b"],  # 6: only spaces: an empty row too
        [*worker_row(2)[:3], "0500"],  # 7
    ]
    import_id, page = import_file(client, xlsx(rows))
    assert [(row, column) for row, column, _, _ in problems_on(page)] == [(7, "户籍地区代码")]
    assert import_record(app, import_id)["total_rows"] == 2


def test_a_duplicate_is_reported_even_when_its_twin_has_another_problem(app, people, client_as):
    client = client_as("employer")
    rows = [CN_HEADERS, [*worker_row(1)[:3], "1"], worker_row(1, "张三")]
    import_id, _ = import_file(client, xlsx(rows))
    reasons = sorted((p["row"], p["reason"]) for p in import_record(app, import_id)["errors"])
    assert reasons == [
        (2, "home_region_code.format"),
        (2, "id_number.duplicate_in_file"),
        (3, "id_number.duplicate_in_file"),
    ]


def test_over_500_problems_the_page_shows_500_and_the_download_all(app, people, client_as):
    client = client_as("employer")
    rows = [[*worker_row(n)[:3], "1"] for n in range(1, 601)]
    import_id, page = import_file(client, xlsx([CN_HEADERS, *rows]), "名单.xlsx")
    shown = problems_on(page)
    assert len(shown) == 500
    assert (shown[0][0], shown[-1][0]) == (2, 501)
    assert "600" in page
    table = csv_download(client, f"/roster/imports/{import_id}/errors.csv")
    assert [int(line[0]) for line in table[1:]] == list(range(2, 602))


def test_problems_come_row_by_row_and_in_the_files_column_order(app, people, client_as):
    client = client_as("employer")
    import_file(client, xlsx([CN_HEADERS, worker_row(2, "张三")]))
    headers = ["身份证号", "手机号", "姓名", "户籍地区代码"]
    rows = [[id_number(2), "12345", "张三三", "1"]]  # row 2: the roster says 张三
    rows += [[id_number(n), mobile(n), f"工人{n}", "1"] for n in range(3, 602)]

    import_id, page = import_file(client, xlsx([headers, *rows]))

    # The name clash is with its row's other problems, not after the 600 others.
    shown = problems_on(page)
    assert len(shown) == 500
    assert [(row, column) for row, column, _, _ in shown[:4]] == [
        (2, "手机号"),
        (2, "姓名"),
        (2, "户籍地区代码"),
        (3, "户籍地区代码"),
    ]
    assert "张三" in shown[1][3]
    table = csv_download(client, f"/roster/imports/{import_id}/errors.csv")
    listed = [(int(line[0]), line[1]) for line in table[1:]]
    assert len(listed) == 602
    assert listed == sorted(listed, key=lambda found: (found[0], headers.index(found[1])))


def test_csv_downloads_name_their_type_and_charset_once(app, people, client_as):
    client = client_as("employer")
    import_id, _ = import_file(client, xlsx([CN_HEADERS, [*worker_row(1)[:3], "1"]]))
    for url in (
        "/roster/template.csv",
        "/roster/export.csv",
        f"/roster/imports/{import_id}/errors.csv",
    ):
        response = client.get(url)
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8", url


@pytest.mark.parametrize("filename", ["名单.csv", "名单.xlsx"])
def test_a_cell_too_long_is_named_at_its_row_and_column(app, people, client_as, filename):
    """Longer than Python's CSV field limit (131,072 characters): as in an .xlsx, the cell is
    too long, the file is not unreadable."""
    client = client_as("employer")
    rows = [[*CN_HEADERS, "分组"], [*worker_row(1), "石门村"], [*worker_row(2), "村" * 140_000]]
    content = csv_text(rows).encode() if filename.endswith(".csv") else xlsx(rows)

    _, page = import_file(client, content, filename)

    [(row, column, value, text)] = problems_on(page)
    assert (row, column) == (3, "分组")
    assert value == "村" * 29 + "…"
    assert text in ("内容过长。", "Too long.")
    assert count(app, Worker) == 0


def test_error_downloads_defuse_formulas_from_the_file(app, people, client_as):
    client = client_as("employer")
    import_file(client, xlsx([CN_HEADERS, worker_row(1, "张三")]))
    formula = '=HYPERLINK("http://example.com/x","点这里")'
    content = csv_text([CN_HEADERS, [formula, id_number(1), mobile(1), HOME]]).encode()
    import_id, page = import_file(client, content, "名单.csv")
    [(row, column, value, _)] = problems_on(page)
    assert (row, column, value) == (2, "姓名", formula)

    table = csv_download(client, f"/roster/imports/{import_id}/errors.csv")
    assert table[1][2] == "'" + formula
    sheet = load_workbook(
        io.BytesIO(client.get(f"/roster/imports/{import_id}/errors.xlsx").data)
    ).active
    assert sheet["C2"].data_type == "s"
    assert sheet["C2"].value == "'" + formula


def test_numbers_in_the_wrong_column_are_still_masked(app, people, client_as):
    client = client_as("employer")
    rows = [
        CN_HEADERS,
        [None, *worker_row(1)],  # one cell to the right: the mobile lands in 户籍地区代码
        [None, None, *worker_row(2)],  # two cells: the ID number does
    ]
    import_id, page = import_file(client, xlsx(rows))
    shown = problems_on(page)
    assert shown
    for _, _, value, _ in shown:
        assert not re.search(r"\d{11,}", value), value
    assert mobile(1) not in page
    assert id_number(2) not in page
    download = str(csv_download(client, f"/roster/imports/{import_id}/errors.csv"))
    assert mobile(1) not in download
    assert id_number(2) not in download


def test_an_unknown_column_does_not_block_the_import(app, people, client_as):
    client = client_as("employer")
    rows = [[*worker_row(n), "夜班"] for n in range(1, 4)]
    import_id, page = import_file(client, xlsx([[*CN_HEADERS, "备注"], *rows]))
    assert added_and_updated(page) == (3, 0)
    assert "备注" in page
    assert import_record(app, import_id)["unknown_columns"] == ["备注"]
    assert len(roster_of(app, people.organization_a_id)) == 3


def test_headers_as_people_write_them(app, people, client_as):
    client = client_as("employer")
    headers = ["姓名*", "身份证号码（必填）", " 手机 ", "户籍地代码"]
    _, page = import_file(client, xlsx([headers, worker_row(1), worker_row(2)]))
    assert added_and_updated(page) == (2, 0)


def test_full_width_digits_and_spaces_in_cells_are_normalised(app, people, client_as):
    client = client_as("employer")
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in id_number(1))
    rows = [
        CN_HEADERS,
        ["  张三  ", full_width, "138 0000 0001", HOME],
        ["李四", id_number(2), 13800000002, int(HOME)],  # numeric mobile and region cells
        ["王五", ENDS_IN_X.lower(), "0086 138-0000-0003", HOME],
    ]
    _, page = import_file(client, xlsx(rows))
    assert added_and_updated(page) == (3, 0), problems_on(page)
    saved = roster_of(app, people.organization_a_id)
    assert saved[ENDS_IN_X].phone == "+8613800000003"  # stored with the upper-case X
    assert saved[id_number(1)].name == "张三"
    assert saved[id_number(2)].phone == "+8613800000002"


def test_workers_outside_the_working_age_are_refused(app, people, client_as):
    client = client_as("employer")
    young = id_number(1, born=TODAY.replace(year=TODAY.year - 10, day=1))
    old = id_number(2, born=date(1940, 1, 1))
    rows = [CN_HEADERS, ["小明", young, mobile(1), HOME], ["老王", old, mobile(2), HOME]]
    import_id, page = import_file(client, xlsx(rows))
    reasons = [p["reason"] for p in import_record(app, import_id)["errors"]]
    assert reasons == ["id_number.too_young", "id_number.too_old"]
    texts = [text for _, _, _, text in problems_on(page)]
    assert "16" in texts[0]
    assert "70" in texts[1]


# --- 5. files that cannot be imported ------------------------------------------------------


def test_a_missing_required_column_is_named(app, people, client_as):
    client = client_as("employer")
    headers = ["姓名", "身份证号", "户籍地区代码"]
    import_id, page = import_file(client, xlsx([headers, ["张三", id_number(1), HOME]]))
    assert problems_on(page)[0][:2] == (1, "手机号")
    record = import_record(app, import_id)
    assert record["status"] == ImportStatus.FAILED
    assert [p["reason"] for p in record["errors"]] == ["columns.missing"]
    assert count(app, Worker) == 0


def test_the_result_page_in_english(app, people, client_as):
    client = client_as("employer")
    client.get("/language/en")
    rows = [EN_HEADERS, [*worker_row(1)[:2], "0531-88886666", HOME]]
    import_id, page = import_file(client, xlsx(rows))
    [(row, column, value, text)] = problems_on(page)
    assert (row, column, value) == (2, "Mobile", "053*******666")
    assert text == "This looks like a landline; a mobile number is needed for text messages."
    assert "Nothing was saved: 1 problem was found." in page
    table = csv_download(client, f"/roster/imports/{import_id}/errors.csv")
    assert table[0] == ["Row", "Column", "Value", "Problem"]


def test_a_column_given_twice_is_named(app, people, client_as):
    client = client_as("employer")
    headers = [*CN_HEADERS, "手机"]
    import_id, page = import_file(client, xlsx([headers, [*worker_row(1), mobile(2)]]))
    assert problems_on(page)[0][:2] == (1, "手机")
    assert [p["reason"] for p in import_record(app, import_id)["errors"]] == ["columns.duplicate"]
    assert count(app, Worker) == 0


def test_an_xls_file_is_refused_on_the_form(app, people, client_as):
    client = client_as("employer")
    response = upload(client, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 500, "名单.xls")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert ".xlsx" in page
    assert "xls" in page
    assert count(app, RosterImport) == 0
    assert count(app, Worker) == 0


def test_a_file_over_10_mb_is_refused_on_the_form(app, people, client_as):
    client = client_as("employer")
    content = csv_text([CN_HEADERS, *[worker_row(n) for n in range(1, 1000)]]).encode()
    content += b" " * (10 * 1024 * 1024 + 1 - len(content))
    response = upload(client, content, "名单.csv")
    assert response.status_code == 200
    assert "10 MB" in response.get_data(as_text=True)
    assert count(app, RosterImport) == 0


def test_a_file_with_too_many_rows_is_refused_whole(app, people, client_as):
    client = client_as("employer")
    content = ",".join(CN_HEADERS) + "\r\n" + "张三,1,2,3\r\n" * 50_001
    import_id, page = import_file(client, content.encode(), "名单.csv")
    assert import_record(app, import_id)["problem"] == "file.too_many_rows"
    assert 'role="alert"' in page
    assert count(app, Worker) == 0


@pytest.mark.parametrize(
    ("filename", "content", "reason"),
    [
        ("名单.xlsx", b"this is not a spreadsheet at all \x00\x01\x02", "file.unreadable"),
        ("名单.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 500, "file.format"),
        ("名单.xlsx", b"PK\x03\x04" + b"\xff" * 200, "file.unreadable"),
        ("名单.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "file.unreadable"),
        ("名单.csv", b"", "file.empty"),
        ("名单.csv", b"\r\n\r\n  \r\n", "file.empty"),
    ],
)
def test_a_damaged_file_gets_a_clear_message(app, people, client_as, filename, content, reason):
    client = client_as("employer")
    import_id, page = import_file(client, content, filename)
    record = import_record(app, import_id)
    assert record["status"] == ImportStatus.FAILED
    assert record["problem"] == reason
    assert record["content"] is None
    assert 'role="alert"' in page
    assert problems_on(page) == []
    assert count(app, Worker) == 0


def test_no_file_chosen(app, people, client_as):
    client = client_as("employer")
    response = client.post(
        "/roster/import",
        data={"csrf_token": csrf_token(client, "/roster/import")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert count(app, RosterImport) == 0


# --- 6. importing again --------------------------------------------------------------------


def test_importing_the_same_workers_again_updates_them(app, people, client_as):
    client = client_as("employer")
    rows = [worker_row(n) for n in range(1, 6)]
    import_file(client, xlsx([CN_HEADERS, *rows]))
    rows[0][2] = mobile(999)  # a new mobile number
    rows.append(worker_row(6))

    _, page = import_file(client, xlsx([CN_HEADERS, *rows]))

    assert added_and_updated(page) == (1, 5)
    saved = roster_of(app, people.organization_a_id)
    assert len(saved) == 6
    assert saved[id_number(1)].phone == "+86" + mobile(999)


ALL_HEADERS = [*CN_HEADERS, "户籍地区", "分组", "紧急联系人", "紧急联系人电话"]


def full_row(n: int) -> list[object]:
    return [*worker_row(n), "重庆市云阳县", "石门村", f"家属{n}", mobile(900 + n)]


def optional_fields(app: Flask, organization_id: int) -> dict[str, tuple]:
    return {
        number: (
            w.home_region_name,
            w.group_tag,
            w.emergency_contact_name,
            w.emergency_contact_phone,
        )
        for number, w in roster_of(app, organization_id).items()
    }


def test_importing_again_with_only_the_required_columns_keeps_the_others(app, people, client_as):
    client = client_as("employer")
    import_file(client, xlsx([ALL_HEADERS, full_row(5), full_row(9)]))
    before = optional_fields(app, people.organization_a_id)
    assert before[id_number(5)] == ("重庆市云阳县", "石门村", "家属5", "+86" + mobile(905))

    rows = [worker_row(5), worker_row(9)]
    rows[0][2] = mobile(555)  # what the file has is still updated
    _, page = import_file(client, xlsx([CN_HEADERS, *rows]))

    assert added_and_updated(page) == (0, 2)
    assert optional_fields(app, people.organization_a_id) == before
    assert roster_of(app, people.organization_a_id)[id_number(5)].phone == "+86" + mobile(555)
    # The group still seats the village together: it is offered whole on a request.
    request_id = create_request(client)
    workers_page = client.get(f"/requests/{request_id}/workers").get_data(as_text=True)
    assert "石门村" in workers_page


def test_a_column_the_file_has_but_leaves_empty_clears_that_value(app, people, client_as):
    client = client_as("employer")
    import_file(client, xlsx([ALL_HEADERS, full_row(5)]))

    _, page = import_file(client, xlsx([[*CN_HEADERS, "分组"], [*worker_row(5), None]]))

    assert added_and_updated(page) == (0, 1)
    saved = optional_fields(app, people.organization_a_id)[id_number(5)]
    assert saved == ("重庆市云阳县", None, "家属5", "+86" + mobile(905))


def test_importing_into_a_request_keeps_the_columns_the_file_does_not_have(app, people, client_as):
    client = client_as("employer")
    import_file(client, xlsx([ALL_HEADERS, full_row(5), full_row(9)]))
    before = optional_fields(app, people.organization_a_id)
    request_id = create_request(client)

    _, page = import_file(
        client,
        xlsx([CN_HEADERS, worker_row(5), worker_row(9)]),
        url=f"/requests/{request_id}/import",
    )

    assert added_and_updated(page) == (0, 2)
    assert pending_on_request_page(client, request_id) == 2
    assert optional_fields(app, people.organization_a_id) == before


def test_the_roster_export_imports_back_as_updates(app, people, client_as):
    client = client_as("employer")
    import_file(client, xlsx([CN_HEADERS, *[worker_row(n) for n in range(1, 4)]]))
    for fmt in ("xlsx", "csv"):
        export = client.get(f"/roster/export.{fmt}")
        assert export.status_code == 200
        _, page = import_file(client, export.data, f"roster.{fmt}")
        assert added_and_updated(page) == (0, 3), problems_on(page)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_roster_export_round_trip_keeps_every_value(app, people, client_as, fmt):
    client = client_as("employer")
    rows = [[*worker_row(1), None, "-"], [*worker_row(2, "+张三"), None, "一组"]]
    import_file(client, xlsx([[*CN_HEADERS, "户籍地区", "分组"], *rows]))
    before = roster_of(app, people.organization_a_id)
    assert before[id_number(1)].group_tag == "-"

    export = client.get(f"/roster/export.{fmt}")
    _, page = import_file(client, export.data, f"roster.{fmt}")

    assert problems_on(page) == []
    assert roster_of(app, people.organization_a_id) == before


def test_the_same_id_number_under_another_name_is_refused(app, people, client_as):
    client = client_as("employer")
    import_file(client, xlsx([CN_HEADERS, worker_row(1, "张三"), worker_row(2, "李四")]))

    rows = [CN_HEADERS, worker_row(3, "王五"), worker_row(1, "张三三")]
    import_id, page = import_file(client, xlsx(rows))

    [(row, column, value, text)] = problems_on(page)
    assert (row, column, value) == (3, "姓名", "张三三")
    assert "张三" in text  # the name the roster has
    assert import_record(app, import_id)["errors"][0]["reason"] == "name.differs_on_roster"
    saved = roster_of(app, people.organization_a_id)
    assert {w.name for w in saved.values()} == {"张三", "李四"}  # 王五 was not saved either


def test_another_employer_may_have_the_same_worker_on_its_roster(app, people, client_as):
    content = xlsx([CN_HEADERS, worker_row(1, "张三")])
    import_file(client_as("employer"), content)
    _, page = import_file(client_as("employer_b"), content)
    assert added_and_updated(page) == (1, 0)
    assert set(roster_of(app, people.organization_a_id)) == {id_number(1)}
    assert set(roster_of(app, people.organization_b_id)) == {id_number(1)}


# --- 7. straight into a transport request --------------------------------------------------


def test_import_straight_into_a_request(app, people, client_as):
    client = client_as("employer")
    request_id = create_request(client)
    workers_page = client.get(f"/requests/{request_id}/workers").get_data(as_text=True)
    assert f"/requests/{request_id}/import" in workers_page  # the form is on the page
    rows = [worker_row(n) for n in range(1, 8)]

    import_id, page = import_file(
        client, xlsx([CN_HEADERS, *rows]), url=f"/requests/{request_id}/import"
    )

    assert added_and_updated(page) == (7, 0)
    with app.app_context():
        reference = db.session.get(TransportRequest, request_id).reference
    assert f"这 7 人已全部加入申请 {reference}，该申请现共 7 人。" in page
    assert f"/requests/{request_id}" in page  # "Continue" goes back to the request
    assert import_record(app, import_id)["request_id"] == request_id
    assert pending_on_request_page(client, request_id) == 7
    workers_page = client.get(f"/requests/{request_id}/workers").get_data(as_text=True)
    assert "工人1" not in workers_page  # no longer offered: already on the request
    request_page = client.get(f"/requests/{request_id}").get_data(as_text=True)
    assert "工人1" in request_page
    assert id_number(1) not in request_page

    # The same file again: nobody is on the request twice.
    _, page = import_file(client, xlsx([CN_HEADERS, *rows]), url=f"/requests/{request_id}/import")
    assert added_and_updated(page) == (0, 7)
    assert pending_on_request_page(client, request_id) == 7

    # Submitted, the request still takes more workers, and they take their place at once.
    submit_request(client, request_id)
    _, page = import_file(
        client, xlsx([CN_HEADERS, worker_row(8)]), url=f"/requests/{request_id}/import"
    )
    assert added_and_updated(page) == (1, 0)
    assert f"这 1 人已全部加入申请 {reference}，该申请现共 8 人。" in page
    assert pending_on_request_page(client, request_id) == 8
    with app.app_context():
        entries = db.session.scalars(
            select(RosterEntry).where(RosterEntry.request_id == request_id)
        ).all()
        assert len(entries) == 8
        assert all(entry.holds_place for entry in entries)


def test_a_worker_on_another_employers_live_request_is_refused(app, people, client_as):
    employer_a, employer_b = client_as("employer"), client_as("employer_b")
    request_a = create_request(employer_a)
    import_file(employer_a, xlsx([CN_HEADERS, worker_row(1)]), url=f"/requests/{request_a}/import")
    submit_request(employer_a, request_a)
    request_b = create_request(employer_b, days_ahead=12)
    import_file(
        employer_b,
        xlsx([CN_HEADERS, worker_row(50, "刘五十")]),
        url=f"/requests/{request_b}/import",
    )
    submit_request(employer_b, request_b)
    with app.app_context():
        assert db.session.get(TransportRequest, request_a).status == RequestStatus.SUBMITTED
        assert db.session.get(TransportRequest, request_b).status == RequestStatus.SUBMITTED

    # Employer A's file holds a new worker and the one employer B is already bringing home.
    rows = [CN_HEADERS, worker_row(2), worker_row(50, "刘五十")]
    import_id, page = import_file(employer_a, xlsx(rows), url=f"/requests/{request_a}/import")

    [(row, column, value, _)] = problems_on(page)
    assert (row, column) == (3, "身份证号")
    assert value == id_number(50)[:4] + "*" * 10 + id_number(50)[-4:]
    assert import_record(app, import_id)["errors"][0]["reason"] == "id_number.on_other_request"
    with app.app_context():
        reference_b = db.session.get(TransportRequest, request_b).reference
    assert reference_b not in page  # nothing of the other employer is shown
    assert "乙制造" not in page
    assert set(roster_of(app, people.organization_a_id)) == {id_number(1)}
    assert pending_on_request_page(employer_a, request_a) == 1


def test_a_worker_on_own_other_live_request_is_refused_naming_it(app, people, client_as):
    client = client_as("employer")
    first = create_request(client)
    import_file(client, xlsx([CN_HEADERS, worker_row(1)]), url=f"/requests/{first}/import")
    submit_request(client, first)
    second = create_request(client, days_ahead=20)

    import_id, page = import_file(
        client, xlsx([CN_HEADERS, worker_row(1)]), url=f"/requests/{second}/import"
    )

    assert import_record(app, import_id)["errors"][0]["reason"] == "id_number.on_own_request"
    with app.app_context():
        reference = db.session.get(TransportRequest, first).reference
    assert reference in page
    assert pending_on_request_page(client, second) == 0


def test_rows_with_bad_fields_are_still_checked_against_the_roster_and_requests(
    app, people, client_as
):
    """Fixing the fields must not reveal new problems at the next import: every check that
    can run on a row is run."""
    client = client_as("employer")
    first = create_request(client)
    import_file(
        client, xlsx([CN_HEADERS, worker_row(1, "测试乙")]), url=f"/requests/{first}/import"
    )
    submit_request(client, first)
    import_file(client, xlsx([CN_HEADERS, worker_row(2, "张三")]))
    second = create_request(client, days_ahead=20)
    rows = [
        [*CN_HEADERS, "健康码"],
        ["测试乙", id_number(1), "12345", HOME, None],  # 2: on the first request
        ["张三三", id_number(2), "12345", HOME, None],  # 3: the roster says 张三
        ["王五", id_number(3), "12345", HOME, "not a pass"],  # 4: an unreadable pass
        ["赵六", "12345", mobile(4), HOME, None],  # 5: no ID number to check
    ]

    import_id, page = import_file(client, xlsx(rows), url=f"/requests/{second}/import")

    reasons = [(p["row"], p["reason"]) for p in import_record(app, import_id)["errors"]]
    assert sorted(reasons) == [
        (2, "id_number.on_own_request"),
        (2, "phone.length"),
        (3, "name.differs_on_roster"),
        (3, "phone.length"),
        (4, "health_pass.not_jws"),
        (4, "phone.length"),
        (5, "id_number.length"),
    ]
    with app.app_context():
        reference = db.session.get(TransportRequest, first).reference
    assert reference in page
    assert pending_on_request_page(client, second) == 0


def test_workers_imported_into_an_approved_request_send_it_back_for_review(app, people, client_as):
    client = client_as("employer")
    request_id = create_request(client)
    import_file(client, xlsx([CN_HEADERS, worker_row(1)]), url=f"/requests/{request_id}/import")
    submit_request(client, request_id)
    coordinator = client_as("coordinator")
    response = submit(
        coordinator, f"/requests/{request_id}/approve", form_url=f"/requests/{request_id}"
    )
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == RequestStatus.APPROVED

    _, page = import_file(
        client, xlsx([CN_HEADERS, worker_row(2)]), url=f"/requests/{request_id}/import"
    )

    assert added_and_updated(page) == (1, 0)
    with app.app_context():
        assert db.session.get(TransportRequest, request_id).status == RequestStatus.SUBMITTED
    assert pending_on_request_page(client, request_id) == 2


def test_a_request_closed_before_the_job_runs_gets_nothing(app, people, client_as):
    """Uploaded, then the request was cancelled before the job got to the file: the job
    refuses the whole file, and the new workers do not stay on the roster either."""
    client = client_as("employer")
    request_id = create_request(client)
    with app.app_context():
        queued = RosterImport(
            organization_id=people.organization_a_id,
            request_id=request_id,
            created_by_id=people.employer_a_id,
            filename="名单.xlsx",
            content=xlsx([CN_HEADERS, worker_row(1), worker_row(2)]),
        )
        db.session.add(queued)
        db.session.commit()
        import_id = queued.id
    response = submit(client, f"/requests/{request_id}/cancel", form_url=f"/requests/{request_id}")
    assert response.status_code == 302

    with app.app_context():
        services.run_roster_import(import_id, lambda _: None)
        db.session.commit()

    assert import_record(app, import_id)["problem"] == "request.frozen"
    assert import_record(app, import_id)["status"] == ImportStatus.FAILED
    assert count(app, Worker) == 0
    assert count(app, RosterEntry) == 0
    page = client.get(f"/roster/imports/{import_id}").get_data(as_text=True)
    assert 'role="alert"' in page


def test_a_closed_request_takes_no_import(app, people, client_as):
    client = client_as("employer")
    request_id = create_request(client)
    response = submit(client, f"/requests/{request_id}/cancel", form_url=f"/requests/{request_id}")
    assert response.status_code == 302
    response = upload(
        client, xlsx([CN_HEADERS, worker_row(1)]), "名单.xlsx", url=f"/requests/{request_id}/import"
    )
    assert response.status_code == 200
    assert count(app, RosterImport) == 0
    assert count(app, Worker) == 0


# --- 8. access -----------------------------------------------------------------------------


def test_another_employer_cannot_see_or_use_an_import(app, people, client_as):
    employer_a, employer_b = client_as("employer"), client_as("employer_b")
    request_a = create_request(employer_a)
    rows = [CN_HEADERS, worker_row(1), [*worker_row(2)[:3], "0"]]
    import_id, _ = import_file(employer_a, xlsx(rows), url=f"/requests/{request_a}/import")

    for url in (
        f"/roster/imports/{import_id}",
        f"/roster/imports/{import_id}/errors.csv",
        f"/roster/imports/{import_id}/errors.xlsx",
        f"/requests/{request_a}/workers",
    ):
        assert employer_b.get(url).status_code == 404, url
        assert employer_a.get(url).status_code == 200, url

    response = upload(
        employer_b, xlsx([CN_HEADERS, worker_row(3)]), "名单.xlsx", f"/requests/{request_a}/import"
    )
    assert response.status_code == 404
    assert count(app, RosterImport) == 1
    assert roster_of(app, people.organization_b_id) == {}

    coordinator = client_as("coordinator")
    assert coordinator.get("/roster/import").status_code == 403
    assert coordinator.get(f"/roster/imports/{import_id}").status_code == 403
    assert employer_a.get(f"/roster/imports/{import_id}/errors.pdf").status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(app, people, client):
    for url in ("/roster/import", "/roster/imports/1", "/roster/template.xlsx"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_file_names_and_headers_are_shown_escaped(app, people, client_as):
    client = client_as("employer")
    evil = "<script>alert(1)</script>"
    content = xlsx([[*CN_HEADERS, evil], [*worker_row(1), "x"]])
    _, page = import_file(client, content, f"{evil}.xlsx")
    assert added_and_updated(page) == (1, 0)
    assert evil not in page
    assert "&lt;script&gt;" in page


# --- 9. the production shape: PostgreSQL, Redis and a real Celery worker --------------------


@pytest.fixture
def redis_app(migrated_postgres_url, redis_url, pg_app):
    """Jobs go through Redis to Celery; pg_app empties the tables afterwards."""
    return make_app(migrated_postgres_url, REDIS_URL=redis_url)


def snapshot(app: Flask, import_id: int) -> dict:
    with app.app_context():
        return {
            "import": import_record(app, import_id),
            "workers": db.session.execute(
                select(Worker.id, Worker.updated_at).order_by(Worker.id)
            ).all(),
            "audit": db.session.scalar(select(func.count()).select_from(AuditEntry)),
        }


@pytest.mark.postgres
@pytest.mark.redis
def test_a_big_import_goes_through_celery_on_postgresql(
    redis_app, pg_people, celery_worker, tmp_path
):
    client = redis_app.test_client()
    assert sign_in(client, People.EMAILS["employer"]).status_code == 302
    rows = [worker_row(n) for n in range(1, 2001)]

    response = upload(client, xlsx([CN_HEADERS, *rows]), "名单.xlsx")
    assert response.status_code == 302
    result_url = response.headers["Location"]
    import_id = int(IMPORT_URL.search(result_url).group(1))

    deadline = time.monotonic() + 60
    while True:
        page = client.get(result_url).get_data(as_text=True)
        if 'http-equiv="refresh"' not in page:
            break
        assert time.monotonic() < deadline, "the import did not finish within 60 s"
        time.sleep(0.3)

    assert added_and_updated(page) == (2000, 0), problems_on(page)
    worker_log = (tmp_path / "worker.log").read_text()  # run by the worker, not in-process
    assert re.search(r"fangang\.demand\.import_roster\[.*\] succeeded", worker_log), worker_log
    record = import_record(redis_app, import_id)
    assert record["status"] == ImportStatus.DONE
    assert (record["total_rows"], record["processed_rows"]) == (2000, 2000)
    with redis_app.app_context():
        assert "postgresql" in db.engine.url.drivername
    saved = roster_of(redis_app, pg_people.organization_a_id)
    assert set(saved) == {row[1] for row in rows}

    # The job is idempotent: running it again on the finished import changes nothing.
    before = snapshot(redis_app, import_id)
    with redis_app.app_context():
        services.run_roster_import(import_id, lambda _: None)
        db.session.commit()
    assert snapshot(redis_app, import_id) == before


@pytest.mark.postgres
@pytest.mark.redis
def test_a_failed_import_through_celery_names_its_rows(redis_app, pg_people, celery_worker):
    client = redis_app.test_client()
    assert sign_in(client, People.EMAILS["employer"]).status_code == 302
    rows = [worker_row(n) for n in range(1, 51)]
    rows[9][1] = 3.70102199001011e17
    response = upload(client, xlsx([CN_HEADERS, *rows]), "名单.xlsx")
    result_url = response.headers["Location"]
    deadline = time.monotonic() + 60
    while 'http-equiv="refresh"' in (page := client.get(result_url).get_data(as_text=True)):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert [(row, column) for row, column, _, _ in problems_on(page)] == [(11, "身份证号")]
    assert roster_of(redis_app, pg_people.organization_a_id) == {}


def test_running_the_job_again_changes_nothing(app, people, client_as):
    client = client_as("employer")
    done_id, _ = import_file(client, xlsx([CN_HEADERS, worker_row(1)]))
    failed_id, _ = import_file(client, xlsx([CN_HEADERS, [*worker_row(2)[:3], "x"]]))
    for import_id in (done_id, failed_id):
        before = snapshot(app, import_id)
        with app.app_context():
            services.run_roster_import(import_id, lambda _: None)
            db.session.commit()
        assert snapshot(app, import_id) == before


def test_an_interrupted_import_starts_over(app, people):
    """A worker that died mid-import left the row 'validating' with its file: run again, it
    checks and saves the file whole."""
    content = xlsx([CN_HEADERS, *[worker_row(n) for n in range(1, 6)]])
    with app.app_context():
        interrupted = RosterImport(
            organization_id=people.organization_a_id,
            created_by_id=people.employer_a_id,
            filename="名单.xlsx",
            content=content,
            status=ImportStatus.VALIDATING.value,
            processed_rows=3,
        )
        db.session.add(interrupted)
        db.session.commit()
        import_id = interrupted.id
        services.run_roster_import(import_id, lambda _: None)
        db.session.commit()
    record = import_record(app, import_id)
    assert (record["status"], record["added"], record["processed_rows"]) == ("done", 5, 5)
    assert len(roster_of(app, people.organization_a_id)) == 5


# --- 10. the templates ---------------------------------------------------------------------


def test_the_xlsx_template_keeps_ids_as_text_and_imports_once_filled_in(app, people, client_as):
    client = client_as("employer")
    download = client.get("/roster/template.xlsx")
    assert download.status_code == 200
    assert download.mimetype.endswith("spreadsheetml.sheet")
    workbook = load_workbook(io.BytesIO(download.data))
    sheet = workbook.active
    headers = [cell.value for cell in sheet[1]]
    assert headers[:4] == CN_HEADERS
    id_column = headers.index("身份证号") + 1
    letter = sheet.cell(1, id_column).column_letter
    assert sheet.column_dimensions[letter].number_format == "@"
    phone_letter = sheet.cell(1, headers.index("手机号") + 1).column_letter
    assert sheet.column_dimensions[phone_letter].number_format == "@"

    for n in range(1, 4):  # as someone types into the template
        sheet.append([f"工人{n}", id_number(n), mobile(n), HOME, "重庆市云阳县", "一组"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    _, page = import_file(client, buffer.getvalue(), "roster-template.xlsx")
    assert added_and_updated(page) == (3, 0), problems_on(page)
    assert {w.group_tag for w in roster_of(app, people.organization_a_id).values()} == {"一组"}


def test_the_csv_template_imports_once_filled_in(app, people, client_as):
    client = client_as("employer")
    download = client.get("/roster/template.csv")
    assert download.status_code == 200
    assert download.data.startswith(b"\xef\xbb\xbf")  # Excel on Chinese Windows reads it as UTF-8
    text = download.data.decode("utf-8-sig")
    assert text.splitlines()[0].split(",")[:4] == CN_HEADERS
    filled = text + csv_text([worker_row(1), worker_row(2)])
    _, page = import_file(client, filled.encode("utf-8-sig"), "roster-template.csv")
    assert added_and_updated(page) == (2, 0), problems_on(page)


def test_a_title_row_above_the_headers_is_passed_over(app, people, client_as):
    client = client_as("employer")
    rows = [["2027年春节返岗人员名单"], CN_HEADERS, worker_row(1, "张三"), worker_row(2, "李四")]
    import_id, page = import_file(client, xlsx(rows))
    assert import_record(app, import_id)["status"] == "done", problems_on(page)
    assert added_and_updated(page) == (2, 0)


def test_headers_without_workers_are_reported_not_imported(app, people, client_as):
    client = client_as("employer")
    import_id, _page = import_file(client, xlsx([CN_HEADERS]))
    record = import_record(app, import_id)
    assert record["status"] == "failed"
    assert record["problem"] == "file.no_rows"


def test_an_emergency_contact_may_have_a_landline(app, people, client_as):
    client = client_as("employer")
    headers = [*CN_HEADERS, "紧急联系人", "紧急联系人电话"]
    rows = [
        headers,
        [*worker_row(1, "张三"), "张父", "023-5512 3456"],
        [*worker_row(2, "李四"), "李母", "12345"],
    ]
    _import_id, page = import_file(client, xlsx(rows))
    assert [(row, column) for row, column, _, _ in problems_on(page)] == [(3, "紧急联系人电话")]


def test_an_upload_over_the_limit_gets_a_friendly_page(app, people, client_as):
    client = client_as("employer")
    token = csrf_token(client, "/roster/import")
    big = io.BytesIO(b"x" * (13 * 1024 * 1024))
    response = client.post(
        "/roster/import",
        data={"csrf_token": token, "file": (big, "big.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert "10 MB" in response.get_data(as_text=True)
