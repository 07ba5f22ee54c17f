"""Benchmark: the campaign dashboard and its exports on a whole province's campaign (issue #8:
"Pages load in well under a second on the campaign-sized data set").

    .venv/bin/python -m benchmarks.campaign --keep-database fangang_campaign   # the data, once
    .venv/bin/python -m benchmarks.reports --database fangang_campaign [--rounds 5]

Works on a scratch copy of the kept database (``CREATE DATABASE ... TEMPLATE``, dropped
afterwards; the kept one stays as it was), vacuumed and analyzed first as autovacuum would
have (this server runs without it). Set-up, not
timed: every trip's costs recorded but one in twenty (hire by mode and size, meals per seat,
tolls waived: zero), and three readers made through the services: an administrator (the whole
province), the coordinator of the destination city with the most seats, and the employer with
the most workers. Each signs in through the login form.

Then, in-process through the test client (what the server spends on a page, without the
network), each reader's ``GET /reports`` (the default range: 30 days back to 30 ahead, which
holds the whole campaign) and each export its role may download, as .xlsx and .csv: one
unmeasured warm-up, then ``--rounds`` times. Printed per page: median and slowest
milliseconds, statements and the median milliseconds spent waiting on PostgreSQL. Exit status
1 when a reader's dashboard takes a second or more (median), 0 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import time
from dataclasses import dataclass

import psycopg
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from app.accounts import services as accounts
from app.accounts.models import Organization
from app.core.access import Role
from app.demand.models import Worker
from app.extensions import db
from app.reports.exports import allowed_tables
from app.trips.models import SeatAssignment, Trip
from benchmarks.load import libpq_dsn, scratch_copy
from benchmarks.trips_service import SqlMeter, print_table
from benchmarks.trips_service import build_app as build_embedded_app

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "bench-password-2026"  # noqa: S105 - throwaway accounts in a scratch database
TARGET_MS = 1000.0  # "well under a second"
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

# Every trip's costs but one in twenty (the report lists trips not costed yet): a coach's hire
# by its seats, a train's fares per seat; meals at 15 yuan a seat; tolls waived (zero).
COSTS = text(
    "INSERT INTO trip_costs (trip_id, hire, meals, tolls, recorded_at)"
    " SELECT trips.id,"
    "  CASE WHEN vehicles.kind = 'train' THEN 286.50 * seats.n ELSE 4200 + 60 * seats.n END,"
    "  15 * seats.n, 0, now()"
    " FROM trips JOIN vehicles ON vehicles.id = trips.vehicle_id"
    " JOIN (SELECT trip_id, count(*) AS n FROM seat_assignments GROUP BY trip_id) AS seats"
    "  ON seats.trip_id = trips.id"
    " WHERE trips.id % 20 <> 0"
    " ON CONFLICT (trip_id) DO NOTHING"
)


@dataclass
class Reader:
    role: str
    email: str
    what: str  # whose figures: "the province", a city, an employer


def make_readers(app: Flask) -> list[Reader]:
    """The three readers, through the services, and the costs (one INSERT ... SELECT)."""
    with app.app_context():
        db.session.execute(COSTS)
        city = db.session.execute(
            select(Trip.destination_region_code, func.count())
            .join(SeatAssignment, SeatAssignment.trip_id == Trip.id)
            .group_by(Trip.destination_region_code)
            .order_by(func.count().desc(), Trip.destination_region_code)
            .limit(1)
        ).one()
        employer_id, workers = db.session.execute(
            select(Worker.organization_id, func.count())
            .group_by(Worker.organization_id)
            .order_by(func.count().desc(), Worker.organization_id)
            .limit(1)
        ).one()
        organization = db.session.get(Organization, employer_id)
        accounts.create_user("admin@reports.example.cn", PASSWORD, Role.ADMIN, "管理员")
        accounts.create_user(
            "city@reports.example.cn",
            PASSWORD,
            Role.COORDINATOR,
            "调度",
            region_code=city.destination_region_code,
        )
        accounts.create_user("hr@reports.example.cn", PASSWORD, Role.EMPLOYER, "人事", organization)
        db.session.commit()
        return [
            Reader(Role.ADMIN.value, "admin@reports.example.cn", "the province"),
            Reader(
                Role.COORDINATOR.value,
                "city@reports.example.cn",
                f"city {city.destination_region_code} ({city.count:,} seats)",
            ),
            Reader(
                Role.EMPLOYER.value,
                "hr@reports.example.cn",
                f"employer {employer_id} ({workers:,} workers)",
            ),
        ]


def vacuum_analyze(database_uri: str) -> float:
    """What autovacuum would have done since the campaign's writes (this server runs without
    it): statistics, and the visibility map that lets counts read an index alone."""
    started = time.perf_counter()
    with psycopg.connect(libpq_dsn(database_uri), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def signed_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = CSRF_FIELD.search(page).group(1)
    answer = client.post("/login", data={"csrf_token": token, "email": email, "password": PASSWORD})
    if answer.status_code != 302:
        raise SystemExit(f"{email} could not sign in ({answer.status_code})")
    return client


def measure(client: FlaskClient, meter: SqlMeter, url: str, rounds: int) -> tuple:
    """(median ms, slowest ms, statements a page, median SQL ms, bytes) over ``rounds``."""
    answer = client.get(url)  # warm-up: caches, the first connection
    if answer.status_code != 200:
        raise SystemExit(f"{url}: {answer.status_code}")
    walls, sql, statements = [], [], 0
    for _ in range(rounds):
        meter.statements, meter.seconds = 0, 0.0
        started = time.perf_counter()
        answer = client.get(url)
        walls.append((time.perf_counter() - started) * 1000)
        sql.append(meter.seconds * 1000)
        statements = meter.statements
        assert answer.status_code == 200, url
    size = len(answer.get_data())
    return statistics.median(walls), max(walls), statements, statistics.median(sql), size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="a campaign's kept database")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    with scratch_copy(args.postgres_url, args.database) as database_uri:
        app = build_embedded_app(database_uri)
        logging.getLogger("fangang.access").setLevel(logging.WARNING)  # a line a request
        readers = make_readers(app)
        print(f"VACUUM ANALYZE: {vacuum_analyze(database_uri):.1f} s", flush=True)
        meter = SqlMeter()
        with app.app_context():
            meter.attach(db.engine)
            counts = {
                table: db.session.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
                for table in ("workers", "trips", "seat_assignments", "notifications")
            }
        print("data: " + ", ".join(f"{n:,} {table}" for table, n in counts.items()))
        rows, missed = [], []
        for reader in readers:
            client = signed_in(app, reader.email)
            with app.app_context():
                user = accounts.find_user_by_email(reader.email)
                tables = allowed_tables(user)
            pages = [("dashboard", "/reports")] + [
                (f"export {name}.{fmt}", f"/reports/export.{fmt}?table={name}")
                for name in tables
                for fmt in ("xlsx", "csv")
            ]
            for label, url in pages:
                median, slowest, statements, sql_ms, size = measure(client, meter, url, args.rounds)
                rows.append(
                    (
                        f"{reader.role}: {reader.what}" if label == "dashboard" else "",
                        label,
                        f"{median:,.0f}",
                        f"{slowest:,.0f}",
                        f"{statements}",
                        f"{sql_ms:,.0f}",
                        f"{size / 1024:,.1f}",
                    )
                )
                if label == "dashboard" and median >= TARGET_MS:
                    missed.append(f"{reader.role}'s dashboard: {median:,.0f} ms")
                print(f"  {reader.role} {label}: {median:,.0f} ms", flush=True)
        print()
        print_table(
            ("reader", "page", "median ms", "slowest ms", "statements", "SQL ms", "KiB"),
            rows,
            (False, False, True, True, True, True, True),
        )
    print()
    if missed:
        print(f"FAIL: {'; '.join(missed)} (target: under {TARGET_MS:,.0f} ms)")
        return 1
    print(f"PASS: every reader's dashboard under {TARGET_MS:,.0f} ms (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
