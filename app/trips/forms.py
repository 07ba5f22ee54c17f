from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from app.core.forms import (
    MOBILE_MESSAGES,
    REGION_CODE_MESSAGES,
    REGION_CODE_PATTERN,
    REQUIRED,
    identifier_validator,
    plausible_day,
)
from app.core.identity import normalize_mobile, validate_region_code
from app.trips.models import TripStatus
from app.trips.services import Leg

TRIP_STATUS_NAMES = {
    TripStatus.PLANNED: _l("Planned"),
    TripStatus.OPEN: _l("Seats being given"),
    TripStatus.LOCKED: _l("Locked (workers told)"),
    TripStatus.DEPARTED: _l("Departed"),
    TripStatus.ARRIVED: _l("Arrived"),
    TripStatus.CLOSED: _l("Closed"),
    TripStatus.CANCELLED: _l("Cancelled"),
}

MESSAGES = {
    "trip.missing": _l("This trip no longer exists."),
    "trip.arrives_before_departure": _l("The arrival must be after the departure."),
    "trip.feeder_missing": _l("The connecting trip does not exist or is cancelled."),
    "trip.departs_before_feeder_arrives": _l(
        "This leg would leave before the connecting trip arrives."
    ),
    "trip.onward_departs_before_arrival": _l(
        "The connecting trips %(trips)s would leave before this trip arrives: change their "
        "departure first."
    ),
    "trip.vehicle_inactive": _l("This vehicle is out of service."),
    "trip.vehicle_busy": _l("This vehicle is already on another trip at that time."),
    "trip.outside_window": _l(
        "Request %(request)s leaves from %(first)s to %(last)s: this trip carries its workers "
        "and must leave within those days."
    ),
    "trip.not_editable": _l("This trip can no longer be changed."),
    "trip.policy_fixed_once_seated": _l(
        "Seats have been given under the current policy: take them back before changing it."
    ),
    "trip.day_fixed_once_seated": _l(
        "Seats have been given for this day: take them back before moving the trip to another day."
    ),
    "trip.connection_fixed_once_seated": _l(
        "Seats have been given on this trip as part of its connection: take them back before "
        "changing the trip it connects from."
    ),
    "trip.driver_inactive": _l("One of these drivers is no longer active."),
    "trip.driver_busy": _l("%(driver)s drives trip %(trip)s at an overlapping time."),
    "trip.unknown_seat": _l("There is no such seat on this vehicle."),
    "trip.block_taken_seat": _l("Someone sits on this seat: move them before blocking it."),
    "trip.stale": _l(
        "Someone else changed the seats of this trip since you opened the page. Nothing was "
        "changed; look at the seat map again and repeat your change."
    ),
    "trip.not_seating": _l("Seats can no longer be changed on this trip."),
    "trip.cannot_lock": _l("Only a trip whose seats are being given can be locked."),
    "trip.no_seats": _l("Nobody has a seat on this trip yet: give seats before locking."),
    "trip.cannot_cancel": _l("This trip can no longer be cancelled."),
    "trip.cancel_reason_missing": _l("Say why the trip is cancelled: the employers will read it."),
    "plan.requests_changed": _l(
        "The requests changed since the plan was made (one was cancelled or is no longer "
        "approved). Make the plan again."
    ),
    "plan.vehicles_changed": _l("A vehicle of the plan no longer exists. Make the plan again."),
    "plan.nothing": _l("Choose at least one request and one vehicle."),
    "plan.nothing_ticked": _l("Tick the requests whose route and day to use."),
    "seat.no_such_seat": _l("There is no such seat on this vehicle."),
    "seat.taken": _l("This seat is taken."),
    "seat.blocked": _l("This seat is blocked."),
    "seat.isolation": _l("This seat is in the isolation area, which stays empty."),
    "seat.policy_adjacent": _l(
        "The distancing policy keeps the seats next to a passenger empty; this seat is next to one."
    ),
    "seat.capacity": _l("This carriage already carries as many passengers as the policy allows."),
    "seat.not_waiting": _l(
        "This worker is not planned on this trip, not cleared, or already has a seat that day."
    ),
    "seat.not_seated": _l("This worker has no seat on this trip."),
    "seat.swap_needs_two": _l("Choose two different workers who both have a seat."),
    "seat.conflict": _l(
        "Someone else gave a seat to the same worker at the same moment. Nothing was changed; "
        "please look again."
    ),
}

UNPLACED_NAMES = {
    "capacity": _l("the policy's capacity is used up"),
    "no_seat": _l("no free seat is left that the policy allows"),
}


def message_for(code: str) -> str:
    return str(MESSAGES.get(code, _l("Not valid.")))


def local_moment(day, moment, zone) -> datetime:
    return datetime.combine(day, moment, zone)


class LegForm(FlaskForm):
    """Where and when, and the distancing policy (2020: coaches 50% with the last two rows
    empty; trains about 50% with alternate seats)."""

    origin_region_code = StringField(
        _l("From (region code)"),
        validators=[
            DataRequired(REQUIRED),
            identifier_validator(validate_region_code, REGION_CODE_MESSAGES, REGION_CODE_PATTERN),
        ],
    )
    origin_point = StringField(
        _l("Meeting point"),
        description=_l("Where the workers gather, as they know it: 云阳汽车站东门."),
        validators=[DataRequired(REQUIRED), Length(max=200)],
    )
    origin_address = StringField(
        _l("Meeting point address (for a taxi driver)"), validators=[Optional(), Length(max=200)]
    )
    destination_region_code = StringField(
        _l("To (region code)"),
        validators=[
            DataRequired(REQUIRED),
            identifier_validator(validate_region_code, REGION_CODE_MESSAGES, REGION_CODE_PATTERN),
        ],
    )
    destination_point = StringField(
        _l("Destination"), validators=[DataRequired(REQUIRED), Length(max=200)]
    )
    destination_address = StringField(
        _l("Destination address"), validators=[Optional(), Length(max=200)]
    )
    departs_on = DateField(_l("Departure date"), validators=[DataRequired(REQUIRED), plausible_day])
    departs_time = TimeField(_l("Departure time"), validators=[DataRequired(REQUIRED)])
    arrives_on = DateField(_l("Arrival date"), validators=[DataRequired(REQUIRED), plausible_day])
    arrives_time = TimeField(_l("Arrival time (estimated)"), validators=[DataRequired(REQUIRED)])
    max_load_percent = IntegerField(
        _l("Maximum load (percent of rated seats)"),
        default=50,
        description=_l("2020 rules: 50 for coaches and trains; 100 without distancing."),
        validators=[
            DataRequired(REQUIRED),
            NumberRange(1, 100, _l("A percentage from 1 to 100.")),
        ],
    )
    isolation_rows = IntegerField(
        _l("Rows kept empty at the back (isolation area)"),
        default=2,
        validators=[Optional(), NumberRange(0, 10, _l("From 0 to 10 rows."))],
    )
    alternate_seats = BooleanField(_l("Alternate seats (nobody sits next to anybody)"))
    health_freshness_hours = IntegerField(
        _l("Health certificate valid for (hours before departure)"),
        default=72,
        validators=[
            DataRequired(REQUIRED),
            NumberRange(1, 720, _l("From 1 to 720 hours.")),
        ],
    )
    connects_from_id = SelectField(
        _l("Connects from trip"),
        description=_l("For a leg that carries on from another trip (the coach after the train)."),
        coerce=int,
        validators=[Optional()],
    )

    def leg(self, zone) -> Leg:
        """The validated fields as the services take them (times in ``zone``)."""
        return Leg(
            origin_region_code=self.origin_region_code.data,
            origin_point=self.origin_point.data.strip(),
            origin_address=(self.origin_address.data or "").strip() or None,
            destination_region_code=self.destination_region_code.data,
            destination_point=self.destination_point.data.strip(),
            destination_address=(self.destination_address.data or "").strip() or None,
            departs_at=local_moment(self.departs_on.data, self.departs_time.data, zone),
            arrives_at=local_moment(self.arrives_on.data, self.arrives_time.data, zone),
            max_load_percent=self.max_load_percent.data,
            isolation_rows=self.isolation_rows.data or 0,
            alternate_seats=self.alternate_seats.data,
            health_freshness_hours=self.health_freshness_hours.data,
            connects_from_id=self.connects_from_id.data or None,
        )

    def validate_arrives_time(self, field) -> None:
        if self.departs_on.data and self.departs_time.data and self.arrives_on.data and field.data:
            departs = datetime.combine(self.departs_on.data, self.departs_time.data)
            if datetime.combine(self.arrives_on.data, field.data) <= departs:
                raise ValidationError(MESSAGES["trip.arrives_before_departure"])


class TripForm(LegForm):
    escort_name = StringField(_l("Escort"), validators=[Optional(), Length(max=50)])
    escort_phone = StringField(
        _l("Escort's mobile"),
        validators=[Optional(), identifier_validator(normalize_mobile, MOBILE_MESSAGES)],
    )
    drivers = SelectMultipleField(_l("Drivers"), coerce=int, validators=[Optional()])


class PlanForm(LegForm):
    requests = SelectMultipleField(_l("Approved requests"), coerce=int)
    vehicles = SelectMultipleField(_l("Vehicles available"), coerce=int)


class SeatChangeForm(FlaskForm):
    seats_version = HiddenField()
    entry_id = SelectField(_l("Worker"), coerce=int)
    to_seat = StringField(_l("To seat"), validators=[Optional(), Length(max=16)])
    other_entry_id = SelectField(_l("Swap with"), coerce=int, validators=[Optional()])


class BlockSeatsForm(FlaskForm):
    seats_version = HiddenField()


class CancelTripForm(FlaskForm):
    reason = TextAreaField(
        _l("Why is the trip cancelled?"), validators=[DataRequired(REQUIRED), Length(max=500)]
    )


def plan_problem_text(problem) -> str:
    """What is wrong with a plan (a ``PlanProblem``), as the plan page and the API say it."""
    values = {"planned": problem.planned, "limit": problem.limit}
    if problem.code == "over_capacity":
        return _(
            "%(vehicle)s: %(planned)s planned, but its policy allows %(limit)s.",
            vehicle=problem.subject,
            **values,
        )
    if problem.code == "short":
        return _(
            "%(ref)s: %(planned)s of its %(limit)s waiting workers planned; %(missing)s seats "
            "missing.",
            ref=problem.subject,
            missing=problem.limit - problem.planned,
            **values,
        )
    if problem.code == "already_planned":
        return _(
            "%(ref)s: %(planned)s planned, but only %(limit)s workers wait: the others are "
            "already planned on trips that have not given them a seat yet.",
            ref=problem.subject,
            **values,
        )
    if problem.code == "outside_window":
        return _(
            "%(ref)s: the departure day is outside the request's departure window.",
            ref=problem.subject,
        )
    return _(
        "%(ref)s: %(planned)s planned, but only %(limit)s workers wait.",
        ref=problem.subject,
        **values,
    )


BOARDING_MESSAGES = {
    "boarded": _l("Boarded. Seat %(seat)s."),
    "already_boarded": _l("Already boarded (seat %(seat)s). Nothing recorded again."),
    "wrong_trip": _l("Wrong vehicle: this worker's trip is %(trip)s (%(vehicle)s, %(when)s)."),
    "not_seated": _l("This worker has no seat on any trip."),
    "bad_code": _l(
        "This is not a boarding code: it has 10 letters and digits, for example ABCDE-FGHJK."
    ),
    "unknown_code": _l("No worker has this boarding code."),
    "health_blocked": _l("Do not board: the health certificate does not clear this worker."),
    "fever": _l(
        "Do not board: fever. Take the worker to the isolation point; the employer and the "
        "coordinators are told."
    ),
    "missed_connection": _l(
        "Do not board: this worker did not board the trip before this one. Call the coordinator."
    ),
}
MESSAGES.update(
    {
        "boarding.not_open": _l("Boarding is open only on a locked trip that has not left."),
        "boarding.already_recorded": _l("This worker's boarding is already recorded."),
        "trip.cannot_depart": _l("Only a locked trip can depart."),
        "trip.unaccounted": _l(
            "Some seated workers are neither boarded nor marked as no-show: account for "
            "everyone before departing."
        ),
        "trip.cannot_arrive": _l("Only a trip on the way can arrive."),
        "handover.not_arrived": _l("The handover is possible once the trip has arrived."),
        "handover.done": _l("This handover is already confirmed. Nothing was recorded again."),
        "handover.nothing_due": _l("This trip brings none of this request's workers here."),
        "handover.count": _l("A count of 0 or more."),
        "handover.representative_missing": _l("Who receives the workers?"),
        "handover.note_needed": _l(
            "The count differs from the workers who boarded: say what happened."
        ),
        "entry.cannot_withdraw": _l("This worker can no longer be withdrawn."),
    }
)


def parse_celsius(text: str | None) -> Decimal:
    """A thermometer reading as people type it: 36.8, 36,8 or " 37 "."""
    try:
        value = Decimal((text or "").strip().replace(",", "."))
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not value.is_finite() or not Decimal("34") <= value <= Decimal("43"):
        raise ValueError("out of range")
    return value.quantize(Decimal("0.1"))


class BoardingForm(FlaskForm):
    code = StringField(
        _l("Boarding code"),
        description=_l("Scan the QR code on the worker's phone, or type the code."),
        validators=[DataRequired(REQUIRED), Length(max=40)],
    )
    temperature = StringField(
        _l("Temperature (°C)"), validators=[DataRequired(REQUIRED), Length(max=10)]
    )

    def validate_temperature(self, field) -> None:
        try:
            field.celsius = parse_celsius(field.data)
        except ValueError:
            raise ValidationError(
                _l("A body temperature between 34 and 43 °C, for example 36.8.")
            ) from None


class HandoverForm(FlaskForm):
    received = IntegerField(
        _l("Workers received"),
        validators=[InputRequired(REQUIRED), NumberRange(0, 10000, MESSAGES["handover.count"])],
    )
    representative_name = StringField(
        _l("Received by (name)"), validators=[DataRequired(REQUIRED), Length(max=50)]
    )
    note = TextAreaField(
        _l("Note (required when the count differs)"), validators=[Optional(), Length(max=1000)]
    )
