from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import format_date
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup

from app.core.access import Role, get_visible_or_404, roles_required
from app.core.clock import local_today
from app.core.forms import save_or_show
from app.core.i18n import joined
from app.demand.forms import REQUEST_STATUS_NAMES
from app.extensions import db
from app.fleet.forms import KIND_NAMES
from app.health.services import local_zone
from app.reports import charts, exports, services
from app.reports.forms import (
    CHANNEL_NAMES,
    FUNNEL_NAMES,
    MESSAGES,
    NOTIFICATION_STATUS_NAMES,
    PART_NAMES,
    RangeForm,
    TripCostForm,
)
from app.trips.models import Trip, TripCost

bp = Blueprint("reports", __name__, template_folder="templates")

readers = roles_required(Role.ADMIN, Role.COORDINATOR, Role.EMPLOYER)
DEFAULT_SPAN = timedelta(days=60)
# Rows of a cost table on the page, highest total first; the downloads hold them all (a
# province's 1,000 employers made the page 700 KiB for a phone to render).
COST_ROWS_SHOWN = 20


def yuan(value: Decimal | None) -> str:
    """A recorded amount: "¥3,200.00"; zero is a real zero ("¥0.00 (waived)"); None was
    never recorded, which is not zero."""
    if value is None:
        return _("not recorded")
    text = f"¥{value:,.2f}"
    return _("%(amount)s (waived)", amount=text) if value == 0 else text


def money(value: Decimal | None) -> str:
    return "–" if value is None else f"¥{value:,.2f}"


@bp.context_processor
def report_names() -> dict:
    return {
        "yuan": yuan,
        "money": money,
        "funnel_names": FUNNEL_NAMES,
        "part_names": PART_NAMES,
        "request_status_names": REQUEST_STATUS_NAMES,
        "kind_names": KIND_NAMES,
        "channel_names": CHANNEL_NAMES,
        "notification_status_names": NOTIFICATION_STATUS_NAMES,
        "cost_parts": services.COST_PARTS,
        "cost_rows_shown": COST_ROWS_SHOWN,
    }


def _window(form: RangeForm) -> services.Window:
    """The range asked for; a bound left out follows from the other (60 days), both left
    out (or a range refused next to its field): the last 30 days to 30 days ahead."""
    zone = local_zone()
    default = services.default_window(local_today(zone.key), zone)
    if not form.validate():
        return default
    first, last = form.date_from.data, form.date_to.data
    if first and not last:
        last = first + DEFAULT_SPAN
    elif last and not first:
        first = last - DEFAULT_SPAN
    elif not first:
        return default
    return services.Window(first, last, zone)


def _range_form() -> RangeForm:
    return RangeForm(formdata=request.args)


# --- the dashboard -------------------------------------------------------------------------


@bp.get("/reports")
@readers
def dashboard():
    form = _range_form()
    window = _window(form)
    user = current_user
    staff = user.role != Role.EMPLOYER
    context = {
        "form": form,
        "window": window,
        "staff": staff,
        "requests": services.requests_by_status(user, window),
        "workers": services.worker_figures(user, window),
        "costs": services.cost_report(user, window),
        "tables": exports.allowed_tables(user),
    }
    if staff:
        trips = services.trip_figures(user, window)
        origins, destinations = services.top_places(user, window)
        context.update(
            trips=trips,
            origins=origins,
            destinations=destinations,
            notifications=services.notification_counts(user, window),
            charts=_day_charts(trips, window),
        )
    return render_template("reports/dashboard.html", **context)


def _day_charts(trips: services.TripFigures, window: services.Window) -> list[tuple[str, Markup]]:
    period = {
        "first": format_date(window.first, "medium"),
        "last": format_date(window.last, "medium"),
    }
    made = []
    for chart_id, values, title, total_text, bar_class in (
        (
            "trips-per-day",
            [(d.day, d.trips) for d in trips.days],
            _("Trips per departure day"),
            _("%(total)s trips depart from %(first)s to %(last)s"),
            "chart-bar",
        ),
        (
            "workers-per-day",
            [(d.day, d.workers) for d in trips.days],
            _("Workers seated per departure day"),
            _("%(total)s seats given on trips departing from %(first)s to %(last)s"),
            "chart-bar-alt",
        ),
    ):
        total = sum(count for _day, count in values)
        busiest = max(values, key=lambda pair: pair[1], default=None)
        description = joined(
            total_text % {**period, "total": total},
            busiest
            and busiest[1]
            and _(
                "the busiest day is %(day)s with %(count)s",
                day=format_date(busiest[0], "medium"),
                count=busiest[1],
            ),
        )
        markup = charts.bar_chart(
            chart_id,
            title,
            description,
            [(day.strftime("%m-%d"), n) for day, n in values],
            bar_class=bar_class,
            empty_text=_("No trips in this period."),
        )
        # bar_chart escapes every text it puts in the markup.
        made.append((title, Markup(markup)))  # noqa: S704
    return made


@bp.get("/reports/export.<any(xlsx, csv):fmt>")
@readers
def export(fmt: str):
    form = _range_form()
    window = _window(form)
    if form.errors:  # a file is not a page: the range refused is said, not replaced
        message = " ".join(str(m) for messages in form.errors.values() for m in messages)
        return render_template("errors/error.html", status=400, message=message), 400
    return exports.report_file(request.args.get("table", ""), current_user, window, fmt)


# --- a trip's costs ------------------------------------------------------------------------


@bp.route("/trips/<int:trip_id>/costs", methods=["GET", "POST"])
@roles_required(Role.COORDINATOR)
def trip_costs(trip_id: int):
    trip = get_visible_or_404(Trip, trip_id)
    cost = db.session.get(TripCost, trip.id)
    form = TripCostForm(obj=cost)
    if form.validate_on_submit() and save_or_show(
        form,
        lambda: services.record_trip_costs(
            trip, form.hire.data, form.meals.data, form.tolls.data, form.note.data, current_user
        ),
        MESSAGES,
    ):
        flash(_("Costs saved."), "success")
        return redirect(url_for("reports.trip_costs", trip_id=trip.id))
    split = services.trip_split(trip)
    cost = db.session.get(TripCost, trip.id)
    amounts = services.amounts_of(cost)
    return render_template(
        "reports/trip_costs.html",
        trip=trip,
        form=form,
        cost=cost,
        amounts=amounts,
        total=services.total_of(list(amounts.values())),
        split=split,
    ), (422 if form.errors else 200)
