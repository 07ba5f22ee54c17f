"""The coordinators' fleet pages: operators, their vehicles (with seat maps) and drivers."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from app.core.access import Role, get_visible_or_404, roles_required, select_visible
from app.core.forms import save_or_show
from app.core.paging import paginate
from app.extensions import db
from app.fleet import services
from app.fleet.forms import (
    KIND_NAMES,
    MESSAGES,
    BlockedSeatsForm,
    DriverForm,
    OperatorForm,
    VehicleForm,
    template_name,
)
from app.fleet.models import Driver, Operator, Vehicle

bp = Blueprint("fleet", __name__, template_folder="templates")

coordinators_only = roles_required(Role.COORDINATOR, Role.ADMIN)


@bp.context_processor
def fleet_names() -> dict:
    return {"kind_names": KIND_NAMES, "template_name": template_name}


def _save(form: FlaskForm, operation: Callable[[], object]) -> object | None:
    """save_or_show, returning what the operation made (None when refused)."""
    made: list[object] = []
    if save_or_show(form, lambda: made.append(operation()), MESSAGES):
        return made[0]
    return None


# --- operators -----------------------------------------------------------------------------


@bp.route("/fleet", methods=["GET", "POST"])
@coordinators_only
def operators():
    form = OperatorForm()
    if form.validate_on_submit():
        operator = _save(form, lambda: services.create_operator(form.values(), current_user))
        if operator is not None:
            flash(_("Operator %(name)s added.", name=operator.name), "success")
            return redirect(url_for("fleet.operator", operator_id=operator.id))
    search = request.args.get("q", "").strip()
    query = select_visible(Operator)
    if search:
        query = query.where(Operator.name.contains(search, autoescape=True))
    page = paginate(query.order_by(Operator.name, Operator.id))
    ids = [operator.id for operator in page.items]
    vehicle_counts = dict(
        db.session.execute(
            select(Vehicle.operator_id, func.count())
            .where(Vehicle.operator_id.in_(ids), Vehicle.active)
            .group_by(Vehicle.operator_id)
        ).all()
    )
    driver_counts = dict(
        db.session.execute(
            select(Driver.operator_id, func.count())
            .where(Driver.operator_id.in_(ids), Driver.active)
            .group_by(Driver.operator_id)
        ).all()
    )
    return render_template(
        "fleet/operators.html",
        page=page,
        search=search,
        form=form,
        vehicle_counts=vehicle_counts,
        driver_counts=driver_counts,
    )


def _operator_page(
    operator: Operator,
    operator_form: OperatorForm | None = None,
    vehicle_form: VehicleForm | None = None,
    driver_form: DriverForm | None = None,
):
    """The operator's page; the forms not being posted are shown blank (formdata=None)."""
    vehicles = paginate(
        select_visible(Vehicle)
        .where(Vehicle.operator_id == operator.id)
        .order_by(Vehicle.active.desc(), Vehicle.identifier, Vehicle.id),
    )
    drivers = paginate(
        select_visible(Driver)
        .where(Driver.operator_id == operator.id)
        .order_by(Driver.active.desc(), Driver.name, Driver.id),
        arg="drivers_page",
    )
    return render_template(
        "fleet/operator.html",
        operator=operator,
        vehicles=vehicles,
        drivers=drivers,
        licences={driver.id: services.masked_licence_number(driver) for driver in drivers.items},
        operator_form=operator_form or OperatorForm(formdata=None, obj=operator),
        vehicle_form=vehicle_form or VehicleForm(formdata=None),
        driver_form=driver_form or DriverForm(formdata=None),
    )


@bp.route("/fleet/operators/<int:operator_id>", methods=["GET", "POST"])
@coordinators_only
def operator(operator_id: int):
    found = get_visible_or_404(Operator, operator_id)
    form = OperatorForm(obj=found)
    if form.validate_on_submit() and save_or_show(
        form, lambda: services.update_operator(found, form.values(), current_user), MESSAGES
    ):
        flash(_("Changes saved."), "success")
        return redirect(url_for("fleet.operator", operator_id=found.id))
    return _operator_page(found, operator_form=form)


@bp.post("/fleet/operators/<int:operator_id>/vehicles")
@coordinators_only
def new_vehicle(operator_id: int):
    found = get_visible_or_404(Operator, operator_id)
    form = VehicleForm()
    if form.validate_on_submit():
        fields = {**form.values(), "active": True}
        vehicle = _save(form, lambda: services.create_vehicle(found, fields, current_user))
        if vehicle is not None:
            flash(_("Vehicle %(number)s added.", number=vehicle.identifier), "success")
            return redirect(url_for("fleet.vehicle", vehicle_id=vehicle.id))
    return _operator_page(found, vehicle_form=form)


@bp.post("/fleet/operators/<int:operator_id>/drivers")
@coordinators_only
def new_driver(operator_id: int):
    found = get_visible_or_404(Operator, operator_id)
    form = DriverForm()
    if form.validate_on_submit():
        fields = {**form.values(), "active": True}
        driver = _save(form, lambda: services.create_driver(found, fields, current_user))
        if driver is not None:
            flash(_("Driver %(name)s added.", name=driver.name), "success")
            return redirect(url_for("fleet.operator", operator_id=found.id))
    return _operator_page(found, driver_form=form)


# --- vehicles ------------------------------------------------------------------------------


def _vehicle_page(
    vehicle: Vehicle,
    vehicle_form: VehicleForm | None = None,
    seats_form: BlockedSeatsForm | None = None,
):
    blocked = set(vehicle.blocked_seats or [])
    ticked = set(seats_form.blocked_seats.data or []) if seats_form is not None else blocked
    seats = {
        seat.label: {
            "state": "blocked" if seat.label in blocked else "free",
            "checked": seat.label in ticked,
        }
        for seat in vehicle.seat_map
    }
    return render_template(
        "fleet/vehicle.html",
        vehicle=vehicle,
        seat_map=vehicle.seat_map,
        seats=seats,
        vehicle_form=vehicle_form
        or VehicleForm(formdata=None, obj=vehicle, template=vehicle.seatmap_template),
        seats_form=seats_form or BlockedSeatsForm(formdata=None),
    )


@bp.route("/fleet/vehicles/<int:vehicle_id>", methods=["GET", "POST"])
@coordinators_only
def vehicle(vehicle_id: int):
    found = get_visible_or_404(Vehicle, vehicle_id)
    form = VehicleForm(obj=found, template=found.seatmap_template)
    was_active = found.active
    if form.validate_on_submit() and save_or_show(
        form, lambda: services.update_vehicle(found, form.values(), current_user), MESSAGES
    ):
        flash(_("Changes saved."), "success")
        if was_active and not found.active and (trips := services.running_trips(vehicle=found)):
            # Allowed (a coach sold on still runs its last trips), but said: a coach that
            # broke down cannot, and its trips must be cancelled and planned again.
            flash(
                ngettext(
                    "It still runs %(num)d trip not yet arrived (%(trips)s): if it cannot, "
                    "cancel it and plan it again.",
                    "It still runs %(num)d trips not yet arrived (%(trips)s): if it cannot, "
                    "cancel them and plan them again.",
                    len(trips),
                    trips=_references(trips),
                ),
                "error",
            )
        return redirect(url_for("fleet.vehicle", vehicle_id=found.id))
    return _vehicle_page(found, vehicle_form=form)


@bp.post("/fleet/vehicles/<int:vehicle_id>/blocked-seats")
@coordinators_only
def blocked_seats(vehicle_id: int):
    found = get_visible_or_404(Vehicle, vehicle_id)
    form = BlockedSeatsForm()
    if form.validate_on_submit() and save_or_show(
        form,
        lambda: services.set_blocked_seats(found, form.blocked_seats.data or [], current_user),
        MESSAGES,
    ):
        flash(
            _("Blocked seats saved: %(count)s blocked.", count=len(found.blocked_seats)),
            "success",
        )
        return redirect(url_for("fleet.vehicle", vehicle_id=found.id))
    return _vehicle_page(found, seats_form=form)


def _references(trips: list, shown: int = 5) -> str:
    """The first trips' references, and how many more."""
    more = len(trips) - shown
    return ", ".join(trip.reference for trip in trips[:shown]) + (f" (+{more})" if more > 0 else "")


# --- drivers -------------------------------------------------------------------------------


@bp.route("/fleet/drivers/<int:driver_id>/edit", methods=["GET", "POST"])
@coordinators_only
def edit_driver(driver_id: int):
    driver = get_visible_or_404(Driver, driver_id)
    form = DriverForm(obj=driver)
    if not form.is_submitted():
        # The whole licence number only here, for the coordinator correcting it.
        form.phone.data = driver.phone.removeprefix("+86")
        form.licence_number.data = services.driver_licence_number(driver)
    was_active = driver.active
    if form.validate_on_submit() and save_or_show(
        form, lambda: services.update_driver(driver, form.values(), current_user), MESSAGES
    ):
        flash(_("Changes to %(name)s saved.", name=driver.name), "success")
        if was_active and not driver.active and (trips := services.running_trips(driver=driver)):
            flash(
                ngettext(
                    "%(name)s is still on %(num)d trip not yet arrived (%(trips)s): give it "
                    "another driver.",
                    "%(name)s is still on %(num)d trips not yet arrived (%(trips)s): give "
                    "them another driver.",
                    len(trips),
                    name=driver.name,
                    trips=_references(trips),
                ),
                "error",
            )
        return redirect(url_for("fleet.operator", operator_id=driver.operator_id))
    return render_template("fleet/driver_form.html", form=form, driver=driver)
