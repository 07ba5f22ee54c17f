"""The Celery app, made from the Flask app (``celery -A workers`` finds ``app`` here)."""

from __future__ import annotations

import logging
import os
import sys

from celery import current_task
from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init

from app import create_app
from app.core import logs
from app.extensions import db

if not os.environ.get("REDIS_URL"):
    raise SystemExit(
        "fangang: REDIS_URL is not set; Celery workers need Redis "
        "(without it, jobs run inside the web process)."
    )

flask_app = create_app()
app = flask_app.extensions["celery"]


@worker_process_init.connect
def _own_connections(**_kwargs) -> None:
    """Each prefork child opens its own database connections, never its parent's."""
    with flask_app.app_context():
        db.engine.dispose(close=False)


class _TaskFields(logging.Filter):
    """The running task's id and name on every line logged inside it."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = current_task
        if task and task.request.id:
            record.task_id = task.request.id
            record.task_name = task.name
        return True


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_like_the_web(logger: logging.Logger, **_kwargs) -> None:
    """With LOG_FORMAT=json, workers and beat write the web's JSON lines to stdout instead of
    Celery's text (sys.__stdout__: Celery redirects sys.stdout into the log itself)."""
    if flask_app.config["LOG_FORMAT"] != "json":
        return
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logs.install(logger, "json", stream=sys.__stdout__).addFilter(_TaskFields())
