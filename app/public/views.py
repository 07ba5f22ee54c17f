"""Worker-facing pages (no account): the trip page reached from the SMS link."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from app.core.identity import mask_id_number
from app.core.pii import vault
from app.trips import services as trips

bp = Blueprint("public", __name__, template_folder="templates")


@bp.get("/my-trip/<token>")
def my_trip(token: str):
    entry = trips.entry_for_token(token)
    if entry is None:
        abort(404)
    legs = trips.itinerary(entry.id)
    return render_template(
        "public/my_trip.html",
        entry=entry,
        legs=[(a, a.trip, a.trip.vehicle.seat_map.seat(a.seat_label)) for a in legs],
        id_number=mask_id_number(vault().decrypt(entry.worker.id_number_token)),
    )
