"""Extension instances, created unbound and initialised in ``create_app``."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from app.core.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=get_remote_address)

# Task modules the worker imports; each holds named tasks (see workers/).
TASK_MODULES = ["workers.system", "workers.demand", "workers.health", "workers.notify"]

# Periodic jobs, run by the one `celery -A workers beat`.
BEAT_SCHEDULE = {
    # Messages whose time has come, and any the nudge after their commit could not send.
    "notify-relay": {"task": "fangang.notify.relay", "schedule": 10},
    "health-recheck-departing": {
        "task": "fangang.health.recheck_departing",
        "schedule": 15 * 60,
    },
}


def celery_settings(app: Flask) -> dict:
    """Celery settings: Redis when REDIS_URL is set, otherwise eager, in this process."""
    common = {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "timezone": "UTC",
        "include": TASK_MODULES,
        "beat_schedule_filename": f"{app.instance_path}/celerybeat-schedule",
        "beat_schedule": BEAT_SCHEDULE,
    }
    redis_url = app.config.get("REDIS_URL")
    if not redis_url:
        return common | {
            "broker_url": "memory://",
            "task_always_eager": True,
            "task_eager_propagates": False,
        }
    return (
        common
        | {
            "broker_url": redis_url,
            "task_default_queue": "fangang",
            # A task whose worker dies mid-run goes back to the queue instead of vanishing.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            # A request must not hang on a broker that went away: publish fails fast and the
            # caller decides (jobs that must not be lost go through the outbox table).
            "broker_connection_timeout": 2,
            "broker_transport_options": {
                "visibility_timeout": 3600,
                "socket_connect_timeout": 2,
                "socket_timeout": 5,
            },
            "task_publish_retry_policy": {
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        }
        | app.config.get("CELERY", {})
    )


def celery_init_app(app: Flask) -> Celery:
    """The Flask docs' pattern: every task runs inside an app context of this app."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.import_name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
