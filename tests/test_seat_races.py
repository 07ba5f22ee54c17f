"""Seat safety under real concurrency, on PostgreSQL: several server processes give seats on
the same trips at the same moment.

Two coordinators or two server processes allocating at once must never produce two workers in
one seat, one worker in two seats (on any trips of the same date), or more seats than the
policy allows. The database enforces it: unique constraints, plus a lock on the trip row (and
then on its requests) with availability re-read under the lock. The negative control runs the
same race with the locks switched off in the contenders (tests/seat_race_child.py) and shows
the race is real: without the locks, contenders decide on the same free seats and workers.

Switching the locks off alone is not enough to see the race: the health re-check that
allocate_seats runs first UPDATEs every waiting roster row of the trip's requests, and those row
locks (held to commit) serialize two allocations on the same requests too. So the control also
keeps the re-check from writing, and the locked race is run that way as well (``only-the-locks``)
so that the control differs from it by the trip and request locks alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from select import select as wait_readable

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from app.accounts.models import User
from app.core.clock import local_today
from app.demand.models import EntryStatus, RosterEntry
from app.extensions import db
from app.trips import allocation
from app.trips import services as trips
from app.trips.models import SeatAssignment, Trip
from tests import scenario
from tests.conftest import ROOT, service_env

DAY = local_today("Asia/Shanghai") + timedelta(days=2)
CONTENDERS = 6  # processes per race, alternating between the two trips
PAUSE = 0.2  # seconds each contender waits between reading and writing
CONTROL_ROUNDS = 5
SEAT_CONSTRAINTS = {
    "uq_seat_assignments_trip_seat",
    "uq_seat_assignments_trip_entry",
    "uq_seat_assignments_entry_day_leg",
}


@pytest.fixture
def race_setup(pg_app, pg_people, tmp_path) -> dict:
    """Four approved requests of ten cleared workers each (40 workers) and two coaches: a
    coach-33 and a coach-45, both at 50% (16 and 22 seats: 38 seats for 40 workers)."""
    with pg_app.app_context():
        key = scenario.trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        orgs = [pg_people.organization_a_id, pg_people.organization_b_id]
        requests = [
            scenario.approved_request(
                orgs[n % 2], pg_people.coordinator_id, key, DAY, {f"村{n}": 10}
            )
            for n in range(4)
        ]
        small = scenario.vehicle("渝F33333", "coach-33")
        large = scenario.vehicle("渝F45454", "coach-45")
        db.session.commit()
        cleared = db.session.scalar(
            select(func.count()).where(RosterEntry.status == EntryStatus.CLEARED)
        )
        assert cleared == 40
        return {
            "requests": [r.id for r in requests],
            "vehicles": [small.id, large.id],
            "actor": pg_people.coordinator_id,
        }


def open_trips(app, setup: dict) -> list[int]:
    """The two trips of one race, same day and leg, each loading all four requests (10 each:
    40 planned on a 16-seat and on a 22-seat trip). create_trip takes the loads as given; the
    planner's capacity check (apply_plan) is what would refuse such a plan."""
    with app.app_context():
        actor = db.session.get(User, setup["actor"])
        ids = []
        for vehicle_id in setup["vehicles"]:
            leg = scenario.yunyang_to_jinan(DAY, max_load_percent=50)
            vehicle = db.session.get(scenario.Vehicle, vehicle_id)
            loads = dict.fromkeys(setup["requests"], 10)
            ids.append(trips.create_trip(vehicle, leg, actor, loads).id)
        db.session.commit()
        return ids


def close_trips(app, setup: dict, trip_ids: list[int]) -> None:
    """Cancel the race's trips: their seats are freed and the workers wait again."""
    with app.app_context():
        actor = db.session.get(User, setup["actor"])
        for trip_id in trip_ids:
            trips.cancel_trip(trip_id, "下一轮", actor)
        db.session.commit()
        seated = db.session.scalar(select(func.count()).select_from(SeatAssignment))
        assert seated == 0


@dataclass
class Contender:
    process: subprocess.Popen
    log: Path
    ready: bool = False

    def send(self, command: dict) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def receive(self, deadline: float) -> dict:
        stdout = self.process.stdout
        ready, _, _ = wait_readable([stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = stdout.readline() if ready else ""
        if not line:
            pytest.fail(f"contender {self.process.pid} said nothing:\n{self.log.read_text()}")
        return json.loads(line)


@pytest.fixture(scope="module")
def contenders(migrated_postgres_url: str, tmp_path_factory) -> Iterator[list[Contender]]:
    """CONTENDERS server processes on the run's database, each with its own app, started once
    for the module (building an app costs far more than a race)."""
    tmp = tmp_path_factory.mktemp("seat-race")
    env = {**os.environ, **service_env(tmp, migrated_postgres_url), "SECRET_KEY": "test-secret"}
    started = []
    try:
        for n in range(CONTENDERS):
            log = tmp / f"contender-{n}.log"
            with log.open("w") as stderr:
                process = subprocess.Popen(
                    [sys.executable, "-m", "tests.seat_race_child"],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                )
            started.append(Contender(process, log))
        yield started  # race() waits for their "ready" line: the test's own setup runs meanwhile
    finally:
        for contender in started:
            if contender.process.stdin:
                contender.process.stdin.close()
        for contender in started:
            try:
                contender.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                contender.process.kill()
                contender.process.wait()


def race(
    database_url: str,
    contenders: list[Contender],
    trip_ids: list[int],
    actor_id: int,
    both_at_once: bool = False,
    **mode,
) -> list[dict]:
    """One allocation per contender, alternating between the trips (``both_at_once``: every
    other contender gives seats on both trips in one go, as the plan page does), all released
    at the same instant; returns what each reported."""
    deadline = time.monotonic() + 60
    for contender in contenders:
        if not contender.ready:
            contender.ready = "ready" in contender.receive(deadline)
    gate_key = 1000 + int.from_bytes(os.urandom(2), "big")
    libpq_url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(libpq_url.render_as_string(hide_password=False), autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (gate_key,))
        for n, contender in enumerate(contenders):
            trip_id = trip_ids[n % len(trip_ids)]
            command = {"trip": trip_id, "actor": actor_id, "gate": gate_key, "sleep": PAUSE}
            if both_at_once and n % 2:
                command["trips"] = trip_ids
            contender.send({**command, **mode})
        deadline = time.monotonic() + 30
        while True:  # every contender waits at the gate
            waiting = gate.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = %s AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())",
                (gate_key,),
            ).fetchone()[0]
            if waiting == len(contenders):
                break
            dead = [c for c in contenders if c.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                log = dead[0].log.read_text() if dead else ""
                pytest.fail(f"{waiting} of {len(contenders)} contenders at the gate\n{log}")
            time.sleep(0.02)
        gate.execute("SELECT pg_advisory_unlock(%s)", (gate_key,))
    deadline = time.monotonic() + 60
    return [contender.receive(deadline) for contender in contenders]


def state(app, trip_ids: list[int]) -> dict:
    """What the database holds after a race, checked in SQL."""
    with app.app_context():
        db.session.expire_all()
        run = db.session.execute
        seat_twice = run(
            text(
                "SELECT trip_id, seat_label FROM seat_assignments"
                " GROUP BY trip_id, seat_label HAVING count(*) > 1"
            )
        ).all()
        worker_twice_on_trip = run(
            text(
                "SELECT trip_id, roster_entry_id FROM seat_assignments"
                " GROUP BY trip_id, roster_entry_id HAVING count(*) > 1"
            )
        ).all()
        worker_on_two_trips = run(
            text(
                "SELECT a.roster_entry_id FROM seat_assignments a"
                " JOIN trips t ON t.id = a.trip_id"
                " GROUP BY a.roster_entry_id, a.travel_date, t.leg"
                " HAVING count(DISTINCT a.trip_id) > 1"
            )
        ).all()
        given = dict(
            run(
                text(
                    "SELECT trip_id, count(*) FROM seat_assignments"
                    " WHERE trip_id = ANY(:ids) GROUP BY trip_id"
                ),
                {"ids": trip_ids},
            ).all()
        )
        capacity = {}
        for trip_id in trip_ids:
            trip = db.session.get(Trip, trip_id)
            capacity[trip_id] = allocation.capacity(
                trip.vehicle.seat_map, trip.policy, trip.all_blocked_seats
            )
        seated_entries = db.session.scalar(
            select(func.count()).where(RosterEntry.status == EntryStatus.SEATED)
        )
        return {
            "seat_twice": seat_twice,
            "worker_twice_on_trip": worker_twice_on_trip,
            "worker_on_two_trips": worker_on_two_trips,
            "given": {trip_id: given.get(trip_id, 0) for trip_id in trip_ids},
            "capacity": capacity,
            "seated_entries": seated_entries,
        }


def assert_sound(found: dict) -> None:
    assert found["seat_twice"] == []
    assert found["worker_twice_on_trip"] == []
    assert found["worker_on_two_trips"] == []
    for trip_id, n in found["given"].items():
        assert n <= found["capacity"][trip_id]


def report(label: str, results: list[dict], found: dict) -> None:
    outcomes = [
        f"t{r['trip']}:"
        + (str(r["seated"]) if "seated" in r else r.get("constraint") or r["error"])
        for r in results
    ]
    first_done = min(r["finished"] for r in results)
    overlapping = sum(r["started"] < first_done for r in results)
    print(
        f"{label}: contenders {outcomes}; {overlapping} in flight at once; seats given"
        f" {found['given']} of capacity {found['capacity']}"
    )


@pytest.mark.parametrize(
    "mode",
    [{}, {"no_health_write": True}, {"both_at_once": True}],
    ids=["as-shipped", "only-the-locks", "with-both-at-once"],
)
def test_racing_processes_never_double_book_or_overfill(
    contenders, pg_app, race_setup, migrated_postgres_url, mode
):
    """Six processes at once, three on each of two trips of the same day that load the same
    requests: every contender succeeds, seats are given exactly once, both trips end exactly
    full, and no worker sits twice. ``only-the-locks``: the health re-check's roster writes
    (which also serialize allocations on the same requests) are off, so only the trip and
    request locks keep the contenders apart — the negative control differs from it only by
    those locks. ``with-both-at-once``: half the contenders seat both trips in one call, which
    locks both trips (in id order) before any request: no deadlock, nothing given twice."""
    trip_ids = open_trips(pg_app, race_setup)
    results = race(migrated_postgres_url, contenders, trip_ids, race_setup["actor"], **mode)
    found = state(pg_app, trip_ids)
    report("locked", results, found)

    assert [r for r in results if "error" in r] == []
    assert_sound(found)
    first, second = trip_ids
    assert found["capacity"] == {first: 16, second: 22}
    # 40 workers wait for 38 seats: whoever goes first, both trips end exactly full.
    assert found["given"] == found["capacity"]
    assert sum(r["seated"] for r in results) == 38 == found["seated_entries"]
    # The allocations overlapped in time (usually all six had passed the gate before the first
    # one finished): the locks serialized them, not luck.
    first_done = min(r["finished"] for r in results)
    assert sum(r["started"] < first_done for r in results) >= 2


def test_without_the_locks_the_race_shows(contenders, pg_app, race_setup, migrated_postgres_url):
    """The negative control: the same race with _lock_trips and _lock_requests reading without
    FOR UPDATE (and the health re-check's roster writes off, as in ``only-the-locks``).
    Contenders then decide on the same free seats and workers; the unique constraints refuse
    the losers (or a trip ends over capacity). Repeated with fresh trips until it shows."""
    mode = {"no_lock": True, "no_health_write": True}
    shown = False
    for attempt in range(1, CONTROL_ROUNDS + 1):
        trip_ids = open_trips(pg_app, race_setup)
        results = race(migrated_postgres_url, contenders, trip_ids, race_setup["actor"], **mode)
        found = state(pg_app, trip_ids)
        report(f"unlocked, round {attempt}", results, found)
        # The constraints still hold the data sound: no seat twice, no worker twice.
        assert found["seat_twice"] == found["worker_twice_on_trip"] == []
        assert found["worker_on_two_trips"] == []
        refused = [r for r in results if r.get("constraint") in SEAT_CONSTRAINTS]
        overfull = [t for t, n in found["given"].items() if n > found["capacity"][t]]
        unexpected = [
            r for r in results if "error" in r and r.get("constraint") not in SEAT_CONSTRAINTS
        ]
        assert unexpected == []
        if refused or overfull:
            shown = True
            break
        close_trips(pg_app, race_setup, trip_ids)
    assert shown, f"no race in {CONTROL_ROUNDS} rounds without the locks"
