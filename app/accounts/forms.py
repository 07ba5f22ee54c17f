from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.core.forms import (
    CREDIT_CODE_MESSAGES,
    REGION_CODE_MESSAGES,
    REGION_CODE_PATTERN,
    identifier_validator,
)
from app.core.identity import validate_credit_code, validate_region_code

DOMAIN_ERRORS = {
    "credit_code.taken": _l("An organization with this credit code is already registered."),
    "email.taken": _l("An account with this email address already exists."),
}


class SignInForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[DataRequired(_l("Please enter your email address.")), Length(max=254)],
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(_l("Please enter your password.")), Length(max=200)],
    )
    remember = BooleanField(_l("Keep me signed in on this device"))


class OrganizationForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[DataRequired(_l("Please enter the organization's name.")), Length(max=200)],
    )
    credit_code = StringField(
        _l("Unified social credit code"),
        validators=[
            DataRequired(_l("Please enter the unified social credit code.")),
            identifier_validator(validate_credit_code, CREDIT_CODE_MESSAGES),
        ],
        description=_l("18 characters, as printed on the business licence."),
    )
    region_code = StringField(
        _l("Region code"),
        validators=[
            Optional(),
            identifier_validator(validate_region_code, REGION_CODE_MESSAGES, REGION_CODE_PATTERN),
        ],
        description=_l(
            "Six-digit GB/T 2260 code of the county where the organization is registered."
        ),
    )
