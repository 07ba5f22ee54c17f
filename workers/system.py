"""Tasks about the service itself."""

from __future__ import annotations

from celery import shared_task

from app.core import services
from app.core.jobs import DATABASE_GONE
from app.core.services import TEST_JOB_TASK
from app.extensions import db


@shared_task(
    name=TEST_JOB_TASK,
    autoretry_for=(ConnectionError, *DATABASE_GONE),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def test_job(request_entry_id: int) -> None:
    services.record_test_job_ran(request_entry_id)
    db.session.commit()
