"""Form helpers shared by every domain."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, ValidationError

from app.core.errors import DomainError
from app.core.identity import InvalidIdentifier

IDENTIFIER_REASONS = {
    "empty": _l("This field is required."),
    "length": _l("Must be exactly 18 characters."),
    "characters": _l("Contains characters that cannot appear here (I, O, S, V and Z never do)."),
    "check": _l("The check character does not match: please compare every character again."),
    "format": _l("Must be a six-digit region code, for example 500106."),
}


def identifier_validator(validate: Callable[[str], str]) -> Callable[[FlaskForm, Field], None]:
    """A WTForms validator that runs a pure identity check and keeps its canonical value."""

    def check(form: FlaskForm, field: Field) -> None:
        if not field.data:
            return
        try:
            field.data = validate(field.data)
        except InvalidIdentifier as error:
            raise ValidationError(IDENTIFIER_REASONS[error.reason]) from error

    return check


def show_domain_error(form: FlaskForm, error: DomainError, messages: Mapping[str, str]) -> None:
    """Put a service's refusal next to the field it concerns (or at the top of the form)."""
    message = messages.get(error.code, _l("This could not be saved."))
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, message]
    else:
        form.form_errors.append(message)
