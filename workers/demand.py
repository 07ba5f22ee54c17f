"""Tasks of the employers' side."""

from __future__ import annotations

from celery import shared_task

from app.core.jobs import DATABASE_GONE
from app.demand import services
from app.demand.services import IMPORT_TASK
from app.extensions import db


@shared_task(name=IMPORT_TASK, acks_late=True, bind=True, max_retries=5)
def import_roster(self, import_id: int) -> None:
    """Check and save an uploaded roster. Runs again safely after a crash: nothing of an
    unfinished import was saved, and a finished one is left alone. A database that went away
    mid-import is waited for (a few tries, backing off) before the import is called broken."""

    def commit_progress(_roster_import) -> None:
        # Only the import row has changed so far: committing shows the progress bar.
        db.session.commit()

    try:
        services.run_roster_import(import_id, commit_progress)
        db.session.commit()
    except DATABASE_GONE as error:
        db.session.rollback()
        if self.request.retries < self.max_retries:
            raise self.retry(exc=error, countdown=2**self.request.retries) from error
        _give_up(import_id)
        raise
    except Exception:
        db.session.rollback()
        _give_up(import_id)
        raise


def _give_up(import_id: int) -> None:
    # Never leave the employer watching a progress bar that will not move.
    services.mark_import_broken(import_id)
    db.session.commit()
