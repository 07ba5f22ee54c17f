from __future__ import annotations

from collections.abc import Callable

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Field,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from app.core.errors import DomainError
from app.core.forms import MOBILE_MESSAGES, REQUIRED, identifier_validator
from app.core.identity import normalize_mobile
from app.fleet import services
from app.fleet.models import VehicleKind
from app.trips.seatmaps import SeatMapError, available_templates, build_vehicle

TOO_LONG = _l("Too long.")
PLATE_EXAMPLE = _l(
    "Not a plate number: a province character, a letter and 5 or 6 letters or digits, for "
    "example 鲁A12345 (or 渝BD12345 on a new-energy coach)."
)
TRAIN_EXAMPLE = _l(
    "Not a train number: an optional letter (G, D, C, Z, T, K, Y, L or S) and 1 to 4 digits, "
    "for example K4016."
)
FLIGHT_EXAMPLE = _l(
    "Not a flight number: the airline's two-character code and 1 to 4 digits, for example CA1234."
)

# Every refusal of app/fleet/services.py, as the sentence a person reads.
MESSAGES = {
    "name.empty": REQUIRED,
    "name.too_long": TOO_LONG,
    "name.taken": _l("An operator with this name is already registered."),
    "contact_name.too_long": TOO_LONG,
    "contact_phone.too_long": TOO_LONG,
    "contact_phone.format": _l("Digits only, e.g. 0531-88886666 or 13800138000."),
    "kind.unknown": _l("Choose the kind of vehicle."),
    "identifier.empty": REQUIRED,
    "identifier.plate": PLATE_EXAMPLE,
    "identifier.train_number": TRAIN_EXAMPLE,
    "identifier.flight_number": FLIGHT_EXAMPLE,
    "identifier.taken": _l("This operator already has a vehicle with this number."),
    "identifier.in_service_elsewhere": _l(
        "%(number)s is already in service under %(operator)s: one vehicle cannot run for two "
        "operators. Take it out of service there first."
    ),
    "carriages.reserved_elsewhere": _l(
        "Carriages %(carriages)s of %(number)s are already reserved under %(operator)s: choose "
        "carriages that do not overlap them."
    ),
    "template.unknown": _l("Choose a seat map from the list."),
    "template.invalid": _l(
        "This seat-map template cannot be read; an administrator must fix config/seatmaps/."
    ),
    "template.not_coach": _l("A coach needs a coach seat map."),
    "template.not_train": _l("A train needs a train-carriage seat map."),
    "template.not_aircraft": _l("An aircraft needs an aircraft seat map."),
    "carriages.range": _l("A train has 1 to 30 reserved carriages."),
    "carriages.single": _l("A coach or an aircraft has exactly one carriage."),
    "first_carriage.range": _l(
        "Carriage numbers run from 1 to 99: the first carriage is too high for this many."
    ),
    "first_carriage.single": _l("A coach or an aircraft is carriage 1."),
    "vehicle.in_use": _l(
        "Trips that have not yet arrived use this vehicle: its seat map cannot change until "
        "they have."
    ),
    "blocked_seats.unknown": _l("Some of these seats do not exist on this vehicle."),
    "blocked_seats.assigned": _l(
        "A seat you chose is already given to a worker on a coming trip: move the worker first."
    ),
    **{f"phone.{reason}": message for reason, message in MOBILE_MESSAGES.items()},
    "licence_number.empty": REQUIRED,
    "licence_number.format": _l(
        "A licence number has 12 to 18 letters and digits, for example 37010219800101123X."
    ),
    "licence_number.taken": _l("A driver with this licence number is already registered."),
}

KIND_NAMES = {
    VehicleKind.COACH.value: _l("Chartered coach"),
    VehicleKind.TRAIN.value: _l("Train (reserved carriages)"),
    VehicleKind.AIRCRAFT.value: _l("Charter flight"),
}
# Seat-map templates shipped in config/seatmaps/; a template added later shows the
# description from its file until it is named here.
TEMPLATE_NAMES = {
    "coach-33": _l("Mid-size coach, 33 seats (2+2, back row of 5)"),
    "coach-45": _l("Coach, 45 seats (2+2, back row of 5)"),
    "coach-53": _l("Long coach, 53 seats (2+2, back row of 5)"),
    "train-hard-seat-118": _l("Hard-seat carriage, 118 seats (3+2)"),
    "train-second-class-90": _l("High-speed second-class carriage, 90 seats (3+2)"),
    "aircraft-180": _l("Narrow-body aircraft, 180 seats (3+3)"),
}
_KIND_OF_TEMPLATE_KIND = {value: key for key, value in services.TEMPLATE_KINDS.items()}


def template_name(template: str) -> str:
    """A seat-map template as a person calls it."""
    if template in TEMPLATE_NAMES:
        return str(TEMPLATE_NAMES[template])
    try:
        return build_vehicle(template, 1).description or template
    except SeatMapError:
        return template


def template_choices() -> dict[str, list[SelectChoice]]:
    """Templates grouped by the kind of vehicle they fit (option groups)."""
    by_kind: dict[str, list[SelectChoice]] = {kind: [] for kind in KIND_NAMES}
    for template in available_templates():
        try:
            kind = _KIND_OF_TEMPLATE_KIND[services.template_kind(template)]
        except (SeatMapError, KeyError):
            continue
        by_kind[kind.value].append(SelectChoice(template, template_name(template)))
    return {str(KIND_NAMES[kind]): choices for kind, choices in by_kind.items() if choices}


def _domain_check(check: Callable) -> Callable[[FlaskForm, Field], None]:
    """A WTForms validator running a pure check of services.py, with its message."""

    def validate(form: FlaskForm, field: Field) -> None:
        if not field.data:
            return
        try:
            field.data = check(form, field.data)
        except DomainError as error:
            raise ValidationError(MESSAGES[error.code]) from error

    return validate


class _FleetForm(FlaskForm):
    """Fleet forms share pages (an operator's page holds three): ``id_prefix`` keeps the
    HTML ids apart, while the field names (what is posted) stay plain."""

    id_prefix = ""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self:
            field.id = f"{self.id_prefix}{field.id}"
            field.label.field_id = field.id

    def values(self) -> dict:
        """The fields as the service takes them."""
        return {name: field.data for name, field in self._fields.items() if name != "csrf_token"}


class OperatorForm(_FleetForm):
    id_prefix = "operator-"

    name = StringField(
        _l("Operator name"),
        validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)],
        description=_l("The transport company, railway bureau or airline."),
    )
    contact_name = StringField(
        _l("Contact person"), validators=[Optional(), Length(max=50, message=TOO_LONG)]
    )
    contact_phone = StringField(
        _l("Contact phone"), validators=[Optional(), Length(max=20, message=TOO_LONG)]
    )


class VehicleForm(_FleetForm):
    id_prefix = "vehicle-"

    kind = SelectField(
        _l("Kind"),
        choices=[SelectChoice(kind, label) for kind, label in KIND_NAMES.items()],
        default=VehicleKind.COACH.value,
    )
    identifier = StringField(
        _l("Plate, train or flight number"),
        validators=[
            DataRequired(REQUIRED),
            _domain_check(
                lambda form, value: services.normalize_vehicle_identifier(
                    form.kind.data if form.kind.data in KIND_NAMES else VehicleKind.COACH, value
                )
            ),
        ],
        description=_l("For example 鲁A12345, K4016 or CA1234."),
    )
    template = SelectField(
        _l("Seat map"),
        choices=[],
        validators=[
            _domain_check(
                lambda form, value: services.check_template(
                    form.kind.data if form.kind.data in KIND_NAMES else VehicleKind.COACH, value
                )
            )
        ],
    )
    first_carriage = IntegerField(
        _l("First carriage number"),
        default=1,
        validators=[
            InputRequired(REQUIRED),
            NumberRange(
                min=1, max=services.MAX_CARRIAGE_NUMBER, message=MESSAGES["first_carriage.range"]
            ),
        ],
        description=_l("Trains: the first reserved carriage, e.g. 3 for carriages 03 to 08."),
    )
    carriages = IntegerField(
        _l("Number of carriages"),
        default=1,
        validators=[
            InputRequired(REQUIRED),
            NumberRange(
                min=1, max=services.MAX_TRAIN_CARRIAGES, message=MESSAGES["carriages.range"]
            ),
        ],
        description=_l("1 for a coach or an aircraft."),
    )
    notes = TextAreaField(_l("Notes"), validators=[Length(max=2000, message=TOO_LONG)])
    active = BooleanField(_l("In service"), default=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.template.choices = template_choices()


class DriverForm(_FleetForm):
    id_prefix = "driver-"

    name = StringField(
        _l("Driver's name"), validators=[DataRequired(REQUIRED), Length(max=50, message=TOO_LONG)]
    )
    phone = StringField(
        _l("Mobile"),
        validators=[
            DataRequired(REQUIRED),
            identifier_validator(normalize_mobile, MOBILE_MESSAGES),
        ],
        description=_l("A work number: workers on the driver's trips receive it."),
    )
    licence_number = StringField(
        _l("Driving licence number"),
        validators=[
            DataRequired(REQUIRED),
            _domain_check(lambda form, value: services.normalize_licence_number(value)),
        ],
        description=_l("Usually the driver's ID number. Stored encrypted, shown masked."),
    )
    active = BooleanField(_l("Available"), default=True)


class BlockedSeatsForm(FlaskForm):
    # The seats come from the checkboxes of the seat map; the service checks each label.
    blocked_seats = SelectMultipleField(_l("Blocked seats"), validate_choice=False)
