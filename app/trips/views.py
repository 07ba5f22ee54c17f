from __future__ import annotations

import contextlib
from datetime import date

from babel.lists import format_list
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime, get_locale, ngettext
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from app.core.access import Role, get_visible_or_404, roles_required, select_visible
from app.core.errors import DomainError
from app.core.forms import show_domain_error
from app.core.paging import paginate
from app.core.services import record_audit
from app.demand.models import RequestStatus, RosterEntry, TransportRequest
from app.extensions import db
from app.fleet.models import Driver, Vehicle
from app.health import services as health
from app.trips import allocation, exports, services
from app.trips.forms import (
    BOARDING_MESSAGES,
    MESSAGES,
    TRIP_STATUS_NAMES,
    UNPLACED_NAMES,
    BlockSeatsForm,
    BoardingForm,
    CancelTripForm,
    HandoverForm,
    LegForm,
    PlanForm,
    SeatChangeForm,
    TripForm,
    message_for,
    plan_problem_text,
)
from app.trips.models import SEATING_STATUSES, Handover, SeatAssignment, Trip, TripStatus

bp = Blueprint("trips", __name__, template_folder="templates")

coordinators = roles_required(Role.COORDINATOR, Role.ADMIN)
GROUP_COLOURS = 8


@bp.app_context_processor
def trip_names() -> dict:
    return {"trip_status_names": TRIP_STATUS_NAMES}


def _run(operation, done: str | None = None) -> bool:
    """One unit of work: commit when the service agrees, else roll back and say why."""
    try:
        result = services.safe_integrity(operation)
    except DomainError as error:
        db.session.rollback()
        flash(message_for(error.code), "error")
        return False
    db.session.commit()
    if done:
        flash(done if isinstance(done, str) else done(result), "success")
    return True


# --- list and detail -----------------------------------------------------------------------


@bp.get("/trips")
@coordinators
def trips():
    status = request.args.get("status", "")
    query = select_visible(Trip)
    if status in TRIP_STATUS_NAMES:
        query = query.where(Trip.status == status)
    page = paginate(query.order_by(Trip.departs_at.desc(), Trip.id.desc()))
    seated = _seated_counts([t.id for t in page.items])
    return render_template("trips/trips.html", page=page, seated=seated, status=status)


def _seated_counts(trip_ids: list[int]) -> dict[int, int]:
    return dict(
        db.session.execute(
            select(SeatAssignment.trip_id, func.count())
            .where(SeatAssignment.trip_id.in_(trip_ids))
            .group_by(SeatAssignment.trip_id)
        ).all()
    )


@bp.get("/trips/<int:trip_id>")
@coordinators
def trip_detail(trip_id: int):
    trip = get_visible_or_404(Trip, trip_id)
    seat_map = trip.vehicle.seat_map
    per_request = dict(
        db.session.execute(
            select(RosterEntry.request_id, func.count())
            .join(SeatAssignment, SeatAssignment.roster_entry_id == RosterEntry.id)
            .where(SeatAssignment.trip_id == trip.id)
            .group_by(RosterEntry.request_id)
        ).all()
    )
    return render_template(
        "trips/trip_detail.html",
        trip=trip,
        capacity=allocation.capacity(seat_map, trip.policy, trip.all_blocked_seats),
        rated=len(seat_map),
        per_request=per_request,
        seated=sum(per_request.values()),
        onward=db.session.scalars(select(Trip).where(Trip.connects_from_id == trip.id)).all(),
        action_form=FlaskForm(),
        cancel_form=CancelTripForm(),
    )


@bp.post("/trips/<int:trip_id>/allocate")
@coordinators
def allocate(trip_id: int):
    get_visible_or_404(Trip, trip_id)
    if FlaskForm().validate_on_submit():
        _run(lambda: services.allocate_seats(trip_id, current_user), _allocation_message)
    return redirect(url_for("trips.trip_detail", trip_id=trip_id))


def _allocation_message(outcome: services.AllocationOutcome) -> str:
    parts = [ngettext("%(num)d worker seated.", "%(num)d workers seated.", outcome.seated)]
    for reason, count in sorted(outcome.unplaced.items()):
        parts.append(
            _("%(count)s left without a seat: %(why)s.", count=count, why=UNPLACED_NAMES[reason])
        )
    if outcome.blocked:
        parts.append(
            ngettext(
                "%(num)d worker blocked by the health check (the employer is told).",
                "%(num)d workers blocked by the health check (the employer is told).",
                outcome.blocked,
            )
        )
    return " ".join(parts)


@bp.post("/trips/<int:trip_id>/lock")
@coordinators
def lock(trip_id: int):
    get_visible_or_404(Trip, trip_id)
    if FlaskForm().validate_on_submit():
        _run(
            lambda: services.lock_manifest(trip_id, current_user),
            lambda told: ngettext(
                "Manifest locked; %(num)d worker is being told their seat by text message.",
                "Manifest locked; %(num)d workers are being told their seats by text message.",
                told,
            ),
        )
    return redirect(url_for("trips.trip_detail", trip_id=trip_id))


@bp.post("/trips/<int:trip_id>/cancel")
@coordinators
def cancel(trip_id: int):
    get_visible_or_404(Trip, trip_id)
    form = CancelTripForm()
    if form.validate_on_submit():
        _run(
            lambda: services.cancel_trip(trip_id, form.reason.data, current_user),
            _("Trip cancelled; its workers wait for a new seat."),
        )
    else:
        flash(message_for("trip.cancel_reason_missing"), "error")
    return redirect(url_for("trips.trip_detail", trip_id=trip_id))


# --- creating and editing ------------------------------------------------------------------


def _feeder_choices(form: LegForm, exclude: int | None = None) -> None:
    recent = select_visible(Trip).where(
        Trip.status.in_([s.value for s in SEATING_STATUSES]),
        Trip.id != (exclude or 0),
    )
    trips = db.session.scalars(recent.order_by(Trip.departs_at.desc()).limit(200))
    form.connects_from_id.choices = [(0, _("— none: a first leg —"))] + [
        (t.id, f"{t.reference} · {t.vehicle.identifier} · {t.destination_point}") for t in trips
    ]


def _leg(form: LegForm) -> services.Leg:
    return form.leg(health.local_zone())


@bp.route("/trips/<int:trip_id>/edit", methods=["GET", "POST"])
@coordinators
def edit_trip(trip_id: int):
    trip = get_visible_or_404(Trip, trip_id)
    form = TripForm(obj=trip if request.method == "GET" else None)
    _feeder_choices(form, exclude=trip.id)
    form.drivers.choices = [
        (d.id, f"{d.name} · {d.phone}")
        for d in db.session.scalars(
            select(Driver)
            .where(Driver.operator_id == trip.vehicle.operator_id, Driver.active)
            .order_by(Driver.name)
        )
    ]
    if request.method == "GET":
        zone = health.local_zone()
        departs, arrives = trip.departs_at.astimezone(zone), trip.arrives_at.astimezone(zone)
        form.departs_on.data, form.departs_time.data = departs.date(), departs.time()
        form.arrives_on.data, form.arrives_time.data = arrives.date(), arrives.time()
        form.connects_from_id.data = trip.connects_from_id or 0
        form.drivers.data = [d.id for d in trip.drivers]
    if form.validate_on_submit():
        leg = _leg(form)
        escort = ((form.escort_name.data or "").strip() or None, form.escort_phone.data or None)
        try:
            services.update_trip(trip_id, leg, escort, current_user, form.drivers.data or [])
        except DomainError as error:
            db.session.rollback()
            show_domain_error(form, error, MESSAGES)
        else:
            db.session.commit()
            flash(_("Trip saved."), "success")
            return redirect(url_for("trips.trip_detail", trip_id=trip_id))
    return render_template("trips/trip_form.html", trip=trip, form=form)


# --- planning ------------------------------------------------------------------------------


def _plan_filters() -> dict[str, str]:
    return {name: request.args.get(name, "").strip() for name in ("origin", "destination", "day")}


def _plan_choices(form: PlanForm) -> tuple[list[TransportRequest], list[Vehicle]]:
    """Approved requests (narrowed by origin and destination code prefix and a day inside
    their departure window) and the active vehicles."""
    # Scheduled requests too: every worker has a first-leg seat, but they may need an onward
    # leg (a coach from the station the train reaches).
    query = select_visible(TransportRequest).where(
        TransportRequest.status.in_([RequestStatus.APPROVED, RequestStatus.SCHEDULED])
    )
    filters = _plan_filters()
    if filters["origin"]:
        query = query.where(
            TransportRequest.origin_region_code.startswith(filters["origin"], autoescape=True)
        )
    if filters["destination"]:
        query = query.where(
            TransportRequest.destination_region_code.startswith(
                filters["destination"], autoescape=True
            )
        )
    with contextlib.suppress(ValueError):
        day = date.fromisoformat(filters["day"])
        query = query.where(
            TransportRequest.earliest_departure <= day, TransportRequest.latest_departure >= day
        )
    approved = db.session.scalars(
        query.order_by(TransportRequest.earliest_departure, TransportRequest.id).limit(500)
    ).all()
    counts = services.plannable_counts(r.id for r in approved)
    form.requests.choices = [
        (
            r.id,
            f"{r.reference} · {r.organization.name} · {r.origin_region_name} → {r.site_name} · "
            f"{r.earliest_departure:%m-%d}–{r.latest_departure:%m-%d} · "
            + _("%(num)s waiting", num=counts.get(r.id, 0)),
        )
        for r in approved
    ]
    vehicles = db.session.scalars(
        select(Vehicle).where(Vehicle.active).order_by(Vehicle.kind, Vehicle.identifier)
    ).all()
    form.vehicles.choices = [
        (v.id, f"{v.identifier} · {v.operator.name} · {v.seatmap_template} × {v.carriages}")
        for v in vehicles
    ]
    _feeder_choices(form)
    chosen_requests = [r for r in approved if r.id in (form.requests.data or [])]
    chosen_vehicles = [v for v in vehicles if v.id in (form.vehicles.data or [])]
    return chosen_requests, chosen_vehicles


def _posted_loads() -> dict[int, dict[int, str]]:
    """The (possibly edited) plan as typed: inputs named load-<vehicle id>-<request id>."""
    loads: dict[int, dict[int, str]] = {}
    for name, value in request.form.items():
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "load" and parts[1].isdigit() and parts[2].isdigit():
            loads.setdefault(int(parts[1]), {})[int(parts[2])] = value
    return loads


def _counts(
    typed: dict[int, dict[int, str]],
) -> tuple[dict[int, dict[int, int]], set[tuple[int, int]]]:
    """The typed plan as numbers, and the cells (vehicle id, request id) that are not a
    whole number 0 or more: ASCII digits only (str.isdigit also takes 7², which int refuses),
    and no more of them than any vehicle's count needs."""
    counts: dict[int, dict[int, int]] = {}
    bad = set()
    for vehicle_id, per in typed.items():
        for request_id, text in per.items():
            text = text.strip()
            if text.isascii() and text.isdigit() and len(text) <= 9:
                counts.setdefault(vehicle_id, {})[request_id] = int(text)
            else:
                bad.add((vehicle_id, request_id))
    return counts, bad


@bp.route("/trips/plan", methods=["GET", "POST"])
@roles_required(Role.COORDINATOR)
def plan():
    form = PlanForm()
    if request.method == "GET":  # a request's page links here with it ticked: ?request=7
        form.requests.data = [
            int(value)
            for value in request.args.getlist("request")
            if value.isascii() and value.isdigit()
        ]
    chosen_requests, chosen_vehicles = _plan_choices(form)
    if request.method == "GET":
        form.isolation_rows.data = 2
        form.connects_from_id.data = 0
        if chosen_requests:
            _fill_leg(form, chosen_requests)
        elif form.requests.choices:  # a start: the first request listed
            _fill_leg(form, [db.session.get(TransportRequest, form.requests.choices[0][0])])
    elif "fill" in request.form:  # changes nothing, so nothing to validate but the ticks
        if chosen_requests:
            _fill_leg(form, chosen_requests)
        else:
            form.form_errors.append(MESSAGES["plan.nothing_ticked"])
        return _plan_page(form, chosen_requests, chosen_vehicles)
    result = problems = None
    elsewhere: list[TransportRequest] = []
    bad_counts: set[tuple[int, int]] = set()
    if form.validate_on_submit():
        if not chosen_requests or not chosen_vehicles:
            form.form_errors.append(MESSAGES["plan.nothing"])
        elif "apply" in request.form:
            loads, bad_counts = _counts(_posted_loads())
            if not bad_counts:  # else the plan stays as typed, each unreadable count marked
                try:
                    trips, problems = services.apply_plan(_leg(form), loads, current_user)
                    given = None
                    if not problems and request.form["apply"] == "seats":
                        given = services.safe_integrity(
                            lambda: services.allocate_trips([t.id for t in trips], current_user)
                        )
                except DomainError as error:
                    db.session.rollback()
                    show_domain_error(form, error, MESSAGES)
                else:
                    if not problems:
                        db.session.commit()
                        flash(
                            ngettext("%(num)d trip created.", "%(num)d trips created.", len(trips)),
                            "success",
                        )
                        if given is not None:
                            outcome = services.AllocationOutcome.of_all(given.values())
                            flash(_allocation_message(outcome), "success")
                        return redirect(url_for("trips.trips"))
                    db.session.rollback()
        leg = _leg(form) if not form.form_errors else None
        if leg is not None:
            result = services.make_plan(
                chosen_requests, chosen_vehicles, leg.policy, leg.connects_from_id
            )
            elsewhere = services.boarding_elsewhere(leg, chosen_requests)
    return _plan_page(
        form, chosen_requests, chosen_vehicles, result, problems, elsewhere, bad_counts
    )


def _plan_page(
    form: PlanForm,
    chosen_requests: list[TransportRequest],
    chosen_vehicles: list[Vehicle],
    result: allocation.Plan | None = None,
    problems: list[services.PlanProblem] | None = None,
    elsewhere: list[TransportRequest] | None = None,
    bad_counts: set[tuple[int, int]] | None = None,
) -> str:
    vehicles = {v.id: v for v in chosen_vehicles}
    return render_template(
        "trips/plan.html",
        form=form,
        filters=_plan_filters(),
        result=result,
        problems=problems,
        elsewhere=elsewhere or [],
        problem_text=plan_problem_text,
        requests_by_id={r.id: r for r in chosen_requests},
        vehicles_in_plan=[vehicles[chosen_vehicles[v.option].id] for v in result.vehicles]
        if result
        else [],
        posted=_posted_loads() if problems or bad_counts else None,
        bad_counts=bad_counts or set(),
    )


def _fill_leg(form: PlanForm, requests: list[TransportRequest]) -> None:
    """The route and day from ``requests``: the first one's meeting point and site, on the
    first day inside every request's window (else the first's own first day). Requests that
    start or end elsewhere are named: one trip takes its workers to one meeting point."""
    first = requests[0]
    day = max(r.earliest_departure for r in requests)
    if day > min(r.latest_departure for r in requests):
        day = first.earliest_departure
    values = {**services.route_of(first), "departs_on": day, "arrives_on": day}
    if form.departs_time.data is None:  # a time typed already is kept
        values["departs_time"] = health.usual_departure_time()
    for name, value in values.items():
        form[name].data = value
        form[name].raw_data = []  # else a date field shows what was posted
    route = (first.origin_region_code, first.destination_region_code)
    others = [r for r in requests if (r.origin_region_code, r.destination_region_code) != route]
    if others:
        flash(
            _(
                "The route and day are those of %(ref)s. %(others)s start or end elsewhere: plan "
                "them separately, or check the meeting point.",
                ref=first.reference,
                others=format_list([r.reference for r in others], locale=get_locale()),
            ),
            "warning",
        )


# --- seats ---------------------------------------------------------------------------------


@bp.get("/trips/<int:trip_id>/seats")
@coordinators
def seats(trip_id: int):
    trip = get_visible_or_404(Trip, trip_id)
    return _seat_page(trip, SeatChangeForm())


def _seat_page(trip: Trip, form: SeatChangeForm, status: int = 200):
    seat_map = trip.vehicle.seat_map
    holders = services.seat_holders(trip.id)
    isolation = allocation.isolation_labels(seat_map, trip.policy)
    blocked = trip.all_blocked_seats
    colours: dict[int, int] = {}
    seats = {}
    for seat in seat_map.seats:
        state = "blocked" if seat.label in blocked else "free"
        if seat.label in isolation:
            state = "isolation"
        seats[seat.label] = {"state": state, "checked": seat.label in trip.blocked_seats}
    for assignment, entry in holders:
        group = colours.setdefault(entry.request_id, len(colours) % GROUP_COLOURS)
        seats[assignment.seat_label] = {
            "state": "taken",
            "group": group,
            "text": entry.worker.name,
        }
    waiting = []
    for load in trip.loads:
        waiting.extend(services._waiting_entries(trip, load.request_id))
    form.seats_version.data = trip.seats_version
    form.entry_id.choices = [
        (e.id, f"{e.worker.name} · {seat_map.seat(a.seat_label).display}") for a, e in holders
    ] + [(e.id, f"{e.worker.name} · " + _("no seat yet")) for e in waiting]
    form.other_entry_id.choices = [(0, "—")] + [
        (e.id, f"{e.worker.name} · {seat_map.seat(a.seat_label).display}") for a, e in holders
    ]
    requests = {
        r.id: r
        for r in db.session.scalars(
            select(TransportRequest).where(TransportRequest.id.in_(list(colours)))
        )
    }
    return (
        render_template(
            "trips/seats.html",
            trip=trip,
            seat_map=seat_map,
            seats=seats,
            form=form,
            block_form=BlockSeatsForm(seats_version=trip.seats_version),
            legend=[(colour, requests[rid]) for rid, colour in colours.items()],
            seated=len(holders),
            capacity=allocation.capacity(seat_map, trip.policy, blocked),
            editable=trip.status in SEATING_STATUSES,
        ),
        status,
    )


def _seen_version(form: FlaskForm) -> int:
    value = form.seats_version.data or ""
    return int(value) if str(value).isdigit() else -1


@bp.post("/trips/<int:trip_id>/seats/<any(move, swap, unseat):action>")
@coordinators
def change_seat(trip_id: int, action: str):
    trip = get_visible_or_404(Trip, trip_id)
    form = SeatChangeForm()
    form.entry_id.choices = form.other_entry_id.choices = None  # any id; the service checks
    form.entry_id.validate_choice = form.other_entry_id.validate_choice = False
    if not form.validate_on_submit():
        abort(400)
    seen = _seen_version(form)
    if action == "move":
        operation = lambda: services.move_seat(  # noqa: E731
            trip_id, form.entry_id.data, form.to_seat.data or "", seen, current_user
        )
        done = _("Seat changed.")
    elif action == "swap":
        operation = lambda: services.swap_seats(  # noqa: E731
            trip_id, form.entry_id.data, form.other_entry_id.data, seen, current_user
        )
        done = _("Seats swapped.")
    else:
        operation = lambda: services.unseat(trip_id, form.entry_id.data, seen, current_user)  # noqa: E731
        done = _("Seat taken back; the worker waits for a seat again.")
    if _run(operation, done):
        return redirect(url_for("trips.seats", trip_id=trip_id))
    db.session.expire_all()
    return _seat_page(trip, SeatChangeForm(formdata=None), status=409)


@bp.post("/trips/<int:trip_id>/seats/block")
@coordinators
def block_seats(trip_id: int):
    get_visible_or_404(Trip, trip_id)
    form = BlockSeatsForm()
    if form.validate_on_submit():
        labels = request.form.getlist("blocked")
        _run(
            lambda: services.set_blocked_seats(trip_id, labels, _seen_version(form), current_user),
            _("Blocked seats saved."),
        )
    return redirect(url_for("trips.seats", trip_id=trip_id))


# --- at the vehicle door --------------------------------------------------------------------


@bp.route("/trips/<int:trip_id>/boarding", methods=["GET", "POST"])
@roles_required(Role.COORDINATOR)
def boarding(trip_id: int):
    trip = get_visible_or_404(Trip, trip_id)
    form = BoardingForm()
    verdict = None
    status = 200
    if form.validate_on_submit():
        try:
            verdict = services.board(
                trip_id, form.code.data, form.temperature.celsius, current_user
            )
        except DomainError as error:
            db.session.rollback()
            flash(message_for(error.code), "error")
        else:
            db.session.commit()
            form = BoardingForm(formdata=None)  # ready for the next scan
    elif request.method == "POST":
        status = 422
    return _boarding_page(trip, form, verdict, status)


def _seat_text_of(trip: Trip):
    """A seat label as printed, for a page's rows: the seat map is built once, not a row."""
    seat_map = trip.vehicle.seat_map
    return lambda label: seat_map.seat(label).display


def _boarding_page(trip: Trip, form: BoardingForm, verdict, status: int = 200):
    db.session.refresh(trip)
    waiting = [
        (a, e)
        for a, e in services.seat_holders(trip.id)
        if a.boarding is None and trip.status == TripStatus.LOCKED
    ]
    return (
        render_template(
            "trips/boarding.html",
            trip=trip,
            form=form,
            verdict=verdict,
            verdict_text=_verdict_text(verdict) if verdict else None,
            counts=services.boarding_counts(trip.id),
            waiting=waiting,
            seat_text=_seat_text_of(trip),
            action_form=FlaskForm(),
        ),
        status,
    )


def _verdict_text(verdict: services.BoardingVerdict) -> str:
    other = verdict.their_trip
    return str(BOARDING_MESSAGES[verdict.code]) % {
        "seat": verdict.seat or "",
        "trip": other.reference if other else "",
        "vehicle": other.vehicle.identifier if other else "",
        "when": format_datetime(other.departs_at, "short") if other else "",
    }


@bp.post("/trips/<int:trip_id>/boarding/<int:entry_id>/no-show")
@roles_required(Role.COORDINATOR)
def no_show(trip_id: int, entry_id: int):
    get_visible_or_404(Trip, trip_id)
    if FlaskForm().validate_on_submit():
        _run(
            lambda: services.mark_no_show(trip_id, entry_id, current_user),
            _("Marked as not showing up."),
        )
    return redirect(url_for("trips.boarding", trip_id=trip_id))


@bp.post("/trips/<int:trip_id>/<any(depart, arrive):action>")
@roles_required(Role.COORDINATOR)
def move_trip(trip_id: int, action: str):
    get_visible_or_404(Trip, trip_id)
    if FlaskForm().validate_on_submit():
        if action == "depart":
            _run(lambda: services.depart(trip_id, current_user), _("The trip has left."))
        else:
            _run(lambda: services.arrive(trip_id, current_user), _arrival_message)
    return redirect(url_for("trips.trip_detail", trip_id=trip_id))


def _arrival_message(outcome: str) -> str:
    if outcome == "handover":
        return _("The trip has arrived; the employers are asked to the handover.")
    if outcome == "rides_on":
        return _(
            "The trip has arrived and is closed: everyone on it rides on, and is handed over "
            "at their last stop."
        )
    return _("The trip has arrived and is closed: nobody boarded it, so nobody is handed over.")


@bp.route("/requests/<int:request_id>/handover/<int:trip_id>", methods=["GET", "POST"])
@roles_required(Role.EMPLOYER, Role.COORDINATOR)
def handover(request_id: int, trip_id: int):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    trip = db.session.get(Trip, trip_id)
    riders = (
        [(a, e) for a, e in services.seat_holders(trip.id) if e.request_id == request_id]
        if trip
        else []
    )
    if not riders:
        abort(404)
    form = HandoverForm()
    if form.validate_on_submit():
        try:
            services.confirm_handover(
                trip_id,
                request_id,
                form.received.data,
                form.representative_name.data,
                form.note.data or "",
                current_user,
            )
        except DomainError as error:
            db.session.rollback()
            show_domain_error(form, error, MESSAGES)
        else:
            db.session.commit()
            flash(_("Handover confirmed."), "success")
            return redirect(url_for("trips.handover", request_id=request_id, trip_id=trip_id))
    confirmed = db.session.scalar(
        select(Handover).where(Handover.trip_id == trip_id, Handover.request_id == request_id)
    )
    return render_template(
        "trips/handover.html",
        trip=trip,
        transport_request=transport_request,
        riders=riders,
        due=services.handover_due(trip).get(request_id),
        confirmed=confirmed,
        form=form,
        seat_text=_seat_text_of(trip),
    )


# --- manifests -----------------------------------------------------------------------------


def _full_version(trip: Trip, fmt: str) -> bool:
    """``?full=1``: whole ID and mobile numbers, for coordinators (and admins) only — the
    routes already require that role — and every viewing is audited."""
    if request.args.get("full") != "1":
        return False
    record_audit("trip.manifest_full", trip, current_user, fmt=fmt)
    db.session.commit()
    return True


@bp.get("/trips/<int:trip_id>/manifest")
@coordinators
def manifest(trip_id: int):
    trip = get_visible_or_404(Trip, trip_id)
    full = _full_version(trip, "html")
    seat_map = trip.vehicle.seat_map
    return render_template(
        "trips/manifest.html",
        trip=trip,
        full=full,
        rows=exports.manifest_rows(trip, full),
        headers=exports.manifest_headers(),
        by_carriage=trip.vehicle.kind == "train" or len(seat_map.carriages) > 1,
        rated=len(seat_map),
    )


@bp.get("/trips/<int:trip_id>/manifest.<any(xlsx, csv):fmt>")
@coordinators
def manifest_file(trip_id: int, fmt: str):
    trip = get_visible_or_404(Trip, trip_id)
    return exports.manifest_file(trip, fmt, _full_version(trip, fmt))


@bp.get("/requests/<int:request_id>/arrival-list")
@roles_required(Role.EMPLOYER, Role.COORDINATOR, Role.ADMIN)
def arrival_list(request_id: int):
    transport_request = get_visible_or_404(TransportRequest, request_id)
    groups = exports.arrival_groups(transport_request)
    return render_template(
        "trips/arrival_list.html",
        transport_request=transport_request,
        groups=groups,
        total=sum(len(group.rows) for group in groups),
    )
