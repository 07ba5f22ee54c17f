"""Organizations (employers) and the people who sign in."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.core.access import Role
from app.core.clock import utcnow
from app.extensions import db


class Organization(db.Model):
    """An employer (用工企业), identified by its unified social credit code."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    region_code: Mapped[str | None] = mapped_column(String(6))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="organization")

    @classmethod
    def visible_to(cls, user: User):
        if user.role == Role.EMPLOYER:
            return cls.id == user.organization_id
        return true()


ROLE_VALUES = ", ".join(f"'{role.value}'" for role in Role)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-case (services normalise), so one address is one account whatever its case.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT"), index=True
    )
    # Coordinators work for one region (GB/T 2260 code); they see that region's demand.
    region_code: Mapped[str | None] = mapped_column(String(6))
    locale: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    organization: Mapped[Organization | None] = relationship(back_populates="users")

    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_lower_case"),
        CheckConstraint(f"role IN ({ROLE_VALUES})", name="role_known"),
        CheckConstraint(
            "(role = 'employer') = (organization_id IS NOT NULL)", name="employer_has_organization"
        ),
        CheckConstraint(
            "role != 'coordinator' OR region_code IS NOT NULL", name="coordinator_has_region"
        ),
    )

    @property
    def is_active(self) -> bool:  # Flask-Login refuses sign-in to inactive accounts
        return self.active

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method="scrypt")

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @classmethod
    def visible_to(cls, user: User):
        if user.role == Role.ADMIN:
            return true()
        if user.role == Role.EMPLOYER:
            return cls.organization_id == user.organization_id
        # Coordinators work with employers' HR staff, and see their own account.
        return (cls.role == Role.EMPLOYER.value) | (cls.id == user.id)
