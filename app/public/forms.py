"""Forms of the worker-facing pages (no account)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField, ValidationError
from wtforms.validators import DataRequired, Length, Regexp

from app.trips.services import normalize_booking_code

# One answer for every miss, whatever was wrong: it must not tell whether a booking code exists.
NO_MATCH = _l(
    "No trip matches this booking code and these digits. Check both and try again; "
    "your employer can help."
)


def _booking_code_shape(form: FlaskForm, field: StringField) -> None:
    """A hint for a code that cannot be one (the shape is public: this reveals nothing)."""
    if field.data and normalize_booking_code(field.data) is None:
        raise ValidationError(
            _l("A booking code has 10 letters and digits, for example ABCDE-FGHJK.")
        )


class LookupForm(FlaskForm):
    booking_code = StringField(
        _l("Booking code"),
        validators=[
            DataRequired(_l("Please enter the booking code from your text message.")),
            Length(max=40),
            _booking_code_shape,
        ],
        description=_l("In the text message that gave you your seat, for example ABCDE-FGHJK."),
        render_kw={
            "autocomplete": "off",
            "autocapitalize": "characters",
            "spellcheck": "false",
            "maxlength": "40",
        },
    )
    phone_last4 = StringField(
        _l("Last 4 digits of your mobile number"),
        validators=[
            DataRequired(_l("Please enter the last 4 digits of your mobile number.")),
            Regexp(r"^\s*\d{4}\s*$", message=_l("Please enter exactly 4 digits.")),
        ],
        description=_l("The mobile number your employer has for you."),
        render_kw={"autocomplete": "off", "inputmode": "numeric", "maxlength": "4"},
    )

    def forget_input(self) -> None:
        """After a miss the page shows nothing of what was typed: every miss looks the same."""
        for field in (self.booking_code, self.phone_last4):
            field.data = ""
            field.raw_data = []
