"""Form helpers shared by every domain."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, ValidationError

from app.core.errors import DomainError
from app.core.identity import InvalidIdentifier
from app.extensions import db

REQUIRED = _l("This field is required.")

CREDIT_CODE_MESSAGES = {
    "empty": REQUIRED,
    "length": _l("Must be exactly 18 characters."),
    "characters": _l("Contains characters that cannot appear here (I, O, S, V and Z never do)."),
    "check": _l("The check character does not match: please compare every character again."),
}
REGION_CODE_PATTERN = r"^\d{6}$"
REGION_CODE_MESSAGES = {
    "empty": REQUIRED,
    "format": _l("Must be a six-digit region code, for example 500106."),
}
ID_NUMBER_MESSAGES = {
    "empty": REQUIRED,
    "excel_number": _l(
        "Excel has already lost digits of this number — format the column as text and type "
        "the number again."
    ),
    "old_15_digit": _l(
        "This is an old 15-digit ID number; please enter the 18-digit number on the current card."
    ),
    "length": _l("An ID number has 18 characters."),
    "characters": _l("An ID number is 17 digits followed by a digit or X."),
    "birth_date": _l("The birth date in this ID number does not exist."),
    "future_birth_date": _l("The birth date in this ID number is in the future."),
    "check": _l("The last character does not match the others: please check for a typo."),
    "too_young": _l("This person is younger than %(min_age)s on the travel date."),
    "too_old": _l("This person is older than %(max_age)s on the travel date."),
}
MOBILE_MESSAGES = {
    "empty": REQUIRED,
    "characters": _l("A mobile number has only digits."),
    "landline": _l("This looks like a landline; a mobile number is needed for text messages."),
    "length": _l("A mobile number has 11 digits."),
    "pattern": _l("Not a mainland mobile number (11 digits starting with 13 to 19)."),
}


def identifier_validator(
    validate: Callable[[str], str], messages: Mapping[str, str], pattern: str | None = None
) -> Callable[[FlaskForm, Field], None]:
    """A WTForms validator that runs a pure identity check and keeps its canonical value.
    ``pattern`` (a regular expression every accepted value matches) describes it in the API
    document."""

    def check(form: FlaskForm, field: Field) -> None:
        if not field.data:
            return
        try:
            field.data = validate(field.data)
        except InvalidIdentifier as error:
            raise ValidationError(messages[error.reason]) from error

    check.pattern = pattern  # type: ignore[attr-defined]
    return check


def save_or_show(
    form: FlaskForm, operation: Callable[[], object], messages: Mapping[str, str]
) -> bool:
    """Run a form's service operation: commit when it passes, or roll back and put its
    refusal next to the field concerned. True when saved."""
    try:
        operation()
    except DomainError as error:
        db.session.rollback()
        show_domain_error(form, error, messages)
        return False
    db.session.commit()
    return True


def show_domain_error(form: FlaskForm, error: DomainError, messages: Mapping[str, str]) -> None:
    """Put a service's refusal next to the field it concerns (or at the top of the form)."""
    message = messages.get(error.code, _l("This could not be saved."))
    if error.params:
        message = str(message) % error.params
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, message]
    else:
        form.form_errors.append(message)
