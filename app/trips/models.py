"""Matching: trips (one vehicle running one leg), which requests ride them, and seats."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.access import Role, route_in_region
from app.core.clock import utcnow
from app.demand.models import RosterEntry, TransportRequest
from app.extensions import db
from app.fleet.models import Driver, Vehicle
from app.trips.allocation import Policy


class TripStatus(enum.StrEnum):
    PLANNED = "planned"  # created from a plan, no seat given yet
    OPEN = "open"  # seats being given
    LOCKED = "locked"  # manifest final, workers told their seats
    DEPARTED = "departed"
    ARRIVED = "arrived"
    CLOSED = "closed"
    CANCELLED = "cancelled"


# Seats may still be given, moved and taken back in these states.
SEATING_STATUSES = (TripStatus.PLANNED, TripStatus.OPEN, TripStatus.LOCKED)
# A trip in one of these states occupies its vehicle and drivers.
RUNNING_STATUSES = (*SEATING_STATUSES, TripStatus.DEPARTED)


trip_drivers = Table(
    "trip_drivers",
    db.metadata,
    Column("trip_id", ForeignKey("trips.id", ondelete="CASCADE"), primary_key=True),
    Column("driver_id", ForeignKey("drivers.id", ondelete="RESTRICT"), primary_key=True),
)


class Trip(db.Model):
    __tablename__ = "trips"

    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(10), default=TripStatus.PLANNED.value)
    origin_region_code: Mapped[str] = mapped_column(String(6))
    origin_point: Mapped[str] = mapped_column(String(200))  # where workers gather
    origin_address: Mapped[str | None] = mapped_column(String(200))  # to show a taxi driver
    destination_region_code: Mapped[str] = mapped_column(String(6))
    destination_point: Mapped[str] = mapped_column(String(200))
    destination_address: Mapped[str | None] = mapped_column(String(200))
    departs_at: Mapped[datetime]
    arrives_at: Mapped[datetime]
    # A connecting leg: the trip that brings its passengers (the train to Jinan feeding a coach
    # to a site). ``leg`` counts from 1 along the chain.
    connects_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("trips.id", ondelete="RESTRICT")
    )
    leg: Mapped[int] = mapped_column(default=1)
    # Distancing policy (allocation.Policy) and health freshness for this trip.
    max_load_percent: Mapped[int] = mapped_column(default=100)
    isolation_rows: Mapped[int] = mapped_column(default=0)
    alternate_seats: Mapped[bool] = mapped_column(default=False)
    health_freshness_hours: Mapped[int] = mapped_column(default=72)
    # Seats kept free on this run only (the escort's seat), machine labels.
    blocked_seats: Mapped[list] = mapped_column(JSON, default=list)
    escort_name: Mapped[str | None] = mapped_column(String(50))
    escort_phone: Mapped[str | None] = mapped_column(String(20))
    # Bumped by every seat change: a seat-map page posted from an older view is refused.
    seats_version: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_at: Mapped[datetime | None]
    departed_at: Mapped[datetime | None]
    arrived_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    vehicle: Mapped[Vehicle] = relationship()
    drivers: Mapped[list[Driver]] = relationship(secondary=trip_drivers, order_by=Driver.name)
    connects_from: Mapped[Trip | None] = relationship(remote_side=[id])
    loads: Mapped[list[TripLoad]] = relationship(
        back_populates="trip", cascade="all, delete-orphan", order_by="TripLoad.request_id"
    )

    __table_args__ = (
        CheckConstraint(
            "status IN ('planned', 'open', 'locked', 'departed', 'arrived', 'closed', 'cancelled')",
            name="status_known",
        ),
        CheckConstraint("arrives_at > departs_at", name="arrives_after_departure"),
        CheckConstraint("max_load_percent BETWEEN 1 AND 100", name="max_load_percent_range"),
        CheckConstraint("isolation_rows >= 0", name="isolation_rows_positive"),
        CheckConstraint("health_freshness_hours BETWEEN 1 AND 720", name="freshness_range"),
        CheckConstraint("leg >= 1", name="leg_positive"),
        Index("ix_trips_departs_at", "departs_at"),
        Index("ix_trips_vehicle_departs_at", "vehicle_id", "departs_at"),
        Index("ix_trips_origin", "origin_region_code"),
        Index("ix_trips_destination", "destination_region_code"),
    )

    @property
    def reference(self) -> str:
        return f"T{self.created_at:%Y}-{self.id:06d}"

    @property
    def policy(self) -> Policy:
        return Policy.of_percent(self.max_load_percent, self.isolation_rows, self.alternate_seats)

    @property
    def all_blocked_seats(self) -> frozenset[str]:
        return frozenset(self.vehicle.blocked_seats) | frozenset(self.blocked_seats)

    @classmethod
    def visible_to(cls, user):
        if user.role == Role.COORDINATOR:
            return route_in_region(cls, user)
        return true() if user.role == Role.ADMIN else false()


class TripLoad(db.Model):
    """How many of a request's workers the plan put on a trip (a request split over two
    coaches has two loads). Seats are then given to that many of its cleared workers."""

    __tablename__ = "trip_loads"

    id: Mapped[int] = mapped_column(primary_key=True)
    trip_id: Mapped[int] = mapped_column(ForeignKey("trips.id", ondelete="CASCADE"))
    request_id: Mapped[int] = mapped_column(
        ForeignKey("transport_requests.id", ondelete="RESTRICT"), index=True
    )
    planned: Mapped[int]

    trip: Mapped[Trip] = relationship(back_populates="loads")
    request: Mapped[TransportRequest] = relationship()

    __table_args__ = (
        UniqueConstraint("trip_id", "request_id", name="uq_trip_loads_trip_request"),
        CheckConstraint("planned >= 1", name="planned_positive"),
    )


class SeatAssignment(db.Model):
    """A worker's seat on one trip. The database itself refuses one seat twice on a trip, one
    worker twice on a trip, and one worker on two trips of the same leg on the same day."""

    __tablename__ = "seat_assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    trip_id: Mapped[int] = mapped_column(ForeignKey("trips.id", ondelete="CASCADE"))
    roster_entry_id: Mapped[int] = mapped_column(
        ForeignKey("roster_entries.id", ondelete="CASCADE")
    )
    seat_label: Mapped[str] = mapped_column(String(16))
    # Copied from the trip: the local departure day and the leg number.
    travel_date: Mapped[date] = mapped_column(Date)
    leg: Mapped[int]
    manual: Mapped[bool] = mapped_column(default=False)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # At the vehicle door: boarded, no_show, or isolated (fever: not boarded).
    boarding: Mapped[str | None] = mapped_column(String(10))
    boarded_at: Mapped[datetime | None]
    temperature: Mapped[Decimal | None] = mapped_column(Numeric(3, 1))
    boarding_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    trip: Mapped[Trip] = relationship()
    entry: Mapped[RosterEntry] = relationship()

    __table_args__ = (
        UniqueConstraint("trip_id", "seat_label", name="uq_seat_assignments_trip_seat"),
        UniqueConstraint("trip_id", "roster_entry_id", name="uq_seat_assignments_trip_entry"),
        UniqueConstraint(
            "roster_entry_id", "travel_date", "leg", name="uq_seat_assignments_entry_day_leg"
        ),
        CheckConstraint(
            "boarding IS NULL OR boarding IN ('boarded', 'no_show', 'isolated')",
            name="boarding_known",
        ),
    )


class CancelledSeat(db.Model):
    """A worker's seat that went with its trip's cancellation (the seat itself is freed): their
    trip page says the trip is cancelled until they have a seat again, for a worker who missed
    the SMS."""

    __tablename__ = "cancelled_seats"

    id: Mapped[int] = mapped_column(primary_key=True)
    trip_id: Mapped[int] = mapped_column(ForeignKey("trips.id", ondelete="CASCADE"))
    roster_entry_id: Mapped[int] = mapped_column(
        ForeignKey("roster_entries.id", ondelete="CASCADE")
    )

    __table_args__ = (
        # The worker's page looks theirs up: the entry first.
        UniqueConstraint("roster_entry_id", "trip_id", name="uq_cancelled_seats_entry_trip"),
    )


class Handover(db.Model):
    """An employer's representative confirms how many of a request's workers a trip brought
    to the site (出家门、上车门、到厂门: the last door). One per trip and request."""

    __tablename__ = "handovers"

    id: Mapped[int] = mapped_column(primary_key=True)
    trip_id: Mapped[int] = mapped_column(ForeignKey("trips.id", ondelete="CASCADE"))
    request_id: Mapped[int] = mapped_column(
        ForeignKey("transport_requests.id", ondelete="RESTRICT")
    )
    expected: Mapped[int]  # boarded on this trip
    received: Mapped[int]
    representative_name: Mapped[str] = mapped_column(String(50))
    note: Mapped[str | None] = mapped_column(Text)
    confirmed_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    trip: Mapped[Trip] = relationship()
    request: Mapped[TransportRequest] = relationship()

    __table_args__ = (
        UniqueConstraint("trip_id", "request_id", name="uq_handovers_trip_request"),
        CheckConstraint("received >= 0 AND expected >= 0", name="counts_positive"),
        CheckConstraint("received = expected OR note IS NOT NULL", name="discrepancy_noted"),
    )


class TripCost(db.Model):
    """What a trip cost the government (政府买单), in yuan: hire or fares, meals, tolls. Each
    may be zero (tolls were waived) — None means "not recorded yet", which is not zero."""

    __tablename__ = "trip_costs"

    trip_id: Mapped[int] = mapped_column(
        ForeignKey("trips.id", ondelete="CASCADE"), primary_key=True
    )
    hire: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    meals: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    tolls: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    trip: Mapped[Trip] = relationship()

    __table_args__ = (
        CheckConstraint(
            "(hire IS NULL OR hire >= 0) AND (meals IS NULL OR meals >= 0) "
            "AND (tolls IS NULL OR tolls >= 0)",
            name="costs_not_negative",
        ),
    )
