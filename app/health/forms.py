from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileSize
from wtforms import DateField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.core.forms import (
    REGION_CODE_MESSAGES,
    REGION_CODE_PATTERN,
    REQUIRED,
    identifier_validator,
    plausible_day,
)
from app.core.identity import validate_region_code

TOO_LONG = _l("Too long.")

# What each health rule's reason code means to a person (health/rules.py gives the codes).
HEALTH_REASONS = {
    "no_certificate": _l("No health certificate yet."),
    "unreadable": _l("The health pass cannot be read."),
    "unknown_kid": _l("The pass was signed by an issuer that is not on the trust list."),
    "signature_invalid": _l("The pass's signature is not valid: it was altered or forged."),
    "issuer_revoked": _l("The issuer of this pass is no longer trusted."),
    "issuer_not_valid_at_issue": _l("The issuer's key was not valid when the pass was issued."),
    "issuer_mismatch": _l("The pass names a different issuing region than its key."),
    "wrong_id_number": _l("The pass belongs to another ID number."),
    "wrong_name": _l("The name on the pass differs from the roster."),
    "status_not_green": _l("The health status on the certificate is not green."),
    "not_yet_valid": _l("The certificate is issued after the departure."),
    "expired_at_departure": _l("The certificate expires before the departure."),
    "too_old_at_departure": _l(
        "The certificate is too old at departure (issued more than %(hours)s hours before)."
    ),
    "jti_reused": _l("This pass is already used by another person."),
    "fever": _l("Temperature at or above %(celsius)s °C: not boarded, to be seen by a doctor."),
}

# Problems with what was typed, pasted or uploaded.
INPUT_PROBLEMS = {
    "pass.empty": _l("The health pass is empty."),
    "pass.too_long": _l("This text is too long to be a health pass."),
    "pass.not_jws": _l("This is not a health pass: copy the whole text of the QR code."),
    "pass.header_too_large": _l("This is not a health pass (its header is too large)."),
    "pass.algorithm": _l("This pass is not signed the way health passes are (ES256): refused."),
    "pass.no_kid": _l("This pass does not say which key signed it."),
    "pass.claims": _l("This pass lacks some of the information a health pass carries."),
    "qr.not_an_image": _l("The file is not a picture we can read (use PNG or JPEG)."),
    "qr.no_qr": _l("No QR code was found in this picture: take a sharper, closer photo."),
    "key.unreadable": _l("This is neither a JWK nor a PEM public key."),
    "key.not_ec_p256": _l("Only EC P-256 keys are accepted."),
    "key.exists": _l("An issuer with this key is already on the trust list."),
    "valid_until.before_valid_from": _l("Must be after the start of validity."),
    "valid_until.before_issued_on": _l("Must not be before the issue date."),
    "revoked_reason.required": _l("Please give the reason for revoking."),
    "override_note.required": _l("Please write why this worker may travel anyway."),
    "entry.not_blocked": _l("This worker is not blocked."),
}

STATUS_NAMES = {"green": _l("Green"), "yellow": _l("Yellow"), "red": _l("Red")}


class IssuerForm(FlaskForm):
    name = StringField(
        _l("Issuer name"), validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)]
    )
    region_code = StringField(
        _l("Region code"),
        validators=[
            DataRequired(REQUIRED),
            identifier_validator(validate_region_code, REGION_CODE_MESSAGES, REGION_CODE_PATTERN),
        ],
        description=_l("The region code the issuer puts in its passes (claim iss)."),
    )
    public_key = TextAreaField(
        _l("Public key (JWK or PEM)"),
        validators=[DataRequired(REQUIRED), Length(max=5000, message=TOO_LONG)],
        description=_l("EC P-256. The key id is its RFC 7638 thumbprint."),
    )
    valid_from = DateField(_l("Valid from"), validators=[DataRequired(REQUIRED), plausible_day])
    valid_until = DateField(
        _l("Valid until"),
        validators=[Optional(), plausible_day],
        description=_l("Empty: no end date."),
    )


class IssuerEditForm(FlaskForm):
    name = IssuerForm.name
    valid_from = IssuerForm.valid_from
    valid_until = IssuerForm.valid_until


class RevokeForm(FlaskForm):
    reason = TextAreaField(_l("Why revoke it?"), validators=[Length(max=1000, message=TOO_LONG)])


class PaperCertificateForm(FlaskForm):
    clinic = StringField(
        _l("Issuing clinic"),
        validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)],
        description=_l("For example 云阳县龙洞镇卫生院."),
    )
    certificate_number = StringField(
        _l("Certificate number"),
        validators=[DataRequired(REQUIRED), Length(max=100, message=TOO_LONG)],
    )
    issued_on = DateField(_l("Issue date"), validators=[DataRequired(REQUIRED), plausible_day])
    valid_until = DateField(_l("Valid until"), validators=[DataRequired(REQUIRED), plausible_day])
    status = SelectField(
        _l("Health status"),
        choices=[SelectChoice(value, label) for value, label in STATUS_NAMES.items()],
    )
    scan = FileField(
        _l("Scan or photo of the certificate"),
        validators=[
            FileAllowed(["jpg", "jpeg", "png", "pdf"], _l("A JPEG, PNG or PDF file, please.")),
            FileSize(5 * 1024 * 1024, message=_l("At most 5 MB, please.")),
        ],
    )


class OverrideForm(FlaskForm):
    note = TextAreaField(
        _l("Why may this worker travel anyway?"),
        validators=[Length(max=1000, message=TOO_LONG)],
    )
