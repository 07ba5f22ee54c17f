"""The dashboard's tables as .xlsx / .csv, through the demand exports helpers."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, abort
from flask_babel import gettext as _

from app.accounts.models import User
from app.core.access import Role
from app.demand.exports import table_file
from app.demand.forms import REQUEST_STATUS_NAMES
from app.fleet.forms import KIND_NAMES
from app.health.views import health_reasons
from app.reports import services
from app.reports.forms import FUNNEL_NAMES
from app.trips.forms import TRIP_STATUS_NAMES

Table = tuple[list[str], list[list[object]]]


def _requests(user: User, window: services.Window) -> Table:
    counts = services.requests_by_status(user, window)
    rows = [[status, str(REQUEST_STATUS_NAMES[status]), n] for status, n in counts.items()]
    return [_("Code"), _("Status"), _("Requests")], rows


def _funnel(user: User, window: services.Window) -> Table:
    figures = services.worker_figures(user, window)
    rows = [[stage, str(FUNNEL_NAMES[stage]), n] for stage, n in figures.funnel]
    rows += [
        ["blocked", _("Blocked by the health check"), figures.blocked_workers],
        ["no_show", _("No-show"), figures.no_show],
        ["withdrawn", _("Withdrawn"), figures.withdrawn],
    ]
    return [_("Code"), _("Stage"), _("Workers")], rows


def _blocked(user: User, window: services.Window) -> Table:
    figures = services.worker_figures(user, window)
    rows = [[code, " ".join(health_reasons(code)), n] for code, n in figures.blocked]
    return [_("Code"), _("Reason"), _("Workers")], rows


def _trips(user: User, window: services.Window) -> Table:
    figures = services.trip_figures(user, window)
    headers = [_("Code"), _("Status"), *(str(KIND_NAMES[mode]) for mode in services.MODES)]
    rows = [
        [status, str(TRIP_STATUS_NAMES[status]), *modes.values(), figures.status_totals[status]]
        for status, modes in figures.by_status.items()
    ]
    return [*headers, _("Trips")], rows


def _daily(user: User, window: services.Window) -> Table:
    figures = services.trip_figures(user, window)
    rows = [[d.day.isoformat(), d.trips, d.workers] for d in figures.days]
    return [_("Departure day"), _("Trips"), _("Workers seated")], rows


def _costs(dimension: str) -> Callable[[User, services.Window], Table]:
    def table(user: User, window: services.Window) -> Table:
        shared = services.cost_report(user, window).shared
        rows = getattr(shared, f"by_{dimension}")
        first = {"employer": _("Employer"), "origin": _("From"), "mode": _("Mode")}[dimension]
        headers = [
            first,
            _("Trips"),
            _("Workers carried"),
            _("Hire or fares (¥)"),
            _("Meals (¥)"),
            _("Tolls (¥)"),
            _("Total (¥)"),
            _("Per worker (¥)"),
            _("Trips without hire"),
            _("Trips without meals"),
            _("Trips without tolls"),
        ]
        out = []
        for row in [*rows, shared.total]:
            name = row.name if row.key != "all" else _("All")
            if dimension == "mode" and row.key in KIND_NAMES:
                name = str(KIND_NAMES[row.key])
            # Empty cell: not recorded; 0: recorded as zero.
            out.append(
                [
                    name,
                    len(row.trips),
                    row.workers,
                    row.hire,
                    row.meals,
                    row.tolls,
                    row.total,
                    row.per_worker,
                    *(row.not_recorded(part) for part in services.COST_PARTS),
                ]
            )
        return headers, out

    return table


TABLES: dict[str, Callable[[User, services.Window], Table]] = {
    "requests": _requests,
    "funnel": _funnel,
    "blocked": _blocked,
    "trips": _trips,
    "daily": _daily,
    "costs-employer": _costs("employer"),
    "costs-origin": _costs("origin"),
    "costs-mode": _costs("mode"),
}
# Trips and the daily series are the coordinators' view of the region.
STAFF_TABLES = frozenset({"trips", "daily"})


def allowed_tables(user: User) -> list[str]:
    return [name for name in TABLES if user.role != Role.EMPLOYER or name not in STAFF_TABLES]


def report_file(name: str, user: User, window: services.Window, fmt: str) -> Response:
    if name not in allowed_tables(user):
        abort(404)
    headers, rows = TABLES[name](user, window)
    basename = f"report-{name}-{window.first.isoformat()}-{window.last.isoformat()}"
    return table_file(headers, rows, fmt, basename, text_columns=[])
