"""The Celery app, made from the Flask app (``celery -A workers`` finds ``app`` here)."""

from __future__ import annotations

import os

from celery.signals import worker_process_init

from app import create_app
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
