from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from app.core.forms import REQUIRED


class TokenForm(FlaskForm):
    name = StringField(
        _l("What the token is for"),
        description=_l("For example: HR system roster sync."),
        validators=[DataRequired(REQUIRED), Length(max=100)],
    )
