"""Health checks that run on their own."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from flask import current_app

from app.core.clock import utcnow
from app.core.jobs import DATABASE_GONE
from app.extensions import db
from app.health import services


@shared_task(
    name="fangang.health.recheck_departing",
    autoretry_for=(ConnectionError, *DATABASE_GONE),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def recheck_departing() -> dict[str, int]:
    """Everyone leaving in the next hours, checked at their departure time (beat runs this;
    running it twice only checks twice)."""
    hours = current_app.config["HEALTH_RECHECK_HOURS"]
    totals = services.recheck_departing(utcnow(), timedelta(hours=hours))
    db.session.commit()
    return totals
