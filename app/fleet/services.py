"""Fleet operations: operators, vehicles (with their seat maps and blocked seats) and drivers.

Services check the fields, flush, audit (ids and codes only) and leave the commit to the view.
Uniqueness is checked before writing, so the refusal names the field; the database constraint
behind it is caught in a savepoint too, for two coordinators saving at the same moment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.errors import DomainError
from app.core.identity import InvalidIdentifier, normalize_identifier, normalize_mobile
from app.core.pii import vault
from app.core.services import record_audit
from app.extensions import db
from app.fleet.models import Driver, Operator, Vehicle, VehicleKind, sharing_seats
from app.trips.seatmaps import SeatMap, SeatMapError, available_templates, build_vehicle

# --- identifiers (pure) --------------------------------------------------------------------

# The one-character abbreviations of the 31 mainland provinces on number plates.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# Province, issuing-office letter, then 5 letters/digits (6 on new-energy plates).
PLATE_PATTERN = re.compile(rf"[{PROVINCES}][A-Z][A-Z0-9]{{5,6}}")
# Optional class letter (G high-speed, D, C, Z, T, K, Y, L, S) and up to 4 digits: K4016.
TRAIN_NUMBER_PATTERN = re.compile(r"[GDCZTKYLS]?\d{1,4}")
# IATA airline designator (two characters, at least one a letter) and 1-4 digits: CA1234.
FLIGHT_NUMBER_PATTERN = re.compile(r"(?:[A-Z]{2}|[A-Z]\d|\d[A-Z])\d{1,4}")
IDENTIFIER_PATTERNS = {
    VehicleKind.COACH: (PLATE_PATTERN, "plate"),
    VehicleKind.TRAIN: (TRAIN_NUMBER_PATTERN, "train_number"),
    VehicleKind.AIRCRAFT: (FLIGHT_NUMBER_PATTERN, "flight_number"),
}
# Separators people type into plate numbers (鲁A·12345, 鲁A-12345).
_SEPARATORS = re.compile(r"[·•・\-_.]")

LICENCE_NUMBER_PATTERN = re.compile(r"[0-9A-Z]{12,18}")
CONTACT_PHONE_PATTERN = re.compile(r"\+?[\d\s()-]{7,20}")

# The seat-map template kind that fits each vehicle kind (config/seatmaps/*.toml ``kind``).
TEMPLATE_KINDS = {
    VehicleKind.COACH: "coach",
    VehicleKind.TRAIN: "carriage",
    VehicleKind.AIRCRAFT: "aircraft",
}
MAX_TRAIN_CARRIAGES = 30
MAX_CARRIAGE_NUMBER = 99


def normalize_vehicle_identifier(kind: str, value: str | None) -> str:
    """A plate, train or flight number in upper case without spaces, or DomainError
    ``identifier.<empty|plate|train_number|flight_number>``."""
    text = _SEPARATORS.sub("", normalize_identifier(value or ""))
    if not text:
        raise DomainError("identifier.empty", "identifier")
    pattern, reason = IDENTIFIER_PATTERNS[VehicleKind(kind)]
    if not pattern.fullmatch(text):
        raise DomainError(f"identifier.{reason}", "identifier")
    return text


def normalize_licence_number(value: str | None) -> str:
    text = _SEPARATORS.sub("", normalize_identifier(value or ""))
    if not text:
        raise DomainError("licence_number.empty", "licence_number")
    if not LICENCE_NUMBER_PATTERN.fullmatch(text):
        raise DomainError("licence_number.format", "licence_number")
    return text


def mask_licence_number(number: str) -> str:
    """``5002************39``: the first 4 and last 2 characters (less of a short value)."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


def template_kind(template: str) -> str:
    """The ``kind`` a seat-map template declares (coach, carriage, aircraft)."""
    return build_vehicle(template, 1).kind


def check_template(kind: str, template: str | None) -> str:
    """The template, if it is a shipped one that fits this kind of vehicle, else DomainError
    ``template.<unknown|invalid|not_coach|not_train|not_aircraft>``."""
    kind = VehicleKind(kind)
    if not template or template not in available_templates():
        raise DomainError("template.unknown", "template")
    try:
        declared = template_kind(template)
    except SeatMapError:
        raise DomainError("template.invalid", "template") from None
    if declared != TEMPLATE_KINDS[kind]:
        raise DomainError(f"template.not_{kind.value}", "template")
    return template


# --- helpers -------------------------------------------------------------------------------


def _text(fields: Mapping, name: str, max_length: int, required: bool = False) -> str | None:
    value = (fields.get(name) or "").strip()
    if not value:
        if required:
            raise DomainError(f"{name}.empty", name)
        return None
    if len(value) > max_length:
        raise DomainError(f"{name}.too_long", name)
    return value


def _flush_unique(
    change: Callable[[], None], code: str, field: str, recheck: Callable[[], None] | None = None
) -> None:
    """Apply ``change`` and flush inside a savepoint: a unique constraint broken by a
    concurrent writer becomes the same refusal as the check before it (``recheck`` runs that
    check again, now that the other writer's row is there to name)."""
    try:
        with db.session.begin_nested():
            change()
            db.session.flush()
    except IntegrityError:
        if recheck is not None:
            recheck()
        raise DomainError(code, field) from None


def _set_all(target: object, values: Mapping) -> Callable[[], None]:
    def change() -> None:
        for name, value in values.items():
            setattr(target, name, value)

    return change


# --- operators -----------------------------------------------------------------------------


def _operator_values(fields: Mapping) -> dict:
    phone = _text(fields, "contact_phone", 20)
    if phone and not CONTACT_PHONE_PATTERN.fullmatch(phone):
        raise DomainError("contact_phone.format", "contact_phone")
    return {
        "name": _text(fields, "name", 200, required=True),
        "contact_name": _text(fields, "contact_name", 50),
        "contact_phone": phone,
    }


def _check_operator_name(name: str, operator_id: int | None) -> None:
    taken = db.session.scalar(select(Operator.id).where(Operator.name == name))
    if taken is not None and taken != operator_id:
        raise DomainError("name.taken", "name")


def create_operator(fields: Mapping, actor: object) -> Operator:
    values = _operator_values(fields)
    _check_operator_name(values["name"], None)
    operator = Operator(**values)
    _flush_unique(lambda: db.session.add(operator), "name.taken", "name")
    record_audit("operator.created", operator, actor)
    return operator


def update_operator(operator: Operator, fields: Mapping, actor: object) -> Operator:
    values = _operator_values(fields)
    _check_operator_name(values["name"], operator.id)
    _flush_unique(_set_all(operator, values), "name.taken", "name")
    record_audit("operator.updated", operator, actor)
    return operator


# --- vehicles ------------------------------------------------------------------------------


def _int(fields: Mapping, name: str, default: int) -> int:
    value = fields.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DomainError(f"{name}.range", name) from None


def _vehicle_values(fields: Mapping) -> dict:
    kind = fields.get("kind") or ""
    if kind not in {known.value for known in VehicleKind}:
        raise DomainError("kind.unknown", "kind")
    kind = VehicleKind(kind)
    identifier = normalize_vehicle_identifier(kind, fields.get("identifier"))
    template = check_template(kind, fields.get("template"))
    first_carriage = _int(fields, "first_carriage", 1)
    carriages = _int(fields, "carriages", 1)
    if kind == VehicleKind.TRAIN:
        if not 1 <= carriages <= MAX_TRAIN_CARRIAGES:
            raise DomainError("carriages.range", "carriages")
        if not 1 <= first_carriage <= MAX_CARRIAGE_NUMBER - carriages + 1:
            raise DomainError("first_carriage.range", "first_carriage")
    else:
        if carriages != 1:
            raise DomainError("carriages.single", "carriages")
        if first_carriage != 1:
            raise DomainError("first_carriage.single", "first_carriage")
    return {
        "kind": kind.value,
        "identifier": identifier,
        "seatmap_template": template,
        "first_carriage": first_carriage,
        "carriages": carriages,
        "notes": (fields.get("notes") or "").strip() or None,
        "active": bool(fields.get("active", True)),
    }


def _check_identifier(operator_id: int, identifier: str, vehicle_id: int | None) -> None:
    taken = db.session.scalar(
        select(Vehicle.id).where(
            Vehicle.operator_id == operator_id, Vehicle.identifier == identifier
        )
    )
    if taken is not None and taken != vehicle_id:
        raise DomainError("identifier.taken", "identifier")


def _check_in_service_elsewhere(values: Mapping, vehicle_id: int | None) -> None:
    """A vehicle in service is in service under one operator: no other vehicle in service has
    its plate or flight number, or, for a train, one of its carriages."""
    if not values["active"]:
        return
    query = select(Vehicle).where(
        Vehicle.active,
        sharing_seats(
            Vehicle,
            values["kind"],
            values["identifier"],
            values["first_carriage"],
            values["carriages"],
        ),
    )
    if vehicle_id is not None:
        query = query.where(Vehicle.id != vehicle_id)
    other = db.session.scalar(query.order_by(Vehicle.first_carriage, Vehicle.id).limit(1))
    if other is None:
        return
    facts = {"number": other.identifier, "operator": other.operator.name}
    if other.kind == VehicleKind.TRAIN:
        last = other.first_carriage + other.carriages - 1
        carriages = f"{other.first_carriage:02d}–{last:02d}"
        raise DomainError(
            "carriages.reserved_elsewhere", "first_carriage", **facts, carriages=carriages
        )
    raise DomainError("identifier.in_service_elsewhere", "identifier", **facts)


def _seat_map(values: Mapping) -> SeatMap:
    first = values["first_carriage"]
    try:
        return build_vehicle(values["seatmap_template"], range(first, first + values["carriages"]))
    except SeatMapError:
        raise DomainError("template.invalid", "template") from None


def running_trips(vehicle: Vehicle | None = None, driver: Driver | None = None) -> list:
    """The trips not yet arrived (or cancelled) on this vehicle, or with this driver, soonest
    first."""
    from app.trips.models import RUNNING_STATUSES, Trip, trip_drivers

    query = select(Trip).where(Trip.status.in_([status.value for status in RUNNING_STATUSES]))
    if vehicle is not None:
        query = query.where(Trip.vehicle_id == vehicle.id)
    if driver is not None:
        query = query.join(trip_drivers, trip_drivers.c.trip_id == Trip.id).where(
            trip_drivers.c.driver_id == driver.id
        )
    return list(db.session.scalars(query.order_by(Trip.departs_at, Trip.id)))


def create_vehicle(operator: Operator, fields: Mapping, actor: object) -> Vehicle:
    values = _vehicle_values(fields)
    _check_identifier(operator.id, values["identifier"], None)
    _check_in_service_elsewhere(values, None)
    seat_map = _seat_map(values)
    vehicle = Vehicle(operator_id=operator.id, blocked_seats=[], **values)
    _flush_unique(
        lambda: db.session.add(vehicle),
        "identifier.taken",
        "identifier",
        lambda: _check_in_service_elsewhere(values, None),
    )
    record_audit(
        "vehicle.created",
        vehicle,
        actor,
        operator_id=operator.id,
        kind=vehicle.kind,
        template=vehicle.seatmap_template,
        seats=len(seat_map),
    )
    return vehicle


def update_vehicle(vehicle: Vehicle, fields: Mapping, actor: object) -> Vehicle:
    """Change a vehicle. A new seat map keeps the blocked seats that still exist on it, and is
    refused while a trip that has not yet arrived runs on this vehicle (its seats are given)."""
    values = _vehicle_values(fields)
    _check_identifier(vehicle.operator_id, values["identifier"], vehicle.id)
    _check_in_service_elsewhere(values, vehicle.id)
    seat_map = _seat_map(values)
    layout = ("seatmap_template", "first_carriage", "carriages")
    relaid = any(values[name] != getattr(vehicle, name) for name in layout)
    if relaid and running_trips(vehicle=vehicle):
        raise DomainError("vehicle.in_use", "template")
    kept = [label for label in vehicle.blocked_seats or [] if label in seat_map]
    dropped = len(vehicle.blocked_seats or []) - len(kept)
    _flush_unique(
        _set_all(vehicle, {**values, "blocked_seats": kept}),
        "identifier.taken",
        "identifier",
        lambda: _check_in_service_elsewhere(values, vehicle.id),
    )
    record_audit(
        "vehicle.updated",
        vehicle,
        actor,
        kind=vehicle.kind,
        template=vehicle.seatmap_template,
        seats=len(seat_map),
        blocked_seats_dropped=dropped,
    )
    return vehicle


def set_blocked_seats(vehicle: Vehicle, labels: Iterable[str], actor: object) -> Vehicle:
    """Replace the vehicle's blocked seats. Every label must be a seat of its map; a seat
    already given to a worker on a trip that has not yet arrived cannot be blocked."""
    seat_map = vehicle.seat_map
    wanted = {str(label).strip() for label in labels if str(label).strip()}
    if any(label not in seat_map for label in wanted):
        raise DomainError("blocked_seats.unknown", "blocked_seats")
    blocked = sorted(wanted, key=seat_map.index)
    added = wanted - set(vehicle.blocked_seats or [])
    if added:
        from app.trips.models import SeatAssignment

        trip_ids = [trip.id for trip in running_trips(vehicle=vehicle)]
        if trip_ids and db.session.scalar(
            select(SeatAssignment.id)
            .where(SeatAssignment.trip_id.in_(trip_ids), SeatAssignment.seat_label.in_(added))
            .limit(1)
        ):
            raise DomainError("blocked_seats.assigned", "blocked_seats")
    removed = set(vehicle.blocked_seats or []) - wanted
    vehicle.blocked_seats = blocked
    db.session.flush()
    record_audit(
        "vehicle.blocked_seats",
        vehicle,
        actor,
        blocked=len(blocked),
        added=sorted(added, key=seat_map.index),
        removed=sorted(removed, key=lambda label: (label not in seat_map, label)),
    )
    return vehicle


# --- drivers -------------------------------------------------------------------------------


def _driver_values(fields: Mapping) -> dict:
    name = _text(fields, "name", 50, required=True)
    try:
        phone = normalize_mobile(fields.get("phone"))
    except InvalidIdentifier as error:
        raise DomainError(f"phone.{error.reason}", "phone") from None
    licence_number = normalize_licence_number(fields.get("licence_number"))
    return {
        "name": name,
        "phone": phone,
        "licence_number": licence_number,
        "active": bool(fields.get("active", True)),
    }


def _check_licence(licence_hash: str, driver_id: int | None) -> None:
    taken = db.session.scalar(select(Driver.id).where(Driver.licence_number_hash == licence_hash))
    if taken is not None and taken != driver_id:
        raise DomainError("licence_number.taken", "licence_number")


def driver_licence_number(driver: Driver) -> str:
    """The licence number in the clear (for the edit form only)."""
    return vault().decrypt(driver.licence_number_token)


def masked_licence_number(driver: Driver) -> str:
    return mask_licence_number(driver_licence_number(driver))


def create_driver(operator: Operator, fields: Mapping, actor: object) -> Driver:
    values = _driver_values(fields)
    pii = vault()
    licence_number = values.pop("licence_number")
    licence_hash = pii.lookup_hash(licence_number)
    _check_licence(licence_hash, None)
    driver = Driver(
        operator_id=operator.id,
        licence_number_token=pii.encrypt(licence_number),
        licence_number_hash=licence_hash,
        **values,
    )
    _flush_unique(lambda: db.session.add(driver), "licence_number.taken", "licence_number")
    record_audit("driver.created", driver, actor, operator_id=operator.id)
    return driver


def update_driver(driver: Driver, fields: Mapping, actor: object) -> Driver:
    values = _driver_values(fields)
    pii = vault()
    licence_number = values.pop("licence_number")
    licence_hash = pii.lookup_hash(licence_number)
    if licence_hash != driver.licence_number_hash:
        _check_licence(licence_hash, driver.id)
        values["licence_number_token"] = pii.encrypt(licence_number)
        values["licence_number_hash"] = licence_hash
    _flush_unique(_set_all(driver, values), "licence_number.taken", "licence_number")
    record_audit(
        "driver.updated",
        driver,
        actor,
        licence_changed="licence_number_hash" in values,
        active=driver.active,
    )
    return driver
