"""Health operations: the trust list, certificates, and the verdict on each roster entry.

The check runs when a worker is put on a request, when their certificate changes, and again for
everyone departing soon (a pass can expire between booking and departure). Each check judges the
pass with the trust list as it is now, so a revoked issuer counts from the next check on; the
pass's signature and holder are verified once, when it is added (see HealthCertificate).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import (
    Boolean,
    Row,
    Select,
    TextClause,
    and_,
    column,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import aliased, defer, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from app.accounts.models import User
from app.accounts.services import organization_users
from app.core.bulk import bulk_insert
from app.core.clock import utcnow
from app.core.errors import DomainError
from app.core.pii import PiiVault, vault
from app.core.services import record_audit
from app.demand.models import (
    CLAIMING_STATUSES,
    LIVE_STATUSES,
    EntryStatus,
    RosterEntry,
    TransportRequest,
    Worker,
)
from app.extensions import db
from app.health.models import HealthCertificate, HealthIssuer
from app.health.passes import (
    KeyProblem,
    PassFacts,
    QrProblem,
    decode_qr,
    key_id,
    public_jwk_from_text,
    read_pass,
)
from app.health.rules import (
    IssuerFacts,
    PaperFacts,
    PassClaims,
    Policy,
    Subject,
    Verdict,
    evaluate_paper,
    evaluate_pass,
    judge_pass,
    name_key,
)
from app.notify.services import link, notify_users

# Entries whose verdict a health check may change (later states are past the bus door).
CHECKABLE = (EntryStatus.PENDING.value, EntryStatus.CLEARED.value, EntryStatus.BLOCKED.value)


def local_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def policy(freshness_hours: int | None = None) -> Policy:
    """The health rules; a trip's policy may set its own freshness window."""
    config = current_app.config
    return Policy(
        freshness=timedelta(hours=freshness_hours or config["HEALTH_FRESHNESS_HOURS"]),
        fever_celsius=Decimal(str(config["FEVER_CELSIUS"])),
    )


def usual_departure_time() -> time:
    """The usual morning departure hour (``DEFAULT_DEPARTURE_TIME``), local time."""
    hour, minute = (int(part) for part in current_app.config["DEFAULT_DEPARTURE_TIME"].split(":"))
    return time(hour, minute)


def request_departure(request: TransportRequest) -> datetime:
    """When a request's workers leave, until trips give the exact time: the earliest departure
    day at the usual morning departure hour, local time, or now once that has passed (on a
    request leaving today, a pass issued this afternoon is not "issued after the departure")."""
    usual = datetime.combine(request.earliest_departure, usual_departure_time(), local_zone())
    return max(usual, utcnow())


def local_day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), local_zone())


def local_day_end(day: date) -> datetime:
    """The end of a day given as a last valid date ("valid until 2 March": all of 2 March)."""
    return local_day_start(day + timedelta(days=1))


# --- the trust list ------------------------------------------------------------------------


def _key(key_text: str) -> tuple[str, dict]:
    try:
        public_jwk = public_jwk_from_text(key_text)
    except KeyProblem as problem:
        raise DomainError(f"key.{problem.reason}", field="public_key") from None
    return key_id(public_jwk), public_jwk


def create_issuer(
    name: str,
    region_code: str,
    key_text: str,
    valid_from: datetime,
    valid_until: datetime | None,
    actor: User | None,
) -> HealthIssuer:
    kid, public_jwk = _key(key_text)
    if db.session.scalar(select(HealthIssuer.id).where(HealthIssuer.kid == kid)):
        raise DomainError("key.exists", field="public_key")
    _check_validity(valid_from, valid_until)
    issuer = HealthIssuer(
        name=name.strip(),
        region_code=region_code,
        kid=kid,
        public_jwk=public_jwk,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    db.session.add(issuer)
    db.session.flush()
    record_audit("issuer.created", issuer, actor, kid=kid)
    return issuer


def _check_validity(valid_from: datetime, valid_until: datetime | None) -> None:
    if valid_until is not None and valid_until <= valid_from:
        raise DomainError("valid_until.before_valid_from", field="valid_until")


def update_issuer(
    issuer: HealthIssuer, name: str, valid_from: datetime, valid_until: datetime | None, actor: User
) -> None:
    _check_validity(valid_from, valid_until)
    issuer.name, issuer.valid_from, issuer.valid_until = name.strip(), valid_from, valid_until
    db.session.flush()
    record_audit(
        "issuer.updated",
        issuer,
        actor,
        valid_from=valid_from.isoformat(),
        valid_until=valid_until.isoformat() if valid_until else None,
    )


def revoke_issuer(issuer: HealthIssuer, reason: str, actor: User) -> None:
    if not reason.strip():
        raise DomainError("revoked_reason.required", field="reason")
    issuer.revoked, issuer.revoked_reason, issuer.revoked_at = True, reason.strip(), utcnow()
    db.session.flush()
    record_audit("issuer.revoked", issuer, actor)


def _issuer_facts() -> dict[str, IssuerFacts]:
    """The trust list as a verdict needs it: without the keys (their JSON took most of each
    check's look at the trust list, and a pass's signature is verified once)."""
    rows = db.session.execute(
        select(
            HealthIssuer.kid,
            HealthIssuer.region_code,
            HealthIssuer.valid_from,
            HealthIssuer.valid_until,
            HealthIssuer.revoked,
        )
    )
    return {row.kid: IssuerFacts(*row) for row in rows}


def trust_list_keys() -> dict[str, dict]:
    """Each trusted key id's public key (JWK)."""
    rows = db.session.execute(select(HealthIssuer.kid, HealthIssuer.public_jwk))
    return dict(rows.all())


# --- certificates --------------------------------------------------------------------------


def read_token(token: str) -> PassFacts:
    """Read a pass with the current trust list; refuse what cannot be read at all."""
    facts = read_pass(token, trust_list_keys())
    if facts.read_problem is not None:
        raise DomainError(f"pass.{facts.read_problem}", field="health_pass")
    return facts


def pass_from_input(text: str | None, image: bytes | None) -> tuple[str, PassFacts] | None:
    """A pass as a person gives it: the QR code's text pasted, or a photo of the QR code."""
    if image:
        try:
            text = decode_qr(image)
        except QrProblem as problem:
            raise DomainError(f"qr.{problem.reason}", field="health_pass_image") from None
    if not (text or "").strip():
        return None
    return text.strip(), read_token(text)


def _checked_claims(facts: PassFacts, pii: PiiVault, kid_trusted: bool) -> dict:
    """The stored claims of a readable pass (HealthCertificate's signature_valid…name_hash).
    A signature that did not verify is final only when its kid was on the trust list."""
    return {
        "signature_valid": True if facts.signature_valid else (False if kid_trusted else None),
        "pass_issuer": facts.issuer,
        "subject_hash": pii.lookup_hash((facts.subject or "").strip().upper()),
        "name_hash": pii.lookup_hash(name_key(facts.name or "")),
    }


def add_passes(
    items: list[tuple[int, str, PassFacts]], actor: User | None, recheck: Collection[int]
) -> None:
    """Many workers' passes at once (a roster import): one bulk insert. The entries on live
    requests of the workers in ``recheck`` (some of those in ``items``) are checked again."""
    pii = vault()
    bulk_insert(
        HealthCertificate.__table__,
        [
            {
                "worker_id": worker_id,
                "kind": "pass",
                "status": facts.status or "",
                "issued_at": facts.issued_at,
                "expires_at": facts.expires_at,
                "token_cipher": pii.encrypt(token.strip()),
                "kid": facts.kid,
                "jti": facts.jti,
                **_checked_claims(facts, pii, kid_trusted=False),
                "created_at": utcnow(),
            }
            for worker_id, token, facts in items
        ],
    )
    record_audit("certificate.passes_imported", None, actor, count=len(items))
    if recheck:
        entries = db.session.scalars(
            select(RosterEntry)
            .join(TransportRequest)
            .where(
                RosterEntry.worker_id.in_(list(recheck)),
                TransportRequest.status.in_([status.value for status in LIVE_STATUSES]),
            )
        ).all()
        check_entries(list(entries))


def attach_pass(
    worker: Worker, token: str, actor: User | None, facts: PassFacts | None = None
) -> HealthCertificate:
    """Keep a worker's signed pass (even one that will not clear them: the verdict says why)
    and check again every live request they are on."""
    facts = facts or read_token(token)
    pii = vault()
    certificate = HealthCertificate(
        worker_id=worker.id,
        kind="pass",
        status=facts.status or "",
        issued_at=facts.issued_at,
        expires_at=facts.expires_at,
        token_cipher=pii.encrypt(token.strip()),
        kid=facts.kid,
        jti=facts.jti,
        **_checked_claims(facts, pii, kid_trusted=False),
    )
    db.session.add(certificate)
    db.session.flush()
    record_audit("certificate.pass_added", certificate, actor, worker_id=worker.id)
    check_worker_entries(worker)
    return certificate


def record_paper(
    worker: Worker,
    clinic: str,
    certificate_number: str,
    issued_on: date,
    valid_until: date,
    status: str,
    scan: bytes | None,
    scan_mimetype: str | None,
    actor: User,
) -> HealthCertificate:
    """A coordinator accepts a printed certificate; the record keeps who and when."""
    if valid_until < issued_on:
        raise DomainError("valid_until.before_issued_on", field="valid_until")
    certificate = HealthCertificate(
        worker_id=worker.id,
        kind="paper",
        status=status,
        issued_at=local_day_start(issued_on),
        expires_at=local_day_end(valid_until),
        clinic=clinic.strip(),
        certificate_number=certificate_number.strip(),
        issued_on=issued_on,
        valid_until=valid_until,
        scan=scan,
        scan_mimetype=scan_mimetype,
        recorded_by_id=actor.id,
    )
    db.session.add(certificate)
    db.session.flush()
    record_audit("certificate.paper_recorded", certificate, actor, worker_id=worker.id)
    check_worker_entries(worker)
    return certificate


def current_certificates(worker_ids: Iterable[int]) -> dict[int, HealthCertificate]:
    """Each worker's newest certificate."""
    newest: dict[int, int] = {}
    pairs = _probed(
        sorted(set(worker_ids)),
        _CERTIFICATES_OF_PG,
        lambda chunk: select(HealthCertificate.worker_id, HealthCertificate.id).where(
            HealthCertificate.worker_id.in_(chunk)
        ),
    )
    for worker_id, certificate_id in pairs:
        newest[worker_id] = max(certificate_id, newest.get(worker_id, 0))
    certificates = sorted(newest.values())
    found: dict[int, HealthCertificate] = {}
    for start in range(0, len(certificates), 5000):
        rows = db.session.scalars(
            select(HealthCertificate)
            .where(HealthCertificate.id.in_(certificates[start : start + 5000]))
            .options(defer(HealthCertificate.token_cipher))  # read only when a token is read
        )
        found.update((certificate.worker_id, certificate) for certificate in rows)
    return found


def current_claims(worker_ids: Iterable[int]) -> dict[int, Row]:
    """Each worker's newest certificate as a row of what a check judges (``_CLAIMS``), in one
    query per 5,000 workers: a check loaded the certificates as objects (and found them by a
    query of its own), a third of a campaign's allocation. ``Checker.verdict`` loads the
    object itself when a pass must be read again."""
    claims = _probed(
        sorted(set(worker_ids)),
        _NEWEST_CLAIMS_PG,
        lambda chunk: select(*_CLAIMS).where(
            HealthCertificate.id.in_(
                select(func.max(HealthCertificate.id))
                .where(HealthCertificate.worker_id.in_(chunk))
                .group_by(HealthCertificate.worker_id)
            )
        ),
    )
    return {row.worker_id: row for row in claims}


def _probed(values: list, probe_pg: TextClause, query: Callable[[list], Select]) -> Iterator:
    """The rows about these values, 5,000 at a time: on PostgreSQL ``probe_pg`` (which looks
    each value of ``:given`` up on its own), elsewhere ``query(chunk)``."""
    postgresql = db.session.get_bind().dialect.name == "postgresql"
    for start in range(0, len(values), 5000):
        chunk = values[start : start + 5000]
        if postgresql:
            yield from db.session.execute(probe_pg, {"given": chunk})
        else:
            yield from db.session.execute(query(chunk))


# A worker's certificates, worker by worker (index probes, as ``_HOLDERS_PG``): asked with
# IN (...) or GROUP BY, the planner read every certificate whenever the table had grown since
# its statistics (119 ms a check at 170,000 certificates during a campaign's requests).
_CERTIFICATES_OF_PG = text(
    "SELECT given.worker_id, mine.id FROM unnest(CAST(:given AS integer[])) AS given (worker_id)"
    " CROSS JOIN LATERAL (SELECT c.id FROM health_certificates AS c"
    "   WHERE c.worker_id = given.worker_id OFFSET 0) AS mine"
)

# What a check reads of a certificate: the claims kept when the pass was added.
_CLAIMS = tuple(
    HealthCertificate.__table__.c[name]
    for name in (
        "id",
        "worker_id",
        "kind",
        "status",
        "issued_at",
        "expires_at",
        "kid",
        "jti",
        "signature_valid",
        "pass_issuer",
        "subject_hash",
        "name_hash",
    )
)
# The newest certificate of each worker, worker by worker (as ``_CERTIFICATES_OF_PG``). The
# worker's certificates are found first (``OFFSET 0``), then the newest taken: asked for the
# newest id with this worker's, the planner walked the primary key down from the newest
# certificate of all, through the whole table for a worker added long ago (a campaign's
# requests stage took three times as long).
_NEWEST_CLAIMS_PG = text(
    "SELECT newest.* FROM unnest(CAST(:given AS integer[])) AS given (worker_id)"
    " CROSS JOIN LATERAL (SELECT * FROM (SELECT c.id, c.worker_id, c.kind, c.status,"
    "   c.issued_at, c.expires_at, c.kid, c.jti, c.signature_valid, c.pass_issuer,"
    "   c.subject_hash, c.name_hash FROM health_certificates AS c"
    "   WHERE c.worker_id = given.worker_id OFFSET 0) AS mine"
    "   ORDER BY mine.id DESC LIMIT 1) AS newest"
).columns(*_CLAIMS)  # the columns of _CLAIMS, in order: the times come back aware, in UTC


# One worker's whole look at their pass, for one door: the newest certificate's claims (as
# ``_NEWEST_CLAIMS_PG``), its issuer's entry on the trust list, and whether another person holds
# the same pass (pass by pass, as ``_HOLDERS_PG``). The trip page asked the same with three
# statements (the trust list, the claims, the reuse): half again its time.
_ISSUER_OF = (
    *(
        column(f"issuer_{name}", HealthIssuer.__table__.c[name].type)
        for name in ("region_code", "valid_from", "valid_until", "revoked")
    ),
    column("reused", Boolean),
)
_ONE_PASS_PG = text(
    "SELECT newest.*, issuer.region_code AS issuer_region_code, issuer.valid_from AS"
    " issuer_valid_from, issuer.valid_until AS issuer_valid_until, issuer.revoked AS"
    " issuer_revoked, EXISTS (SELECT 1 FROM (SELECT o.worker_id FROM health_certificates AS o"
    "   WHERE o.jti = newest.jti OFFSET 0) AS held JOIN workers AS w ON w.id = held.worker_id"
    "   WHERE w.id_number_hash <> :id_hash) AS reused"
    " FROM (SELECT c.id, c.worker_id, c.kind, c.status, c.issued_at, c.expires_at, c.kid,"
    "   c.jti, c.signature_valid, c.pass_issuer, c.subject_hash, c.name_hash"
    "   FROM (SELECT c.* FROM health_certificates AS c WHERE c.worker_id = :worker_id"
    "   OFFSET 0) AS c ORDER BY c.id DESC LIMIT 1) AS newest"
    " LEFT JOIN health_issuers AS issuer ON issuer.kid = newest.kid"
).columns(*_CLAIMS, *_ISSUER_OF)


def _one_pass(worker_id: int, id_hash: str) -> Select:
    """``_ONE_PASS_PG`` elsewhere (SQLite)."""
    other, holder = aliased(HealthCertificate), aliased(Worker)
    reused = exists().where(
        other.jti == HealthCertificate.jti,
        holder.id == other.worker_id,
        holder.id_number_hash != id_hash,
    )
    newest = (
        select(func.max(HealthCertificate.id))
        .where(HealthCertificate.worker_id == worker_id)
        .scalar_subquery()
    )
    return (
        select(
            *_CLAIMS,
            HealthIssuer.region_code.label("issuer_region_code"),
            HealthIssuer.valid_from.label("issuer_valid_from"),
            HealthIssuer.valid_until.label("issuer_valid_until"),
            HealthIssuer.revoked.label("issuer_revoked"),
            reused.label("reused"),
        )
        .outerjoin(HealthIssuer, HealthIssuer.kid == HealthCertificate.kid)
        .where(HealthCertificate.id == newest)
    )


def door_verdict(worker: Worker, departure: datetime, freshness_hours: int | None) -> Verdict:
    """``Checker.verdict`` on one worker's newest certificate at this departure (a trip's
    door, and the worker's own page saying what that door will say), read with one
    statement."""
    if db.session.get_bind().dialect.name == "postgresql":
        values = {"worker_id": worker.id, "id_hash": worker.id_number_hash}
        row = db.session.execute(_ONE_PASS_PG, values).one_or_none()
    else:
        row = db.session.execute(_one_pass(worker.id, worker.id_number_hash)).one_or_none()
    issuers = {}
    if row is not None and row.kid and row.issuer_region_code is not None:
        issuers[row.kid] = IssuerFacts(
            row.kid,
            row.issuer_region_code,
            row.issuer_valid_from,
            row.issuer_valid_until,
            row.issuer_revoked,
        )
    checker = Checker(freshness_hours, issuers)
    if row is not None and row.jti:
        # Who holds the pass, as ``know_holders`` would leave it: only whether someone other
        # than this worker does matters (``Checker._reused``).
        checker.jti_holders[row.jti] = {"another person"} if row.reused else set()
    return checker.verdict(worker, row, departure)


# --- verdicts ------------------------------------------------------------------------------


class Checker:
    """Evaluates many entries with one read of the trust list."""

    def __init__(
        self, freshness_hours: int | None = None, issuers: dict[str, IssuerFacts] | None = None
    ) -> None:
        # ``issuers``: the trust list's entries the checks will need, when already read.
        self.issuers = _issuer_facts() if issuers is None else issuers
        self._keys: dict[str, dict] | None = None  # read only if a token must be read
        self.policy = policy(freshness_hours)
        self.pii = vault()
        self.jti_holders: dict[str, set[str]] = {}  # pass id -> ID number hashes holding it

    @property
    def keys(self) -> dict[str, dict]:
        if self._keys is None:
            self._keys = trust_list_keys()
        return self._keys

    def know_holders(self, certificates: Iterable[HealthCertificate | Row]) -> None:
        """Who holds these passes, in one query (else one query per verdict)."""
        rows = _probed(
            sorted({c.jti for c in certificates if c.jti} - self.jti_holders.keys()),
            _HOLDERS_PG,
            lambda chunk: (
                select(HealthCertificate.jti, Worker.id_number_hash)
                .join(Worker, HealthCertificate.worker_id == Worker.id)
                .where(HealthCertificate.jti.in_(chunk))
            ),
        )
        for jti, holder in rows:
            self.jti_holders.setdefault(jti, set()).add(holder)

    def verdict(
        self, worker: Worker, certificate: HealthCertificate | Row | None, departure: datetime
    ) -> Verdict:
        """The verdict on a worker's newest certificate (an object, or a row of
        ``current_claims``) at this departure."""
        verdict = self.judge(worker, certificate, departure)
        if verdict is not None:
            return verdict
        # Not verified under a trusted key yet (its issuer was added since, or the row
        # predates the stored claims): read the token, and keep what it says.
        certificate = db.session.get(HealthCertificate, certificate.id)
        issuer = self.issuers.get(certificate.kid) if certificate.kid else None
        reused = self._reused(worker, certificate)
        facts = read_pass(self.pii.decrypt(certificate.token_cipher), self.keys)
        if facts.read_problem is None:
            claims = _checked_claims(facts, self.pii, kid_trusted=facts.kid in self.keys)
            for column, value in claims.items():
                setattr(certificate, column, value)
        subject = Subject(self.pii.decrypt(worker.id_number_token), worker.name)
        return evaluate_pass(facts, issuer, subject, departure, self.policy, reused)

    def judge(self, worker, certificate, departure: datetime) -> Verdict | None:
        """The verdict from the claims kept with the certificate, or None when its pass must
        be read again. ``worker``: anything with the worker's ``id_number_hash`` and ``name``
        (an object, or a row)."""
        if certificate is None:
            return judge_pass(None, None, departure, self.policy, False)
        if certificate.kind == "paper":
            paper = PaperFacts(certificate.status, certificate.issued_at, certificate.expires_at)
            return evaluate_paper(paper, departure, self.policy)
        if certificate.subject_hash is None or (
            certificate.signature_valid is None and certificate.kid in self.issuers
        ):
            return None
        issuer = self.issuers.get(certificate.kid) if certificate.kid else None
        reused = self._reused(worker, certificate)
        claims = PassClaims(
            kid=certificate.kid,
            signature_valid=bool(certificate.signature_valid),
            issuer_code=certificate.pass_issuer,
            status=certificate.status,
            issued_at=certificate.issued_at,
            expires_at=certificate.expires_at,
            id_number_matches=certificate.subject_hash == worker.id_number_hash,
            name_matches=certificate.name_hash == self.pii.lookup_hash(name_key(worker.name)),
        )
        return judge_pass(claims, issuer, departure, self.policy, reused)

    def _reused(self, worker, certificate) -> bool:
        if not certificate.jti:
            return False
        if certificate.jti in self.jti_holders:
            return bool(self.jti_holders[certificate.jti] - {worker.id_number_hash})
        return _jti_used_by_other(certificate.jti, worker)


# Each pass looked up on its own (index probes, ``OFFSET 0`` keeping the planner from merging
# the lookups into one join): written as a join, the planner hash-joined every certificate and
# every worker whenever the tables had grown since their statistics (a campaign's first
# imports: 18 ms a check on 48,000 workers, 38% of adding workers to requests).
_HOLDERS_PG = text(
    "SELECT given.jti, holder.id_number_hash"
    " FROM unnest(CAST(:given AS varchar[])) AS given (jti)"
    " CROSS JOIN LATERAL (SELECT c.worker_id FROM health_certificates AS c"
    "   WHERE c.jti = given.jti OFFSET 0) AS held"
    " CROSS JOIN LATERAL (SELECT w.id_number_hash FROM workers AS w"
    "   WHERE w.id = held.worker_id OFFSET 0) AS holder"
)


def _jti_used_by_other(jti: str, worker: Worker) -> bool:
    """The same pass on another person (the same person on two employers' rosters is fine)."""
    return (
        db.session.scalar(
            select(HealthCertificate.id)
            .join(Worker, HealthCertificate.worker_id == Worker.id)
            .where(HealthCertificate.jti == jti, Worker.id_number_hash != worker.id_number_hash)
            .limit(1)
        )
        is not None
    )


# A worker cleared with no reason left: nearly every entry of a submission or an allocation.
PLAIN_CLEARED = {
    "status": EntryStatus.CLEARED.value,
    "block_reason": None,
    "override_reasons": None,
    "override_note": None,
    "overridden_by_id": None,
    "overridden_at": None,
}


def apply_verdict(entry: RosterEntry, verdict: Verdict) -> bool:
    """Give the entry the verdict. True when it is cleared with no reason: its columns are then
    set as already saved, for ``write_stamps`` to write in one UPDATE with the others so
    cleared (the flush wrote an UPDATE a row: 230,000 of them in a province's submissions)."""
    reasons = set(verdict.reasons)
    overridden = set((entry.override_reasons or "").split(",")) - {""}
    previous = entry.status
    if not reasons:
        for column, value in PLAIN_CLEARED.items():
            set_committed_value(entry, column, value)
    elif reasons <= overridden:
        entry.status, entry.block_reason = EntryStatus.CLEARED.value, ",".join(verdict.reasons)
    else:
        entry.status, entry.block_reason = EntryStatus.BLOCKED.value, ",".join(verdict.reasons)
    if entry.status != previous and previous != EntryStatus.PENDING.value:
        record_audit(
            f"entry.health_{entry.status}",
            entry,
            None,
            request_id=entry.request_id,
            reasons=entry.block_reason or "",
        )
    return not reasons


def refuses(entry: RosterEntry, verdict: Verdict) -> bool:
    """Whether the verdict stops this worker: it gives a reason that no coordinator's written
    override of the entry covers (as at the door and in the periodic check of the seated)."""
    overridden = set((entry.override_reasons or "").split(",")) - {""}
    return not set(verdict.reasons) <= overridden


def load_workers(entries: Iterable[RosterEntry]) -> None:
    """Give these entries their workers with one query per 5,000 (as ``selectinload`` does),
    instead of one lazy load per ``entry.worker``: 238,000 queries on a province's
    submissions."""
    waiting = [entry for entry in entries if "worker" in sa_inspect(entry).unloaded]
    ids = sorted({entry.worker_id for entry in waiting})
    workers: dict[int, Worker] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        workers.update(
            (w.id, w) for w in db.session.scalars(select(Worker).where(Worker.id.in_(chunk)))
        )
    for entry in waiting:
        if entry.worker_id in workers:
            set_committed_value(entry, "worker", workers[entry.worker_id])


class Stamp(NamedTuple):
    """A check not yet written: when, and whether the entry came out plainly cleared (its
    verdict columns then written with the time: ``PLAIN_CLEARED``)."""

    at: datetime
    plainly_cleared: bool


def check_entries(
    entries: list[RosterEntry],
    departure_of=None,
    tell_all_blocked: bool = False,
    checker: Checker | None = None,
    stamps: dict[int, Stamp] | None = None,
) -> dict[str, int]:
    """Check these entries now; returns how many ended cleared and blocked. The employer is
    told of workers newly blocked on live requests (or of all blocked ones, on submission).
    ``checker``: one made for many calls (the trust list read once), with its freshness.
    ``stamps``: each entry's check is left there (entry id -> ``Stamp``) for the caller to
    write with its own UPDATE of the same rows, or by ``write_stamps``, instead of written
    here (allocation writes the seated workers' with their seats)."""
    entries = [entry for entry in entries if entry.status in CHECKABLE]
    if not entries:
        return {"cleared": 0, "blocked": 0}
    if stamps is not None:  # an earlier check of the same entry is written before this one's
        write_stamps({e.id: stamps.pop(e.id) for e in entries if e.id in stamps})
    checker = checker or Checker()
    load_workers(entries)
    certificates = current_claims(entry.worker_id for entry in entries)
    checker.know_holders(certificates.values())
    departure_of = departure_of or (lambda entry: request_departure(entry.request))
    counts = {"cleared": 0, "blocked": 0}
    newly_blocked: dict[int, list[RosterEntry]] = {}
    plainly_cleared: set[int] = set()
    for entry in entries:
        previous = entry.status
        verdict = checker.verdict(
            entry.worker, certificates.get(entry.worker_id), departure_of(entry)
        )
        if apply_verdict(entry, verdict):
            plainly_cleared.add(entry.id)
        counts["cleared" if entry.status == EntryStatus.CLEARED else "blocked"] += 1
        if entry.status == EntryStatus.BLOCKED and (
            tell_all_blocked or previous != EntryStatus.BLOCKED
        ):
            newly_blocked.setdefault(entry.request_id, []).append(entry)
    db.session.flush()  # the entries blocked, or cleared by an override, whose verdict changed
    now = utcnow()
    checked = {entry.id: Stamp(now, entry.id in plainly_cleared) for entry in entries}
    for entry in entries:
        set_committed_value(entry, "health_checked_at", now)
    if stamps is None:
        write_stamps(checked)
    else:
        stamps.update(checked)
    for blocked in newly_blocked.values():
        _tell_employer([(entry, entry.block_reason or "") for entry in blocked])
    return counts


def plainly_cleared(workers: Iterable[Worker], departure: datetime, checker: Checker) -> set[int]:
    """The ids of these workers whose newest certificate clears them for this departure with no
    reason given: their new roster entries are written cleared (``demand._new_entries``), their
    waiting entries stay cleared (``check_entries_by_id``). ``workers``: objects, or rows with
    the worker's ``id``, ``id_number_hash`` and ``name``."""
    workers = list(workers)
    claims = current_claims(worker.id for worker in workers)
    checker.know_holders(claims.values())
    cleared = set()
    for worker in workers:
        verdict = checker.judge(worker, claims.get(worker.id), departure)
        if verdict is not None and not verdict.reasons:
            cleared.add(worker.id)
    return cleared


def check_entries_by_id(
    entry_ids: list[int], departure: datetime, checker: Checker, stamps: dict[int, Stamp]
) -> dict[int, str]:
    """``check_entries`` of these entries at one departure, their checks left in ``stamps``
    (an allocation's): each entry's status after it. Entries, workers and certificates are
    read as rows; only an entry not plainly cleared again (blocked, cleared by an override, or
    its pass to be read again) is loaded and goes through ``check_entries`` for its verdict,
    audit and the employer's notice. Loading every one as objects was a third of a
    campaign's allocation."""
    rows = list(
        _probed(
            sorted(set(entry_ids)),
            _ENTRY_HOLDERS_PG,
            lambda chunk: (
                select(*_ENTRY_HOLDER)
                .join(Worker, RosterEntry.worker_id == Worker.id)
                .where(RosterEntry.id.in_(chunk))
            ),
        )
    )
    statuses = {row.entry_id: row.status for row in rows}
    waiting = [row for row in rows if row.status in CHECKABLE]
    cleared = plainly_cleared(waiting, departure, checker)  # a row stands for its worker
    plain, others = [], []
    for row in waiting:
        again = row.status == EntryStatus.CLEARED and row.id in cleared
        (plain if again else others).append(row.entry_id)
    write_stamps({i: stamps.pop(i) for i in plain if i in stamps})  # as check_entries does
    now = utcnow()
    stamps.update((entry_id, Stamp(now, True)) for entry_id in plain)
    for start in range(0, len(others), 5000):
        entries = db.session.scalars(
            select(RosterEntry)
            .options(joinedload(RosterEntry.worker, innerjoin=True))
            .where(RosterEntry.id.in_(others[start : start + 5000]))
        ).all()
        check_entries(list(entries), lambda _entry: departure, checker=checker, stamps=stamps)
        statuses.update((entry.id, entry.status) for entry in entries)
    return statuses


# What ``check_entries_by_id`` reads of an entry and its worker: the worker's columns under
# their own names, so that the row is judged as the worker (``plainly_cleared``).
_ENTRY_HOLDER = (
    RosterEntry.id.label("entry_id"),
    RosterEntry.status,
    Worker.id,
    Worker.id_number_hash,
    Worker.name,
)
# Entry by entry, as ``_HOLDERS_PG``.
_ENTRY_HOLDERS_PG = text(
    "SELECT entry.id AS entry_id, entry.status, entry.worker_id AS id, holder.id_number_hash,"
    " holder.name"
    " FROM unnest(CAST(:given AS integer[])) AS given (id)"
    " CROSS JOIN LATERAL (SELECT e.id, e.status, e.worker_id FROM roster_entries AS e"
    "   WHERE e.id = given.id OFFSET 0) AS entry"
    " CROSS JOIN LATERAL (SELECT w.id_number_hash, w.name FROM workers AS w"
    "   WHERE w.id = entry.worker_id OFFSET 0) AS holder"
)


def write_stamps(stamps: dict[int, Stamp]) -> None:
    """When each entry was last checked, and the verdict of those plainly cleared, in one
    UPDATE per 5,000 of the same stamp (an UPDATE per entry for the time alone was the
    costliest statement of a campaign's allocation)."""
    alike: dict[Stamp, list[int]] = defaultdict(list)
    for entry_id, stamp in stamps.items():
        alike[stamp].append(entry_id)
    for stamp, ids in alike.items():
        values = PLAIN_CLEARED if stamp.plainly_cleared else {}
        for start in range(0, len(ids), 5000):
            db.session.execute(
                update(RosterEntry)
                .where(RosterEntry.id.in_(ids[start : start + 5000]))
                .values(health_checked_at=stamp.at, **values)
                .execution_options(synchronize_session=False)
            )


def _tell_employer(blocked: list[tuple[RosterEntry, str]]) -> None:
    """The employer hears which workers of a live request need a new certificate, and why
    (reason codes), each time the list changes (drafts are shown on the page only: nothing is
    booked yet)."""
    request = blocked[0][0].request
    if request.status not in {status.value for status in CLAIMING_STATUSES}:
        return
    listed = sorted(blocked, key=lambda pair: pair[0].worker.name)
    # The same workers blocked for the same reasons are one event, told once.
    fingerprint = hashlib.sha256(
        ";".join(f"{entry.id}:{reasons}" for entry, reasons in listed).encode()
    ).hexdigest()[:16]
    notify_users(
        f"health.blocked:{request.id}:{fingerprint}",
        organization_users(request.organization_id),
        "health_blocked",
        {
            "reference": request.reference,
            "workers": [
                {"name": entry.worker.name, "reasons": reasons} for entry, reasons in listed
            ],
            # Blocked workers are listed on the page's "blocked" tab; seated ones are not.
            "url": link(
                f"/requests/{request.id}"
                + (
                    "?status=blocked"
                    if all(e.status == EntryStatus.BLOCKED for e, _ in listed)
                    else ""
                )
            ),
        },
        about=request,
    )


def check_worker_entries(worker: Worker) -> None:
    entries = db.session.scalars(
        select(RosterEntry)
        .join(TransportRequest)
        .where(
            RosterEntry.worker_id == worker.id,
            TransportRequest.status.in_([status.value for status in LIVE_STATUSES]),
        )
    ).all()
    check_entries(list(entries))
    # A seated worker keeps the seat (check_entries leaves them alone), but a new ID number or
    # name may no longer match their pass: the employer hears now, not 48 hours before.
    _warn_of_seated(RosterEntry.worker_id == worker.id, after=utcnow())


def recheck_departing(now: datetime, within: timedelta) -> dict[str, int]:
    """Everyone on live requests leaving between now and ``within`` from now, checked at
    their departure time: a pass that expires before then blocks them now."""
    zone = local_zone()
    first_day, last_day = now.astimezone(zone).date(), (now + within).astimezone(zone).date()
    requests = db.session.scalars(
        select(TransportRequest).where(
            TransportRequest.status.in_([status.value for status in CLAIMING_STATUSES]),
            TransportRequest.earliest_departure.between(first_day, last_day),
        )
    ).all()
    totals = {"requests": 0, "cleared": 0, "blocked": 0}
    for request in requests:
        departure = request_departure(request)
        if not now <= departure <= now + within:
            continue
        entries = db.session.scalars(
            select(RosterEntry).where(
                and_(RosterEntry.request_id == request.id, RosterEntry.status.in_(CHECKABLE))
            )
        ).all()
        counts = check_entries(list(entries))
        totals["requests"] += 1
        totals["cleared"] += counts["cleared"]
        totals["blocked"] += counts["blocked"]
    totals["seated_failing"] = _warn_of_seated(after=now, until=now + within)
    return totals


def _warn_of_seated(*conditions, after: datetime, until: datetime | None = None) -> int:
    """Workers already seated on a first leg leaving between ``after`` and ``until`` (and
    meeting ``conditions`` on their entry), judged at that trip's departure with its freshness
    rule. They keep their seat (the door judges again, and the pass may be replaced before
    then), but the employer hears now who would be refused."""
    from app.trips.models import SeatAssignment, Trip, TripStatus  # trips builds on health

    leaving = Trip.departs_at >= after if until is None else Trip.departs_at.between(after, until)
    rows = db.session.execute(
        select(RosterEntry, Trip.departs_at, Trip.health_freshness_hours)
        .join(SeatAssignment, SeatAssignment.roster_entry_id == RosterEntry.id)
        .join(Trip, SeatAssignment.trip_id == Trip.id)
        .where(
            RosterEntry.status == EntryStatus.SEATED,
            Trip.connects_from_id.is_(None),
            Trip.status.in_([TripStatus.OPEN, TripStatus.LOCKED]),
            leaving,
            *conditions,
        )
    ).all()
    if not rows:
        return 0
    entries = [entry for entry, _departs, _hours in rows]
    load_workers(entries)
    certificates = current_claims(entry.worker_id for entry in entries)
    checkers: dict[int | None, Checker] = {}
    failing: dict[int, list[tuple[RosterEntry, str]]] = {}
    for entry, departs_at, hours in rows:
        if hours not in checkers:
            checkers[hours] = Checker(hours)
            checkers[hours].know_holders(certificates.values())
        verdict = checkers[hours].verdict(
            entry.worker, certificates.get(entry.worker_id), departs_at
        )
        if refuses(entry, verdict):
            failing.setdefault(entry.request_id, []).append((entry, ",".join(verdict.reasons)))
    for listed in failing.values():
        _tell_employer(listed)
    return sum(len(listed) for listed in failing.values())


def override_block(entry: RosterEntry, note: str, actor: User) -> None:
    """A coordinator lets a blocked worker travel, in writing. It covers the reasons shown
    now; a new reason found later blocks them again."""
    if entry.status != EntryStatus.BLOCKED:
        raise DomainError("entry.not_blocked")
    if not (note or "").strip():
        raise DomainError("override_note.required", field="note")
    entry.override_reasons = entry.block_reason
    entry.override_note = note.strip()
    entry.overridden_by_id, entry.overridden_at = actor.id, utcnow()
    entry.status = EntryStatus.CLEARED.value
    db.session.flush()
    record_audit(
        "entry.health_overridden",
        entry,
        actor,
        request_id=entry.request_id,
        reasons=entry.override_reasons or "",
    )
