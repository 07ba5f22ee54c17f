"""The passenger manifest (乘客登记表) of a trip and the employer's arrival list: the rows the
printable pages and the downloads share. ID and phone numbers are masked unless the caller
asks for them whole (and then the view writes the audit row)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from flask import Response
from flask_babel import gettext as _
from sqlalchemy import select

from app.accounts.models import Organization
from app.core.identity import mask_id_number, mask_mobile
from app.core.pii import vault
from app.demand.exports import table_file
from app.demand.forms import ENTRY_STATUS_NAMES
from app.demand.models import EntryStatus, RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.trips import services
from app.trips.models import SeatAssignment, Trip, TripStatus

# ID number and mobile are text cells, so Excel never turns them into 3.70102E+17.
TEXT_COLUMNS = [2, 3]


@dataclass(frozen=True)
class ManifestRow:
    carriage: int
    seat: str
    name: str
    id_number: str
    mobile: str
    employer: str
    request: str
    group: str
    health: str
    home_region: str

    @property
    def cells(self) -> list[str]:
        return [
            self.seat,
            self.name,
            self.id_number,
            self.mobile,
            self.employer,
            self.request,
            self.group,
            self.health,
            self.home_region,
        ]


def manifest_headers() -> list[str]:
    return [
        _("Seat"),
        _("Full name"),
        _("ID number"),
        _("Mobile"),
        _("Employer"),
        _("Request"),
        _("Group"),
        _("Health"),
        _("Home region"),
    ]


def _national(e164: str) -> str:
    return e164[3:] if e164.startswith("+86") else e164


def health_word(entry: RosterEntry) -> str:
    """Blocked while the entry is blocked; a seated (boarded, arrived) worker has passed."""
    status = EntryStatus.BLOCKED if entry.status == EntryStatus.BLOCKED else EntryStatus.CLEARED
    return str(ENTRY_STATUS_NAMES[status])


def _preload(entries: list[RosterEntry]) -> list[object]:
    """Workers, requests and their organizations in three queries, so the lazy loads that
    follow find them in the session instead of asking once per row. The caller keeps the
    returned list while it works: the session holds loaded objects only weakly."""
    if not entries:
        return []
    workers = db.session.scalars(
        select(Worker).where(Worker.id.in_({e.worker_id for e in entries}))
    ).all()
    requests = db.session.scalars(
        select(TransportRequest).where(TransportRequest.id.in_({e.request_id for e in entries}))
    ).all()
    organizations = db.session.scalars(
        select(Organization).where(Organization.id.in_({r.organization_id for r in requests}))
    ).all()
    return [*workers, *requests, *organizations]


def manifest_rows(trip: Trip, full: bool) -> list[ManifestRow]:
    """Every seated worker of the trip, in seat order."""
    holders = services.seat_holders(trip.id)
    _keep = _preload([entry for _assignment, entry in holders])
    seat_map = trip.vehicle.seat_map
    pii = vault()
    rows = []
    for assignment, entry in holders:
        worker = entry.worker
        seat = seat_map.seat(assignment.seat_label)
        id_number = pii.decrypt(worker.id_number_token)
        phone = pii.decrypt(worker.phone_token)
        rows.append(
            ManifestRow(
                carriage=seat.carriage,
                seat=seat.display,
                name=worker.name,
                id_number=id_number if full else mask_id_number(id_number),
                mobile=_national(phone) if full else mask_mobile(phone),
                employer=entry.request.organization.name,
                request=entry.request.reference,
                group=worker.group_tag or "",
                health=health_word(entry),
                home_region=worker.home_region_name or worker.home_region_code,
            )
        )
    return rows


def manifest_file(trip: Trip, fmt: str, full: bool) -> Response:
    """The manifest as .xlsx or .csv (any other format: 404)."""
    rows = (row.cells for row in manifest_rows(trip, full))
    basename = f"manifest-{trip.reference}" + ("-full" if full else "")
    return table_file(manifest_headers(), rows, fmt, basename, TEXT_COLUMNS)


# --- the employer's arrival list -----------------------------------------------------------


@dataclass(frozen=True)
class ArrivalRow:
    seat: str
    name: str
    id_number: str
    mobile: str


@dataclass(frozen=True)
class ArrivalGroup:
    trip: Trip
    rows: list[ArrivalRow]


def arrival_groups(transport_request: TransportRequest) -> list[ArrivalGroup]:
    """The request's seated workers, by the trip that brings them to the site — each worker's
    last leg (a train feeding a coach: the coach) — with masked numbers, in arrival order."""
    found = db.session.execute(
        select(SeatAssignment, RosterEntry, Trip)
        .join(RosterEntry, SeatAssignment.roster_entry_id == RosterEntry.id)
        .join(Trip, SeatAssignment.trip_id == Trip.id)
        .where(
            RosterEntry.request_id == transport_request.id,
            # A no-show or a withdrawn worker is not handed over.
            RosterEntry.status.not_in([EntryStatus.WITHDRAWN, EntryStatus.NO_SHOW]),
            Trip.status != TripStatus.CANCELLED,
        )
        .order_by(Trip.departs_at, Trip.id)
    ).all()
    last_leg: dict[int, tuple[SeatAssignment, RosterEntry, Trip]] = {}
    for assignment, entry, trip in found:  # later legs come later and win
        last_leg[entry.id] = (assignment, entry, trip)
    _keep = _preload([entry for _a, entry, _t in last_leg.values()])
    pii = vault()
    per_trip: dict[int, list[tuple[int, ArrivalRow]]] = defaultdict(list)
    trips: dict[int, Trip] = {}
    for assignment, entry, trip in last_leg.values():
        seat_map = trip.vehicle.seat_map
        worker = entry.worker
        trips[trip.id] = trip
        per_trip[trip.id].append(
            (
                seat_map.index(assignment.seat_label),
                ArrivalRow(
                    seat=seat_map.seat(assignment.seat_label).display,
                    name=worker.name,
                    id_number=mask_id_number(pii.decrypt(worker.id_number_token)),
                    mobile=mask_mobile(pii.decrypt(worker.phone_token)),
                ),
            )
        )
    ordered = sorted(trips.values(), key=lambda t: (t.arrives_at, t.id))
    return [
        ArrivalGroup(
            trip=trip,
            rows=[row for _index, row in sorted(per_trip[trip.id], key=lambda pair: pair[0])],
        )
        for trip in ordered
    ]
