"""Health certificates and the issuers whose certificates are trusted."""

from __future__ import annotations

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
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.access import Role
from app.core.clock import utcnow
from app.demand.models import RosterEntry, TransportRequest, Worker
from app.extensions import db


class HealthIssuer(db.Model):
    """A health authority whose signed passes are accepted, identified by its key's RFC 7638
    thumbprint. Rotating a key means a new issuer row; the old one stays for old passes."""

    __tablename__ = "health_issuers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(String(6))
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    public_jwk: Mapped[dict] = mapped_column(JSON)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("valid_until IS NULL OR valid_until > valid_from", name="validity"),
        CheckConstraint("NOT revoked OR revoked_reason IS NOT NULL", name="revocation_explained"),
    )

    @classmethod
    def visible_to(cls, user):
        return true() if user.role == Role.ADMIN else false()


class HealthCertificate(db.Model):
    """A worker's certificate: a signed pass (kept encrypted: it carries the ID number and
    name) or a paper certificate a coordinator accepted. The newest one counts."""

    __tablename__ = "health_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8))
    issued_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    # Signed pass
    token_cipher: Mapped[str | None] = mapped_column(Text)
    kid: Mapped[str | None] = mapped_column(String(64))
    jti: Mapped[str | None] = mapped_column(String(128), index=True)
    # What the pass says, kept when it is added so that a recheck judges it without decrypting
    # the token or verifying its signature again (about 120 µs a pass, and a campaign checks
    # every worker three times). A kid is its key's thumbprint, so a signature that verified
    # once always will. None: not verified under a trusted key yet (the next check reads the
    # token and fills these in).
    signature_valid: Mapped[bool | None]
    pass_issuer: Mapped[str | None] = mapped_column(Text)  # the ``iss`` claim
    subject_hash: Mapped[str | None] = mapped_column(String(64))  # PII lookup hash of ``sub``
    name_hash: Mapped[str | None] = mapped_column(String(64))  # of ``rules.name_key(name)``
    # Paper certificate
    clinic: Mapped[str | None] = mapped_column(String(200))
    certificate_number: Mapped[str | None] = mapped_column(String(100))
    issued_on: Mapped[date | None] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    scan: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    scan_mimetype: Mapped[str | None] = mapped_column(String(50))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    worker: Mapped[Worker] = relationship()

    __table_args__ = (
        CheckConstraint("kind IN ('pass', 'paper')", name="kind_known"),
        CheckConstraint(
            "kind != 'pass' OR (token_cipher IS NOT NULL AND jti IS NOT NULL)", name="pass_complete"
        ),
        CheckConstraint(
            "kind != 'paper' OR (clinic IS NOT NULL AND issued_on IS NOT NULL "
            "AND valid_until IS NOT NULL)",
            name="paper_complete",
        ),
        Index("ix_health_certificates_worker_created", "worker_id", "created_at"),
    )

    @classmethod
    def visible_to(cls, user):
        if user.role == Role.EMPLOYER:
            return cls.worker_id.in_(
                db.select(Worker.id).where(Worker.organization_id == user.organization_id)
            )
        if user.role == Role.COORDINATOR:
            # The certificates of workers on requests the coordinator's region sees.
            return cls.worker_id.in_(
                db.select(RosterEntry.worker_id)
                .join(TransportRequest)
                .where(TransportRequest.visible_to(user))
            )
        return true()
