"""Roster files out: the import template, the roster export, and an import's error report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import quote

from flask import Response, abort
from flask_babel import gettext as _

from app.core.identity import mask_id_number, mask_mobile
from app.core.pii import vault
from app.demand.models import RosterImport, Worker
from app.demand.roster import COLUMNS
from app.demand.spreadsheets import write_csv, write_xlsx

MIMETYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",  # the response adds "; charset=utf-8" to a text/ type
}
# ID and phone columns are text in the file, so Excel never turns them into 3.70102E+17.
TEXT_COLUMNS = [
    index
    for index, column in enumerate(COLUMNS)
    if column.field in ("id_number", "phone", "home_region_code", "emergency_contact_phone")
]


def download(content: bytes, fmt: str, basename: str) -> Response:
    response = Response(content, mimetype=MIMETYPES[fmt])
    filename = f"{basename}.{fmt}"
    response.headers["Content-Disposition"] = (
        f"attachment; filename={quote(filename)}; filename*=UTF-8''{quote(filename)}"
    )
    return response


def table_file(
    headers: list[str], rows: Iterable, fmt: str, basename: str, text_columns: list[int]
) -> Response:
    if fmt not in MIMETYPES:
        abort(404)
    if fmt == "xlsx":
        content = write_xlsx(headers, rows, text_columns=text_columns)
    else:
        content = write_csv(headers, rows, text_columns=text_columns)
    return download(content, fmt, basename)


def roster_file(workers: Iterable[Worker], fmt: str, basename: str) -> Response:
    """The whole roster, in the import template's columns (so it can be edited and re-imported).
    ID and phone numbers are whole: this is the employer's own HR file."""
    pii = vault()

    def rows():
        for worker in workers:
            yield [
                worker.name,
                pii.decrypt(worker.id_number_token),
                pii.decrypt(worker.phone_token),
                worker.home_region_code,
                worker.home_region_name,
                worker.group_tag,
                worker.emergency_contact_name,
                pii.decrypt(worker.emergency_contact_phone_token)
                if worker.emergency_contact_phone_token
                else None,
                None,  # health pass: kept with the certificates, not re-exported
            ]

    headers = [column.header for column in COLUMNS]
    return table_file(headers, rows(), fmt, basename, TEXT_COLUMNS)


def problems_file(
    roster_import: RosterImport, fmt: str, describe: Callable[[dict], str]
) -> Response:
    headers = [_("Row"), _("Column"), _("Value"), _("Problem")]
    rows = (
        [problem["row"], problem["column"], problem.get("value", ""), describe(problem)]
        for problem in roster_import.errors
    )
    return table_file(headers, rows, fmt, f"import-{roster_import.id}-problems", [2])


def masked_worker(worker: Worker) -> dict[str, str]:
    """What list pages show: 3701**********123X and 138****8000."""
    pii = vault()
    return {
        "id_number": mask_id_number(pii.decrypt(worker.id_number_token)),
        "phone": mask_mobile(pii.decrypt(worker.phone_token)),
    }
