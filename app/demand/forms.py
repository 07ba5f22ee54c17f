from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from babel.lists import format_list
from flask import current_app
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, FileSize
from wtforms import DateField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from app.core.forms import (
    ID_NUMBER_MESSAGES,
    MOBILE_MESSAGES,
    REGION_CODE_MESSAGES,
    REGION_CODE_PATTERN,
    REQUIRED,
    identifier_validator,
)
from app.core.identity import validate_region_code
from app.demand.models import EntryStatus, RequestStatus, TravelMode
from app.demand.roster import COLUMNS, AgeRule, WorkerData, check_worker
from app.health.forms import INPUT_PROBLEMS

TOO_LONG = _l("Too long.")
NUL_BYTE = _l(
    "This cell holds an invisible control character (NUL) that cannot be saved: type it again."
)

# Every reason code a check can give, as the sentence a person reads.
MESSAGES = {
    **{f"id_number.{reason}": message for reason, message in ID_NUMBER_MESSAGES.items()},
    **{f"phone.{reason}": message for reason, message in MOBILE_MESSAGES.items()},
    **{f"emergency_contact_phone.{reason}": msg for reason, msg in MOBILE_MESSAGES.items()},
    **{f"home_region_code.{reason}": msg for reason, msg in REGION_CODE_MESSAGES.items()},
    "name.empty": REQUIRED,
    **{f"{column.field}.too_long": TOO_LONG for column in COLUMNS},
    **{f"{column.field}.nul_byte": NUL_BYTE for column in COLUMNS},
    "id_number.duplicate_in_file": _l("The same ID number is also in row %(other_row)s."),
    "id_number.on_roster": _l("A worker with this ID number is already on your roster."),
    "name.differs_on_roster": _l(
        "This ID number is on your roster under the name %(place)s: correct the name or the ID."
    ),
    "id_number.on_own_request": _l("Already on your live request %(place)s."),
    "id_number.on_other_request": _l(
        "Already on another employer's live request: a worker cannot hold two places home."
    ),
    "columns.missing": _l("This required column is missing from the file."),
    "columns.duplicate": _l("This column appears twice in the file."),
    "file.format": _l("Only .xlsx and .csv files can be imported (save .xls files as .xlsx)."),
    "file.unreadable": _l(
        "The file could not be read: is it really an Excel (.xlsx) or CSV file, and not damaged?"
    ),
    "file.empty": _l("The file is empty."),
    "file.no_rows": _l("The file has the column headers but no workers under them."),
    "file.concurrent": _l(
        "Another import changed your roster at the same moment. Nothing was saved from this "
        "file; please import it again."
    ),
    "file.too_many_rows": _l("The file has too many rows; please split it."),
    "file.too_large": _l("The file is larger than 10 MB; please split it."),
    "file.internal_error": _l(
        "The import stopped because of an error on our side. Nothing was saved; please try again."
    ),
    "worker.on_request": _l(
        "This worker is on request %(reference)s and cannot be removed: withdraw them from it "
        "first."
    ),
    "worker.on_past_request": _l(
        "This worker stays on the roster: request %(reference)s lists them, and its record must "
        "stay whole."
    ),
    "workers.not_on_roster": _l("Only workers on your roster can be added."),
    "workers.on_other_request": _l(
        "Some of these workers are already on another live request: a worker cannot hold two "
        "places home. Withdraw them from the other request first."
    ),
    "workers.age": _l(
        "Some of these workers are outside the allowed age (%(min_age)s to %(max_age)s) on the "
        "departure date."
    ),
    "request.frozen": _l("This request can no longer be changed this way."),
    "request.no_workers": _l("Add at least one worker before submitting."),
    "request.cannot_submitted": _l("Only a draft can be submitted."),
    "request.cannot_withdrawn": _l("Only a submitted request can be taken back."),
    "request.cannot_cancelled": _l("This request can no longer be cancelled."),
    "request.cannot_approved": _l("Only a submitted request can be approved."),
    "request.cannot_rejected": _l("Only a submitted request can be rejected."),
    "entry.cannot_withdraw": _l("This worker can no longer be withdrawn."),
    "latest_departure.before_earliest": _l("The latest departure is before the earliest."),
    "earliest_departure.past": _l("The earliest departure date has passed."),
    "departure.too_far": _l("The departure is more than a year ahead: check the year."),
    "decision_reason.required": _l("Please give the reason; the employer will see it."),
    "request.stale": _l("Someone else changed this request meanwhile; please look again."),
    **INPUT_PROBLEMS,
    **{
        f"health_pass.{code[5:]}": message
        for code, message in INPUT_PROBLEMS.items()
        if code.startswith("pass.")
    },
}

REQUEST_STATUS_NAMES = {
    RequestStatus.DRAFT: _l("Draft"),
    RequestStatus.SUBMITTED: _l("Submitted"),
    RequestStatus.APPROVED: _l("Approved"),
    RequestStatus.REJECTED: _l("Rejected"),
    RequestStatus.SCHEDULED: _l("Scheduled"),
    RequestStatus.COMPLETED: _l("Completed"),
    RequestStatus.CANCELLED: _l("Cancelled"),
}
ENTRY_STATUS_NAMES = {
    EntryStatus.PENDING: _l("Pending check"),
    EntryStatus.CLEARED: _l("Cleared"),
    EntryStatus.BLOCKED: _l("Blocked"),
    EntryStatus.SEATED: _l("Seated"),
    EntryStatus.BOARDED: _l("Boarded"),
    EntryStatus.ARRIVED: _l("Arrived"),
    EntryStatus.NO_SHOW: _l("No-show"),
    EntryStatus.WITHDRAWN: _l("Withdrawn"),
}
MODE_NAMES = {
    TravelMode.ANY: _l("Coach or train"),
    TravelMode.COACH: _l("Chartered coach"),
    TravelMode.TRAIN: _l("Train"),
}


NAMED_AT_MOST = 10


def named(people: Sequence[str]) -> str:
    """Up to ten people by name, then how many more: enough for the employer to act on."""
    shown = list(people[:NAMED_AT_MOST])
    if len(people) > NAMED_AT_MOST:
        rest = len(people) - NAMED_AT_MOST
        shown.append(ngettext("%(num)d more", "%(num)d more", rest))
    return format_list(shown, locale=get_locale())


def _held(name: str, reference: str) -> str:
    if reference:
        return _("%(name)s (your request %(reference)s)", name=name, reference=reference)
    return _("%(name)s (another employer's request)", name=name)


def message_for(code: str, **params: object) -> str:
    """The sentence for a reason code, with its details filled in: ``workers`` (names) or
    ``held`` ((name, reference of the employer's own request or "") pairs) say who."""
    config = current_app.config
    values = {"min_age": config["WORKER_MIN_AGE"], "max_age": config["WORKER_MAX_AGE"], **params}
    text = str(MESSAGES.get(code, _l("Not valid."))) % values
    held: Sequence[tuple[str, str]] = params.get("held") or ()  # type: ignore[assignment]
    people: Sequence[str] = params.get("workers") or [_held(*pair) for pair in held]  # type: ignore[assignment]
    if people:
        text = _("%(reason)s Who: %(people)s.", reason=text, people=named(people))
    return text


def problem_text(problem: dict) -> str:
    return message_for(
        problem["reason"], other_row=problem.get("other_row"), place=problem.get("place")
    )


class WorkerForm(FlaskForm):
    """The fields are checked by the same rules as an imported row (demand/roster.py)."""

    name = StringField(_l("Full name"))
    id_number = StringField(_l("ID number"))
    phone = StringField(_l("Mobile"))
    home_region_code = StringField(
        _l("Home county code"), description=_l("Six-digit GB/T 2260 code, for example 500235.")
    )
    home_region_name = StringField(_l("Home county"))
    group_tag = StringField(
        _l("Group"), description=_l("Village or family: people of one group are seated together.")
    )
    emergency_contact_name = StringField(_l("Emergency contact"))
    emergency_contact_phone = StringField(_l("Emergency contact phone"))
    health_pass = TextAreaField(
        _l("Health pass"),
        description=_l("Paste the text of the health-pass QR code, or upload a photo of it below."),
    )
    health_pass_image = FileField(
        _l("Photo or screenshot of the health-pass QR code"),
        validators=[
            FileAllowed(["png", "jpg", "jpeg", "webp"], _l("A PNG or JPEG picture, please.")),
            FileSize(8 * 1024 * 1024, message=_l("At most 8 MB, please.")),
        ],
    )

    worker: WorkerData | None = None

    def check_worker(self, today: date, age_rule: AgeRule) -> bool:
        values = {column.field: getattr(self, column.field).data for column in COLUMNS}
        values["health_pass"] = None  # read with the trust list by the view, not as text
        checked = check_worker(values, today, age_rule)
        if isinstance(checked, WorkerData):
            self.worker = checked
            return True
        for problem in checked:
            field = getattr(self, problem.reason.split(".")[0])
            field.errors = [*field.errors, problem_text(vars(problem))]
        return False


class RosterImportForm(FlaskForm):
    file = FileField(
        _l("Roster file (.xlsx or .csv)"),
        validators=[FileRequired(_l("Please choose a file."))],
    )


PHONE_PATTERN = Regexp(
    r"^\+?[\d\s()-]{7,20}$", message=_l("Digits only, e.g. 0531-88886666 or 13800138000.")
)


def _after_earliest(form: FlaskForm, field) -> None:
    if form.earliest_departure.data and field.data and field.data < form.earliest_departure.data:
        raise ValidationError(MESSAGES["latest_departure.before_earliest"])


class TransportRequestForm(FlaskForm):
    origin_region_code = StringField(
        _l("Origin county code"),
        validators=[
            DataRequired(REQUIRED),
            identifier_validator(validate_region_code, REGION_CODE_MESSAGES, REGION_CODE_PATTERN),
        ],
        description=_l("Six-digit GB/T 2260 code of the county the workers leave from."),
    )
    origin_region_name = StringField(
        _l("Origin (province, city, county)"),
        validators=[DataRequired(REQUIRED), Length(max=100, message=TOO_LONG)],
    )
    pickup_point = StringField(
        _l("Pickup point"),
        validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)],
        description=_l("For example the county bus station or a railway station."),
    )
    pickup_address = StringField(
        _l("Pickup address"), validators=[Optional(), Length(max=200, message=TOO_LONG)]
    )
    destination_region_code = StringField(
        _l("Destination county code"),
        validators=[
            DataRequired(REQUIRED),
            identifier_validator(validate_region_code, REGION_CODE_MESSAGES, REGION_CODE_PATTERN),
        ],
    )
    destination_region_name = StringField(
        _l("Destination (province, city, county)"),
        validators=[DataRequired(REQUIRED), Length(max=100, message=TOO_LONG)],
    )
    site_name = StringField(
        _l("Work site"), validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)]
    )
    site_address = StringField(
        _l("Work site address"),
        validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)],
    )
    site_contact_name = StringField(
        _l("Contact person at the site"),
        validators=[DataRequired(REQUIRED), Length(max=50, message=TOO_LONG)],
    )
    site_contact_phone = StringField(
        _l("Contact phone at the site"), validators=[DataRequired(REQUIRED), PHONE_PATTERN]
    )
    earliest_departure = DateField(
        _l("Earliest departure"),
        validators=[DataRequired(_l("Please give a date."))],
        description=_l("Also the date the workers' ages are checked for."),
    )
    latest_departure = DateField(
        _l("Latest departure"),
        validators=[DataRequired(_l("Please give a date.")), _after_earliest],
    )
    preferred_mode = SelectField(
        _l("Preferred transport"),
        choices=[SelectChoice(mode.value, label) for mode, label in MODE_NAMES.items()],
        default=TravelMode.ANY.value,
    )

    def fields_dict(self) -> dict:
        return {name: getattr(self, name).data for name in self._fields if name != "csrf_token"}


class DecisionForm(FlaskForm):
    reason = TextAreaField(
        _l("Reason (the employer sees it)"), validators=[Length(max=1000, message=TOO_LONG)]
    )
