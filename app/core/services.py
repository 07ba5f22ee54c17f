"""Shared operations: the audit helper and the background-job self test.

Services flush and never commit; the view or task that called them commits once.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable

from sqlalchemy import select

from app.core.jobs import enqueue_after_commit
from app.core.models import AuditEntry
from app.extensions import db

# Digits runs that look like a resident ID number or a mobile number: such values must never
# reach the audit log (it is read by many and kept for years).
_PII_PATTERN = re.compile(r"\d{17}[\dXx]|\d{15}|1\d{10}")


def _contains_pii(value: object) -> bool:
    if isinstance(value, dict):
        return any(_contains_pii(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_contains_pii(item) for item in value)
    return isinstance(value, str) and bool(_PII_PATTERN.search(value))


def record_audit(
    action: str, target: object | None = None, actor: object | None = None, **details: object
) -> AuditEntry:
    """Record that ``actor`` (a user, or None for the system) did ``action`` to ``target``.

    ``details`` hold ids, codes and counts; a value that looks like an ID or phone number is
    refused, so a careless caller fails in tests instead of leaking PII into the log.
    """
    [entry] = record_audits(action, [(target, details)], actor)
    return entry


def record_audits(
    action: str, done: Iterable[tuple[object | None, dict]], actor: object | None = None
) -> list[AuditEntry]:
    """``record_audit`` for many (target, details) at once, written in one flush (a plan
    creates and seats hundreds of trips)."""
    entries = []
    for target, details in done:
        if _contains_pii(details):
            raise ValueError(f"audit details for {action!r} look like they contain PII")
        entries.append(
            AuditEntry(
                action=action,
                actor_id=getattr(actor, "id", None),
                object_type=getattr(target, "__tablename__", None),
                object_id=getattr(target, "id", None),
                details=details,
            )
        )
    db.session.add_all(entries)
    db.session.flush()
    return entries


TEST_JOB_TASK = "fangang.system.test_job"


def request_test_job(actor: object) -> AuditEntry:
    """An admin asks for a no-op job, to see that background jobs run end to end."""
    entry = record_audit("system.test_job.requested", actor=actor)
    enqueue_after_commit(TEST_JOB_TASK, entry.id)
    return entry


def record_test_job_ran(request_entry_id: int) -> AuditEntry | None:
    """Idempotent: a redelivered job finds its mark and does nothing more."""
    done = db.session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "system.test_job.ran",
            AuditEntry.object_type == AuditEntry.__tablename__,
            AuditEntry.object_id == request_entry_id,
        )
    )
    if done is not None:
        return done
    requested = db.session.get(AuditEntry, request_entry_id)
    if requested is None:
        return None
    return record_audit("system.test_job.ran", target=requested, worker=socket.gethostname())


def latest_test_jobs(limit: int = 5) -> list[tuple[AuditEntry, AuditEntry | None]]:
    """The most recent test-job requests, each with the entry of its run (None: not yet)."""
    requests = db.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "system.test_job.requested")
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    ).all()
    runs = {
        entry.object_id: entry
        for entry in db.session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "system.test_job.ran",
                AuditEntry.object_id.in_([r.id for r in requests]),
            )
        )
    }
    return [(request, runs.get(request.id)) for request in requests]
