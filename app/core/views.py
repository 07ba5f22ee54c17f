from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.core import services
from app.core.access import Role, roles_required
from app.extensions import db

bp = Blueprint("core", __name__, template_folder="templates")


def safe_next(target: str | None, fallback: str) -> str:
    """Only paths on this site: ``next`` must not send anyone elsewhere."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return fallback


@bp.get("/")
@login_required
def home():
    return render_template("core/home.html")


@bp.get("/healthz")
def healthz():
    """For load balancers: 200 while the database answers, 503 when it does not."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="database unavailable"), 503
    return jsonify(status="ok")


@bp.route("/admin/system", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def system_status():
    form = FlaskForm()
    if form.validate_on_submit():
        services.request_test_job(current_user)
        db.session.commit()
        flash(_("Test job sent. Reload this page to see when it ran."), "success")
        return redirect(url_for("core.system_status"))
    return render_template(
        "core/system.html",
        form=form,
        jobs=services.latest_test_jobs(),
        database=db.engine.url.get_backend_name(),
        job_mode="celery" if current_app.config.get("REDIS_URL") else "in-process",
    )
