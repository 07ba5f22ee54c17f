"""Security checks (issue #10): who may open what, for every route of the app, and the headers
and cookies every response carries.

The access matrix walks ``app.url_map``: every page, API endpoint and form action is called by
every role on objects that belong to employer A and to the coordinator's region (Jinan), and the
answer is compared with the table ``ACCESS`` below. A route missing from the table fails the
test, so a new route has to be given its rule on purpose.
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
import segno
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.accounts import services as accounts
from app.accounts.models import User
from app.api.services import create_token
from app.core.access import Role
from app.core.clock import local_today
from app.demand import services as demand
from app.demand.models import RosterImport, Worker
from app.extensions import db
from app.fleet import services as fleet
from app.health import services as health
from app.health.models import HealthCertificate, HealthIssuer
from app.health.passes import generate_key, key_id
from app.trips import services as trips
from tests import scenario
from tests.conftest import (
    PASSWORD,
    TEST_PII_KEYS,
    People,
    create_people,
    csrf_token,
    make_app,
    sign_in,
    submit,
)
from tests.test_demand import worker_form

DAY = local_today("Asia/Shanghai") + timedelta(days=2)

# --- the table -----------------------------------------------------------------------------

EMPLOYER, EMPLOYER_B = "employer", "employer_b"  # organization A (owns the data), B (other)
COORDINATOR, COORDINATOR_B = "coordinator", "coordinator_b"  # Jinan (the data's), Guangzhou
ADMIN, ANONYMOUS = "admin", "anonymous"
SIGNED_IN = (EMPLOYER, EMPLOYER_B, COORDINATOR, COORDINATOR_B, ADMIN)
ROLES = (ANONYMOUS, *SIGNED_IN)
OTHER_REGION = "440100"  # 广州市: nothing in the data leaves from or goes to it

# Role groups as the app knows them.
E = (EMPLOYER, EMPLOYER_B)
C = (COORDINATOR, COORDINATOR_B)
A = (ADMIN,)
ORG = (EMPLOYER_B,)  # another organization's user: the object is not theirs
REGION = (COORDINATOR_B,)  # another region's coordinator: the object is outside their region


@dataclass(frozen=True)
class Access:
    """``roles``: who may use the route at all (anyone else: 403; anonymous: sign-in page or
    401). ``hidden``: of those, who must get a 404 because the object in the URL is not
    theirs to see (exactly as if it did not exist). ``public``: no account needed."""

    roles: frozenset[str]
    hidden: frozenset[str] = frozenset()
    public: bool = False
    probe: bool = False  # a readiness probe: 503 says "not ready", and is an answer too


def allow(*groups: tuple[str, ...], hidden: tuple[str, ...] = ()) -> Access:
    return Access(frozenset(role for group in groups for role in group), frozenset(hidden))


PUBLIC = Access(frozenset(SIGNED_IN), public=True)
PROBE = Access(frozenset(SIGNED_IN), public=True, probe=True)
SIGNED = allow(E, C, A)

ACCESS: dict[str, Access] = {
    # Public: sign-in, language, static files, the load balancer's probe, the worker's pages
    # (a signed link or booking code + phone digits), the API's document and public lookup.
    "static": PUBLIC,
    "core.healthz": PROBE,
    "core.readyz": PROBE,  # 503 here: the tests' database is built without the migrations
    "accounts.sign_in": PUBLIC,
    "accounts.switch_language": PUBLIC,
    "public.lookup": PUBLIC,
    "public.my_trip": PUBLIC,
    "public.boarding_pass": PUBLIC,
    "public.withdraw": PUBLIC,
    "api.openapi": PUBLIC,
    "api.reference": PUBLIC,
    "api.trip_lookup": PUBLIC,
    # Anyone signed in.
    "core.home": SIGNED,
    "accounts.account": SIGNED,
    "accounts.sign_out": SIGNED,
    "notify.inbox": SIGNED,
    "api_tokens.tokens": SIGNED,
    # A token is its owner's alone (employer A's here).
    "api_tokens.revoke": allow(E, C, A, hidden=(EMPLOYER_B, COORDINATOR, COORDINATOR_B, ADMIN)),
    "accounts.organization": allow(E, C, A, hidden=ORG),
    # Administration.
    "core.system_status": allow(A),
    "accounts.users": allow(A),
    "accounts.organizations": allow(A, C),
    "accounts.new_organization": allow(A),
    "health.issuers": allow(A),
    "health.new_issuer": allow(A),
    "health.edit_issuer": allow(A),
    "health.revoke_issuer": allow(A),
    # Employers: the roster and their requests.
    "demand.roster": allow(E),
    "demand.new_worker": allow(E),
    "demand.edit_worker": allow(E, hidden=ORG),
    "demand.delete_worker": allow(E, hidden=ORG),
    "demand.export_roster": allow(E),
    "demand.roster_template": allow(E),
    "demand.import_roster": allow(E),
    "demand.roster_import": allow(E, hidden=ORG),
    "demand.roster_import_errors": allow(E, hidden=ORG),
    "demand.requests": allow(E, A),
    "demand.new_request": allow(E),
    "demand.edit_request": allow(E, hidden=ORG),
    "demand.request_detail": allow(E, C, A, hidden=ORG + REGION),
    "demand.request_workers": allow(E, hidden=ORG),
    "demand.import_into_request": allow(E, hidden=ORG),
    "demand.change_request": allow(E, hidden=ORG),
    "demand.withdraw_entry": allow(E, hidden=ORG),
    # Coordinators: the queue, health decisions, fleet, trips.
    "demand.queue": allow(C, A),
    "demand.decide": allow(C, hidden=REGION),
    "health.paper_certificate": allow(C, hidden=REGION),
    "health.override": allow(C, hidden=REGION),
    # Any coordinator may open a certificate scan, whatever the worker's region (the model's
    # rule: HealthCertificate.visible_to); the worker's employer may, another employer not.
    "health.certificate_scan": allow(E, C, A, hidden=ORG + REGION),
    "fleet.operators": allow(C, A),
    "fleet.operator": allow(C, A),
    "fleet.new_vehicle": allow(C, A),
    "fleet.new_driver": allow(C, A),
    "fleet.vehicle": allow(C, A),
    "fleet.blocked_seats": allow(C, A),
    "fleet.edit_driver": allow(C, A),
    "notify.outbox": allow(C, A),
    "notify.preview": allow(C, A),
    "notify.retry": allow(C, A),
    "trips.trips": allow(C, A),
    "trips.plan": allow(C),
    "trips.trip_detail": allow(C, A, hidden=REGION),
    "trips.edit_trip": allow(C, A, hidden=REGION),
    "trips.allocate": allow(C, A, hidden=REGION),
    "trips.lock": allow(C, A, hidden=REGION),
    "trips.cancel": allow(C, A, hidden=REGION),
    "trips.seats": allow(C, A, hidden=REGION),
    "trips.change_seat": allow(C, A, hidden=REGION),
    "trips.block_seats": allow(C, A, hidden=REGION),
    "trips.manifest": allow(C, A, hidden=REGION),
    "trips.manifest_file": allow(C, A, hidden=REGION),
    "trips.boarding": allow(C, hidden=REGION),
    "trips.no_show": allow(C, hidden=REGION),
    "trips.move_trip": allow(C, hidden=REGION),
    "trips.handover": allow(E, C, hidden=ORG + REGION),
    "trips.arrival_list": allow(E, C, A, hidden=ORG + REGION),
    "reports.dashboard": allow(E, C, A),
    "reports.export": allow(E, C, A),
    "reports.trip_costs": allow(C, hidden=REGION),
    # The JSON API (Bearer tokens).
    "api.list_workers": allow(E),
    "api.create_worker": allow(E),
    "api.bulk_workers": allow(E),
    "api.get_worker": allow(E, hidden=ORG),
    "api.update_worker": allow(E, hidden=ORG),
    "api.list_requests": allow(E, C, A),
    "api.create_request": allow(E),
    "api.get_request": allow(E, C, A, hidden=ORG + REGION),
    "api.change_request": allow(E, hidden=ORG),
    "api.add_request_workers": allow(E, hidden=ORG),
    "api.request_entries": allow(E, C, A, hidden=ORG + REGION),
    "api.withdraw_request_worker": allow(E, hidden=ORG),
    "api.decide": allow(C, hidden=REGION),
    "api.handover": allow(E, C, hidden=ORG + REGION),
    "api.list_trips": allow(C, A),
    "api.get_trip": allow(C, A, hidden=REGION),
    "api.trip_seats": allow(C, A, hidden=REGION),
    "api.change_trip": allow(C, hidden=REGION),
    "api.board": allow(C, hidden=REGION),
    "api.plan_trips": allow(C),
    "api.create_trips": allow(C),
}

# Form actions whose allowed POST (with nothing but a CSRF token) really changes something that
# later calls need: they run last, in this order.
RUN_LAST = (
    "demand.delete_worker",
    "demand.withdraw_entry",
    "demand.change_request",
    "trips.cancel",
    "public.withdraw",
    "api_tokens.revoke",
    "accounts.sign_out",
)

MISSING_ID = 2_000_000_000  # a valid database id that no row has

# Query strings a route needs to answer at all.
QUERY = {"reports.export": "table=requests"}


# --- the data ------------------------------------------------------------------------------


@dataclass
class World:
    values: dict[str, object]  # URL argument -> value
    api_tokens: dict[str, str]  # role -> bearer token
    clients: dict[str, FlaskClient]
    csrf: dict[str, str]


PNG = segno.make("scan").png_data_uri(scale=2)


def scan_png() -> bytes:
    return base64.b64decode(PNG.split(",", 1)[1])


def seated_trip(vehicle, coordinator: User, request_id: int, hours: int):
    departs = trips.datetime.combine(DAY, trips.datetime.min.time(), trips.health.local_zone())
    departs += timedelta(hours=hours)
    leg = trips.Leg(
        "500235", "云阳汽车站", None, "370100", "济南", None, departs, departs + timedelta(hours=18)
    )
    trip = trips.create_trip(vehicle, leg, coordinator, {request_id: 3})
    trips.allocate_seats(trip.id, coordinator)
    return trip


def build_world(app: Flask, people: People, tmp_path: Path) -> World:
    """Employer A's request of three workers from Yunyang to Jinan, approved and seated on a
    coach; a paper certificate with a scan; a failed roster import; a coordinator of another
    region; an API token for every account. Employer B has the same kinds of things first, so
    that A's ids differ from B's and from one another (a view that checks one id and loads
    another shows)."""
    with app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        coordinator = db.session.get(User, people.coordinator_id)
        employer_b = db.session.get(User, people.employer_b_id)
        theirs = scenario.approved_request(
            people.organization_b_id, people.coordinator_id, key, DAY, {"南村": 2}
        )
        seated_trip(scenario.vehicle("渝F00001"), coordinator, theirs.id, 8)
        demand.create_roster_import(employer_b.organization, "b.csv", b"x", employer_b)

        request = scenario.approved_request(
            people.organization_a_id, people.coordinator_id, key, DAY, {"东村": 3}
        )
        vehicle = scenario.vehicle()
        driver = fleet.create_driver(
            vehicle.operator,
            {"name": "刘师傅", "phone": "13900001111", "licence_number": "500235197001011238"},
            coordinator,
        )
        trip = seated_trip(vehicle, coordinator, request.id, 7)
        entry = request.entries[-1]
        worker = request.entries[0].worker
        certificate = health.record_paper(
            worker,
            "云阳县人民医院",
            "YY-0001",
            DAY - timedelta(days=1),
            DAY + timedelta(days=5),
            "green",
            scan_png(),
            "image/png",
            coordinator,
        )
        employer = db.session.get(User, people.employer_a_id)
        roster_import = demand.create_roster_import(
            employer.organization,
            "roster.csv",
            "姓名,身份证号,手机号,户籍地区代码\n张三,123,456,500235\n".encode(),
            employer,
        )
        other = accounts.create_user(
            "coordinator-b@example.cn",
            PASSWORD,
            Role.COORDINATOR,
            "广州调度员",
            region_code=OTHER_REGION,
        )
        users = {  # employer A's token last: its id is not 1
            EMPLOYER_B: employer_b,
            COORDINATOR: coordinator,
            COORDINATOR_B: other,
            ADMIN: db.session.get(User, people.admin_id),
            EMPLOYER: employer,
        }
        made = {role: create_token(user, "matrix") for role, user in users.items()}
        db.session.commit()
        values: dict[str, object] = {
            "organization_id": people.organization_a_id,
            "worker_id": worker.id,
            "request_id": request.id,
            "entry_id": entry.id,
            "trip_id": trip.id,
            "vehicle_id": vehicle.id,
            "operator_id": vehicle.operator_id,
            "driver_id": driver.id,
            "issuer_id": db.session.scalar(select(HealthIssuer.id)),
            "certificate_id": certificate.id,
            "import_id": roster_import.id,
            "token_id": made[EMPLOYER][0].id,
            "token": trips.trip_page_token(entry.id),
            "code": "en",
            "filename": "app.css",
            "fmt": "xlsx",
        }
        api_tokens = {role: secret for role, (_token, secret) in made.items()}

    emails = {**People.EMAILS, COORDINATOR_B: "coordinator-b@example.cn"}
    clients, csrf = {}, {}
    for role in ROLES:
        client = app.test_client()
        if role != ANONYMOUS:
            assert sign_in(client, emails[role]).status_code == 302
        clients[role] = client
        csrf[role] = csrf_token(client, "/login" if role == ANONYMOUS else "/account/tokens")
    return World(values, api_tokens, clients, csrf)


# --- walking the routes --------------------------------------------------------------------

ANY_CONVERTER = re.compile(r"<any\(([^)]*)\):(\w+)>")


def rule_urls(app: Flask, rule, values: dict[str, object]) -> list[str]:
    """The rule's URLs with the world's ids, one per choice of each ``any(...)`` part."""
    variants: list[dict[str, object]] = [{}]
    for options, name in ANY_CONVERTER.findall(rule.rule):
        choices = [option.strip(" '\"") for option in options.split(",")]
        variants = [{**variant, name: choice} for variant in variants for choice in choices]
    adapter = app.url_map.bind("localhost")
    urls = []
    for variant in variants:
        arguments = {}
        for name in rule.arguments:
            value = variant.get(name, values.get(name))
            assert value is not None, f"no value for <{name}> in {rule.rule}: add one to World"
            arguments[name] = value
        url = adapter.build(rule.endpoint, arguments, method=None)
        urls.append(f"{url}?{QUERY[rule.endpoint]}" if rule.endpoint in QUERY else url)
    return urls


def call(world: World, role: str, method: str, url: str):
    client = world.clients[role]
    if url.startswith("/api/"):
        headers = {}
        if role != ANONYMOUS:
            headers["Authorization"] = f"Bearer {world.api_tokens[role]}"
        body = {} if method in ("POST", "PUT") else None
        return client.open(url, method=method, headers=headers, json=body)
    if method == "GET":
        return client.get(url)
    return client.open(url, method=method, data={"csrf_token": world.csrf[role]})


def expected(access: Access, role: str) -> str:
    if access.public:
        return "ok"
    if role == ANONYMOUS:
        return "sign-in"
    if role not in access.roles:
        return "403"
    if role in access.hidden:
        return "404"
    return "ok"


def outcome(url: str, response, access: Access) -> str:
    status = response.status_code
    if access.probe and status == 503:
        return "ok"
    if status >= 500:
        return str(status)
    if url.startswith("/api/") and status == 401:
        return "sign-in"
    if status in (301, 302, 303) and urlparse(response.headers["Location"]).path == "/login":
        return "sign-in"
    if status < 400:
        return "ok"
    return str(status)


CSRF_VALUE = re.compile(r'(name="csrf_token"[^>]*value=")[^"]*')


def page_text(response) -> str:
    """The body, less the CSRF tokens (they carry the time, to the second)."""
    return CSRF_VALUE.sub(r"\1", response.get_data(as_text=True))


def routes(app: Flask):
    return sorted(app.url_map.iter_rules(), key=lambda rule: (rule.endpoint, rule.rule))


def methods_of(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def test_every_route_is_in_the_access_table(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    unlisted = sorted(endpoints - ACCESS.keys())
    assert not unlisted, f"routes without an access rule (add them to ACCESS): {unlisted}"
    gone = sorted(ACCESS.keys() - endpoints)
    assert not gone, f"ACCESS has rules for routes that no longer exist: {gone}"
    for name in RUN_LAST:
        assert name in ACCESS


def test_access_matrix(app, people, tmp_path):
    """Every route x every role: GET for every route that has it, then POST/PUT/DELETE with a
    valid CSRF token (or a bearer token) and empty data: forbidden callers first (they must
    change nothing), then allowed ones (nothing may answer 500)."""
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a crash is a 500 in the report, not a stop
    world = build_world(app, people, tmp_path)
    failures: list[str] = []
    checked = 0

    def check(role: str, method: str, url: str, access: Access, strict: bool) -> None:
        nonlocal checked
        checked += 1
        response = call(world, role, method, url)
        want, got = expected(access, role), outcome(url, response, access)
        if got.startswith("5"):
            failures.append(f"{role:13} {method:6} {url}: {got}")
        elif want != "ok" and got != want:
            failures.append(f"{role:13} {method:6} {url}: {got}, expected {want}")
        elif want == "ok" and strict and got != "ok":
            failures.append(f"{role:13} {method:6} {url}: {got}, expected 2xx/3xx")
        elif want == "404" and method == "GET":
            # Indistinguishable from an object that does not exist at all.
            missing_url = re.sub(r"/\d+(?=/|\.|$)", f"/{MISSING_ID}", url)
            missing = call(world, role, method, missing_url)
            same = page_text(response).replace(url, missing_url)
            if missing.status_code != 404 or same != page_text(missing):
                diff = difflib.unified_diff(same.splitlines(), page_text(missing).splitlines())
                failures.append(
                    f"{role:13} {method:6} {url}: its 404 differs from a missing id's:\n"
                    + "\n".join(diff)
                )

    all_routes = routes(app)
    for rule in all_routes:
        if "GET" in rule.methods:
            for url in rule_urls(app, rule, world.values):
                for role in ROLES:
                    check(role, "GET", url, ACCESS[rule.endpoint], strict=True)

    def writes(rule_list):
        for rule in rule_list:
            for method in methods_of(rule):
                if method != "GET":
                    for url in rule_urls(app, rule, world.values):
                        yield rule, method, url

    for rule, method, url in writes(all_routes):
        access = ACCESS[rule.endpoint]
        for role in ROLES:
            if expected(access, role) != "ok":
                check(role, method, url, access, strict=False)
    last = {name: n for n, name in enumerate(RUN_LAST)}
    ordered = sorted(all_routes, key=lambda rule: last.get(rule.endpoint, -1))
    for rule, method, url in writes(ordered):
        access = ACCESS[rule.endpoint]
        for role in ROLES:
            if expected(access, role) == "ok":
                check(role, method, url, access, strict=False)

    assert not failures, f"{len(failures)} of {checked} calls:\n" + "\n".join(failures)
    assert checked > 600  # the whole app was walked (106 routes x 6 roles and more)


# --- headers and cookies -------------------------------------------------------------------


def assert_security_headers(response, html: bool) -> None:
    headers = response.headers
    policy = dict(
        part.strip().split(" ", 1)
        for part in headers["Content-Security-Policy"].split(";")
        if part.strip()
    )
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin")
    if html:
        assert headers["Cache-Control"] == "no-store"


def cookie(response, name: str) -> dict[str, str | bool]:
    """The attributes of the Set-Cookie for ``name`` (lower-case keys; flags as True)."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        if first.split("=", 1)[0] == name:
            found: dict[str, str | bool] = {}
            for attribute in attributes:
                key, _sep, value = attribute.partition("=")
                found[key.lower()] = value or True
            return found
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.getlist('Set-Cookie')}")


def test_headers_on_pages_sign_in_errors_files_and_the_api(app, people, client_as, client):
    sign_in_page = client.get("/login")
    assert_security_headers(sign_in_page, html=True)
    signed_in = submit(
        client,
        "/login",
        {"email": People.EMAILS["employer"], "password": PASSWORD, "remember": "y"},
    )
    assert signed_in.status_code == 302
    assert_security_headers(signed_in, html=False)
    employer = client_as("employer")
    assert_security_headers(employer.get("/"), html=True)
    assert_security_headers(employer.get("/no/such/page"), html=True)
    assert_security_headers(client_as("coordinator").get("/trips/999"), html=True)
    download = employer.get("/roster/template.xlsx")
    assert download.status_code == 200
    assert_security_headers(download, html=False)
    assert "attachment" in download.headers["Content-Disposition"]

    with app.app_context():
        secret = create_token(db.session.get(User, people.employer_a_id), "headers")[1]
        db.session.commit()
    api = app.test_client()
    listed = api.get("/api/v1/requests", headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 200
    assert_security_headers(listed, html=False)
    refused = api.get("/api/v1/requests")
    assert refused.status_code == 401
    assert_security_headers(refused, html=False)
    assert_security_headers(api.get("/api/v1/openapi.json"), html=False)
    # Development and tests run over plain HTTP: no HSTS there.
    assert "Strict-Transport-Security" not in listed.headers


def test_session_and_remember_cookies_are_httponly_and_lax(client):
    page = client.get("/login")  # the CSRF token lives in the session
    session = cookie(page, "fangang_session")
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert "secure" not in session  # plain HTTP in development
    assert "expires" not in session  # a browser-session cookie until "remember me"


def test_signed_in_cookies(client, people):
    response = submit(
        client,
        "/login",
        {"email": People.EMAILS["employer"], "password": PASSWORD, "remember": "y"},
    )
    assert response.status_code == 302
    for name in ("fangang_session", "remember_token"):
        found = cookie(response, name)
        assert found["httponly"] is True, name
        assert found["samesite"] == "Lax", name


def test_production_cookies_are_secure_and_hsts_is_sent(tmp_path, monkeypatch, redis_url):
    monkeypatch.setenv("FANGANG_ENV", "production")
    for name, value in TEST_PII_KEYS.items():
        monkeypatch.setenv(name, value)
    app = make_app(f"sqlite:///{tmp_path / 'production.db'}", REDIS_URL=redis_url)
    assert app.config["ENV_NAME"] == "production"
    with app.app_context():
        db.create_all()
    create_people(app)
    client = app.test_client()
    https = {"base_url": "https://fangang.example.cn"}
    page = client.get("/login", **https)
    assert_security_headers(page, html=True)
    hsts = page.headers["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 180 * 24 * 3600
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    form = {
        "csrf_token": token.group(1),
        "email": People.EMAILS["admin"],
        "password": PASSWORD,
        "remember": "y",
    }
    # Over HTTPS a form must also come from our own pages (Flask-WTF's strict Referer check).
    assert client.post("/login", data=form, **https).status_code == 400
    elsewhere = {"Referer": "https://evil.example.com/login"}
    assert client.post("/login", data=form, headers=elsewhere, **https).status_code == 400
    ours = {"Referer": "https://fangang.example.cn/login"}
    response = client.post("/login", data=form, headers=ours, **https)
    assert response.status_code == 302
    assert "Strict-Transport-Security" in response.headers
    for name in ("fangang_session", "remember_token"):
        found = cookie(response, name)
        assert found["secure"] is True, name
        assert found["httponly"] is True, name
        assert found["samesite"] == "Lax", name
    assert client.get("/", **https).status_code == 200


# --- what fuzzing and the matrix found -----------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["status", "jti", "kid"])
def test_a_pass_with_claims_too_long_to_keep_is_refused_not_a_500(pg_app, pg_people, what):
    """A forged pass (any key) whose status, jti or kid is longer than the certificate's
    columns was kept as it was read and made PostgreSQL fail the request (500)."""
    _private, public = generate_key()
    header = {"alg": "ES256", "kid": key_id(public), "typ": "JWT"}
    claims = {
        "iss": "500235",
        "sub": "500235199001011239",
        "name": "张三",
        "status": "green",
        "iat": 1_700_000_000,
        "exp": 1_900_000_000,
        "jti": "j-1",
    }
    if what == "kid":
        header["kid"] = "k" * 300
    else:
        claims[what] = "z" * 300
    token = ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(b"\0" * 64))
    )
    pg_app.config["PROPAGATE_EXCEPTIONS"] = False
    client = pg_app.test_client()
    sign_in(client, People.EMAILS["employer"])
    response = submit(
        client,
        "/roster/new",
        {
            "name": "张三",
            "id_number": "500235199001011239",
            "phone": "13800138000",
            "home_region_code": "500235",
            "health_pass": token,
        },
    )
    assert response.status_code == 200  # the form again, saying why
    with pg_app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Worker)) == 0


def test_a_scan_is_shown_inline_only_as_an_image_or_pdf(app, people, tmp_path):
    """The type of an uploaded scan is what the browser said: a page or a script uploaded as
    "scan.png" was served inline as text/html from our origin, to the employer and the admins
    (and a script served from our origin passes the CSP's script-src 'self')."""
    world = build_world(app, people, tmp_path)
    values = world.values
    url = f"/requests/{values['request_id']}/entries/{values['entry_id']}/paper"
    form = {
        "clinic": "云阳县人民医院",
        "certificate_number": "YY-0002",
        "issued_on": DAY.isoformat(),
        "valid_until": DAY.isoformat(),
        "status": "green",
    }
    uploads = [
        (b"<html><script src='/x.js'></script></html>", "scan.png", "text/html", None),
        (b"alert(document.cookie)", "scan.pdf", "application/javascript", None),
        (b"%PDF-1.4", "scan.pdf", "application/" + "x" * 60, None),  # longer than the column
        (scan_png(), "scan.png", "image/png", "image/png"),
    ]
    for content, filename, sent_type, shown_type in uploads:
        response = submit(
            world.clients[COORDINATOR],
            url,
            {**form, "scan": (io.BytesIO(content), filename, sent_type)},
            content_type="multipart/form-data",
        )
        assert response.status_code == 302, sent_type
        with app.app_context():
            newest = db.session.scalar(
                select(HealthCertificate.id).order_by(HealthCertificate.id.desc()).limit(1)
            )
        served = world.clients[EMPLOYER].get(f"/certificates/{newest}/scan")
        assert served.status_code == 200
        assert served.get_data() == content
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        if shown_type:
            assert served.mimetype == shown_type
            assert served.headers["Content-Disposition"] == "inline"
        else:
            assert served.mimetype == "application/octet-stream", sent_type
            assert served.headers["Content-Disposition"] == "attachment", sent_type


NUL_REFUSED = "输入中含有无法保存的字符（NUL 空字符）"


def test_a_nul_byte_in_any_input_is_refused_with_a_clear_400_on_postgresql(pg_app, pg_people):
    """PostgreSQL cannot keep a NUL byte in text: anywhere in a query, a form or a JSON body
    it is refused before a view runs, with a page (or the API's error) that says so in the
    user's language (it was a 500 from psycopg, even for someone not signed in)."""
    anonymous = pg_app.test_client()
    login = submit(anonymous, "/login", {"email": "x\x00y@example.cn", "password": PASSWORD})
    assert login.status_code == 400
    assert NUL_REFUSED in login.get_data(as_text=True)
    admin, coordinator = pg_app.test_client(), pg_app.test_client()
    assert sign_in(admin, People.EMAILS["admin"]).status_code == 302
    assert sign_in(coordinator, People.EMAILS["coordinator"]).status_code == 302
    for client, url in (
        (admin, "/organizations?q=a%00"),
        (coordinator, "/queue?origin=5%00"),
        (coordinator, "/trips/plan?origin=5%00"),
    ):
        refused = client.get(url)
        assert refused.status_code == 400, url
        assert NUL_REFUSED in refused.get_data(as_text=True), url
    with pg_app.app_context():
        _token, secret = create_token(db.session.get(User, pg_people.employer_a_id), "HR")
        db.session.commit()
    api = pg_app.test_client()
    headers = {"Authorization": f"Bearer {secret}", "Accept-Language": "en"}
    for field in ("name", "group_tag"):
        body = {**worker_form(), field: "王\x00明"}
        refused = api.post("/api/v1/workers", json=body, headers=headers)
        assert refused.status_code == 400
        error = refused.json["error"]
        assert error["code"] == "invalid_character"
        assert "NUL" in error["message"]
        assert list(error["fields"]) == [field]
    bulk = api.post("/api/v1/workers/bulk", json={"workers": [{"name\x00": "x"}]}, headers=headers)
    assert list(bulk.json["error"]["fields"]) == ["workers[0].name"]
    with pg_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 0


def test_a_nul_byte_in_an_uploaded_files_name_is_refused_on_postgresql(pg_app, pg_people):
    """The roster import keeps the file's name: one with a NUL byte was a 500 from psycopg."""
    employer = pg_app.test_client()
    assert sign_in(employer, People.EMAILS["employer"]).status_code == 302
    refused = employer.post(
        "/roster/import",
        data={
            "csrf_token": csrf_token(employer, "/roster/import"),
            "file": (io.BytesIO(b"\xe5\xa7\x93\xe5\x90\x8d\r\n"), "名单\x00.csv"),
        },
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400
    assert NUL_REFUSED in refused.get_data(as_text=True)
    with pg_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RosterImport)) == 0


def test_sqlite_no_longer_stores_a_nul_byte(app, people):
    with app.app_context():
        _token, secret = create_token(db.session.get(User, people.employer_a_id), "HR")
        db.session.commit()
    refused = app.test_client().post(
        "/api/v1/workers",
        json={**worker_form(), "name": "王\u0000明"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert refused.status_code == 400
    assert NUL_REFUSED in refused.json["error"]["message"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Worker)) == 0
