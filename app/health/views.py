from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from app.core.access import Role, get_visible_or_404, roles_required
from app.core.errors import DomainError
from app.core.forms import save_or_show
from app.demand.models import RosterEntry, TransportRequest
from app.extensions import db
from app.health import services
from app.health.forms import (
    HEALTH_REASONS,
    INPUT_PROBLEMS,
    STATUS_NAMES,
    IssuerEditForm,
    IssuerForm,
    OverrideForm,
    PaperCertificateForm,
    RevokeForm,
)
from app.health.models import HealthCertificate, HealthIssuer

bp = Blueprint("health", __name__, template_folder="templates")

admin_only = roles_required(Role.ADMIN)

# A scan's type comes from the uploading browser: it is shown inline only as one of the types
# the form accepts; anything else (HTML, a script) is kept and sent as a plain download.
SCAN_TYPES = ("image/jpeg", "image/png", "application/pdf")


def _scan_type(mimetype: str | None) -> str:
    return mimetype if mimetype in SCAN_TYPES else "application/octet-stream"


def health_reasons(codes: str | None) -> list[str]:
    """Reason codes (comma-separated, as stored on an entry) as sentences."""
    config = current_app.config
    values = {"hours": config["HEALTH_FRESHNESS_HOURS"], "celsius": config["FEVER_CELSIUS"]}
    return [
        str(HEALTH_REASONS.get(code, code)) % values for code in (codes or "").split(",") if code
    ]


bp.add_app_template_global(health_reasons)  # messages render it outside requests too


@bp.app_context_processor
def health_names() -> dict:
    return {"health_status_names": STATUS_NAMES}


# --- the trust list ------------------------------------------------------------------------


@bp.get("/admin/issuers")
@admin_only
def issuers():
    listed = db.session.scalars(select(HealthIssuer).order_by(HealthIssuer.name)).all()
    return render_template("health/issuers.html", issuers=listed)


@bp.route("/admin/issuers/new", methods=["GET", "POST"])
@admin_only
def new_issuer():
    form = IssuerForm()
    if form.validate_on_submit() and save_or_show(
        form,
        lambda: services.create_issuer(
            form.name.data,
            form.region_code.data,
            form.public_key.data,
            services.local_day_start(form.valid_from.data),
            services.local_day_end(form.valid_until.data) if form.valid_until.data else None,
            current_user,
        ),
        INPUT_PROBLEMS,
    ):
        flash(_("%(name)s added to the trust list.", name=form.name.data), "success")
        return redirect(url_for("health.issuers"))
    return render_template("health/issuer_form.html", form=form, issuer=None)


@bp.route("/admin/issuers/<int:issuer_id>", methods=["GET", "POST"])
@admin_only
def edit_issuer(issuer_id: int):
    issuer = get_visible_or_404(HealthIssuer, issuer_id)
    form = IssuerEditForm(obj=issuer)
    if form.is_submitted() is False:
        form.valid_from.data = issuer.valid_from.astimezone(services.local_zone()).date()
        form.valid_until.data = (
            (issuer.valid_until.astimezone(services.local_zone()) - timedelta(days=1)).date()
            if issuer.valid_until
            else None
        )
    if form.validate_on_submit() and save_or_show(
        form,
        lambda: services.update_issuer(
            issuer,
            form.name.data,
            services.local_day_start(form.valid_from.data),
            services.local_day_end(form.valid_until.data) if form.valid_until.data else None,
            current_user,
        ),
        INPUT_PROBLEMS,
    ):
        flash(_("Changes saved."), "success")
        return redirect(url_for("health.issuers"))
    return render_template(
        "health/issuer_form.html", form=form, issuer=issuer, revoke_form=RevokeForm()
    )


@bp.post("/admin/issuers/<int:issuer_id>/revoke")
@admin_only
def revoke_issuer(issuer_id: int):
    issuer = get_visible_or_404(HealthIssuer, issuer_id)
    form = RevokeForm()
    if form.validate_on_submit():
        try:
            services.revoke_issuer(issuer, form.reason.data or "", current_user)
        except DomainError as error:
            db.session.rollback()
            flash(str(INPUT_PROBLEMS[error.code]), "error")
            return redirect(url_for("health.edit_issuer", issuer_id=issuer_id))
        db.session.commit()
        flash(
            _(
                "%(name)s revoked: its passes stop clearing workers at their next check.",
                name=issuer.name,
            ),
            "success",
        )
    return redirect(url_for("health.issuers"))


# --- coordinators: paper certificates and overrides ---------------------------------------


def _entry(request_id: int, entry_id: int) -> RosterEntry:
    transport_request = get_visible_or_404(TransportRequest, request_id)
    entry = db.session.get(RosterEntry, entry_id)
    if entry is None or entry.request_id != transport_request.id:
        abort(404)
    return entry


@bp.route("/requests/<int:request_id>/entries/<int:entry_id>/paper", methods=["GET", "POST"])
@roles_required(Role.COORDINATOR)
def paper_certificate(request_id: int, entry_id: int):
    entry = _entry(request_id, entry_id)
    form = PaperCertificateForm()
    upload = form.scan.data
    if form.validate_on_submit() and save_or_show(
        form,
        lambda: services.record_paper(
            entry.worker,
            form.clinic.data,
            form.certificate_number.data,
            form.issued_on.data,
            form.valid_until.data,
            form.status.data,
            upload.read() if upload else None,
            _scan_type(upload.mimetype) if upload else None,
            current_user,
        ),
        INPUT_PROBLEMS,
    ):
        flash(_("Paper certificate recorded for %(name)s.", name=entry.worker.name), "success")
        return redirect(url_for("demand.request_detail", request_id=request_id))
    return render_template("health/paper_form.html", form=form, entry=entry)


@bp.post("/requests/<int:request_id>/entries/<int:entry_id>/override")
@roles_required(Role.COORDINATOR)
def override(request_id: int, entry_id: int):
    entry = _entry(request_id, entry_id)
    form = OverrideForm()
    if form.validate_on_submit():
        try:
            services.override_block(entry, form.note.data or "", current_user)
        except DomainError as error:
            db.session.rollback()
            flash(str(INPUT_PROBLEMS[error.code]), "error")
        else:
            db.session.commit()
            flash(
                _("%(name)s may travel: your note is recorded.", name=entry.worker.name), "success"
            )
    return redirect(url_for("demand.request_detail", request_id=request_id))


@bp.get("/certificates/<int:certificate_id>/scan")
@roles_required(Role.EMPLOYER, Role.COORDINATOR, Role.ADMIN)
def certificate_scan(certificate_id: int):
    certificate = get_visible_or_404(HealthCertificate, certificate_id)
    if certificate.scan is None:
        abort(404)
    mimetype = _scan_type(certificate.scan_mimetype)
    response = Response(certificate.scan, mimetype=mimetype)
    response.headers["Content-Disposition"] = "inline" if mimetype in SCAN_TYPES else "attachment"
    return response
