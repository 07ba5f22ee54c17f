from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from app.accounts import services
from app.accounts.forms import DOMAIN_ERRORS, OrganizationForm, SignInForm
from app.accounts.models import Organization, User
from app.core.access import Role, get_visible_or_404, roles_required, select_visible
from app.core.forms import save_or_show
from app.core.paging import paginate
from app.core.views import safe_next
from app.extensions import db, limiter

bp = Blueprint("accounts", __name__, template_folder="templates")


def _failed_sign_in(response) -> bool:
    # A successful sign-in redirects; only failures use up the allowance.
    return response.status_code != 302


def _account_key() -> str:
    return "sign-in:" + services.normalize_email(request.form.get("email", ""))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT_PER_IP"],
    methods=["POST"],
    deduct_when=_failed_sign_in,
)
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"],
    key_func=_account_key,
    methods=["POST"],
    deduct_when=_failed_sign_in,
)
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("core.home"))
    form = SignInForm()
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user, remember=form.remember.data)
            db.session.commit()
            return redirect(safe_next(request.args.get("next"), url_for("core.home")))
        db.session.commit()  # keeps the audit of the failed attempt
        form.form_errors.append(_("Wrong email or password."))
    return render_template("accounts/sign_in.html", form=form)


@bp.post("/logout")
@login_required
def sign_out():
    form = FlaskForm()
    if form.validate_on_submit():
        services.record_sign_out(current_user)
        db.session.commit()
        logout_user()
        flash(_("You have signed out."), "info")
    return redirect(url_for("accounts.sign_in"))


@bp.get("/language/<code>")
def switch_language(code: str):
    if code in current_app.config["LANGUAGES"]:
        session["locale"] = code
        if current_user.is_authenticated:
            services.set_locale(current_user, code)
            db.session.commit()
    return redirect(safe_next(request.args.get("next"), url_for("core.home")))


@bp.get("/account")
@login_required
def account():
    return render_template("accounts/account.html")


@bp.get("/organizations")
@roles_required(Role.ADMIN, Role.COORDINATOR)
def organizations():
    query = select_visible(Organization)
    search = request.args.get("q", "").strip()
    if search:
        query = query.where(
            Organization.name.contains(search, autoescape=True)
            | Organization.credit_code.contains(search.upper(), autoescape=True)
        )
    page = paginate(query.order_by(Organization.name, Organization.id))
    return render_template("accounts/organizations.html", page=page, search=search)


@bp.route("/organizations/new", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def new_organization():
    form = OrganizationForm()
    if form.validate_on_submit() and save_or_show(
        form,
        lambda: services.create_organization(
            form.name.data, form.credit_code.data, form.region_code.data, actor=current_user
        ),
        DOMAIN_ERRORS,
    ):
        organization = services.find_organization(form.credit_code.data)
        flash(_("Organization %(name)s registered.", name=organization.name), "success")
        return redirect(url_for("accounts.organization", organization_id=organization.id))
    return render_template("accounts/organization_form.html", form=form)


@bp.get("/organizations/<int:organization_id>")
@login_required
def organization(organization_id: int):
    found = get_visible_or_404(Organization, organization_id)
    members = db.session.scalars(
        select_visible(User).where(User.organization_id == found.id).order_by(User.email)
    ).all()
    return render_template("accounts/organization.html", organization=found, members=members)


@bp.get("/users")
@roles_required(Role.ADMIN)
def users():
    page = paginate(select(User).order_by(User.role, User.email))
    return render_template("accounts/users.html", page=page)
