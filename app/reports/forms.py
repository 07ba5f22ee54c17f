from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, Field, TextAreaField
from wtforms.validators import Length, Optional, ValidationError
from wtforms.widgets import TextInput

from app.core.forms import plausible_day
from app.reports.services import MAX_WINDOW_DAYS, parse_amount

AMOUNT_HELP = _l("Yuan, for example 3200 or 3200.50. Leave empty if not known yet; 0 if waived.")

MESSAGES = {
    "cost.not_a_number": _l("A sum in yuan with digits only, for example 3200 or 3200.50."),
    "cost.negative": _l("A cost cannot be negative."),
    "cost.decimals": _l("At most two decimals (fen), for example 3200.50."),
    "cost.too_large": _l("This sum is too large."),
    "cost.note_too_long": _l("Too long."),
}

FUNNEL_NAMES = {
    "registered": _l("On a request"),
    "cleared": _l("Health cleared"),
    "seated": _l("Seated"),
    "boarded": _l("Boarded"),
    "arrived": _l("Arrived"),
}

PART_NAMES = {
    "hire": _l("Hire or fares"),
    "meals": _l("Meals"),
    "tolls": _l("Tolls"),
}

CHANNEL_NAMES = {
    "sms": _l("Text message"),
    "email": _l("Email"),
    "inapp": _l("In the service"),
}

NOTIFICATION_STATUS_NAMES = {
    "pending": _l("Waiting"),
    "sending": _l("Sending"),
    "sent": _l("Sent"),
    "failed": _l("Failed"),
    "dead": _l("Gave up"),
}


class AmountField(Field):
    """A sum of yuan; empty means "not recorded" (None), which is not 0."""

    widget = TextInput()

    def process_formdata(self, valuelist) -> None:
        self.data = None
        if valuelist:
            try:
                self.data = parse_amount(valuelist[0])
            except ValueError:
                raise ValueError(str(MESSAGES["cost.not_a_number"])) from None

    def _value(self) -> str:
        if self.process_errors and self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else str(self.data)


class TripCostForm(FlaskForm):
    hire = AmountField(_l("Hire or fares (¥)"), description=AMOUNT_HELP)
    meals = AmountField(_l("Meals (¥)"), description=AMOUNT_HELP)
    tolls = AmountField(_l("Tolls (¥)"), description=AMOUNT_HELP)
    note = TextAreaField(
        _l("Note (invoice numbers, who paid)"),
        validators=[Optional(), Length(max=2000, message=MESSAGES["cost.note_too_long"])],
    )


class RangeForm(FlaskForm):
    """The dashboard's date range, read from the query string."""

    class Meta:
        csrf = False

    date_from = DateField(_l("First day"), name="from", validators=[Optional(), plausible_day])
    date_to = DateField(_l("Last day"), name="to", validators=[Optional(), plausible_day])

    def validate_date_to(self, field) -> None:
        if field.data and self.date_from.data:
            if field.data < self.date_from.data:
                raise ValidationError(_l("The end must not be before the start."))
            if (field.data - self.date_from.data).days >= MAX_WINDOW_DAYS:
                raise ValidationError(_l("At most %(days)s days at a time.", days=MAX_WINDOW_DAYS))
