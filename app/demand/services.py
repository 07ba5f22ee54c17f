"""Employers' operations: roster, imports, transport requests and their lifecycle.

Services check the rules and the transitions, flush, audit, and leave the commit to the view or
task. Rosters are written in bulk statements: a 10,000-row import is a handful of round trips.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from flask import current_app
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from app.accounts.models import Organization, User
from app.accounts.services import organization_users, region_coordinators
from app.core.bulk import bulk_insert
from app.core.clock import local_today, utcnow
from app.core.errors import DomainError
from app.core.identity import age_on, birth_date_of, mask_id_number
from app.core.jobs import enqueue_after_commit
from app.core.pii import vault
from app.core.services import record_audit
from app.demand.models import (
    CLAIMING_STATUSES,
    LIVE_STATUSES,
    EntryStatus,
    ImportStatus,
    RequestStatus,
    RosterEntry,
    RosterImport,
    TransportRequest,
    Worker,
)
from app.demand.roster import (
    AgeRule,
    Problem,
    RefusedRow,
    RosterCheck,
    WorkerData,
    check_rows,
    find_header_row,
    in_file_order,
    map_columns,
)
from app.demand.spreadsheets import MAX_FILE_BYTES, SpreadsheetError, read_table
from app.extensions import db
from app.health import services as health
from app.health.passes import PassFacts, read_pass
from app.notify.services import link, notify_users

IMPORT_TASK = "fangang.demand.import_roster"


def today() -> date:
    return local_today(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def age_rule(travel_date: date | None = None) -> AgeRule:
    return AgeRule(
        travel_date or today(),
        current_app.config["WORKER_MIN_AGE"],
        current_app.config["WORKER_MAX_AGE"],
    )


# --- workers -------------------------------------------------------------------------------


def _worker_columns(data: WorkerData) -> dict:
    pii = vault()
    return {
        "name": data.name,
        "id_number_token": pii.encrypt(data.id_number),
        "id_number_hash": pii.lookup_hash(data.id_number),
        "birth_date": birth_date_of(data.id_number),
        "phone_token": pii.encrypt(data.phone),
        "phone_hash": pii.lookup_hash(data.phone),
        "phone_last4": data.phone[-4:],
        "home_region_code": data.home_region_code,
        "home_region_name": data.home_region_name,
        "group_tag": data.group_tag,
        "emergency_contact_name": data.emergency_contact_name,
        "emergency_contact_phone_token": (
            pii.encrypt(data.emergency_contact_phone) if data.emergency_contact_phone else None
        ),
    }


def worker_data(worker: Worker) -> WorkerData:
    """The worker's fields in the clear, for the employer's own form and exports."""
    pii = vault()
    return WorkerData(
        name=worker.name,
        id_number=pii.decrypt(worker.id_number_token),
        phone=pii.decrypt(worker.phone_token),
        home_region_code=worker.home_region_code,
        home_region_name=worker.home_region_name,
        group_tag=worker.group_tag,
        emergency_contact_name=worker.emergency_contact_name,
        emergency_contact_phone=(
            pii.decrypt(worker.emergency_contact_phone_token)
            if worker.emergency_contact_phone_token
            else None
        ),
    )


def find_worker_by_id_number(organization_id: int, id_number: str) -> Worker | None:
    return db.session.scalar(
        select(Worker).where(
            Worker.organization_id == organization_id,
            Worker.id_number_hash == vault().lookup_hash(id_number),
        )
    )


def create_worker(organization: Organization, data: WorkerData, actor: User) -> Worker:
    if find_worker_by_id_number(organization.id, data.id_number) is not None:
        raise DomainError("id_number.on_roster", field="id_number")
    worker = Worker(organization_id=organization.id, **_worker_columns(data))
    db.session.add(worker)
    db.session.flush()
    record_audit("worker.created", worker, actor)
    return worker


def update_worker(worker: Worker, data: WorkerData, actor: User) -> Worker:
    existing = find_worker_by_id_number(worker.organization_id, data.id_number)
    if existing is not None and existing.id != worker.id:
        raise DomainError("id_number.on_roster", field="id_number")
    columns = _worker_columns(data)
    if columns["id_number_hash"] != worker.id_number_hash:
        # A corrected ID number must not be someone already travelling on another request.
        taken = db.session.scalar(
            select(RosterEntry.id).where(
                RosterEntry.holds_place,
                RosterEntry.id_number_hash == columns["id_number_hash"],
                RosterEntry.worker_id != worker.id,
            )
        )
        if taken is not None:
            raise DomainError("id_number.on_other_request", field="id_number")
    for name, value in columns.items():
        setattr(worker, name, value)
    # Entries keep the hash their unique "one live place" index checks.
    db.session.execute(
        update(RosterEntry)
        .where(RosterEntry.worker_id == worker.id)
        .values(id_number_hash=worker.id_number_hash)
    )
    db.session.flush()
    record_audit("worker.updated", worker, actor)
    # The certificate names the holder: a corrected name or ID number is judged now, not at
    # the next periodic check.
    health.check_worker_entries(worker)
    return worker


def delete_worker(worker: Worker, actor: User) -> None:
    """A worker never put on a request leaves the roster. One who was stays: the request's
    record (seats, handover, costs per worker) names them; the refusal says which request."""
    on_request = db.session.execute(
        select(TransportRequest, RosterEntry.status)
        .join(RosterEntry)
        .where(RosterEntry.worker_id == worker.id)
        .order_by(TransportRequest.id.desc())
        .limit(1)
    ).first()
    if on_request is not None:
        request, entry_status = on_request
        live = request.status in {status.value for status in LIVE_STATUSES}
        if live and entry_status != EntryStatus.WITHDRAWN:
            raise DomainError("worker.on_request", reference=request.reference)
        raise DomainError("worker.on_past_request", reference=request.reference)
    record_audit("worker.deleted", worker, actor)
    db.session.delete(worker)
    db.session.flush()


# --- places on live requests ---------------------------------------------------------------


@dataclass(frozen=True)
class Clash:
    request_id: int
    reference: str
    own: bool  # on one of this organization's requests (else: another employer's)


def live_places(
    id_number_hashes: Iterable[str], organization_id: int, except_request_id: int | None = None
) -> dict[str, Clash]:
    """Which of these people already hold a place on a live request, and where."""
    hashes = list(set(id_number_hashes))
    found: dict[str, Clash] = {}
    for start in range(0, len(hashes), 1000):
        rows = db.session.execute(
            select(RosterEntry.id_number_hash, TransportRequest)
            .join(TransportRequest, RosterEntry.request_id == TransportRequest.id)
            .where(
                RosterEntry.holds_place,
                RosterEntry.id_number_hash.in_(hashes[start : start + 1000]),
                TransportRequest.id != (except_request_id or 0),
            )
        ).all()
        for id_hash, request in rows:
            own = request.organization_id == organization_id
            found[id_hash] = Clash(request.id, request.reference if own else "", own)
    return found


def _refuse_clashes(workers: Iterable[Worker], clashes: dict[str, Clash]) -> None:
    """All or nothing, but the employer is told who holds a place where (the reference of
    their own request; nothing of another employer's)."""
    if clashes:
        held = sorted(
            (worker.name, clashes[worker.id_number_hash].reference)
            for worker in workers
            if worker.id_number_hash in clashes
        )
        raise DomainError("workers.on_other_request", held=held)


def _claim_places(request: TransportRequest, entries: list[RosterEntry]) -> None:
    """Give these entries their place; refuse all of them if any person already has one."""
    clashes = live_places([e.id_number_hash for e in entries], request.organization_id, request.id)
    _refuse_clashes((entry.worker for entry in entries), clashes)
    try:
        with db.session.begin_nested():  # flushes first: every entry has its id
            # One UPDATE per 5,000 entries: the flush wrote one per entry (a province's
            # submissions: 238,000).
            ids = [entry.id for entry in entries]
            for start in range(0, len(ids), 5000):
                db.session.execute(
                    update(RosterEntry)
                    .where(RosterEntry.id.in_(ids[start : start + 5000]))
                    .values(holds_place=True)
                    .execution_options(synchronize_session=False)
                )
    except IntegrityError:
        # Another request took one of them between our check and our write.
        raise DomainError("workers.on_other_request") from None
    for entry in entries:
        set_committed_value(entry, "holds_place", True)


def _release_places(request: TransportRequest) -> None:
    db.session.execute(
        update(RosterEntry)
        .where(RosterEntry.request_id == request.id, RosterEntry.holds_place)
        .values(holds_place=False)
    )


# --- transport requests --------------------------------------------------------------------

DEPARTURE_HORIZON = timedelta(days=366)
REQUEST_FIELDS = (
    "origin_region_code",
    "origin_region_name",
    "pickup_point",
    "pickup_address",
    "destination_region_code",
    "destination_region_name",
    "site_name",
    "site_address",
    "site_contact_name",
    "site_contact_phone",
    "earliest_departure",
    "latest_departure",
    "preferred_mode",
)


def _check_departure_window(fields: dict) -> None:
    if fields["latest_departure"] < fields["earliest_departure"]:
        raise DomainError("latest_departure.before_earliest", field="latest_departure")
    if fields["earliest_departure"] < today():
        raise DomainError("earliest_departure.past", field="earliest_departure")
    # A campaign is planned weeks ahead: a year further is a typo (2062 for 2026).
    for name in ("earliest_departure", "latest_departure"):
        if fields[name] > today() + DEPARTURE_HORIZON:
            raise DomainError("departure.too_far", field=name)


def create_request(organization: Organization, fields: dict, actor: User) -> TransportRequest:
    _check_departure_window(fields)
    request = TransportRequest(
        organization_id=organization.id,
        status=RequestStatus.DRAFT.value,
        created_by_id=actor.id,
        **{name: fields[name] for name in REQUEST_FIELDS},
    )
    db.session.add(request)
    db.session.flush()
    record_audit("request.created", request, actor)
    return request


def update_request(request: TransportRequest, fields: dict, actor: User) -> TransportRequest:
    if request.status != RequestStatus.DRAFT:
        raise DomainError("request.frozen")
    _check_departure_window(fields)
    for name in REQUEST_FIELDS:
        setattr(request, name, fields[name])
    db.session.flush()
    health.check_entries(active_entries(request))  # the departure may have moved
    record_audit("request.updated", request, actor)
    return request


def active_entries(request: TransportRequest) -> list[RosterEntry]:
    return [entry for entry in request.entries if entry.status != EntryStatus.WITHDRAWN]


def _transition(
    request: TransportRequest,
    allowed_from: Iterable[RequestStatus],
    to: RequestStatus,
    action: str,
    actor: User,
    **details,
) -> None:
    if request.status not in {status.value for status in allowed_from}:
        raise DomainError(f"request.cannot_{action}")
    previous = request.status
    request.status = to.value
    db.session.flush()
    record_audit(f"request.{action}", request, actor, previous=previous, **details)


def submit_request(request: TransportRequest, actor: User) -> None:
    entries = active_entries(request)
    if request.status == RequestStatus.DRAFT and not entries:
        raise DomainError("request.no_workers")
    _check_departure_window({name: getattr(request, name) for name in REQUEST_FIELDS})
    health.load_workers(entries)  # one query, not one lazy load per worker
    _check_ages(request, [entry.worker for entry in entries])
    _transition(
        request,
        [RequestStatus.DRAFT],
        RequestStatus.SUBMITTED,
        "submitted",
        actor,
        workers=len(entries),
    )
    request.submitted_at = utcnow()
    _claim_places(request, entries)
    health.check_entries(entries, tell_all_blocked=True)  # at the departure as submitted
    _tell_coordinators(request, len(entries))


def _tell_coordinators(request: TransportRequest, workers: int) -> None:
    notify_users(
        f"request.submitted:{request.id}:{request.version}",
        region_coordinators(request.origin_region_code, request.destination_region_code),
        "request_submitted",
        {
            "reference": request.reference,
            "employer": request.organization.name,
            "origin": request.origin_region_name,
            "site": request.site_name,
            "destination": request.destination_region_name,
            "earliest": request.earliest_departure.isoformat(),
            "latest": request.latest_departure.isoformat(),
            "workers": workers,
            "url": link(f"/requests/{request.id}"),
        },
        about=request,
    )


def _tell_employer_decision(request: TransportRequest) -> None:
    notify_users(
        f"request.{request.status}:{request.id}:{request.version}",
        organization_users(request.organization_id),
        "request_decided",
        {
            "reference": request.reference,
            "decision": request.status,
            "reason": request.decision_reason or "",
            "url": link(f"/requests/{request.id}"),
        },
        about=request,
    )


def withdraw_request(request: TransportRequest, actor: User) -> None:
    """Submitted -> draft: the employer takes it back to change it."""
    _transition(request, [RequestStatus.SUBMITTED], RequestStatus.DRAFT, "withdrawn", actor)
    request.submitted_at = None
    _release_places(request)


def cancel_request(request: TransportRequest, actor: User) -> None:
    _transition(request, LIVE_STATUSES, RequestStatus.CANCELLED, "cancelled", actor)
    _release_places(request)


def approve_request(request: TransportRequest, actor: User, reason: str | None = None) -> None:
    _transition(request, [RequestStatus.SUBMITTED], RequestStatus.APPROVED, "approved", actor)
    request.decided_at, request.decided_by_id = utcnow(), actor.id
    request.decision_reason = reason or None
    _tell_employer_decision(request)


def reject_request(request: TransportRequest, actor: User, reason: str) -> None:
    if not (reason or "").strip():
        raise DomainError("decision_reason.required", field="reason")
    _transition(request, [RequestStatus.SUBMITTED], RequestStatus.REJECTED, "rejected", actor)
    request.decided_at, request.decided_by_id = utcnow(), actor.id
    request.decision_reason = reason.strip()
    _release_places(request)
    _tell_employer_decision(request)


def _check_ages(request: TransportRequest, workers: Iterable[Worker]) -> None:
    rule = age_rule(request.earliest_departure)
    outside = sorted(
        worker.name
        for worker in workers
        if not rule.min_age <= age_on(worker.birth_date, rule.travel_date) <= rule.max_age
    )
    if outside:
        raise DomainError("workers.age", workers=outside)


ADDABLE = (RequestStatus.DRAFT, RequestStatus.SUBMITTED, RequestStatus.APPROVED)


def add_workers(request: TransportRequest, workers: list[Worker], actor: User) -> int:
    """Put roster workers on the request. On a submitted request they take their place at
    once; on an approved one the request goes back to the coordinator for another look."""
    if request.status not in {status.value for status in ADDABLE}:
        raise DomainError("request.frozen")
    if any(worker.organization_id != request.organization_id for worker in workers):
        raise DomainError("workers.not_on_roster")
    _check_ages(request, workers)
    # Checked for drafts too, as an import is: better told now than at submission.
    hashes = [worker.id_number_hash for worker in workers]
    _refuse_clashes(workers, live_places(hashes, request.organization_id, request.id))
    existing = {entry.worker_id: entry for entry in request.entries}
    touched: list[RosterEntry] = []
    newcomers: list[Worker] = []
    for worker in workers:
        entry = existing.get(worker.id)
        if entry is None:
            newcomers.append(worker)
        elif entry.status == EntryStatus.WITHDRAWN:
            entry.status, entry.withdrawn_at = EntryStatus.PENDING.value, None
            touched.append(entry)
    if not touched and not newcomers:
        return 0
    checker = health.Checker()
    unchecked = list(touched)  # checked as entries below (verdict, audit, the employer told)
    if newcomers:
        departure = health.request_departure(request)
        cleared = health.plainly_cleared(newcomers, departure, checker)
        added = _new_entries(request, newcomers, cleared)
        touched.extend(added)
        unchecked.extend(entry for entry in added if entry.worker_id not in cleared)
    db.session.flush()
    if request.status in {status.value for status in CLAIMING_STATUSES}:
        _claim_places(request, touched)
    health.check_entries(unchecked, checker=checker)
    record_audit("request.workers_added", request, actor, count=len(touched))
    if request.status == RequestStatus.APPROVED:
        _transition(
            request,
            [RequestStatus.APPROVED],
            RequestStatus.SUBMITTED,
            "resubmitted",
            actor,
            reason="workers_added",
        )
        request.submitted_at = utcnow()
        # The approval was for the workers on it then: it and its note no longer stand, and
        # the coordinators must hear that the request is back (it said nothing before).
        request.decided_at = request.decided_by_id = request.decision_reason = None
        counts = status_counts(request.id)
        _tell_coordinators(request, sum(counts.values()) - counts[EntryStatus.WITHDRAWN.value])
    return len(touched)


def _new_entries(
    request: TransportRequest, workers: list[Worker], cleared: set[int]
) -> list[RosterEntry]:
    """The workers' entries on the request, written by one INSERT … RETURNING (the flush's
    unit of work cost about 150 µs an entry: 238,000 of them in a province's requests). The
    workers in ``cleared`` (ids: plainly cleared by a health check just made) are written
    cleared and checked now, the others pending: an INSERT, then the verdict's UPDATE, wrote
    each entry twice."""
    if request.id is None:
        db.session.flush()
    now = utcnow()
    entries = db.session.scalars(
        # NULLs rendered: else the ORM batches rows by the columns they leave out, and the
        # checked and unchecked ones, interleaved, split the INSERT into many.
        insert(RosterEntry)
        .returning(RosterEntry, sort_by_parameter_order=True)
        .execution_options(render_nulls=True),
        [
            {
                "request_id": request.id,
                "worker_id": w.id,
                "id_number_hash": w.id_number_hash,
                "status": (EntryStatus.CLEARED if w.id in cleared else EntryStatus.PENDING).value,
                "health_checked_at": now if w.id in cleared else None,
            }
            for w in workers
        ],
    ).all()
    for entry, worker in zip(entries, workers, strict=True):
        set_committed_value(entry, "worker", worker)
        set_committed_value(entry, "request", request)
    set_committed_value(request, "entries", [*request.entries, *entries])
    return list(entries)


def withdraw_entry(entry: RosterEntry, actor: User) -> None:
    """The worker will not travel: the place (and, later, the seat) is freed."""
    if entry.status in (EntryStatus.WITHDRAWN, EntryStatus.BOARDED, EntryStatus.ARRIVED):
        raise DomainError("entry.cannot_withdraw")
    if entry.request.status in (
        RequestStatus.COMPLETED,
        RequestStatus.CANCELLED,
        RequestStatus.REJECTED,
    ):
        raise DomainError("request.frozen")
    entry.status = EntryStatus.WITHDRAWN.value
    entry.withdrawn_at = utcnow()
    entry.holds_place = False
    db.session.flush()
    record_audit("entry.withdrawn", entry, actor, request_id=entry.request_id)


def status_counts(request_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(RosterEntry.status, func.count())
        .where(RosterEntry.request_id == request_id)
        .group_by(RosterEntry.status)
    ).all()
    counts = {status.value: 0 for status in EntryStatus}
    counts.update(dict(rows))  # type: ignore[arg-type]
    return counts


# --- imports -------------------------------------------------------------------------------


def create_roster_import(
    organization: Organization,
    filename: str,
    content: bytes,
    actor: User,
    request: TransportRequest | None = None,
) -> RosterImport:
    """Keep the file and queue the job that checks and saves it (in-process when embedded)."""
    if len(content) > MAX_FILE_BYTES:
        raise DomainError("file.too_large", field="file")
    if not filename.lower().endswith((".xlsx", ".csv")):
        raise DomainError("file.format", field="file")
    if request is not None and request.status not in {status.value for status in ADDABLE}:
        raise DomainError("request.frozen")
    roster_import = RosterImport(
        organization_id=organization.id,
        request_id=request.id if request else None,
        created_by_id=actor.id,
        filename=filename[-200:],
        content=content,
    )
    db.session.add(roster_import)
    db.session.flush()
    record_audit("roster.import_queued", roster_import, actor)
    enqueue_after_commit(IMPORT_TASK, roster_import.id)
    return roster_import


def _problem_dict(problem: Problem) -> dict:
    return {key: value for key, value in vars(problem).items() if value is not None}


def run_roster_import(import_id: int, report_progress: Callable[[RosterImport], None]) -> None:
    """Check every row, then save all of them in one go, or none.

    Safe to run again: a finished import is left alone, an interrupted one starts over (nothing
    of it was saved). ``report_progress`` is called now and then with the import row updated;
    the task commits it so the page can show a progress bar.
    """
    roster_import = db.session.get(RosterImport, import_id)
    if roster_import is None or roster_import.status in (ImportStatus.DONE, ImportStatus.FAILED):
        return
    roster_import.status = ImportStatus.VALIDATING.value
    roster_import.processed_rows = 0
    try:
        table = read_table(roster_import.filename, roster_import.content or b"")
    except SpreadsheetError as error:
        _finish_import(roster_import, problem=f"file.{error.reason}")
        return
    table = find_header_row(table)
    columns = map_columns(table.headers)
    roster_import.total_rows = len(table.rows)
    roster_import.errors = []
    report_progress(roster_import)
    if columns.problems:
        _finish_import(roster_import, problems=columns.problems, unknown=columns.unknown)
        return
    if not table.rows:
        _finish_import(roster_import, problem="file.no_rows", unknown=columns.unknown)
        return

    request = None
    if roster_import.request_id is not None:
        request = db.session.get(TransportRequest, roster_import.request_id)
    rule = age_rule(request.earliest_departure if request else None)

    def progress(done: int) -> None:
        roster_import.processed_rows = done
        report_progress(roster_import)

    checked = check_rows(table.rows, columns, today(), rule, on_progress=progress)
    roster_import.processed_rows = len(table.rows)
    passes, pass_problems = _read_passes(checked, columns.headers)
    problems = in_file_order(
        checked.problems
        + pass_problems
        + _roster_clashes(roster_import, checked, columns.headers, request),
        columns,
    )
    if problems:
        _finish_import(roster_import, problems=problems, unknown=columns.unknown)
        return
    try:
        with db.session.begin_nested():
            _save_roster(roster_import, checked, request, passes, columns.indexes.keys())
    except DomainError as error:  # e.g. the request was submitted elsewhere meanwhile
        _finish_import(roster_import, problem=error.code, unknown=columns.unknown)
        return
    except IntegrityError:  # another import added one of these workers at the same moment
        _finish_import(roster_import, problem="file.concurrent", unknown=columns.unknown)
        return
    _finish_import(roster_import, unknown=columns.unknown)


def _roster_clashes(
    roster_import: RosterImport,
    checked: RosterCheck,
    headers: dict[str, str],
    request: TransportRequest | None,
) -> list[Problem]:
    """Rows that clash with what is saved: the same ID on the roster under another name, or
    already holding a place on another live request. Rows refused for other cells are checked
    too, as far as their cells allow: fixing a phone must not reveal a clash only then."""
    pii = vault()
    rows_of: dict[str, list[WorkerData | RefusedRow]] = {}
    for worker in [*checked.workers, *checked.refused]:
        if worker.id_number is not None:
            rows_of.setdefault(pii.lookup_hash(worker.id_number), []).append(worker)
    on_roster = dict(
        db.session.execute(
            select(Worker.id_number_hash, Worker.name).where(
                Worker.organization_id == roster_import.organization_id
            )
        ).all()
    )
    header = headers.get("id_number", "身份证号")
    problems = []
    for id_hash, workers in rows_of.items():
        for worker in workers:
            if id_hash in on_roster and worker.name and on_roster[id_hash] != worker.name:
                problems.append(
                    Problem(
                        worker.row,
                        headers.get("name", "姓名"),
                        worker.name,
                        "name.differs_on_roster",
                        place=on_roster[id_hash],
                    )
                )
    if request is not None:
        clashes = live_places(rows_of, roster_import.organization_id, request.id)
        for id_hash, clash in clashes.items():
            reason = "id_number.on_own_request" if clash.own else "id_number.on_other_request"
            for worker in rows_of[id_hash]:
                problems.append(
                    Problem(
                        worker.row,
                        header,
                        mask_id_number(worker.id_number or ""),
                        reason,
                        place=clash.reference or None,
                    )
                )
    return problems


def _read_passes(
    checked: RosterCheck, headers: dict[str, str]
) -> tuple[dict[int, PassFacts], list[Problem]]:
    """The health passes in the file, read once (row -> facts); unreadable ones are problems,
    in rows refused for other cells too."""
    keys = health.trust_list_keys()
    passes: dict[int, PassFacts] = {}
    problems = []
    for worker in [*checked.workers, *checked.refused]:
        if not worker.health_pass:
            continue
        facts = read_pass(worker.health_pass, keys)
        if facts.read_problem is None:
            passes[worker.row] = facts
        else:
            shown = worker.health_pass[:12] + "…"
            header = headers.get("health_pass", "健康码")
            reason = f"health_pass.{facts.read_problem}"
            problems.append(Problem(worker.row, header, shown, reason))
    return passes, problems


def _roster_ids(organization_id: int) -> dict[str, int]:
    """The organization's workers: ID number hash -> worker id."""
    return dict(
        db.session.execute(
            select(Worker.id_number_hash, Worker.id).where(
                Worker.organization_id == organization_id
            )
        ).all()
    )


# The worker's columns that hold each optional roster field.
_OPTIONAL_FIELD_COLUMNS = {
    "home_region_name": "home_region_name",
    "group_tag": "group_tag",
    "emergency_contact_name": "emergency_contact_name",
    "emergency_contact_phone": "emergency_contact_phone_token",
}


def _save_roster(
    roster_import: RosterImport,
    checked: RosterCheck,
    request: TransportRequest | None,
    passes: dict[int, PassFacts],
    fields_in_file: Collection[str],
) -> None:
    organization_id = roster_import.organization_id
    existing = _roster_ids(organization_id)
    # A worker already on the roster keeps what the file has no column for (a file of the
    # required columns must not wipe the groups that seat a village together); an empty cell
    # in a column the file has clears the value: the file says so.
    kept = {
        column for name, column in _OPTIONAL_FIELD_COLUMNS.items() if name not in fields_in_file
    }
    new_rows, changed_rows, id_hashes = [], [], {}
    for worker in checked.workers:
        columns = _worker_columns(worker)
        id_hashes[worker.row] = columns["id_number_hash"]
        known = existing.get(columns["id_number_hash"])
        if known is None:
            new_rows.append({"organization_id": organization_id, **columns})
        else:
            # Every row has the same keys: the ORM still sends one executemany UPDATE.
            changed = {name: value for name, value in columns.items() if name not in kept}
            changed_rows.append({"id": known, **changed, "updated_at": utcnow()})
    ids = existing
    if new_rows:
        # No RETURNING (COPY has none): the new ids are read back in one query.
        bulk_insert(Worker.__table__, new_rows)
        ids = _roster_ids(organization_id)
    if changed_rows:
        db.session.execute(update(Worker), changed_rows)
    roster_import.added, roster_import.updated = len(new_rows), len(changed_rows)
    actor = (
        db.session.get(User, roster_import.created_by_id) if roster_import.created_by_id else None
    )
    if passes:
        with_pass = [
            (worker, id_hashes[worker.row]) for worker in checked.workers if worker.row in passes
        ]
        # On a request, adding the workers checks them. Otherwise only workers already on the
        # roster can be on a live request: one just added is on none.
        recheck = []
        if request is None:
            recheck = [existing[h] for _, h in with_pass if h in existing]
        health.add_passes(
            [(ids[h], worker.health_pass, passes[worker.row]) for worker, h in with_pass],
            actor,
            recheck,
        )
    worker_ids = [ids[id_hash] for id_hash in id_hashes.values()]
    if request is not None and worker_ids:
        workers = db.session.scalars(select(Worker).where(Worker.id.in_(worker_ids))).all()
        add_workers(request, list(workers), actor)  # type: ignore[arg-type]
    record_audit(
        "roster.imported", roster_import, actor, added=len(new_rows), updated=len(changed_rows)
    )


def _finish_import(
    roster_import: RosterImport,
    problems: list[Problem] | None = None,
    unknown: list[str] | None = None,
    problem: str | None = None,
) -> None:
    failed = bool(problems) or problem is not None
    roster_import.status = (ImportStatus.FAILED if failed else ImportStatus.DONE).value
    roster_import.problem = problem
    roster_import.errors = [_problem_dict(p) for p in problems or []]
    roster_import.unknown_columns = unknown or []
    roster_import.content = None  # the file held PII: keep only what the result needs
    roster_import.finished_at = utcnow()
    db.session.flush()


def mark_import_broken(import_id: int) -> None:
    roster_import = db.session.get(RosterImport, import_id)
    if roster_import is not None and roster_import.status != ImportStatus.DONE:
        _finish_import(roster_import, problem="file.internal_error")
