"""JSON API v1: tokens, the one error shape, roles and organizations, ETags and 409s,
idempotent creates, bulk all-or-nothing, trips, the public lookup and the document."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.api import services as api
from app.demand.models import RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.trips import services as trips
from app.trips.models import SeatAssignment, Trip
from tests import scenario
from tests.conftest import People, make_app, submit
from tests.test_demand import LI, ZHANG, request_form, worker_form
from tests.test_trips import make_trip, three_employers  # noqa: F401 - fixtures


def token_for(app, user_id: int) -> str:
    with app.app_context():
        _token, secret = api.create_token(db.session.get(scenario.User, user_id), "测试")
        db.session.commit()
        return secret


class Api:
    def __init__(self, client, token: str | None, language: str = "en") -> None:
        self.client, self.headers = client, {"Accept-Language": language}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def __getattr__(self, method: str):
        def call(path: str, headers: dict | None = None, **kwargs):
            return getattr(self.client, method)(
                f"/api/v1{path}", headers={**self.headers, **(headers or {})}, **kwargs
            )

        return call


@pytest.fixture
def as_role(app, people: People):
    def make(role: str, language: str = "en") -> Api:
        user_id = {
            "employer": people.employer_a_id,
            "employer_b": people.employer_b_id,
            "coordinator": people.coordinator_id,
            "admin": people.admin_id,
        }[role]
        return Api(app.test_client(), token_for(app, user_id), language)

    return make


def test_tokens_are_shown_once_stored_hashed_and_revocable(app, people, client_as):
    client = client_as("employer")
    page = submit(client, "/account/tokens", {"name": "HR 系统"}).get_data(as_text=True)
    secret = re.search(r"(fg_[A-Za-z0-9_-]{20,})", page).group(1)
    listed = client.get("/account/tokens").get_data(as_text=True)
    assert secret not in listed
    assert secret[:8] in listed
    with app.app_context():
        stored = db.session.scalar(select(api.ApiToken))
        assert secret not in (stored.token_hash, stored.prefix)
    machine = Api(app.test_client(), secret)
    assert machine.get("/workers").status_code == 200
    assert machine.get("/workers").headers.get("Set-Cookie") is None  # no session for machines
    submit(client, f"/account/tokens/{stored.id}/revoke", form_url="/account/tokens")
    revoked = machine.get("/workers")
    assert revoked.status_code == 401
    assert revoked.json["error"]["code"] == "unauthorized"
    assert Api(app.test_client(), "fg_wrong").get("/workers").status_code == 401
    assert Api(app.test_client(), None).get("/workers").status_code == 401


def test_create_worker_errors_in_the_callers_language(app, as_role):
    english = as_role("employer")
    bad = english.post("/workers", json=worker_form(id_number=ZHANG[:-1] + "0"))
    assert bad.status_code == 422
    assert set(bad.json["error"]) == {"code", "message", "fields"}
    assert "check" in bad.json["error"]["fields"]["id_number"][0].lower()
    chinese = as_role("employer", "zh-CN").post("/workers", json=worker_form(id_number="123"))
    assert chinese.status_code == 422
    assert re.search(r"[\u4e00-\u9fff]", chinese.json["error"]["fields"]["id_number"][0])
    created = english.post("/workers", json=worker_form())
    assert created.status_code == 201
    assert created.json["id_number"].startswith("5002")
    assert "*" in created.json["id_number"]
    assert english.get(created.headers["Location"].removeprefix("/api/v1")).status_code == 200
    assert english.post("/workers", data="not json").status_code == 400


def test_a_retried_create_with_the_same_key_creates_once(app, as_role):
    client = as_role("employer")
    first = client.post("/workers", json=worker_form(), headers={"Idempotency-Key": "k-1"})
    again = client.post("/workers", json=worker_form(), headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json == again.json
    assert again.headers["Location"] == first.headers["Location"]
    other = client.post(
        "/workers", json=worker_form(id_number=LI), headers={"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422
    assert other.json["error"]["code"] == "idempotency_key_reused"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 1


def test_bulk_is_all_or_nothing_with_every_problem_by_row(app, as_role):
    client = as_role("employer")
    rows = [worker_form(), worker_form(id_number=LI, name="李四", phone="13900139000")]
    broken = [rows[0], {**rows[1], "phone": "123"}, {**rows[0]}]
    refused = client.post("/workers/bulk", json={"workers": broken})
    assert refused.status_code == 422
    fields = refused.json["error"]["fields"]
    assert set(fields) == {"workers[1].phone", "workers[2].id_number"}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 0
    done = client.post("/workers/bulk", json={"workers": rows})
    assert (done.status_code, done.json) == (201, {"created": 2})
    assert client.get("/workers").json["total"] == 2


def test_another_organizations_objects_are_not_found(app, as_role):
    mine = as_role("employer")
    worker = mine.post("/workers", json=worker_form()).json
    draft = mine.post("/requests", json=request_form()).json
    other = as_role("employer_b")
    for path in (f"/workers/{worker['id']}", f"/requests/{draft['id']}"):
        hidden = other.get(path)
        missing = other.get(re.sub(r"\d+$", "999999", path))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json == missing.json
    assert other.post(f"/requests/{draft['id']}/submit").status_code == 404
    # Roles: an employer cannot approve; a coordinator cannot create workers.
    assert mine.post(f"/requests/{draft['id']}/approve", json={}).status_code == 403
    assert as_role("coordinator").post("/workers", json=worker_form()).status_code == 403


def test_etags_and_conflicts_on_a_request(app, as_role):
    client = as_role("employer")
    worker = client.post("/workers", json=worker_form()).json
    draft = client.post("/requests", json=request_form(), headers={"Idempotency-Key": "r1"})
    assert draft.status_code == 201
    request_id = draft.json["id"]
    read = client.get(f"/requests/{request_id}")
    etag = read.headers["ETag"]
    added = client.post(
        f"/requests/{request_id}/workers",
        json={"worker_ids": [worker["id"]]},
        headers={"If-Match": etag},
    )
    assert added.status_code == 200
    assert added.json["counts"]["pending"] + added.json["counts"]["blocked"] == 1
    submitted = client.post(f"/requests/{request_id}/submit", headers={"If-Match": etag})
    assert submitted.status_code == 200
    assert submitted.json["status"] == "submitted"
    assert submitted.headers["ETag"] != etag
    # Someone who read the draft before the submission cancels with that ETag: 412, and
    # nothing changes.
    stale = client.post(f"/requests/{request_id}/cancel", headers={"If-Match": etag})
    assert stale.status_code == 412
    assert client.get(f"/requests/{request_id}").json["status"] == "submitted"
    # A second client that read the draft and submits too gets a conflict, not a silent redo.
    twice = client.post(f"/requests/{request_id}/submit")
    assert twice.status_code == 409
    assert twice.json["error"]["code"] == "request.cannot_submitted"
    coordinator = as_role("coordinator")
    approved = coordinator.post(f"/requests/{request_id}/approve", json={"reason": "好"})
    assert approved.json["status"] == "approved"
    queue = coordinator.get("/requests?status=approved")
    assert [r["id"] for r in queue.json["items"]] == [request_id]
    entries = client.get(f"/requests/{request_id}/workers").json
    assert entries["items"][0]["name"] == "张三"


def test_coordinator_runs_a_trip_through_the_api(app, people, as_role, three_employers):  # noqa: F811
    trip_id = make_trip(app, people, three_employers)
    coordinator = as_role("coordinator")
    seats = coordinator.get(f"/trips/{trip_id}/seats").json["seats"]
    assert len(seats) == 43
    assert coordinator.post(f"/trips/{trip_id}/lock").json["status"] == "locked"
    with app.app_context():
        code = db.session.scalar(
            select(RosterEntry.booking_code).where(RosterEntry.id == seats[0]["entry_id"])
        )
    verdict = coordinator.post(
        f"/trips/{trip_id}/boarding", json={"code": code, "temperature": "36,7"}
    ).json
    assert verdict["verdict"] == "boarded"
    assert verdict["seat"] == seats[0]["seat"]
    refused = coordinator.post(f"/trips/{trip_id}/depart")
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "trip.unaccounted"
    bad = coordinator.post(f"/trips/{trip_id}/boarding", json={"code": code, "temperature": "45"})
    assert bad.status_code == 422
    assert "temperature" in bad.json["error"]["fields"]
    assert as_role("employer").get(f"/trips/{trip_id}").status_code == 403


def test_public_lookup_answers_one_way_for_every_miss(app, people, as_role, three_employers):  # noqa: F811
    trip_id = make_trip(app, people, three_employers)
    with app.app_context():
        seat = db.session.scalar(select(SeatAssignment).where(SeatAssignment.trip_id == trip_id))
        code, last4 = seat.entry.booking_code, seat.entry.worker.phone_last4
    public = Api(app.test_client(), None)
    found = public.post("/public/trip-lookup", json={"booking_code": code, "last4": last4})
    assert found.status_code == 200
    assert "/my-trip/" in found.json["trip_page"]
    wrong_digits = public.post("/public/trip-lookup", json={"booking_code": code, "last4": "0000"})
    unknown = public.post(
        "/public/trip-lookup", json={"booking_code": "ZZZZZZZZZZ", "last4": last4}
    )
    assert wrong_digits.status_code == unknown.status_code == 404
    assert wrong_digits.json == unknown.json


def test_public_lookup_reads_full_width_codes_and_digits(app, people, three_employers):  # noqa: F811
    """A code and digits typed on a Chinese keyboard (ＡＢＣＤＥ－ＦＧＨＪＫ, ０００３) find the
    trip, and a worker who looks again and again in full width is never refused."""
    trip_id = make_trip(app, people, three_employers)
    with app.app_context():
        seat = db.session.scalar(select(SeatAssignment).where(SeatAssignment.trip_id == trip_id))
        code, last4 = seat.entry.booking_code, seat.entry.worker.phone_last4

    def full_width(text: str) -> str:
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)

    public = Api(app.test_client(), None)
    typed = full_width(trips.shown_booking_code(code))
    answers = [
        public.post("/public/trip-lookup", json={"booking_code": typed, "last4": full_width(last4)})
        for _ in range(7)
    ]
    assert [a.status_code for a in answers] == [200] * 7
    assert "/my-trip/" in answers[0].json["trip_page"]


def test_public_lookup_limits_count_misses_only(app, people, three_employers):  # noqa: F811
    """A worker who checks their trip again and again is never refused; ten misses from one
    address are, and five on one code (as on the lookup page)."""
    trip_id = make_trip(app, people, three_employers)
    with app.app_context():
        seats = db.session.scalars(select(SeatAssignment).where(SeatAssignment.trip_id == trip_id))
        (code, last4), (other_code, other_last4) = [
            (seat.entry.booking_code, seat.entry.worker.phone_last4) for seat in seats
        ][:2]
    public = Api(app.test_client(), None)

    def look_up(booking_code: str, digits: str, address: str = "10.0.0.1") -> int:
        return public.client.post(
            "/api/v1/public/trip-lookup",
            json={"booking_code": booking_code, "last4": digits},
            environ_base={"REMOTE_ADDR": address},
        ).status_code

    assert [look_up(code, last4) for _ in range(12)] == [200] * 12
    wrong = f"{(int(other_last4) + 1) % 10000:04d}"
    assert [look_up(other_code, wrong, f"10.0.1.{n}") for n in range(5)] == [404] * 5
    assert look_up(other_code, other_last4, "10.0.1.9") == 429  # that code, from anywhere
    assert [look_up(f"{n:010d}", last4, "10.0.2.1") for n in range(10)] == [404] * 10
    assert look_up(code, last4, "10.0.2.1") == 429  # that address, any code
    assert look_up(code, last4, "10.0.3.1") == 200


def test_rate_limited_per_token_with_the_error_shape(tmp_path, people_free_app):
    app, token = people_free_app
    client = Api(app.test_client(), token)
    answers = [client.get("/workers").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    limited = client.get("/workers")
    assert limited.json["error"]["code"] == "http_429"


@pytest.fixture
def people_free_app(tmp_path):
    from tests.conftest import create_people

    app = make_app(f"sqlite:///{tmp_path / 'limits.db'}", API_RATE_LIMIT="3/minute")
    with app.app_context():
        db.create_all()
    people = create_people(app)
    return app, token_for(app, people.employer_a_id)


def test_the_openapi_document_describes_what_validates(app, client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.1")
    create = document["paths"]["/requests"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    # From the form the page uses: required fields, lengths, the transport mode's choices.
    assert "origin_region_code" in body["required"]
    assert body["properties"]["site_name"]["maxLength"] == 200
    assert set(body["properties"]["preferred_mode"]["enum"]) == {"coach", "train", "any"}
    worker = document["paths"]["/workers"]["post"]["requestBody"]["content"]["application/json"]
    assert worker["schema"]["properties"]["name"]["maxLength"] == 50
    assert any(
        p["name"] == "Idempotency-Key" for p in document["paths"]["/workers"]["post"]["parameters"]
    )
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "/api/v1/requests/{request_id}/submit" in page.get_data(as_text=True)
    # The reference is a page: in the language chosen with the header's link, as the others
    # (it followed the browser's Accept-Language, as the JSON answers do).
    client.get("/language/en")
    english = client.get("/api/v1/docs", headers={"Accept-Language": "zh-CN"})
    assert "JSON over HTTPS under /api/v1" in english.get_data(as_text=True)
    assert client.get("/api/v1/openapi.json").status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TransportRequest)) == 0


def test_plan_and_create_trips_through_the_api(app, people, as_role, three_employers):  # noqa: F811
    coordinator = as_role("coordinator")
    from tests.test_trips import leg_form

    leg = leg_form()
    ids = three_employers
    plan = coordinator.post(
        "/trips/plan",
        json={**leg, "requests": ids["requests"], "vehicles": [ids["big"], ids["small"]]},
    )
    assert plan.status_code == 200
    assert plan.json["missing_seats"] == 0
    assert plan.json["boarding_elsewhere"] == []
    away = coordinator.post(
        "/trips/plan",
        json={
            **leg_form(origin_region_code="500236"),
            "requests": ids["requests"],
            "vehicles": [ids["big"]],
        },
    )
    assert sorted(away.json["boarding_elsewhere"]) == sorted(ids["requests"])
    loads = [
        {
            "vehicle_id": v["vehicle_id"],
            "request_id": load["request_id"],
            "workers": load["workers"],
        }
        for v in plan.json["vehicles"]
        for load in v["loads"]
    ]
    short = [dict(loads[0], workers=loads[0]["workers"] - 1), *loads[1:]]
    refused = coordinator.post("/trips", json={"leg": leg, "loads": short})
    assert refused.status_code == 422
    assert refused.json["error"]["code"] == "plan.refused"
    # Said as the plan page says it (it was "short: 11 / 12"), and an empty plan is refused
    # (it answered 201 with no trips).
    [(field, [sentence])] = refused.json["error"]["fields"].items()
    with app.app_context():
        reference = db.session.get(TransportRequest, loads[0]["request_id"]).reference
    total = sum(load["workers"] for load in loads if load["request_id"] == loads[0]["request_id"])
    assert field == f"loads.{reference}"
    assert sentence == (
        f"{reference}: {total - 1} of its {total} waiting workers planned; 1 seats missing."
    )
    nothing = coordinator.post("/trips", json={"leg": leg, "loads": []})
    assert nothing.status_code == 422
    assert nothing.json["error"]["code"] == "plan.nothing"
    created = coordinator.post(
        "/trips", json={"leg": leg, "loads": loads}, headers={"Idempotency-Key": "plan-1"}
    )
    again = coordinator.post(
        "/trips", json={"leg": leg, "loads": loads}, headers={"Idempotency-Key": "plan-1"}
    )
    assert created.status_code == again.status_code == 201
    assert created.json == again.json
    trip_id = created.json["trips"][0]["id"]
    assert coordinator.post(f"/trips/{trip_id}/allocate").json["status"] == "open"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Trip)) == 1


def test_create_trips_and_give_their_seats_in_one_call(app, people, as_role, three_employers):  # noqa: F811
    """``give_seats``: the plan's trips come back open, with every planned worker seated."""
    coordinator = as_role("coordinator")
    from tests.test_trips import leg_form

    leg = leg_form(max_load_percent="50")
    ids = three_employers
    plan = coordinator.post(
        "/trips/plan",
        json={**leg, "requests": ids["requests"], "vehicles": [ids["big"], ids["small"]]},
    )
    loads = [
        {"vehicle_id": v["vehicle_id"], "request_id": load["request_id"], "workers": n}
        for v in plan.json["vehicles"]
        for load in v["loads"]
        if (n := load["workers"])
    ]
    wrong = coordinator.post("/trips", json={"leg": leg, "loads": loads, "give_seats": "yes"})
    assert wrong.status_code == 422
    assert "give_seats" in wrong.json["error"]["fields"]
    created = coordinator.post("/trips", json={"leg": leg, "loads": loads, "give_seats": True})
    assert created.status_code == 201
    made = created.json["trips"]
    assert len(made) == 2
    assert {trip["status"] for trip in made} == {"open"}
    planned = {v["vehicle"]: sum(x["workers"] for x in v["loads"]) for v in plan.json["vehicles"]}
    assert {trip["vehicle"]: trip["boarding"]["seated"] for trip in made} == planned
    assert sum(planned.values()) == 43


def test_the_api_refuses_json_of_the_wrong_type_and_names_the_field(app, as_role):
    """A health pass, a name or a worker id of the wrong JSON type is refused next to its
    field, in the caller's language, and nothing is saved (a number as the health pass was a
    500, a number as the name was taken as text, and true was read as worker id 1)."""
    client = as_role("employer")
    for wrong in (123, ["a"], {"a": 1}):
        refused = client.post("/workers", json=worker_form(health_pass=wrong))
        assert refused.status_code == 422
        assert refused.json["error"]["fields"] == {"health_pass": ["Must be text."]}
    named = client.post("/workers", json=worker_form(name=5))
    assert named.status_code == 422
    assert named.json["error"]["fields"] == {"name": ["Must be text."]}
    chinese = as_role("employer", "zh-CN").post("/workers", json=worker_form(group_tag=True))
    assert chinese.status_code == 422
    assert re.search(r"[\u4e00-\u9fff]", chinese.json["error"]["fields"]["group_tag"][0])
    rows = [worker_form(), worker_form(id_number=LI, name="李四", health_pass=123)]
    bulk = client.post("/workers/bulk", json={"workers": rows})
    assert bulk.status_code == 422
    assert bulk.json["error"]["fields"] == {"workers[1].health_pass": ["Must be text."]}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 0
    worker = client.post("/workers", json=worker_form()).json
    changed = client.put(f"/workers/{worker['id']}", json=worker_form(name="王五", health_pass=[1]))
    assert changed.status_code == 422
    assert changed.json["error"]["fields"] == {"health_pass": ["Must be text."]}
    assert client.get(f"/workers/{worker['id']}").json["name"] == "张三"
    site = client.post("/requests", json=request_form(site_name=5))
    assert site.status_code == 422
    assert site.json["error"]["fields"] == {"site_name": ["Must be text."]}
    draft = client.post("/requests", json=request_form()).json
    for wrong in ([True], [str(worker["id"])], [1.0], "1"):
        added = client.post(f"/requests/{draft['id']}/workers", json={"worker_ids": wrong})
        assert added.status_code == 422, wrong
        assert list(added.json["error"]["fields"]) == ["worker_ids"]
    assert sum(client.get(f"/requests/{draft['id']}").json["counts"].values()) == 0
    from tests.test_trips import leg_form

    plan = as_role("coordinator").post(
        "/trips/plan", json={**leg_form(origin_point=5, alternate_seats="y"), "requests": [1]}
    )
    assert plan.status_code == 422
    assert plan.json["error"]["fields"] == {
        "origin_point": ["Must be text."],
        "alternate_seats": ["Must be true or false."],
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request) -> tuple:
    """The app and its people on SQLite, then on the real PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("app"), request.getfixturevalue("people")
    return request.getfixturevalue("pg_app"), request.getfixturevalue("pg_people")


def test_ids_beyond_the_databases_integers_are_refused_by_name(any_database):
    """An id no database row can have (PostgreSQL integers end at 2**31 - 1) is refused next
    to its field, never sent to the database (it was a 500: integer out of range)."""
    from tests.test_trips import leg_form

    app, people = any_database
    employer = Api(app.test_client(), token_for(app, people.employer_a_id))
    coordinator = Api(app.test_client(), token_for(app, people.coordinator_id))
    draft = employer.post("/requests", json=request_form()).json
    for too_big in (2**31, 2**40, 2**70):
        added = employer.post(f"/requests/{draft['id']}/workers", json={"worker_ids": [too_big]})
        assert added.status_code == 422
        assert list(added.json["error"]["fields"]) == ["worker_ids"]
        for name, value in (
            ("requests", [too_big]),
            ("vehicles", [too_big]),
            ("connects_from_id", too_big),
        ):
            body = {**leg_form(), "requests": [1], "vehicles": [1], name: value}
            plan = coordinator.post("/trips/plan", json=body)
            assert plan.status_code == 422, name
            assert list(plan.json["error"]["fields"]) == [name]
        for name in ("vehicle_id", "request_id"):
            load = {"vehicle_id": 1, "request_id": draft["id"], "workers": 1, name: too_big}
            created = coordinator.post("/trips", json={"leg": leg_form(), "loads": [load]})
            assert created.status_code == 422, name
            assert list(created.json["error"]["fields"]) == ["loads"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Trip)) == 0


def test_paging_out_of_range_is_refused_naming_the_parameter(app, as_role, client):
    """page and per_page outside what the document says (1 to 100,000; 1 to 100) are
    refused, not quietly clamped."""
    employer = as_role("employer")
    for query, name in (
        ("per_page=0", "per_page"),
        ("per_page=-1", "per_page"),
        ("per_page=101", "per_page"),
        ("per_page=ten", "per_page"),
        ("page=-5", "page"),
        ("page=0", "page"),
        ("page=100001", "page"),
        ("page=1.5", "page"),
    ):
        refused = employer.get(f"/workers?{query}")
        assert refused.status_code == 400, query
        assert list(refused.json["error"]["fields"]) == [name], query
    assert (
        "per_page"
        in as_role("employer", "zh-CN").get("/requests?per_page=0").json["error"]["fields"]
    )
    assert employer.get("/workers?page=3&per_page=100").json["page"] == 3
    document = client.get("/api/v1/openapi.json").json
    for path in ("/workers", "/requests", "/trips", "/requests/{request_id}/workers"):
        parameters = {p["name"]: p["schema"] for p in document["paths"][path]["get"]["parameters"]}
        assert parameters["page"] == {"type": "integer", "minimum": 1, "maximum": 100_000}
        assert parameters["per_page"] == {"type": "integer", "minimum": 1, "maximum": 100}
