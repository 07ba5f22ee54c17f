"""Worker-facing pages (no account): finding one's trip with a booking code, the trip page
reached from the SMS link, its QR boarding pass, and "I can't go"."""

from __future__ import annotations

import io

import segno
from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import get_translations
from jinja2 import pass_context
from markupsafe import Markup

from app.core.errors import DomainError
from app.core.identity import mask_id_number
from app.core.pii import vault
from app.demand.models import EntryStatus, RosterEntry
from app.extensions import db, limiter
from app.health import services as health
from app.public.forms import NO_MATCH, LookupForm
from app.trips import services as trips
from app.trips.models import SEATING_STATUSES, Trip

bp = Blueprint("public", __name__, template_folder="templates")

# Who may still say "I can't go" from the page (the service has the last word).
WITHDRAWABLE = (
    EntryStatus.PENDING,
    EntryStatus.CLEARED,
    EntryStatus.BLOCKED,
    EntryStatus.SEATED,
)


# --- lookup: booking code + last four digits -------------------------------------------------


def _missed(response) -> bool:
    # A match redirects to the trip page; only misses use up the allowance.
    return response.status_code != 302


def _booking_key() -> str:
    return "trip-lookup:" + (trips.normalize_booking_code(request.form.get("booking_code")) or "")


def _not_a_code() -> bool:
    # A code that cannot be one matches nothing and needs no bucket of its own (the per-IP
    # limit still counts it).
    return trips.normalize_booking_code(request.form.get("booking_code")) is None


@bp.route("/trip", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config.get("TRIP_LOOKUP_RATE_LIMIT_PER_IP", "10 per minute"),
    methods=["POST"],
    deduct_when=_missed,
)
@limiter.limit(
    lambda: current_app.config.get("TRIP_LOOKUP_RATE_LIMIT_PER_CODE", "5 per 15 minutes"),
    key_func=_booking_key,
    methods=["POST"],
    deduct_when=_missed,
    exempt_when=_not_a_code,
)
def lookup():
    form = LookupForm()
    if request.method == "POST":
        valid = form.validate()
        # Every submission, valid or not, goes through the lookup: one answer, and (as far as
        # find_booking keeps its promise) one amount of work, whatever was wrong.
        entry = trips.find_booking(form.booking_code.data, form.phone_last4.data)
        if valid and entry is not None:
            return redirect(url_for("public.my_trip", token=trips.trip_page_token(entry.id)))
        form.form_errors.append(NO_MATCH)
        form.forget_input()
    return render_template("public/lookup.html", form=form)


# --- the trip page ---------------------------------------------------------------------------


def _link_not_valid():
    return render_template("public/link_invalid.html"), 404


def _read_without_transaction() -> None:
    """Run this request's reads in autocommit on PostgreSQL: no BEGIN and ROLLBACK round
    trips, and each statement's table and index locks held and released on their own.

    For pages that only read, in a few statements: under READ COMMITTED each statement
    already sees its own snapshot, so they see the same rows either way. Measured on the
    trip page (2 statements over 9 tables): 0.95 -> 0.17 ms of PostgreSQL CPU a page.
    Only when the session has not begun (a signed-in visitor's user row was read already)."""
    session = db.session()
    if not session.in_transaction() and db.engine.dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _render_page(template: str, **context) -> str:
    """``render_template`` with the templates' ``_`` reading this request's catalogue directly.

    Flask-Babel's ``_`` looks the catalogue up again through the app, request and locale
    contexts for each of the page's ~26 strings; binding it once takes the trip page's
    rendering from 0.46 to 0.32 ms. Same strings, escaping and %-formatting as Jinja's
    "newstyle" gettext, which Flask-Babel installs."""
    translations = get_translations()

    @pass_context
    def gettext(template_context, string: str, **variables) -> str:
        text = translations.ugettext(string)
        if template_context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 - our catalogue, as Jinja's gettext marks it
        return text % variables

    return render_template(template, gettext=gettext, **context)


def _phone_text(phone: str | None) -> str:
    """A phone number as people dial it in China: +8613900001111 -> 13900001111."""
    text = phone or ""
    return text[3:] if text.startswith("+86") else text


def _door_refusal(entry: RosterEntry, legs: list) -> tuple[str, ...]:
    """Why the door the seated worker goes through next would refuse them now (nothing: it
    lets them on), judged as that door judges: the roster status of a seated worker is not
    judged again (they keep the seat, a new pass may still come), their pass is."""
    if entry.status != EntryStatus.SEATED:
        return ()
    for assignment, trip, _seat in legs:
        if trip.connects_from_id is None and assignment.boarding is None:
            return trips.health_refusal(entry, trip)
    return ()


def _health(entry: RosterEntry, refused: tuple[str, ...]) -> str:
    """What the page says of the worker's health result, in plain words."""
    if refused:
        return "refused"
    if entry.status == EntryStatus.WITHDRAWN:
        return "withdrawn"
    if entry.status == EntryStatus.NO_SHOW:
        return "fever" if entry.block_reason == "fever" else "no_show"
    if entry.status == EntryStatus.BLOCKED:
        return "blocked"
    if entry.status == EntryStatus.PENDING:
        return "pending"
    return "cleared"


def _contacts(entry: RosterEntry, crew_of: list[Trip]) -> dict:
    """Whom the worker can call: the employer's contact on site, and the crew of ``crew_of``."""
    request_ = entry.request
    return {
        "employer": request_.organization.name,
        "site_contact": request_.site_contact_name,
        "site_phone": request_.site_contact_phone,
        "crew": [
            (name, phone)
            for trip in crew_of
            for name, phone in [
                *((d.name, d.phone) for d in trip.drivers),
                *([(trip.escort_name or "", trip.escort_phone)] if trip.escort_phone else []),
            ]
        ],
    }


@bp.get("/my-trip/<token>")
def my_trip(token: str):
    _read_without_transaction()
    entry = trips.entry_for_token(token)
    if entry is None:
        return _link_not_valid()
    legs = [
        (a, a.trip, a.trip.vehicle.seat_map.seat(a.seat_label)) for a in trips.itinerary(entry.id)
    ]
    refused = _door_refusal(entry, legs)
    # A worker waiting again because their trip was cancelled is told so, not "no seat yet".
    waiting = not legs and entry.status in health.CHECKABLE
    can_withdraw = entry.status in WITHDRAWABLE and all(
        trip.status in SEATING_STATUSES and not assignment.boarding
        for assignment, trip, _seat in legs
    )
    return _render_page(
        "public/my_trip.html",
        entry=entry,
        token=token,
        legs=legs,
        health=_health(entry, refused),
        refused=refused,
        cancelled=trips.cancelled_trip(entry.id) if waiting else None,
        booking_code=trips.shown_booking_code(entry.booking_code),
        show_pass=bool(legs and entry.booking_code and entry.status != EntryStatus.WITHDRAWN),
        can_withdraw=can_withdraw,
        contacts=_contacts(entry, []),  # the crew is on each leg already
        phone_text=_phone_text,
        id_number=mask_id_number(vault().decrypt(entry.worker.id_number_token)),
    )


@bp.get("/my-trip/<token>/pass.svg")
def boarding_pass(token: str):
    """The QR code the staff scan at the vehicle door: the booking code and nothing else."""
    _read_without_transaction()
    entry = trips.entry_for_token(token)
    if entry is None or not entry.booking_code or entry.status == EntryStatus.WITHDRAWN:
        return _link_not_valid()
    buffer = io.BytesIO()
    segno.make(entry.booking_code, error="m", micro=False).save(
        buffer, kind="svg", scale=8, border=4, xmldecl=False, dark="#000", light="#fff"
    )
    return Response(
        buffer.getvalue(),
        mimetype="image/svg+xml",
        headers={"Cache-Control": "no-store", "Content-Disposition": "inline"},
    )


# --- "I can't go" ----------------------------------------------------------------------------


@bp.post("/my-trip/<token>/withdraw")
def withdraw(token: str):
    entry = trips.entry_for_token(token)
    if entry is None:
        return _link_not_valid()
    outcome, status = "done", 200
    if entry.status == EntryStatus.WITHDRAWN:
        outcome = "already"
    else:
        try:
            trips.withdraw_from_travel(entry.id, None)
        except DomainError:
            db.session.rollback()
            # A second "I can't go" that raced the first is refused by the service too.
            entry = db.session.get(RosterEntry, entry.id)
            if entry.status == EntryStatus.WITHDRAWN:
                outcome = "already"
            else:
                outcome, status = "refused", 409
        else:
            db.session.commit()
    return render_template(
        "public/withdrawn.html",
        outcome=outcome,
        token=token,
        contacts=_contacts(entry, [a.trip for a in trips.itinerary(entry.id)]),
        phone_text=_phone_text,
    ), status
