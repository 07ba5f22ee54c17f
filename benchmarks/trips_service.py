"""Benchmark: seat allocation end to end through ``app.trips.services`` on PostgreSQL.

    .venv/bin/python -m benchmarks.trips_service [--workers 10000] [--coaches 250]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test] [--profile STAGE]

(``.venv/bin/python benchmarks/trips_service.py`` works too.) ``--profile`` runs one stage
(k4016-allocate, k4016-lock, plan, apply, allocate, lock) under cProfile, which slows it down.

A fresh database (``fangang_bench_<random>``, ``db.create_all()``, dropped at the end even on
error) gets, in bulk (setup, timed apart): a health issuer on the trust list, a coordinator,
employers, workers (ID and phone numbers encrypted and hashed with ``vault()`` as the services
do), one signed green health pass per worker (``sign_pass``, written by ``health.add_passes``),
approved transport requests and their roster entries already "cleared" and holding their place.
Then, each service call in its own app context (a new session, as one web request) and
committed as the trip views commit it (``safe_integrity`` + commit):

1. K4016: 476 workers of 10 employers on one special train of 9 ``train-hard-seat-118``
   carriages at 50% with alternate seats: ``create_trip``, ``allocate_seats``, ``lock_manifest``.
2. A campaign day: N workers (10,000) in ~100 approved requests (20-200 workers, one employer
   each) over C coaches (250): ``make_plan``, ``apply_plan`` (all trips, one transaction), then
   ``allocate_seats`` for every trip, then ``lock_manifest`` for every trip. The coach policy is
   the first of coach-45 at 50% + 2 isolation rows (22 a coach), coach-53 at 100% + 2 isolation
   rows (44), coach-53 at 100% (53) whose C coaches carry everyone: 250 x 22 < 10,000, so the
   defaults run coach-53 at 100% with the isolation rows kept.

``allocate_seats`` re-checks the health of every waiting worker of the trip's requests, so the
real passes are there and verified: ``health.check_entries`` is timed on its own, as are the
pure allocator, the seat writes, the seat messages (``_tell_seats``, of which ``notify_many``),
the destination notice and the commits; each stage's SQL statements and the time spent in them
are counted too. Job dispatch after commit (the SMS relay nudge) is recorded, not run.

Afterwards the database must show every worker seated exactly once, no seat given twice on a
trip, no trip over its policy capacity, each trip's loads seated as planned, every trip locked,
every request scheduled, one ``seat_given`` SMS and two reminders per seated worker.

Exit status: 0 when the end state is right, 2 when it is not.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import wraps
from pathlib import Path
from unittest import mock

from flask import Flask
from sqlalchemy import event, func, insert, select, text

from app import create_app
from app.accounts import services as accounts
from app.accounts.models import User
from app.core import jobs
from app.core.access import Role
from app.core.clock import utcnow
from app.core.identity import credit_code_check_character, id_number_check_character
from app.core.pii import vault
from app.demand.models import RequestStatus, RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.fleet.models import Operator, Vehicle
from app.health import services as health
from app.health.cli import create_demo_issuer
from app.health.passes import PassFacts, key_id, public_jwk_from_text, sign_pass
from app.trips import allocation, services
from app.trips.models import SeatAssignment, Trip
from app.trips.seatmaps import build_vehicle
from benchmarks import roster_import
from config import TestingConfig, normalize_database_url

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "bench-password-2026"  # noqa: S105 - a throwaway account in a throwaway database
ORIGIN = ("500235", "重庆市 云阳县")
DESTINATION = ("370100", "山东省 济南市")
K4016_EMPLOYERS = {
    "中建八局第一建设有限公司": 62,
    "中铁十局集团有限公司": 58,
    "山东省建设建工集团": 55,
    "济南城建集团有限公司": 50,
    "中建五局山东公司": 48,
    "山东高速路桥集团": 46,
    "济南一建集团有限公司": 44,
    "天元建设集团有限公司": 41,
    "中铁十四局集团有限公司": 38,
    "济南四建集团有限责任公司": 34,
}
HARD_SEAT, CARRIAGES = "train-hard-seat-118", 9
# Coach policies, strictest first: (template, max load %, isolation rows, alternate seats).
COACH_POLICIES = (
    ("coach-45", 50, 2, False),
    ("coach-53", 100, 2, False),
    ("coach-53", 100, 0, False),
)
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
)
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红建国建华志强文军德明"
VILLAGES = ("龙洞村", "双河村", "桂花村", "青龙村", "石门村", "红岩村", "新华村", "黄泥村")
STAGES = ("k4016-allocate", "k4016-lock", "plan", "apply", "allocate", "lock")


class BenchmarkFailure(AssertionError):
    pass


# --- measuring ------------------------------------------------------------------------------


class PhaseClock:
    """Exclusive seconds per named phase (a nested phase's time is not counted in its parent)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: list[list] = []  # [name, started, seconds spent in nested phases]

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        frame = [name, time.perf_counter(), 0.0]
        self._open.append(frame)
        try:
            yield
        finally:
            self._open.pop()
            elapsed = time.perf_counter() - frame[1]
            self.seconds[name] += elapsed - frame[2]
            if self._open:
                self._open[-1][2] += elapsed

    def timed(self, name: str, function: Callable) -> Callable:
        @wraps(function)
        def wrapper(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)

        return wrapper


class SqlMeter:
    """Statements sent to the database and the seconds spent waiting on them."""

    def __init__(self) -> None:
        self.statements = 0
        self.seconds = 0.0

    def attach(self, engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info.setdefault("bench_started", []).append(time.perf_counter())

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):
            self.statements += 1
            self.seconds += time.perf_counter() - conn.info["bench_started"].pop()


@dataclass
class Stage:
    case: str
    name: str
    calls: int
    workers: int
    seconds: float
    statements: int
    sql_seconds: float
    maxrss_mb: float
    parts: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # entries checked, outbox rows


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# Phases inside the stages, in the order they are shown.
HEALTH, ALLOCATOR, WRITE = (
    "health.check_entries",
    "allocation.allocate (pure)",
    "_give (seat writes)",
)
TELL, OUTBOX, DEST = (
    "_tell_seats (build messages)",
    "notify_many (outbox insert)",
    "_tell_destination",
)
COMMIT = "commit"
PARTS = (HEALTH, ALLOCATOR, WRITE, TELL, OUTBOX, DEST, COMMIT)


@dataclass
class Bench:
    app: Flask
    sql: SqlMeter
    profile: str | None
    coordinator_id: int = 0
    stages: list[Stage] = field(default_factory=list)
    setup: list[tuple[str, int, float]] = field(default_factory=list)
    health_checked: int = 0
    dispatched: list = field(default_factory=list)
    profiler: cProfile.Profile | None = None
    profiled_stage: str = ""
    clock: PhaseClock = field(default_factory=PhaseClock)  # the running stage's

    @contextmanager
    def stage(self, case: str, name: str, key: str, workers: int) -> Iterator[Stage]:
        """Time a stage; its parts come from the wrapped service functions."""
        clock = PhaseClock()
        counts: Counter = Counter()

        def count_checked(function):
            @wraps(function)
            def wrapper(entries, *args, **kwargs):
                counts[HEALTH] += len(entries)
                return function(entries, *args, **kwargs)

            return wrapper

        def count_written(function):
            @wraps(function)
            def wrapper(messages):
                # Its return value is not the rows written (rowcount -1 per chunk on psycopg):
                # count the messages; the end-state check counts the rows.
                counts[OUTBOX] += len(messages)
                return function(messages)

            return wrapper

        result = Stage(case, name, 0, workers, 0.0, 0, 0.0, 0.0)
        self.clock = clock
        with ExitStack() as patches:
            for target, attribute, part in (
                (health, "check_entries", HEALTH),
                (allocation, "allocate", ALLOCATOR),
                (services, "_give", WRITE),
                (services, "_tell_seats", TELL),
                (services, "notify_many", OUTBOX),
                (services, "_tell_destination", DEST),
            ):
                wrapped = clock.timed(part, getattr(target, attribute))
                if attribute == "check_entries":
                    wrapped = count_checked(wrapped)
                elif attribute == "notify_many":
                    wrapped = count_written(wrapped)
                patches.enter_context(mock.patch.object(target, attribute, wrapped))
            statements, sql_seconds = self.sql.statements, self.sql.seconds
            profiler = cProfile.Profile() if self.profile == key else None
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            try:
                yield result
            finally:
                if profiler:
                    profiler.disable()
                    self.profiler, self.profiled_stage = profiler, f"{case}: {name}"
                result.seconds = time.perf_counter() - started
                result.statements = self.sql.statements - statements
                result.sql_seconds = self.sql.seconds - sql_seconds
                result.maxrss_mb = maxrss_mb()
                result.parts = dict(clock.seconds)
                result.counts = dict(counts)
                self.health_checked += counts[HEALTH]
                self.stages.append(result)

    @contextmanager
    def request(self, stage: Stage) -> Iterator[User]:
        """One web request: a new app context (its own session), the acting coordinator."""
        with self.app.app_context():
            actor = db.session.get(User, self.coordinator_id)
            stage.calls += 1
            yield actor

    @contextmanager
    def setup_step(self, name: str, rows: int) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.setup.append((name, rows, time.perf_counter() - started))

    def commit(self) -> None:
        with self.clock.phase(COMMIT):
            db.session.commit()

    def run(self, operation: Callable):
        """As the trip views do (trips/views.py ``_run``): in a savepoint, then commit."""
        result = services.safe_integrity(operation)
        self.commit()
        return result


# --- the database and the app ---------------------------------------------------------------


@contextmanager
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A scratch PostgreSQL database, dropped afterwards (roster_import's)."""
    with roster_import.fresh_database("postgres", postgres_url) as database_uri:
        yield database_uri


def build_app(database_uri: str) -> Flask:
    """As tests/conftest.py's make_app: embedded mode (no Redis)."""
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench-secret",
            "PII_KEYS": TestingConfig.PII_KEYS,
            "PII_HASH_KEY": TestingConfig.PII_HASH_KEY,
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_uri),
            "REDIS_URL": None,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )


# --- the data, in bulk ----------------------------------------------------------------------


@dataclass
class Issuer:
    private_pem: str
    kid: str
    region_code: str


@dataclass
class Employer:
    name: str
    groups: list[tuple[str, int]]  # village group tag -> workers

    @property
    def size(self) -> int:
        return sum(n for _, n in self.groups)


def village_groups(rng: random.Random, size: int) -> list[tuple[str, int]]:
    """A request's workers in village groups of 5-40 (the same village twice: 2组, 3组)."""
    groups: list[tuple[str, int]] = []
    seen: Counter = Counter()
    left = size
    while left:
        village = rng.choice(VILLAGES)
        seen[village] += 1
        tag = village if seen[village] == 1 else f"{village}{seen[village]}组"
        n = min(rng.randint(5, 40), left)
        groups.append((tag, n))
        left -= n
    return groups


def k4016_employers(rng: random.Random) -> list[Employer]:
    return [Employer(name, village_groups(rng, n)) for name, n in K4016_EMPLOYERS.items()]


def campaign_employers(rng: random.Random, workers: int) -> list[Employer]:
    sizes: list[int] = []
    while sum(sizes) < workers:
        sizes.append(min(rng.randint(20, 200), workers - sum(sizes)))
    if len(sizes) > 1 and sizes[-1] < 20:  # keep every request at 20 or more
        sizes[-2] += sizes.pop()
    return [
        Employer(f"济南第{i + 1:03d}建筑劳务有限公司", village_groups(rng, size))
        for i, size in enumerate(sizes)
    ]


class People:
    """Unique, valid ID numbers and mobiles across the whole run."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.serial = 0
        self.organizations = 0

    def next(self) -> tuple[str, str, str, date]:
        self.serial += 1
        n = self.serial
        born = date(1968, 1, 1) + timedelta(days=n)  # one worker a day: unique ID numbers
        first17 = f"{ORIGIN[0]}{born:%Y%m%d}{self.rng.randrange(1000):03d}"
        name = self.rng.choice(SURNAMES) + "".join(
            self.rng.choice(GIVEN) for _ in range(self.rng.choice((1, 2)))
        )
        return name, first17 + id_number_check_character(first17), f"+86138{n:08d}", born


def populate(
    bench: Bench,
    employers: list[Employer],
    people: People,
    issuer: Issuer,
    departure: datetime,
    label: str,
) -> list[int]:
    """Organizations, workers with signed passes, approved requests of cleared entries.
    Returns the request ids, in the order of ``employers``."""
    pii = vault()
    now = utcnow()
    coordinator_id = bench.coordinator_id
    day = services.local_date(departure)
    total = sum(e.size for e in employers)
    with bench.setup_step(f"{label}: organizations (accounts service)", len(employers)):
        organizations = []
        for employer in employers:
            people.organizations += 1
            first17 = f"91370100MA3C{people.organizations:05d}"
            organizations.append(
                accounts.create_organization(
                    employer.name, first17 + credit_code_check_character(first17), DESTINATION[0]
                )
            )
    with bench.setup_step(f"{label}: workers (encrypt + INSERT)", total):
        rows, facts = [], []
        for employer, organization in zip(employers, organizations, strict=True):
            for tag, n in employer.groups:
                for _ in range(n):
                    name, id_number, phone, born = people.next()
                    rows.append(
                        {
                            "organization_id": organization.id,
                            "name": name,
                            "id_number_token": pii.encrypt(id_number),
                            "id_number_hash": pii.lookup_hash(id_number),
                            "birth_date": born,
                            "phone_token": pii.encrypt(phone),
                            "phone_hash": pii.lookup_hash(phone),
                            "phone_last4": phone[-4:],
                            "home_region_code": ORIGIN[0],
                            "home_region_name": ORIGIN[1],
                            "group_tag": tag,
                        }
                    )
                    facts.append((name, id_number))
        worker_ids = db.session.scalars(
            insert(Worker).returning(Worker.id, sort_by_parameter_order=True), rows
        ).all()
    with bench.setup_step(f"{label}: health passes signed (sign_pass)", total):
        issued = now - timedelta(hours=1)
        expires = issued + timedelta(days=7)
        passes = []
        for worker_id, (name, id_number) in zip(worker_ids, facts, strict=True):
            jti = str(uuid.uuid4())
            claims = {
                "iss": issuer.region_code,
                "sub": id_number,
                "name": name,
                "status": "green",
                "iat": int(issued.timestamp()),
                "exp": int(expires.timestamp()),
                "jti": jti,
            }
            token = sign_pass(issuer.private_pem, claims)
            passes.append(
                (
                    worker_id,
                    token,
                    PassFacts(
                        None,
                        True,
                        issuer.kid,
                        issuer.region_code,
                        id_number,
                        name,
                        "green",
                        datetime.fromtimestamp(claims["iat"], issued.tzinfo),
                        datetime.fromtimestamp(claims["exp"], issued.tzinfo),
                        jti,
                    ),
                )
            )
    with bench.setup_step(f"{label}: passes stored (health.add_passes)", total):
        health.add_passes(passes, None, check=False)
    with bench.setup_step(f"{label}: approved requests + cleared entries (INSERT)", total):
        requests = [
            TransportRequest(
                organization_id=organization.id,
                status=RequestStatus.APPROVED.value,
                origin_region_code=ORIGIN[0],
                origin_region_name=ORIGIN[1],
                pickup_point="云阳汽车站",
                pickup_address="云阳县双江街道滨江大道",
                destination_region_code=DESTINATION[0],
                destination_region_name=DESTINATION[1],
                site_name=f"{organization.name}项目部",
                site_address="济南市经十路",
                site_contact_name="赵经理",
                site_contact_phone="0531-88886666",
                earliest_departure=day,
                latest_departure=day + timedelta(days=1),
                preferred_mode="train" if label == "K4016" else "coach",
                submitted_at=now - timedelta(days=2),
                decided_at=now - timedelta(days=1),
                decided_by_id=coordinator_id,
            )
            for organization in organizations
        ]
        db.session.add_all(requests)
        db.session.flush()
        entries, position = [], 0
        for employer, request in zip(employers, requests, strict=True):
            for _ in range(employer.size):
                entries.append(
                    {
                        "request_id": request.id,
                        "worker_id": worker_ids[position],
                        "status": "cleared",
                        "health_checked_at": now,
                        "id_number_hash": rows[position]["id_number_hash"],
                        "holds_place": True,
                    }
                )
                position += 1
        db.session.execute(insert(RosterEntry), entries)
        db.session.commit()
    return [r.id for r in requests]


def make_operator_vehicles(specs: list[dict]) -> list[int]:
    operator = db.session.scalar(select(Operator).where(Operator.name == "云阳客运公司"))
    if operator is None:
        operator = Operator(name="云阳客运公司", contact_phone="02355551234")
        db.session.add(operator)
        db.session.flush()
    vehicles = [Vehicle(operator_id=operator.id, blocked_seats=[], **spec) for spec in specs]
    db.session.add_all(vehicles)
    db.session.commit()
    return [v.id for v in vehicles]


def leg(departs: datetime, hours: int, percent: int, isolation: int, alternate: bool, where):
    return services.Leg(
        origin_region_code=ORIGIN[0],
        origin_point=where[0],
        origin_address=None,
        destination_region_code=DESTINATION[0],
        destination_point=where[1],
        destination_address=None,
        departs_at=departs,
        arrives_at=departs + timedelta(hours=hours),
        max_load_percent=percent,
        isolation_rows=isolation,
        alternate_seats=alternate,
    )


def coach_policy(workers: int, coaches: int) -> tuple[str, int, int, bool, int]:
    """The strictest coach policy whose fleet carries everyone, with its capacity per coach."""
    for template, percent, isolation, alternate in COACH_POLICIES:
        policy = allocation.Policy.of_percent(percent, isolation, alternate)
        cap = allocation.capacity(build_vehicle(template, 1), policy)
        if cap * coaches >= workers:
            return template, percent, isolation, alternate, cap
    raise BenchmarkFailure(f"{coaches} coaches cannot carry {workers} workers at any policy")


# --- the cases ------------------------------------------------------------------------------


def k4016_case(bench: Bench, request_ids: list[int], sizes: list[int], departs: datetime):
    with bench.app.app_context():
        (train_id,) = make_operator_vehicles(
            [
                {
                    "kind": "train",
                    "identifier": "K4016",
                    "seatmap_template": HARD_SEAT,
                    "carriages": CARRIAGES,
                }
            ]
        )
    total = sum(sizes)
    the_leg = leg(departs, 28, 50, 0, True, ("重庆北站", "济南站"))
    with (
        bench.stage("K4016", "create_trip + commit", "-", total) as stage,
        bench.request(stage) as actor,
    ):
        trip = services.create_trip(
            db.session.get(Vehicle, train_id),
            the_leg,
            actor,
            dict(zip(request_ids, sizes, strict=True)),
        )
        trip_id = trip.id
        bench.commit()
    outcomes = []
    with (
        bench.stage("K4016", "allocate_seats + commit", "k4016-allocate", total) as stage,
        bench.request(stage) as actor,
    ):
        outcomes.append(bench.run(lambda: services.allocate_seats(trip_id, actor)))
    with (
        bench.stage("K4016", "lock_manifest + commit", "k4016-lock", total) as stage,
        bench.request(stage) as actor,
    ):
        bench.run(lambda: services.lock_manifest(trip_id, actor))
    return outcomes


def campaign_case(
    bench: Bench, request_ids: list[int], workers: int, coaches: int, departs: datetime
) -> tuple[list, str]:
    template, percent, isolation, alternate, cap = coach_policy(workers, coaches)
    with bench.app.app_context():
        vehicle_ids = make_operator_vehicles(
            [
                {"kind": "coach", "identifier": f"渝F{20001 + i}", "seatmap_template": template}
                for i in range(coaches)
            ]
        )
    the_leg = leg(departs, 22, percent, isolation, alternate, ("云阳汽车站", "济南项目部"))
    policy_text = (
        f"{template} at {percent}%, {isolation} isolation rows"
        + (", alternate seats" if alternate else "")
        + f": {cap} a coach, {cap * coaches:,} seats for {workers:,} workers"
    )
    with bench.app.app_context():
        requests = db.session.scalars(
            select(TransportRequest)
            .where(TransportRequest.id.in_(request_ids))
            .order_by(TransportRequest.id)
        ).all()
        vehicles = db.session.scalars(
            select(Vehicle).where(Vehicle.id.in_(vehicle_ids)).order_by(Vehicle.id)
        ).all()
        with bench.stage("campaign", "make_plan", "plan", workers) as stage:
            stage.calls = 1  # the plan page's POST, after loading the chosen rows
            the_plan = services.make_plan(requests, vehicles, the_leg.policy)
        if not the_plan.ok:
            raise BenchmarkFailure(f"the plan is {the_plan.missing_seats} seats short")
        loads = {
            vehicles[planned.option].id: {int(key): n for key, n in planned.loads}
            for planned in the_plan.vehicles
        }
    with (
        bench.stage("campaign", "apply_plan + commit", "apply", workers) as stage,
        bench.request(stage) as actor,
    ):
        trips, problems = services.apply_plan(the_leg, loads, actor)
        if problems:
            raise BenchmarkFailure(f"apply_plan refused the plan: {problems[:3]}")
        trip_ids = [t.id for t in trips]
        bench.commit()
    outcomes = []
    with bench.stage("campaign", "allocate_seats + commit, every trip", "allocate", workers) as st:
        for trip_id in trip_ids:
            with bench.request(st) as actor:
                outcomes.append(bench.run(lambda t=trip_id, a=actor: services.allocate_seats(t, a)))
    with bench.stage("campaign", "lock_manifest + commit, every trip", "lock", workers) as st:
        for trip_id in trip_ids:
            with bench.request(st) as actor:
                bench.run(lambda t=trip_id, a=actor: services.lock_manifest(t, a))
    splits = sum(1 for n in the_plan.pieces.values() if n > 1)
    summary = (
        f"{policy_text}; {len(trip_ids)} of {coaches} coaches used, {splits} of "
        f"{len(request_ids)} requests split across coaches"
    )
    return outcomes, summary


# --- the end state --------------------------------------------------------------------------


def verify(bench: Bench, total_workers: int, outcomes: list) -> list[str]:
    problems = []

    def scalar(query: str) -> int:
        return db.session.execute(text(query)).scalar_one()

    with bench.app.app_context():
        seated = sum(o.seated for o in outcomes)
        unplaced = sum(sum(o.unplaced.values()) for o in outcomes)
        blocked = sum(o.blocked for o in outcomes)
        if (seated, unplaced, blocked) != (total_workers, 0, 0):
            problems.append(
                f"services said {seated} seated, {unplaced} unplaced, {blocked} blocked "
                f"of {total_workers}"
            )
        checks = {
            "entries not seated": "SELECT count(*) FROM roster_entries WHERE status != 'seated'",
            "seated entries without a seat": (
                "SELECT count(*) FROM roster_entries e WHERE NOT EXISTS "
                "(SELECT 1 FROM seat_assignments a WHERE a.roster_entry_id = e.id)"
            ),
            "workers seated twice": (
                "SELECT count(*) FROM (SELECT roster_entry_id FROM seat_assignments "
                "GROUP BY roster_entry_id HAVING count(*) > 1) AS x"
            ),
            "seats given twice on a trip": (
                "SELECT count(*) FROM (SELECT trip_id, seat_label FROM seat_assignments "
                "GROUP BY trip_id, seat_label HAVING count(*) > 1) AS x"
            ),
            "trip loads not seated as planned": (
                "SELECT count(*) FROM trip_loads l WHERE l.planned != (SELECT count(*) "
                "FROM seat_assignments a JOIN roster_entries e ON e.id = a.roster_entry_id "
                "WHERE a.trip_id = l.trip_id AND e.request_id = l.request_id)"
            ),
            "trips not locked": "SELECT count(*) FROM trips WHERE status != 'locked'",
            "requests not scheduled": (
                "SELECT count(*) FROM transport_requests WHERE status != 'scheduled'"
            ),
        }
        for what, query in checks.items():
            if n := scalar(query):
                problems.append(f"{n} {what}")
        if (n := scalar("SELECT count(*) FROM seat_assignments")) != total_workers:
            problems.append(f"{n} seats for {total_workers} workers")
        sms = db.session.execute(
            text(
                "SELECT count(*), count(DISTINCT split_part(event, ':', 3)) FROM notifications "
                "WHERE template = 'seat_given' AND channel = 'sms'"
            )
        ).one()
        seat_entries = scalar(
            "SELECT count(*) FROM notifications n JOIN seat_assignments a "
            "ON split_part(n.event, ':', 3) = 'e' || a.roster_entry_id "
            "AND split_part(n.event, ':', 2) = 't' || a.trip_id WHERE n.template = 'seat_given'"
        )
        if tuple(sms) != (total_workers, total_workers) or seat_entries != total_workers:
            problems.append(
                f"seat_given SMS: {sms[0]} rows for {sms[1]} entries, {seat_entries} matching "
                f"a seat, expected {total_workers}"
            )
        reminders = scalar(
            "SELECT count(*) FROM notifications WHERE template = 'departure_reminder'"
        )
        if reminders != 2 * total_workers:
            problems.append(f"{reminders} reminders, expected {2 * total_workers}")
        for trip in db.session.scalars(select(Trip)):
            cap = allocation.capacity(trip.vehicle.seat_map, trip.policy, trip.all_blocked_seats)
            n = db.session.scalar(select(func.count()).where(SeatAssignment.trip_id == trip.id))
            if n > cap:
                problems.append(f"trip {trip.id}: {n} seated, capacity {cap}")
            if n != sum(load.planned for load in trip.loads):
                problems.append(
                    f"trip {trip.id}: {n} seated of {sum(load.planned for load in trip.loads)}"
                )
    return problems


# --- report ---------------------------------------------------------------------------------


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: tuple[bool, ...]):
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        cells = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * width for width in widths))


def report(bench: Bench, summary: str) -> None:
    print("\nsetup (bulk, not part of the service path):")
    print_table(
        ("step", "rows", "seconds", "rows/s"),
        [(name, f"{n:,}", f"{s:.3f}", f"{n / s:,.0f}") for name, n, s in bench.setup],
        (False, True, True, True),
    )
    print("\nthe service path (each call in its own app context, committed as the views do):")
    rows = []
    for stage in bench.stages:
        rows.append(
            (
                stage.case,
                stage.name,
                f"{stage.calls}",
                f"{stage.workers:,}",
                f"{stage.seconds:.3f}",
                f"{stage.workers / stage.seconds:,.0f}",
                f"{stage.statements:,}",
                f"{stage.sql_seconds:.3f}",
                f"{stage.maxrss_mb:.0f}",
            )
        )
        shown = 0.0
        for part in PARTS:
            if seconds := stage.parts.get(part):
                shown += seconds
                n = stage.counts.get(part, 0)
                count, rate = (f"{n:,}", f"{n / seconds:,.0f}") if n else ("", "")
                rows.append(("", f"  {part}", "", count, f"{seconds:.3f}", rate, "", "", ""))
        if shown:
            rest = stage.seconds - shown
            rows.append(
                ("", "  the rest (queries, ORM, locks)", "", "", f"{rest:.3f}", "", "", "", "")
            )
    print_table(
        (
            "case",
            "stage",
            "calls",
            "rows",
            "seconds",
            "rows/s",
            "SQL stmts",
            "SQL s",
            "RSS MB",
        ),
        rows,
        (False, False, True, True, True, True, True, True, True),
    )
    lock = next(s for s in bench.stages if s.case == "campaign" and "lock" in s.name)
    written = lock.counts.get(OUTBOX, 0)
    print(
        f"\ncampaign: {summary}.\nrows: workers for a stage, roster entries checked for "
        "health.check_entries, outbox rows written for notify_many (seat SMS + 2 reminders). "
        f"The campaign's lock stage wrote {written:,} outbox rows: {written / lock.seconds:,.0f} "
        f"rows/s over the whole stage.\nSQL s: time spent in cursor.execute; RSS MB: the "
        f"process's peak RSS so far ({maxrss_mb():.0f} MB at the end). Relay nudges recorded, "
        f"not run: {len(bench.dispatched)}; health checks in all: {bench.health_checked:,}."
    )


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)  # noqa: S311 - test data, not secrets
    people = People(rng)
    k_employers = k4016_employers(rng)
    c_employers = campaign_employers(rng, args.workers)
    total = sum(e.size for e in k_employers) + sum(e.size for e in c_employers)
    departs = (utcnow() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    with ExitStack() as stack:
        database_uri = stack.enter_context(fresh_database(args.postgres_url))
        app = build_app(database_uri)
        bench = Bench(app, SqlMeter(), args.profile)
        stack.enter_context(
            mock.patch.object(jobs, "dispatch", lambda task, ids: bench.dispatched.append(task))
        )
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fangang-bench-")))
        try:
            with app.app_context():
                db.create_all()
                bench.sql.attach(db.engine)
                coordinator = accounts.create_user(
                    "dispatch@bench.example.cn",
                    PASSWORD,
                    Role.COORDINATOR,
                    "济南市返岗调度",
                    region_code=DESTINATION[0],
                )
                bench.coordinator_id = coordinator.id
                today = services.local_date(utcnow())
                create_demo_issuer(
                    "重庆市云阳县卫生健康委员会",
                    ORIGIN[0],
                    folder / "issuer.pem",
                    today - timedelta(days=7),
                    None,
                )
                db.session.commit()
                pem = (folder / "issuer.pem").read_text()
                issuer = Issuer(pem, key_id(public_jwk_from_text(pem)), ORIGIN[0])
                print(f"setup: {total:,} workers...", flush=True)
                k_requests = populate(bench, k_employers, people, issuer, departs, "K4016")
                c_requests = populate(
                    bench, c_employers, people, issuer, departs + timedelta(hours=1), "campaign"
                )
            print("K4016...", flush=True)
            outcomes = k4016_case(bench, k_requests, [e.size for e in k_employers], departs)
            print("campaign...", flush=True)
            c_outcomes, summary = campaign_case(
                bench, c_requests, args.workers, args.coaches, departs + timedelta(hours=1)
            )
            outcomes += c_outcomes
            problems = verify(bench, total, outcomes)
            report(bench, summary)
            if bench.profiler:
                print(f"\ncProfile of {bench.profiled_stage}, top {args.profile_top}:")
                stats = pstats.Stats(bench.profiler, stream=sys.stdout).strip_dirs()
                stats.sort_stats("cumulative").print_stats(args.profile_top)
                stats.sort_stats("tottime").print_stats(args.profile_top)
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    if problems:
        print(f"\nFAILED: {len(problems)} wrong results: {problems[:5]}", file=sys.stderr)
        return 2
    print(
        f"\nend state verified: {total:,} workers seated once each, no seat twice, no trip "
        "over capacity, one seat SMS and two reminders per worker."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trips_service", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=10_000, help="workers on the campaign day")
    parser.add_argument("--coaches", type=int, default=250, help="coaches available that day")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument(
        "--profile", choices=STAGES, help="run this stage under cProfile (it runs slower)"
    )
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)
    if args.workers < 20 or args.coaches < 1:
        parser.error("--workers must be at least 20 and --coaches at least 1")
    return run(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkFailure as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        sys.exit(2)
