"""Background jobs, sent only after the transaction that caused them has committed.

A service calls ``enqueue_after_commit(task_name, *ids)``; nothing leaves the process until the
session commits, and a rollback drops the jobs with the rest. After the commit the job goes to
Celery through Redis (``REDIS_URL`` set) or runs right here, in-process (embedded default; the
Celery app is eager then). A job whose publish fails is logged, not raised: the user's
transaction has already committed. Work that must never be lost is written to an outbox table
in the same transaction and relayed from there, not sent this way alone.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# The database went away under a task (a connection killed, a restart, a failover): its
# transaction is rolled back whole, so the task runs again a moment later (``autoretry_for``).
DATABASE_GONE = (OperationalError, InterfaceError)

_PENDING = "fangang_pending_jobs"


def enqueue_after_commit(task_name: str, *ids: int) -> None:
    from app.extensions import db  # the session of the current app context

    pending = db.session.info.setdefault(_PENDING, [])
    if (task_name, ids) not in pending:  # one nudge per transaction is enough
        pending.append((task_name, ids))


def dispatch(task_name: str, ids: tuple[int, ...]) -> bool:
    """Send the job to the workers (or run it here, embedded). Never raises: False when it
    could not be sent (Redis away) or, run here, failed; the caller may put its work back."""
    celery_app = current_app.extensions["celery"]
    try:
        if celery_app.conf.task_always_eager:
            result = celery_app.tasks[task_name].apply(args=ids)
            if result.failed():
                log.error("in-process job %s%r failed: %s", task_name, ids, result.result)
                return False
        else:
            celery_app.send_task(task_name, args=ids)
    except Exception:
        log.exception("job %s%r could not be dispatched", task_name, ids)
        return False
    return True


# SQLAlchemy also emits these for a savepoint (begin_nested); only the outermost transaction
# counts: its commit makes the work visible to the job, its rollback drops the jobs.


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    for task_name, ids in session.info.pop(_PENDING, []):
        dispatch(task_name, ids)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return
    session.info.pop(_PENDING, None)


def init_app(app, celery_app) -> None:
    if celery_app.conf.task_always_eager:
        # In-process jobs need the task functions in this process.
        celery_app.loader.import_default_modules()
