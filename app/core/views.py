from __future__ import annotations

import functools
import logging

import redis
from alembic.script import ScriptDirectory
from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from app.core import services
from app.core.access import Role, roles_required
from app.extensions import db, limiter

log = logging.getLogger(__name__)
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
@limiter.exempt
def healthz():
    """Liveness, for the process supervisor and monitoring: 200 while this process answers
    and its database connection works (a load balancer should route by /readyz)."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return _no_store(jsonify(status="database unavailable")), 503
    return _no_store(jsonify(status="ok"))


@bp.get("/readyz")
@limiter.exempt
def readyz():
    """Readiness, for a load balancer: the database answers and is at (or past) the
    migrations' head. 200 or 503 with the checks by name; a failure's reason goes to the log,
    never into the body.

    Redis (when REDIS_URL is set) is checked and reported, but its loss only makes the answer
    "degraded", still 200: every page keeps working without it (jobs and messages wait in the
    database's outbox, rate limits fall back to each process), and taking every web node out
    of the pool during a Redis outage would turn a delay into a full outage."""
    timeout = float(current_app.config["READINESS_TIMEOUT"])
    checks = _check_database(timeout)
    checks["redis"] = _check_redis(current_app.config.get("REDIS_URL"), timeout)
    failed = [name for name, state in checks.items() if state not in PASSING]
    fatal = [name for name in failed if name != "redis"]
    status = "unavailable" if fatal else "degraded" if failed else "ok"
    body = {"status": status, "checks": checks}
    if failed:
        body["failed"] = failed
    return _no_store(jsonify(body)), 503 if fatal else 200


# States that fail nothing. "ahead": the database is at a revision this code does not know, i.e.
# a newer release migrated it first (the deployment order in the README), and this process keeps
# serving until it is replaced. "not checked": a check that needs the database, when it is down.
PASSING = ("ok", "ahead", "not configured", "not checked")


def _check_database(timeout: float) -> dict[str, str]:
    try:
        with db.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
            connection.execute(text("SELECT 1"))
            try:
                current = _database_revisions(connection)
            except Exception as error:
                _log_failure("migrations", error)
                return {"database": "ok", "migrations": "unknown"}
    except Exception as error:
        _log_failure("database", error)
        return {"database": "unreachable", "migrations": "not checked"}
    try:
        heads, known = _migration_heads(current_app.extensions["migrate"].directory)
    except Exception as error:
        _log_failure("migrations", error)
        return {"database": "ok", "migrations": "unknown"}
    if current == heads:
        state = "ok"
    elif current and not current & known:
        state = "ahead"
    else:
        state = "behind"
        log.warning("readiness: the database is behind the migrations' head (run db upgrade)")
    return {"database": "ok", "migrations": state}


def _database_revisions(connection) -> set[str]:
    """The revisions the database is at (none before the first migration; Alembic's default
    version table, which migrations/env.py keeps)."""
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


@functools.cache
def _migration_heads(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """The head revisions of the migrations shipped with this code, and all their revisions
    (read once per process: they change only with the code)."""
    script = ScriptDirectory(directory)
    known = frozenset(rev.revision for rev in script.walk_revisions())
    return frozenset(script.get_heads()), known


def _check_redis(redis_url: str | None, timeout: float) -> str:
    if not redis_url:
        return "not configured"
    client = redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # one try: a load balancer asks again soon enough
    )
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as error:
        _log_failure("redis", error)
        return "unreachable"
    finally:
        client.close()
    return "ok"


def _log_failure(check: str, error: Exception) -> None:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines() or [""]
    log.warning("readiness: %s check failed: %s: %s", check, type(error).__name__, reason[0])


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


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
