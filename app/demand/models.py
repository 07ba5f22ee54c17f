"""The employer's side: workers on the roster, transport requests, and who is on which request."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.accounts.models import Organization
from app.core.access import Role, route_in_region
from app.core.clock import utcnow
from app.extensions import db


def _in(values: type[enum.StrEnum]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def organization_scope(model, user):
    """Employers see their own organization's rows; admins all; coordinators none directly."""
    if user.role == Role.EMPLOYER:
        return model.organization_id == user.organization_id
    if user.role == Role.ADMIN:
        return true()
    return false()


class Worker(db.Model):
    """A worker on an employer's roster. ID and phone numbers are stored encrypted
    (core/pii.py); the hashes find them exactly without decrypting anything."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(50))
    id_number_token: Mapped[str] = mapped_column(String(80))
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    birth_date: Mapped[date] = mapped_column(Date)
    phone_token: Mapped[str] = mapped_column(String(80))
    phone_hash: Mapped[str] = mapped_column(String(64))
    phone_last4: Mapped[str] = mapped_column(String(4))
    home_region_code: Mapped[str] = mapped_column(String(6))
    home_region_name: Mapped[str | None] = mapped_column(String(100))
    group_tag: Mapped[str | None] = mapped_column(String(50))
    emergency_contact_name: Mapped[str | None] = mapped_column(String(50))
    emergency_contact_phone_token: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # One worker per ID number per organization.
        UniqueConstraint(
            "organization_id", "id_number_hash", name="uq_workers_organization_id_number"
        ),
        Index("ix_workers_organization_name", "organization_id", "name"),
        Index("ix_workers_organization_group", "organization_id", "group_tag"),
        Index("ix_workers_organization_phone", "organization_id", "phone_hash"),
    )

    @classmethod
    def visible_to(cls, user):
        return organization_scope(cls, user)


class RequestStatus(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# While a request is in one of these states its workers hold their place on it: no other
# request of any employer may have them.
CLAIMING_STATUSES = (RequestStatus.SUBMITTED, RequestStatus.APPROVED, RequestStatus.SCHEDULED)
# A request in one of these still carries its workers: it can be cancelled, and a worker on it
# is withdrawn from it before leaving the roster.
LIVE_STATUSES = (RequestStatus.DRAFT, *CLAIMING_STATUSES)


class TravelMode(enum.StrEnum):
    COACH = "coach"
    TRAIN = "train"
    ANY = "any"


class TransportRequest(db.Model):
    __tablename__ = "transport_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.DRAFT.value)
    origin_region_code: Mapped[str] = mapped_column(String(6))
    origin_region_name: Mapped[str] = mapped_column(String(100))
    pickup_point: Mapped[str] = mapped_column(String(200))
    pickup_address: Mapped[str | None] = mapped_column(String(200))
    destination_region_code: Mapped[str] = mapped_column(String(6))
    destination_region_name: Mapped[str] = mapped_column(String(100))
    site_name: Mapped[str] = mapped_column(String(200))
    site_address: Mapped[str] = mapped_column(String(200))
    site_contact_name: Mapped[str] = mapped_column(String(50))
    site_contact_phone: Mapped[str] = mapped_column(String(20))
    earliest_departure: Mapped[date] = mapped_column(Date)
    latest_departure: Mapped[date] = mapped_column(Date)
    preferred_mode: Mapped[str] = mapped_column(String(8), default=TravelMode.ANY.value)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    # Optimistic locking: two people changing one request cannot silently overwrite each other.
    version: Mapped[int] = mapped_column(default=1)

    entries: Mapped[list[RosterEntry]] = relationship(back_populates="request")
    organization: Mapped[Organization] = relationship()

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy reads it as is
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(RequestStatus)})", name="status_known"),
        CheckConstraint(f"preferred_mode IN ({_in(TravelMode)})", name="mode_known"),
        CheckConstraint("latest_departure >= earliest_departure", name="departure_window"),
        Index("ix_transport_requests_status_submitted", "status", "submitted_at"),
        Index("ix_transport_requests_origin", "origin_region_code"),
        Index("ix_transport_requests_destination", "destination_region_code"),
    )

    @property
    def reference(self) -> str:
        """What people quote on the phone: R + year of creation + the number."""
        return f"R{self.created_at:%Y}-{self.id:06d}"

    def leaves_within(self, day: date) -> bool:
        """Whether a first leg leaving on this day is inside the departure window."""
        return self.earliest_departure <= day <= self.latest_departure

    @classmethod
    def visible_to(cls, user):
        if user.role == Role.COORDINATOR:
            # A coordinator's region covers requests leaving from or going to it.
            return (cls.status != RequestStatus.DRAFT.value) & route_in_region(cls, user)
        return organization_scope(cls, user)


class EntryStatus(enum.StrEnum):
    PENDING = "pending"
    CLEARED = "cleared"
    BLOCKED = "blocked"
    SEATED = "seated"
    BOARDED = "boarded"
    ARRIVED = "arrived"
    NO_SHOW = "no_show"
    WITHDRAWN = "withdrawn"


class RosterEntry(db.Model):
    """A worker on a transport request, with where they stand."""

    __tablename__ = "roster_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("transport_requests.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(
        ForeignKey("workers.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=EntryStatus.PENDING.value)
    # Health verdict: reason codes (health/rules.py), comma-separated, while blocked.
    block_reason: Mapped[str | None] = mapped_column(String(255))
    health_checked_at: Mapped[datetime | None]
    # A coordinator may clear a block with a written reason; it covers these reason codes only.
    override_reasons: Mapped[str | None] = mapped_column(String(255))
    override_note: Mapped[str | None] = mapped_column(Text)
    overridden_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    overridden_at: Mapped[datetime | None]
    # Copied from the worker: the database itself refuses one person on two live requests.
    id_number_hash: Mapped[str] = mapped_column(String(64))
    holds_place: Mapped[bool] = mapped_column(default=False)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None]
    # Given with the first seat: what the worker quotes on the lookup page (with the last four
    # digits of their phone) and what their boarding pass's QR code carries. Random, no PII.
    booking_code: Mapped[str | None] = mapped_column(String(12), unique=True)

    request: Mapped[TransportRequest] = relationship(back_populates="entries")
    worker: Mapped[Worker] = relationship()

    __table_args__ = (
        UniqueConstraint("request_id", "worker_id", name="uq_roster_entries_request_worker"),
        CheckConstraint(f"status IN ({_in(EntryStatus)})", name="status_known"),
        CheckConstraint("NOT holds_place OR status != 'withdrawn'", name="withdrawn_holds_nothing"),
        Index(
            "uq_roster_entries_one_live_place",
            "id_number_hash",
            unique=True,
            postgresql_where=db.text("holds_place"),
            sqlite_where=db.text("holds_place"),
        ),
        Index("ix_roster_entries_request_status", "request_id", "status"),
    )


class ImportStatus(enum.StrEnum):
    QUEUED = "queued"
    VALIDATING = "validating"
    FAILED = "failed"
    DONE = "done"


class RosterImport(db.Model):
    """An uploaded roster file and what became of it. The file is kept only until it has
    been processed; errors keep row, column, a masked value and a reason code."""

    __tablename__ = "roster_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("transport_requests.id", ondelete="CASCADE")
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(200))
    # Deferred: progress updates reload the row without its file.
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    status: Mapped[str] = mapped_column(String(16), default=ImportStatus.QUEUED.value)
    total_rows: Mapped[int] = mapped_column(default=0)
    processed_rows: Mapped[int] = mapped_column(default=0)
    added: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    problem: Mapped[str | None] = mapped_column(String(64))
    errors: Mapped[list] = mapped_column(JSON, default=list)
    unknown_columns: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint(f"status IN ({_in(ImportStatus)})", name="status_known"),)

    @classmethod
    def visible_to(cls, user):
        return organization_scope(cls, user)
