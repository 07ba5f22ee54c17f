"""JSON API v1: the pages' operations for machines, through the same services and forms.

Bearer tokens (personal, from /account/tokens) act as their user; no cookies, no CSRF.
Errors have one shape: ``{"error": {"code", "message", "fields"}}`` in the Accept-Language
language. Requests carry an ETag (their version): a state change sent with a stale If-Match
gets 412, and two clients changing one request without it still cannot lose an update (409).
Creates honour an ``Idempotency-Key`` header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from app.api import schema, services
from app.api.forms import TokenForm
from app.api.models import ApiToken
from app.api.schema import endpoint
from app.core.access import Role, get_visible_or_404, roles_required, select_visible
from app.core.base import MAX_ID
from app.core.errors import DomainError, error_body, json_error
from app.core.paging import MAX_PAGE, whole_number
from app.demand import services as demand
from app.demand.exports import masked_worker
from app.demand.forms import DecisionForm, TransportRequestForm
from app.demand.forms import message_for as demand_message
from app.demand.models import EntryStatus, RequestStatus, RosterEntry, TransportRequest, Worker
from app.demand.roster import COLUMNS, check_worker
from app.extensions import db, limiter
from app.fleet.models import Vehicle
from app.health import services as health
from app.trips import services as trips
from app.trips.forms import (
    BOARDING_MESSAGES,
    BoardingForm,
    HandoverForm,
    PlanForm,
    plan_problem_text,
)
from app.trips.forms import message_for as trips_message
from app.trips.models import SeatAssignment, Trip

bp = Blueprint("api", __name__, url_prefix="/api/v1")

EMPLOYER, COORDINATOR, ADMIN = Role.EMPLOYER, Role.COORDINATOR, Role.ADMIN
PUBLIC_ENDPOINTS = {"api.openapi", "api.reference", "api.trip_lookup"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict | None = None):
        super().__init__(code)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


def _token_key() -> str:
    """Rate limits count per token (per address for calls without one)."""
    header = request.headers.get("Authorization", "")
    if header:
        return "api:" + hashlib.sha256(header.encode()).hexdigest()[:24]
    return "api-ip:" + (request.remote_addr or "")


limiter.limit(lambda: current_app.config["API_RATE_LIMIT"], key_func=_token_key)(bp)


@bp.before_request
def authenticate() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    scheme, _sep, secret = request.headers.get("Authorization", "").partition(" ")
    found = services.user_for_token(secret.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise ApiError(401, "unauthorized", _("A valid API token is needed (Bearer)."))
    g._login_user = found[0]  # what flask_login's current_user reads: no session, no cookie


@bp.errorhandler(ApiError)
def api_error(error: ApiError):
    db.session.rollback()
    return jsonify(error_body(error.code, error.message, error.fields)), error.status


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return http_error_response(error)


def http_error_response(error: HTTPException):
    if (error.code or 500) >= 500:
        db.session.rollback()
    return json_error(error.code or 500)


def _domain_error(error: DomainError, messages: Callable[..., str]) -> ApiError:
    message = messages(error.code, **error.details)
    fields = {error.field: [message]} if error.field else {}
    return ApiError(422 if error.field else 409, error.code, message, fields)


def _invalid(form) -> ApiError:
    return _invalid_fields({name: [str(m) for m in errors] for name, errors in form.errors.items()})


def _invalid_fields(fields: dict[str, list[str]]) -> ApiError:
    return ApiError(422, "invalid", _("Some fields are not valid."), fields)


TYPE_MESSAGES = {
    "string": _l("Must be text."),
    "integer": _l("Must be a whole number."),
    "boolean": _l("Must be true or false."),
    "array": _l("Must be a list."),
}


def _of_type(value: object, described: dict) -> bool:
    kind = described.get("type")
    if kind == "array":
        items = described.get("items", {})
        return isinstance(value, list) and all(_of_type(item, items) for item in value)
    if kind == "integer":  # a form reads its numbers from text, as the pages send them
        return isinstance(value, int | str) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    return True


def _type_problems(values: dict, properties: dict, prefix: str = "") -> dict[str, list[str]]:
    """The fields whose JSON type is not the one the document gives (null counts as left
    out): what a form or the roster, which read text, cannot see. They check the values."""
    return {
        prefix + name: [str(TYPE_MESSAGES[properties[name]["type"]])]
        for name, value in values.items()
        if value is not None and name in properties and not _of_type(value, properties[name])
    }


def _is_id(value: object, lowest: int = 1) -> bool:
    """An id a row can have: a whole number from 1 to MAX_ID (true is not 1); ``lowest=0``
    for a count stored beside ids."""
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= MAX_ID


def _check_ids(ids_by_field: dict[str, list]) -> None:
    """Ids are checked before any query: one beyond the database's integers is an error
    there (PostgreSQL) or in the driver (SQLite)."""
    for field, ids in ids_by_field.items():
        if not all(_is_id(i) for i in ids):
            raise _invalid_fields(
                {field: [_("Ids are whole numbers from 1 to %(max)s.", max=MAX_ID)]}
            )


def _payload() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "body_not_json", _("The body must be a JSON object."))
    return body


def bind(form_class, payload: dict, **kwargs):
    """A pages' form filled from JSON, validated by the same rules (CSRF off: no cookies)."""
    wrong = _type_problems(payload, schema.form_schema(form_class)["properties"])
    if wrong:
        raise _invalid_fields(wrong)
    data = MultiDict()
    for name, value in payload.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                if item:
                    data.add(name, "y")
            elif item is not None:
                data.add(name, str(item))
    return form_class(formdata=data, meta={"csrf": False}, **kwargs)


PAGING = {
    "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    "per_page": {"type": "integer", "minimum": 1, "maximum": 100},
}


def _paging(name: str, default: int) -> int:
    """A paging parameter as the document gives its range; anything else is refused."""
    text, described = request.args.get(name), PAGING[name]
    if text is None:
        return default
    low, high = described["minimum"], described["maximum"]
    number = whole_number(text, low, high)
    if number is None:
        raise ApiError(
            400,
            "invalid",
            _("Some fields are not valid."),
            {name: [_("A whole number from %(low)s to %(high)s.", low=low, high=high)]},
        )
    return number


def _page(query, serialize: Callable, endpoint_name: str, **values) -> dict:
    per_page, number = _paging("per_page", 50), _paging("page", 1)
    page = db.paginate(query, page=number, per_page=per_page, error_out=False)

    def link(number: int | None) -> str | None:
        if number is None:
            return None
        return url_for(endpoint_name, page=number, per_page=per_page, **values)

    return {
        "items": [serialize(item) for item in page.items],
        "page": page.page,
        "pages": page.pages,
        "total": page.total,
        "links": {
            "self": link(page.page),
            "next": link(page.next_num if page.has_next else None),
            "prev": link(page.prev_num if page.has_prev else None),
        },
    }


def idempotent(view: Callable) -> Callable:
    """A create retried with the same Idempotency-Key answers what the first one did."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 100:
            raise ApiError(400, "idempotency_key", _("The Idempotency-Key is too long."))
        fingerprint = services.request_fingerprint(
            request.method, request.path, request.get_json(silent=True)
        )
        stored = services.stored_response(current_user, key) if key else None
        if stored is not None:
            if stored.request_hash != fingerprint:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    _("This Idempotency-Key was used for another request."),
                )
            body, status, location = stored.body, stored.status, stored.location
        else:
            body, status, location = view(*args, **kwargs)
            if key:
                try:
                    services.store_response(
                        current_user,
                        key,
                        fingerprint,
                        request.method,
                        request.path,
                        status,
                        body,
                        location,
                    )
                except IntegrityError:  # the same key, at the same moment, from a second client
                    raise ApiError(
                        409,
                        "idempotency_in_progress",
                        _("A request with this key is already being handled."),
                    ) from None
            db.session.commit()
        response = jsonify(body)
        if location:
            response.headers["Location"] = location
        return response, status

    return wrapped


def _created(body: dict, location: str) -> tuple[dict, int, str]:
    """What a create answers; the idempotency wrapper stores it and commits once."""
    db.session.flush()
    return body, 201, location


# --- the document ------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi():
    return jsonify(schema.document("Fangang API", "1.0.0"))


@bp.get("/docs")
def reference():
    return render_template("api/reference.html", document=schema.document("Fangang API", "1.0.0"))


# --- workers -------------------------------------------------------------------------------

WORKER = {
    "type": "object",
    "required": ["id", "name", "id_number", "phone", "home_region_code", "group_tag"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "id_number": {"type": "string", "description": "Masked: 5002**********1239."},
        "phone": {"type": "string", "description": "Masked: 138****8000."},
        "home_region_code": {"type": "string"},
        "home_region_name": {"type": ["string", "null"]},
        "group_tag": {"type": ["string", "null"]},
    },
}


def worker_json(worker: Worker) -> dict:
    return {
        "id": worker.id,
        "name": worker.name,
        **masked_worker(worker),
        "home_region_code": worker.home_region_code,
        "home_region_name": worker.home_region_name,
        "group_tag": worker.group_tag,
    }


@bp.get("/workers")
@endpoint(
    "get",
    "/workers",
    "The roster",
    (EMPLOYER,),
    "workers",
    response=schema.page_of(WORKER),
    query=PAGING,
)
@roles_required(EMPLOYER)
def list_workers():
    query = select_visible(Worker).order_by(Worker.group_tag, Worker.name, Worker.id)
    return _page(query, worker_json, "api.list_workers")


WORKER_FIELDS = schema.worker_schema()["properties"]


def _checked_worker(values: dict, row: int = 0):
    """A worker's columns checked as a row of an import (their JSON types checked first)."""
    text = {c.field: values.get(c.field) for c in COLUMNS}
    return check_worker(text, demand.today(), demand.age_rule(), row=row)


def _problems_as_fields(problems, prefix: str = "") -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for problem in problems:
        name = prefix + problem.reason.split(".")[0]
        fields.setdefault(name, []).append(
            demand_message(problem.reason, other_row=getattr(problem, "other_row", None))
        )
    return fields


def _save_worker(values: dict, worker: Worker | None) -> Worker:
    wrong = _type_problems(values, WORKER_FIELDS)
    if wrong:
        raise _invalid_fields(wrong)
    checked = _checked_worker(values)
    if not hasattr(checked, "id_number"):
        raise ApiError(
            422, "invalid", _("Some fields are not valid."), _problems_as_fields(checked)
        )
    try:
        given = health.pass_from_input(values.get("health_pass"), None)
        if worker is None:
            saved = demand.create_worker(current_user.organization, checked, current_user)
        else:
            saved = demand.update_worker(worker, checked, current_user)
        if given:
            health.attach_pass(saved, given[0], current_user, given[1])
    except DomainError as error:
        raise ApiError(
            422,
            error.code,
            demand_message(error.code),
            {error.field or "id_number": [demand_message(error.code)]},
        ) from None
    return saved


@bp.post("/workers")
@endpoint(
    "post",
    "/workers",
    "Add a worker to the roster",
    (EMPLOYER,),
    "workers",
    body=schema.worker_schema(),
    response=WORKER,
    status=201,
    idempotent_create=True,
)
@roles_required(EMPLOYER)
@idempotent
def create_worker():
    saved = _save_worker(_payload(), None)
    db.session.flush()
    return _created(worker_json(saved), url_for("api.get_worker", worker_id=saved.id))


@bp.get("/workers/<int:worker_id>")
@endpoint("get", "/workers/{worker_id}", "One worker", (EMPLOYER,), "workers", response=WORKER)
@roles_required(EMPLOYER)
def get_worker(worker_id: int):
    return worker_json(get_visible_or_404(Worker, worker_id))


@bp.put("/workers/<int:worker_id>")
@endpoint(
    "put",
    "/workers/{worker_id}",
    "Change a worker (all fields)",
    (EMPLOYER,),
    "workers",
    body=schema.worker_schema(),
    response=WORKER,
)
@roles_required(EMPLOYER)
def update_worker(worker_id: int):
    worker = get_visible_or_404(Worker, worker_id)
    saved = _save_worker(_payload(), worker)
    db.session.commit()
    return worker_json(saved)


BULK = {
    "type": "object",
    "required": ["workers"],
    "properties": {"workers": {"type": "array", "items": schema.worker_schema(), "maxItems": 5000}},
}


@bp.post("/workers/bulk")
@endpoint(
    "post",
    "/workers/bulk",
    "Add many workers: all or nothing, every problem by row",
    (EMPLOYER,),
    "workers",
    body=BULK,
    status=201,
    idempotent_create=True,
    response={"type": "object", "properties": {"created": {"type": "integer"}}},
)
@roles_required(EMPLOYER)
@idempotent
def bulk_workers():
    rows = _payload().get("workers")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ApiError(
            422,
            "invalid",
            _("Some fields are not valid."),
            {"workers": [_("A list of workers is needed.")]},
        )
    if len(rows) > 5000:
        raise ApiError(
            422,
            "invalid",
            _("Some fields are not valid."),
            {"workers": [_("At most 5,000 workers at a time.")]},
        )
    fields: dict[str, list[str]] = {}
    checked = []
    seen: dict[str, int] = {}
    for n, values in enumerate(rows):
        wrong = _type_problems(values, WORKER_FIELDS, f"workers[{n}].")
        if wrong:
            fields.update(wrong)
            continue
        result = _checked_worker(values, row=n)
        if hasattr(result, "id_number"):
            if result.id_number in seen:
                fields.setdefault(f"workers[{n}].id_number", []).append(
                    demand_message("id_number.duplicate_in_file", other_row=seen[result.id_number])
                )
            seen[result.id_number] = n
            checked.append((n, result))
        else:
            fields.update(_problems_as_fields(result, f"workers[{n}]."))
    for n, data in checked:
        if demand.find_worker_by_id_number(current_user.organization_id, data.id_number):
            fields.setdefault(f"workers[{n}].id_number", []).append(
                demand_message("id_number.on_roster")
            )
    if fields:
        raise ApiError(422, "invalid", _("Nothing was saved: some rows are not valid."), fields)
    for n, data in checked:
        try:
            saved = demand.create_worker(current_user.organization, data, current_user)
            given = health.pass_from_input(rows[n].get("health_pass"), None)
            if given:
                health.attach_pass(saved, given[0], current_user, given[1])
        except DomainError as error:
            message = demand_message(error.code)
            raise ApiError(
                422, error.code, message, {f"workers[{n}].{error.field or 'id_number'}": [message]}
            ) from None
    return _created({"created": len(checked)}, url_for("api.list_workers"))


# --- transport requests --------------------------------------------------------------------

REQUEST = {
    "type": "object",
    "required": ["id", "reference", "status", "version", "counts"],
    "properties": {
        "id": {"type": "integer"},
        "reference": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in RequestStatus]},
        "version": {"type": "integer"},
        "origin_region_code": {"type": "string"},
        "destination_region_code": {"type": "string"},
        "site_name": {"type": "string"},
        "earliest_departure": {"type": "string", "format": "date"},
        "latest_departure": {"type": "string", "format": "date"},
        "decision_reason": {"type": ["string", "null"]},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


def request_json(transport_request: TransportRequest, counts: dict | None = None) -> dict:
    r = transport_request
    return {
        "id": r.id,
        "reference": r.reference,
        "status": r.status,
        "version": r.version,
        "origin_region_code": r.origin_region_code,
        "destination_region_code": r.destination_region_code,
        "site_name": r.site_name,
        "earliest_departure": r.earliest_departure.isoformat(),
        "latest_departure": r.latest_departure.isoformat(),
        "decision_reason": r.decision_reason,
        "counts": counts if counts is not None else demand.status_counts(r.id),
    }


def _with_etag(body: dict, version: int):
    response = jsonify(body)
    response.set_etag(f"r{version}")
    return response


def _check_if_match(transport_request: TransportRequest) -> None:
    if request.if_match and not request.if_match.contains(f"r{transport_request.version}"):
        raise ApiError(412, "stale", _("The request has changed since you read it: read it again."))


def _run_request_change(transport_request: TransportRequest, operation: Callable) -> dict:
    _check_if_match(transport_request)
    try:
        operation()
        db.session.commit()
    except DomainError as error:
        raise _domain_error(error, demand_message) from None
    except StaleDataError:
        raise ApiError(
            409, "stale", _("The request has changed since you read it: read it again.")
        ) from None
    db.session.refresh(transport_request)
    return request_json(transport_request)


@bp.get("/requests")
@endpoint(
    "get",
    "/requests",
    "Transport requests (employers: theirs; coordinators: region)",
    (EMPLOYER, COORDINATOR, ADMIN),
    "requests",
    response=schema.page_of(REQUEST),
    query={**PAGING, "status": {"type": "string"}},
)
@roles_required(EMPLOYER, COORDINATOR, ADMIN)
def list_requests():
    query = select_visible(TransportRequest)
    status = request.args.get("status", "")
    if status in {s.value for s in RequestStatus}:
        query = query.where(TransportRequest.status == status)
    return _page(
        query.order_by(TransportRequest.id.desc()),
        lambda r: request_json(r, {}),
        "api.list_requests",
        **({"status": status} if status else {}),
    )


@bp.post("/requests")
@endpoint(
    "post",
    "/requests",
    "Create a draft request",
    (EMPLOYER,),
    "requests",
    form=TransportRequestForm,
    response=REQUEST,
    status=201,
    idempotent_create=True,
)
@roles_required(EMPLOYER)
@idempotent
def create_request():
    form = bind(TransportRequestForm, _payload())
    if not form.validate():
        raise _invalid(form)
    try:
        created = demand.create_request(current_user.organization, form.fields_dict(), current_user)
    except DomainError as error:
        raise _domain_error(error, demand_message) from None
    db.session.flush()
    return _created(request_json(created), url_for("api.get_request", request_id=created.id))


@bp.get("/requests/<int:request_id>")
@endpoint(
    "get",
    "/requests/{request_id}",
    "One request, with an ETag",
    (EMPLOYER, COORDINATOR, ADMIN),
    "requests",
    response=REQUEST,
)
@roles_required(EMPLOYER, COORDINATOR, ADMIN)
def get_request(request_id: int):
    found = get_visible_or_404(TransportRequest, request_id)
    return _with_etag(request_json(found), found.version)


@bp.post("/requests/<int:request_id>/<any(submit, cancel):action>")
@endpoint(
    "post",
    "/requests/{request_id}/submit",
    "Submit a draft",
    (EMPLOYER,),
    "requests",
    response=REQUEST,
    if_match=True,
)
@endpoint(
    "post",
    "/requests/{request_id}/cancel",
    "Cancel a request (seats are freed)",
    (EMPLOYER,),
    "requests",
    response=REQUEST,
    if_match=True,
)
@roles_required(EMPLOYER)
def change_request(request_id: int, action: str):
    found = get_visible_or_404(TransportRequest, request_id)
    if action == "submit":
        body = _run_request_change(found, lambda: demand.submit_request(found, current_user))
    else:
        body = _run_request_change(
            found, lambda: trips.cancel_request_travel(found.id, current_user)
        )
    return _with_etag(body, body["version"])


ADD_WORKERS = {
    "type": "object",
    "required": ["worker_ids"],
    "properties": {"worker_ids": {"type": "array", "items": schema.ID, "maxItems": 5000}},
}


@bp.post("/requests/<int:request_id>/workers")
@endpoint(
    "post",
    "/requests/{request_id}/workers",
    "Add roster workers to a request",
    (EMPLOYER,),
    "requests",
    body=ADD_WORKERS,
    response=REQUEST,
    if_match=True,
)
@roles_required(EMPLOYER)
def add_request_workers(request_id: int):
    found = get_visible_or_404(TransportRequest, request_id)
    ids = _payload().get("worker_ids")
    if not isinstance(ids, list):
        raise _invalid_fields({"worker_ids": [_("A list of worker ids is needed.")]})
    _check_ids({"worker_ids": ids})
    workers = list(db.session.scalars(select_visible(Worker).where(Worker.id.in_(ids))))
    if len(workers) != len(set(ids)):
        raise ApiError(
            422,
            "workers.not_on_roster",
            demand_message("workers.not_on_roster"),
            {"worker_ids": [demand_message("workers.not_on_roster")]},
        )
    body = _run_request_change(found, lambda: demand.add_workers(found, workers, current_user))
    return _with_etag(body, body["version"])


ENTRY = {
    "type": "object",
    "required": ["id", "worker_id", "name", "status"],
    "properties": {
        "id": {"type": "integer"},
        "worker_id": {"type": "integer"},
        "name": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in EntryStatus]},
        "block_reasons": {"type": "array", "items": {"type": "string"}},
        "seats": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "trip_id": {"type": "integer"},
                    "trip": {"type": "string"},
                    "departs_at": {"type": "string", "format": "date-time"},
                    "vehicle": {"type": "string"},
                    "seat": {"type": "string"},
                },
            },
        },
    },
}


@bp.get("/requests/<int:request_id>/workers")
@endpoint(
    "get",
    "/requests/{request_id}/workers",
    "Each worker's status and seats",
    (EMPLOYER, COORDINATOR, ADMIN),
    "requests",
    response=schema.page_of(ENTRY),
    query=PAGING,
)
@roles_required(EMPLOYER, COORDINATOR, ADMIN)
def request_entries(request_id: int):
    get_visible_or_404(TransportRequest, request_id)
    query = select(RosterEntry).where(RosterEntry.request_id == request_id).order_by(RosterEntry.id)
    result = _page(query, lambda e: e, "api.request_entries", request_id=request_id)
    seats = trips.seats_of_entries([e.id for e in result["items"]])
    result["items"] = [
        {
            "id": e.id,
            "worker_id": e.worker_id,
            "name": e.worker.name,
            "status": e.status,
            "block_reasons": [r for r in (e.block_reason or "").split(",") if r],
            "seats": [
                {
                    "trip_id": t.id,
                    "trip": t.reference,
                    "departs_at": t.departs_at.isoformat(),
                    "vehicle": t.vehicle.identifier,
                    "seat": seat,
                }
                for t, seat in seats.get(e.id, [])
            ],
        }
        for e in result["items"]
    ]
    return result


@bp.delete("/requests/<int:request_id>/workers/<int:entry_id>")
@endpoint(
    "delete",
    "/requests/{request_id}/workers/{entry_id}",
    "Withdraw a worker (their seat is freed)",
    (EMPLOYER,),
    "requests",
    response=REQUEST,
)
@roles_required(EMPLOYER)
def withdraw_request_worker(request_id: int, entry_id: int):
    found = get_visible_or_404(TransportRequest, request_id)
    entry = db.session.get(RosterEntry, entry_id)
    if entry is None or entry.request_id != found.id:
        raise ApiError(404, "http_404", _("Not found."))
    body = _run_request_change(found, lambda: trips.withdraw_from_travel(entry.id, current_user))
    return _with_etag(body, body["version"])


# --- coordinators --------------------------------------------------------------------------


@bp.post("/requests/<int:request_id>/<any(approve, reject):decision>")
@endpoint(
    "post",
    "/requests/{request_id}/approve",
    "Approve a submitted request",
    (COORDINATOR,),
    "queue",
    form=DecisionForm,
    response=REQUEST,
    if_match=True,
)
@endpoint(
    "post",
    "/requests/{request_id}/reject",
    "Reject with a reason the employer sees",
    (COORDINATOR,),
    "queue",
    form=DecisionForm,
    response=REQUEST,
    if_match=True,
)
@roles_required(COORDINATOR)
def decide(request_id: int, decision: str):
    found = get_visible_or_404(TransportRequest, request_id)
    form = bind(DecisionForm, _payload())
    if not form.validate():
        raise _invalid(form)
    reason = form.reason.data or ""
    operation = demand.approve_request if decision == "approve" else demand.reject_request
    body = _run_request_change(found, lambda: operation(found, current_user, reason))
    return _with_etag(body, body["version"])


TRIP = {
    "type": "object",
    "required": ["id", "reference", "status", "vehicle", "departs_at", "arrives_at"],
    "properties": {
        "id": {"type": "integer"},
        "reference": {"type": "string"},
        "status": {"type": "string"},
        "vehicle": {"type": "string"},
        "origin": {"type": "string"},
        "destination": {"type": "string"},
        "departs_at": {"type": "string", "format": "date-time"},
        "arrives_at": {"type": "string", "format": "date-time"},
        "leg": {"type": "integer"},
        "connects_from": {"type": ["integer", "null"]},
        "max_load_percent": {"type": "integer"},
        "seats_version": {"type": "integer"},
        "boarding": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


def trip_json(trip: Trip, with_counts: bool = True) -> dict:
    return {
        "id": trip.id,
        "reference": trip.reference,
        "status": trip.status,
        "vehicle": trip.vehicle.identifier,
        "origin": trip.origin_point,
        "destination": trip.destination_point,
        "departs_at": trip.departs_at.isoformat(),
        "arrives_at": trip.arrives_at.isoformat(),
        "leg": trip.leg,
        "connects_from": trip.connects_from_id,
        "max_load_percent": trip.max_load_percent,
        "seats_version": trip.seats_version,
        "boarding": trips.boarding_counts(trip.id) if with_counts else {},
    }


@bp.get("/trips")
@endpoint(
    "get",
    "/trips",
    "Trips of the region",
    (COORDINATOR, ADMIN),
    "trips",
    response=schema.page_of(TRIP),
    query=PAGING,
)
@roles_required(COORDINATOR, ADMIN)
def list_trips():
    query = select_visible(Trip).order_by(Trip.departs_at.desc(), Trip.id.desc())
    return _page(query, lambda t: trip_json(t, with_counts=False), "api.list_trips")


@bp.get("/trips/<int:trip_id>")
@endpoint(
    "get",
    "/trips/{trip_id}",
    "One trip, with boarding counts",
    (COORDINATOR, ADMIN),
    "trips",
    response=TRIP,
)
@roles_required(COORDINATOR, ADMIN)
def get_trip(trip_id: int):
    return trip_json(get_visible_or_404(Trip, trip_id))


def _trip_change(operation: Callable) -> None:
    try:
        trips.safe_integrity(operation)
        db.session.commit()
    except DomainError as error:
        raise _domain_error(error, trips_message) from None


@bp.post("/trips/<int:trip_id>/<any(allocate, lock, depart, arrive):action>")
@endpoint(
    "post",
    "/trips/{trip_id}/allocate",
    "Give seats to the planned, cleared workers",
    (COORDINATOR,),
    "trips",
    response=TRIP,
)
@endpoint(
    "post",
    "/trips/{trip_id}/lock",
    "Lock the manifest: workers are told their seats",
    (COORDINATOR,),
    "trips",
    response=TRIP,
)
@endpoint(
    "post",
    "/trips/{trip_id}/depart",
    "Depart (everyone boarded or no-show)",
    (COORDINATOR,),
    "trips",
    response=TRIP,
)
@endpoint("post", "/trips/{trip_id}/arrive", "Arrive", (COORDINATOR,), "trips", response=TRIP)
@roles_required(COORDINATOR)
def change_trip(trip_id: int, action: str):
    get_visible_or_404(Trip, trip_id)
    operations = {
        "allocate": trips.allocate_seats,
        "lock": trips.lock_manifest,
        "depart": trips.depart,
        "arrive": trips.arrive,
    }
    _trip_change(lambda: operations[action](trip_id, current_user))
    return trip_json(db.session.get(Trip, trip_id))


PLAN = {
    "type": "object",
    "properties": {
        "missing_seats": {"type": "integer"},
        "vehicles": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "vehicle_id": {"type": "integer"},
                    "vehicle": {"type": "string"},
                    "capacity": {"type": "integer"},
                    "loads": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "request_id": {"type": "integer"},
                                "workers": {"type": "integer"},
                            },
                        },
                    },
                },
            },
        },
        "boarding_elsewhere": {
            "type": "array",
            "items": {"type": "integer"},
            "description": "Requests whose workers start from another region than this first "
            "leg: their SMS will send them to its origin point (check it; not refused).",
        },
    },
}
APPLY_LOADS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["vehicle_id", "request_id", "workers"],
        "properties": {
            "vehicle_id": schema.ID,
            "request_id": schema.ID,
            "workers": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
        },
    },
}


def _plan_form(payload: dict) -> PlanForm:
    """The planner's form; requests and vehicles are checked by the services themselves."""
    form = bind(PlanForm, payload)
    for name in ("requests", "vehicles", "connects_from_id"):
        getattr(form, name).validate_choice = False
    if not form.validate():
        raise _invalid(form)
    feeder = form.connects_from_id.data
    _check_ids(
        {
            "requests": form.requests.data or [],
            "vehicles": form.vehicles.data or [],
            "connects_from_id": [feeder] if feeder else [],
        }
    )
    return form


@bp.post("/trips/plan")
@endpoint(
    "post",
    "/trips/plan",
    "A plan for approved requests on chosen vehicles (nothing is created)",
    (COORDINATOR,),
    "trips",
    form=PlanForm,
    response=PLAN,
)
@roles_required(COORDINATOR)
def plan_trips():
    form = _plan_form(_payload())
    leg = form.leg(health.local_zone())
    requests = list(
        db.session.scalars(
            select_visible(TransportRequest).where(
                TransportRequest.id.in_(form.requests.data or []),
                TransportRequest.status.in_(
                    [RequestStatus.APPROVED]
                    if leg.connects_from_id is None
                    else [RequestStatus.APPROVED, RequestStatus.SCHEDULED]
                ),
            )
        )
    )
    vehicles = list(
        db.session.scalars(
            select(Vehicle).where(Vehicle.id.in_(form.vehicles.data or []), Vehicle.active)
        )
    )
    if not requests or not vehicles:
        raise ApiError(422, "plan.nothing", trips_message("plan.nothing"))
    result = trips.make_plan(requests, vehicles, leg.policy, leg.connects_from_id)
    return {
        "missing_seats": result.missing_seats,
        "vehicles": [
            {
                "vehicle_id": vehicles[v.option].id,
                "vehicle": vehicles[v.option].identifier,
                "capacity": v.capacity,
                "loads": [{"request_id": int(key), "workers": n} for key, n in v.loads],
            }
            for v in result.vehicles
        ],
        "boarding_elsewhere": [r.id for r in trips.boarding_elsewhere(leg, requests)],
    }


@bp.post("/trips")
@endpoint(
    "post",
    "/trips",
    "Create the trips of a (possibly edited) plan, and with give_seats their seats: all or nothing",
    (COORDINATOR,),
    "trips",
    body={
        "type": "object",
        "required": ["leg", "loads"],
        "properties": {
            "leg": {"type": "object"},
            "loads": APPLY_LOADS,
            "give_seats": {"type": "boolean"},
        },
    },
    response={"type": "object", "properties": {"trips": {"type": "array", "items": TRIP}}},
    status=201,
    idempotent_create=True,
)
@roles_required(COORDINATOR)
@idempotent
def create_trips():
    payload = _payload()
    leg_fields, rows = payload.get("leg"), payload.get("loads")
    give_seats = payload.get("give_seats", False)
    if not isinstance(give_seats, bool):
        raise ApiError(
            422,
            "invalid",
            _("Some fields are not valid."),
            {"give_seats": [_("Must be true or false.")]},
        )
    if not isinstance(leg_fields, dict) or not isinstance(rows, list):
        raise ApiError(
            422,
            "invalid",
            _("Some fields are not valid."),
            {"leg": [_("The route and times are needed.")]},
        )
    form = _plan_form(leg_fields)
    loads: dict[int, dict[int, int]] = {}
    for row in rows:
        if not (
            isinstance(row, dict)
            and _is_id(row.get("vehicle_id"))
            and _is_id(row.get("request_id"))
            and _is_id(row.get("workers"), lowest=0)
        ):
            raise ApiError(
                422,
                "invalid",
                _("Some fields are not valid."),
                {"loads": [_("Each load is a vehicle_id, a request_id and workers.")]},
            )
        loads.setdefault(row["vehicle_id"], {})[row["request_id"]] = row["workers"]
    if not any(n for per in loads.values() for n in per.values()):  # no trip to create
        raise ApiError(422, "plan.nothing", trips_message("plan.nothing"))
    for request_id in {rid for per in loads.values() for rid in per}:
        get_visible_or_404(TransportRequest, request_id)
    try:
        created, problems = trips.apply_plan(form.leg(health.local_zone()), loads, current_user)
        if give_seats and not problems:
            trips.safe_integrity(
                lambda: trips.allocate_trips([t.id for t in created], current_user)
            )
    except DomainError as error:
        raise _domain_error(error, trips_message) from None
    if problems:
        fields = {f"loads.{p.subject}": [plan_problem_text(p)] for p in problems}
        raise ApiError(
            422,
            "plan.refused",
            _(
                "The plan does not carry everyone, or a vehicle is over its capacity: "
                "nothing was created."
            ),
            fields,
        )
    body = {"trips": [trip_json(t, with_counts=give_seats) for t in created]}
    return _created(body, url_for("api.list_trips"))


SEAT = {
    "type": "object",
    "properties": {
        "seat": {"type": "string"},
        "label": {"type": "string"},
        "carriage": {"type": "integer"},
        "entry_id": {"type": "integer"},
        "name": {"type": "string"},
        "request_id": {"type": "integer"},
        "boarding": {"type": ["string", "null"]},
    },
}


@bp.get("/trips/<int:trip_id>/seats")
@endpoint(
    "get",
    "/trips/{trip_id}/seats",
    "Who sits where (the manifest, IDs masked)",
    (COORDINATOR, ADMIN),
    "trips",
    response={
        "type": "object",
        "properties": {
            "seats": {"type": "array", "items": SEAT},
            "seats_version": {"type": "integer"},
        },
    },
)
@roles_required(COORDINATOR, ADMIN)
def trip_seats(trip_id: int):
    trip = get_visible_or_404(Trip, trip_id)
    seat_map = trip.vehicle.seat_map
    rows = []
    for assignment, entry in trips.seat_holders(trip.id):
        seat = seat_map.seat(assignment.seat_label)
        rows.append(
            {
                "seat": seat.display,
                "label": seat.label,
                "carriage": seat.carriage,
                "entry_id": entry.id,
                "name": entry.worker.name,
                "request_id": entry.request_id,
                "boarding": assignment.boarding,
            }
        )
    return {"seats": rows, "seats_version": trip.seats_version}


VERDICT = {
    "type": "object",
    "required": ["verdict", "message"],
    "properties": {
        "verdict": {"type": "string", "enum": list(trips.BOARDING_VERDICTS)},
        "message": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "seat": {"type": ["string", "null"]},
        "their_trip_id": {"type": ["integer", "null"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}


@bp.post("/trips/<int:trip_id>/boarding")
@endpoint(
    "post",
    "/trips/{trip_id}/boarding",
    "Scan a boarding pass with a temperature",
    (COORDINATOR,),
    "trips",
    form=BoardingForm,
    response=VERDICT,
)
@roles_required(COORDINATOR)
def board(trip_id: int):
    get_visible_or_404(Trip, trip_id)
    form = bind(BoardingForm, _payload())
    if not form.validate():
        raise _invalid(form)
    try:
        verdict = trips.board(trip_id, form.code.data, form.temperature.celsius, current_user)
        db.session.commit()
    except DomainError as error:
        raise _domain_error(error, trips_message) from None
    other = verdict.their_trip
    message = str(BOARDING_MESSAGES[verdict.code]) % {
        "seat": verdict.seat or "",
        "trip": other.reference if other else "",
        "vehicle": other.vehicle.identifier if other else "",
        "when": other.departs_at.isoformat() if other else "",
    }
    return {
        "verdict": verdict.code,
        "message": message,
        "name": verdict.name,
        "seat": verdict.seat,
        "their_trip_id": other.id if other else None,
        "reasons": list(verdict.reasons),
    }


@bp.post("/requests/<int:request_id>/handover/<int:trip_id>")
@endpoint(
    "post",
    "/requests/{request_id}/handover/{trip_id}",
    "Confirm the workers received at the site (once)",
    (EMPLOYER, COORDINATOR),
    "trips",
    form=HandoverForm,
    status=201,
    response={
        "type": "object",
        "properties": {"expected": {"type": "integer"}, "received": {"type": "integer"}},
    },
)
@roles_required(EMPLOYER, COORDINATOR)
def handover(request_id: int, trip_id: int):
    get_visible_or_404(TransportRequest, request_id)
    if (
        db.session.scalar(
            select(SeatAssignment.id)
            .join(RosterEntry)
            .where(SeatAssignment.trip_id == trip_id, RosterEntry.request_id == request_id)
            .limit(1)
        )
        is None
    ):
        raise ApiError(404, "http_404", _("Not found."))
    form = bind(HandoverForm, _payload())
    if not form.validate():
        raise _invalid(form)
    try:
        done = trips.confirm_handover(
            trip_id,
            request_id,
            form.received.data,
            form.representative_name.data,
            form.note.data or "",
            current_user,
        )
        db.session.commit()
    except DomainError as error:
        raise _domain_error(error, trips_message) from None
    return {"expected": done.expected, "received": done.received}, 201


# --- public --------------------------------------------------------------------------------

LOOKUP = {
    "type": "object",
    "required": ["booking_code", "last4"],
    "properties": {
        "booking_code": {"type": "string", "maxLength": 20},
        "last4": {"type": "string", "pattern": r"^\d{4}$"},
    },
}


def _lookup_missed(response) -> bool:
    # As on the lookup page, only misses use up the allowance: a worker who checks their trip
    # again, or a village's workers behind one carrier address, are never refused.
    return response.status_code != 200


def _lookup_code_key() -> str:
    body = request.get_json(silent=True)
    code = body.get("booking_code") if isinstance(body, dict) else None
    return "api-lookup:" + (trips.normalize_booking_code(str(code or "")) or "bad")


@bp.post("/public/trip-lookup")
@endpoint(
    "post",
    "/public/trip-lookup",
    "A worker's trip by booking code and phone digits",
    (),
    "public",
    body=LOOKUP,
    public=True,
    response={
        "type": "object",
        "properties": {"trip_page": {"type": "string"}, "legs": {"type": "array"}},
    },
)
@limiter.limit(
    lambda: current_app.config.get("TRIP_LOOKUP_RATE_LIMIT_PER_IP", "10 per minute"),
    key_func=lambda: "api-lookup-ip:" + (request.remote_addr or ""),
    deduct_when=_lookup_missed,
)
@limiter.limit(
    lambda: current_app.config.get("TRIP_LOOKUP_RATE_LIMIT_PER_CODE", "5 per 15 minutes"),
    key_func=_lookup_code_key,
    deduct_when=_lookup_missed,
)
def trip_lookup():
    body = _payload()
    wrong = _type_problems(body, LOOKUP["properties"])
    if wrong:
        raise _invalid_fields(wrong)
    entry = trips.find_booking(str(body.get("booking_code") or ""), str(body.get("last4") or ""))
    if entry is None:
        raise ApiError(
            404,
            "no_match",
            _(
                "No trip matches this booking code and these digits. Check both and try again; "
                "your employer can help."
            ),
        )
    legs = []
    for assignment in trips.itinerary(entry.id):
        trip = assignment.trip
        legs.append(
            {
                "departs_at": trip.departs_at.isoformat(),
                "meeting_point": trip.origin_point,
                "address": trip.origin_address,
                "vehicle": trip.vehicle.identifier,
                "seat": trip.vehicle.seat_map.seat(assignment.seat_label).display,
                "destination": trip.destination_point,
                "arrives_at": trip.arrives_at.isoformat(),
                "driver_phones": [d.phone for d in trip.drivers],
            }
        )
    page = url_for("public.my_trip", token=trips.trip_page_token(entry.id), _external=True)
    return {"trip_page": page, "legs": legs}


# --- personal tokens (pages) ----------------------------------------------------------------

tokens_bp = Blueprint("api_tokens", __name__, template_folder="templates")


@tokens_bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    form = TokenForm()
    secret = None
    if form.validate_on_submit():
        try:
            _token, secret = services.create_token(current_user, form.name.data)
        except DomainError:
            db.session.rollback()
            form.name.errors.append(_("Give the token a name."))
        else:
            db.session.commit()
    listed = db.session.scalars(
        select_visible(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
    ).all()
    return render_template(
        "api/tokens.html", form=form, secret=secret, tokens=listed, action_form=FlaskForm()
    )


@tokens_bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke(token_id: int):
    token = get_visible_or_404(ApiToken, token_id)
    if FlaskForm().validate_on_submit():
        services.revoke_token(token, current_user)
        db.session.commit()
        flash(_("Token revoked: it no longer works."), "success")
    return redirect(url_for("api_tokens.tokens"))
