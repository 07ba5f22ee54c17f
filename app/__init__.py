"""Fangang (返岗直通车): the application factory."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import Path

import redis
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from app.core.base import MAX_ID
from config import INSTANCE_PATH, load_config


def create_app(config: Mapping | None = None) -> Flask:
    """Build the app from ``config/`` settings, the environment, then ``config`` overrides."""
    settings = load_config()
    settings.update(config or {})
    app = Flask(__name__, instance_path=str(INSTANCE_PATH))
    app.config.update(settings)
    from app.core import logs  # first: every later line (and request) logs through it

    logs.init_app(app)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    _configure_secret_key(app)
    _configure_engine(app)
    _check_redis_url(app.config.get("REDIS_URL"), app.config["ENV_NAME"])
    if app.config.get("TRUSTED_PROXY_COUNT"):
        count = int(app.config["TRUSTED_PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)

    _init_extensions(app)
    app.url_map.converters["int"] = DatabaseId
    _register_blueprints(app)
    _register_cli(app)
    if app.config["STARTUP_CHECKS"]:
        _check_services(app)
    return app


def _configure_secret_key(app: Flask) -> None:
    if app.config.get("SECRET_KEY"):
        return
    if app.config["ENV_NAME"] == "production":
        raise SystemExit("fangang: SECRET_KEY is not set; production needs a long random value.")
    # Development: one random key kept in instance/, so sessions survive restarts.
    key_file = Path(app.instance_path) / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)
    app.config["SECRET_KEY"] = key_file.read_text().strip()


def _configure_engine(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if not uri:
        raise SystemExit(
            "fangang: DATABASE_URL is not set; production needs the database every process "
            "shares (postgresql://user@host/db)."
        )
    try:
        url = make_url(uri)
    except ArgumentError:
        raise SystemExit(
            "fangang: DATABASE_URL is not a database URL (expected postgresql://user@host/db)."
        ) from None
    options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    if url.get_backend_name() == "postgresql":
        timeout = app.config["STARTUP_CHECK_TIMEOUT"]
        options["connect_args"] = {"connect_timeout": timeout} | options.get("connect_args", {})
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _check_redis_url(redis_url: str | None, env_name: str) -> None:
    # Without Redis there is no Celery beat: a reminder or a health re-check would wait for
    # the next commit of some user's request instead of running on time.
    if not redis_url and env_name == "production":
        raise SystemExit(
            "fangang: REDIS_URL is not set; production needs Redis for the Celery workers and "
            "beat (reminders, health re-checks)."
        )
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SystemExit("fangang: REDIS_URL is not a Redis URL (expected redis://host:6379/0).")


def _init_extensions(app: Flask) -> None:
    from app.core import i18n, jobs, pii, security
    from app.core.base import alembic_render_item
    from app.core.errors import register_error_handlers
    from app.extensions import (
        celery_init_app,
        csrf,
        db,
        limiter,
        login_manager,
        migrate,
    )

    if app.config.get("REDIS_URL"):
        app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"]
    db.init_app(app)
    with app.app_context():
        if db.engine.url.get_backend_name() == "sqlite":
            _sqlite_transactions(db.engine)
            app.before_request(_sqlite_write_lock)
    migrate.init_app(
        app,
        db,
        directory=str(Path(app.root_path).parent / "migrations"),
        render_as_batch=True,
        render_item=alembic_render_item,
    )
    csrf.init_app(app)
    limiter.init_app(app)
    pii.init_app(app)
    i18n.init_app(app)
    _init_login(app, login_manager)
    security.init_app(app)
    register_error_handlers(app)
    celery_app = celery_init_app(app)
    jobs.init_app(app, celery_app)

    # Every model module, so metadata (Alembic, create_all) knows every table.
    from app.accounts import models as _accounts_models  # noqa: F401
    from app.api import models as _api_models  # noqa: F401
    from app.core import models as _core_models  # noqa: F401
    from app.demand import models as _demand_models  # noqa: F401
    from app.fleet import models as _fleet_models  # noqa: F401
    from app.health import models as _health_models  # noqa: F401
    from app.notify import models as _notify_models  # noqa: F401
    from app.trips import models as _trips_models  # noqa: F401


class DatabaseId(IntegerConverter):
    """``<int:...>`` in a URL: a number a database id can be (1 to 2**31 - 1, PostgreSQL's
    integer), so /requests/99999999999 is a 404, not an error from the database."""

    def __init__(self, map, *args, **kwargs) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def _sqlite_transactions(engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, begin transactions: otherwise a SAVEPOINT
    opens a transaction that commit() never ends, and the next writer waits on its lock
    (SQLAlchemy's documented recipe for pysqlite). Write-ahead logging, so that a request
    reading (now inside a transaction) never keeps a job from committing; foreign keys on."""

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def begin(connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_write_lock() -> None:
    """On SQLite a request that changes things takes the database's write lock as it begins
    (BEGIN IMMEDIATE): what it reads then stays true until it commits, which is what row
    locks (SELECT ... FOR UPDATE) give on PostgreSQL. Readers are not held up (WAL)."""
    from flask import request

    from app.extensions import db

    if request.method not in ("GET", "HEAD", "OPTIONS"):
        db.session.connection(execution_options={"sqlite_immediate": True})


def _init_login(app: Flask, login_manager) -> None:
    from flask_babel import lazy_gettext as _l

    from app.accounts.models import User
    from app.extensions import db

    login_manager.init_app(app)
    login_manager.login_view = "accounts.sign_in"
    login_manager.login_message = _l("Please sign in to see this page.")
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
        return user if user is not None and user.active else None


def _register_blueprints(app: Flask) -> None:
    from app.accounts.views import bp as accounts_bp
    from app.api.views import bp as api_bp
    from app.api.views import tokens_bp
    from app.core.views import bp as core_bp
    from app.demand.views import bp as demand_bp
    from app.fleet.views import bp as fleet_bp
    from app.health.views import bp as health_bp
    from app.notify.views import bp as notify_bp
    from app.public.views import bp as public_bp
    from app.reports.views import bp as reports_bp
    from app.trips.views import bp as trips_bp

    app.register_blueprint(core_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(demand_bp)
    app.register_blueprint(fleet_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(notify_bp)
    app.register_blueprint(trips_bp)
    app.register_blueprint(public_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(tokens_bp)
    from app.extensions import csrf

    csrf.exempt(api_bp)  # bearer tokens, never cookies: nothing for a forged form to ride on


def _register_cli(app: Flask) -> None:
    from app.accounts.cli import users_cli
    from app.demo import demo_cli
    from app.health.cli import health_cli
    from app.notify.cli import notify_cli

    app.cli.add_command(users_cli)
    app.cli.add_command(health_cli)
    app.cli.add_command(notify_cli)
    app.cli.add_command(demo_cli)


def _check_services(app: Flask) -> None:
    """Fail at start, in one line naming the setting, when a service cannot be reached."""
    from app.extensions import db

    with app.app_context():
        shown = db.engine.url.render_as_string(hide_password=True)
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            # No pooled connection may outlive start-up: a Celery prefork worker (or gunicorn
            # with preload) forks after this, and children sharing one socket corrupt it.
            db.engine.dispose()
        except Exception as error:
            reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
            raise SystemExit(
                f"fangang: DATABASE_URL ({shown}) cannot be reached: {reason}"
            ) from None
    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        try:
            client = redis.Redis.from_url(
                redis_url, socket_connect_timeout=app.config["STARTUP_CHECK_TIMEOUT"]
            )
            client.ping()
            client.close()
        except (redis.RedisError, ValueError) as error:
            shown = re.sub(r"(//[^:@/]*:)[^@/]*@", r"\1***@", redis_url)
            raise SystemExit(f"fangang: REDIS_URL ({shown}) cannot be reached: {error}") from None
