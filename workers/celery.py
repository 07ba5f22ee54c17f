"""The Celery app, made from the Flask app (``celery -A workers`` finds ``app`` here)."""

from __future__ import annotations

import os

from app import create_app

if not os.environ.get("REDIS_URL"):
    raise SystemExit(
        "fangang: REDIS_URL is not set; Celery workers need Redis "
        "(without it, jobs run inside the web process)."
    )

flask_app = create_app()
app = flask_app.extensions["celery"]
