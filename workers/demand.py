"""Tasks of the employers' side."""

from __future__ import annotations

from celery import shared_task

from app.demand import services
from app.demand.services import IMPORT_TASK
from app.extensions import db


@shared_task(name=IMPORT_TASK, acks_late=True)
def import_roster(import_id: int) -> None:
    """Check and save an uploaded roster. Runs again safely after a crash: nothing of an
    unfinished import was saved, and a finished one is left alone."""

    def commit_progress(_roster_import) -> None:
        # Only the import row has changed so far: committing shows the progress bar.
        db.session.commit()

    try:
        services.run_roster_import(import_id, commit_progress)
        db.session.commit()
    except Exception:
        # Never leave the employer watching a progress bar that will not move.
        db.session.rollback()
        services.mark_import_broken(import_id)
        db.session.commit()
        raise
