"""Supply: transport operators, their vehicles (each with a seat map) and drivers."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    or_,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.access import Role
from app.core.clock import utcnow
from app.extensions import db
from app.trips.seatmaps import SeatMap, build_vehicle


class VehicleKind(enum.StrEnum):
    COACH = "coach"
    TRAIN = "train"
    AIRCRAFT = "aircraft"


# The vehicles whose identifier is a whole vehicle's (coach plates, flight numbers), in service.
IN_SERVICE_NOT_TRAIN = "active AND kind <> 'train'"


def staff_only(user):
    """Fleet and trips are the coordinators' business (employers see their trips elsewhere)."""
    return true() if user.role in (Role.ADMIN, Role.COORDINATOR) else false()


class Operator(db.Model):
    """A transport company (客运公司, railway bureau, airline)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    contact_name: Mapped[str | None] = mapped_column(String(50))
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    vehicles: Mapped[list[Vehicle]] = relationship(
        back_populates="operator", order_by="Vehicle.identifier"
    )
    drivers: Mapped[list[Driver]] = relationship(back_populates="operator", order_by="Driver.name")

    @classmethod
    def visible_to(cls, user):
        return staff_only(user)


class Vehicle(db.Model):
    """A coach (plate number), a train (train number and the carriages reserved on it) or a
    charter flight. Its seats come from a seat-map template in config/seatmaps/."""

    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(10))
    # Plate number (鲁A12345), train number (K4016) or flight number.
    identifier: Mapped[str] = mapped_column(String(20))
    seatmap_template: Mapped[str] = mapped_column(String(50))
    # Carriages first_carriage .. first_carriage + carriages - 1 (a coach has one).
    first_carriage: Mapped[int] = mapped_column(default=1)
    carriages: Mapped[int] = mapped_column(default=1)
    # Seats never given on this vehicle (broken seat, the driver's companion), machine labels.
    blocked_seats: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    operator: Mapped[Operator] = relationship(back_populates="vehicles")

    __table_args__ = (
        UniqueConstraint("operator_id", "identifier", name="uq_vehicles_operator_identifier"),
        # A plate or a flight number is one physical vehicle, whoever registers it: in service
        # under one operator at a time. A train number is not (its carriages are reserved by
        # several operators): fleet/services.py refuses overlapping carriages instead.
        Index(
            "uq_vehicles_in_service_identifier",
            "kind",
            "identifier",
            unique=True,
            postgresql_where=db.text(IN_SERVICE_NOT_TRAIN),
            sqlite_where=db.text(IN_SERVICE_NOT_TRAIN),
        ),
        CheckConstraint("kind IN ('coach', 'train', 'aircraft')", name="kind_known"),
        CheckConstraint("carriages >= 1 AND first_carriage >= 1", name="carriages_positive"),
    )

    @property
    def seat_map(self) -> SeatMap:
        return build_vehicle(
            self.seatmap_template, range(self.first_carriage, self.first_carriage + self.carriages)
        )

    @property
    def rated_seats(self) -> int:
        return len(self.seat_map)

    @classmethod
    def visible_to(cls, user):
        return staff_only(user)


def sharing_seats(vehicle, kind, identifier, first_carriage, carriages):
    """SQL: ``vehicle`` (Vehicle or an alias of it) has seats of the vehicle described (values
    or another alias's columns): the same plate or flight, or the same train with a carriage in
    common. Two records of one physical vehicle must never run at the same time."""
    carriage_in_common = and_(
        vehicle.first_carriage < first_carriage + carriages,
        first_carriage < vehicle.first_carriage + vehicle.carriages,
    )
    return and_(
        vehicle.kind == kind,
        vehicle.identifier == identifier,
        or_(vehicle.kind != VehicleKind.TRAIN.value, carriage_in_common),
    )


class Driver(db.Model):
    """A driver (or train crew contact) workers may call: the phone is a work number,
    printed on manifests and sent to the workers of the driver's trips. The licence number
    is usually the driver's ID number: stored encrypted (core/pii.py), found by its hash."""

    __tablename__ = "drivers"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str] = mapped_column(String(20))
    licence_number_token: Mapped[str] = mapped_column(String(120))
    licence_number_hash: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    operator: Mapped[Operator] = relationship(back_populates="drivers")

    __table_args__ = (
        UniqueConstraint("licence_number_hash", name="uq_drivers_licence_number_hash"),
    )

    @classmethod
    def visible_to(cls, user):
        return staff_only(user)
