"""Load test: gunicorn with several workers on PostgreSQL, campaign-sized data, wrk as the client.

    python -m benchmarks.load [--workers 10000 --web-workers 4 --seconds 20 --connections 32]
    python -m benchmarks.load --database fangang_campaign     # a campaign's kept database

By default it builds a scratch PostgreSQL database with the trips benchmark's data
(benchmarks/trips_service.py: approved requests of health-cleared workers, planned, allocated
and locked onto coaches). With ``--database NAME`` it uses an existing database instead, such
as the one ``python -m benchmarks.campaign --keep-database NAME`` leaves (its PII keys are
TestingConfig's, as here): it works on a scratch copy (``CREATE DATABASE ... TEMPLATE NAME``,
dropped afterwards, even on error), where it makes, through the app's services, the accounts
the clients need. Either way the scratch database is then analyzed (as autovacuum would; this
server runs without it) unless ``--no-analyze``.

It starts ``gunicorn -c config/gunicorn.conf.py 'app:create_app()'`` on a free port and measures
with wrk (C, Debian's package; installed with apt when missing):

- the worker's trip page, ``GET /my-trip/<signed link>``, rotating over 2,000 seated workers'
  links picked at random;
- the worker's lookup, ``POST /trip`` (booking code + last four digits of the mobile, with the
  form's CSRF token), rotating over 2,000 other seated workers: each matches, a 302 to the
  trip page. Misses are rate limited per address (shipped: 10 a minute) and per code, matches
  are not; ``--lookup-limit`` raises both limits in the benchmark's gunicorn only;
- the employer's request page, ``GET /requests/<id>``, signed in (a session cookie): the
  request with the most workers;
- the coordinators' allocation under concurrency: N clients at once call
  ``POST /api/v1/trips/<id>/allocate`` on the same trips (each with its own token).

It prints requests per second, p50/p95/p99 latency and the error answers (4xx/5xx). Targets
(issue #10): trip page >= 300 requests/s with p99 under 100 ms, no error responses. Not a CI gate.
"""

from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from unittest import mock

import psycopg
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.accounts import services as accounts
from app.api import services as api
from app.core import jobs
from app.core.access import Role
from app.core.clock import utcnow
from app.demand.models import RosterEntry, TransportRequest, Worker
from app.extensions import db
from app.health.cli import create_demo_issuer
from app.health.passes import key_id, public_jwk_from_text
from app.trips import services
from app.trips.models import SeatAssignment, Trip, TripStatus
from benchmarks import trips_service as data
from benchmarks.campaign import libpq_dsn
from config import TestingConfig, normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load-test-password-2026"  # noqa: S105 - a scratch database's test account

WRK_SCRIPT = """
-- One request a line: a path to GET, or a path, a tab and a form body to POST.
local items = {}
for line in io.lines("%(paths)s") do
  local path, body = line:match("^([^\\t]*)\\t(.*)$")
  items[#items + 1] = path and {path, body} or {line}
end
local n = 0
local form_headers = nil
request = function()
  n = n + 1
  local item = items[(n %% #items) + 1]
  if item[2] == nil then
    return wrk.format("GET", item[1])
  end
  if form_headers == nil then  -- wrk.format replaces wrk.headers (-H) when given headers
    form_headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
    for name, value in pairs(wrk.headers) do form_headers[name] = value end
  end
  return wrk.format("POST", item[1], form_headers, item[2])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\\"requests\\": %%d, \\"seconds\\": %%f, \\"non2xx\\": %%d, "
    .. "\\"errors\\": %%d, \\"p50\\": %%f, \\"p95\\": %%f, \\"p99\\": %%f}\\n",
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""
LINKS = 2000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    apt = ["apt-get", "install", "-y", "-q", "wrk"]
    subprocess.run(apt, check=True, capture_output=True)  # noqa: S603 - fixed command
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def build_data(app, workers: int, coaches: int, rng: random.Random) -> None:
    """The trips benchmark's campaign, planned, allocated and locked."""
    bench = data.Bench(app, data.SqlMeter(), None)
    departs = (utcnow() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory() as folder, app.app_context():
        db.create_all()
        coordinator = accounts.create_user(
            "dispatch@load.example.cn", PASSWORD, Role.COORDINATOR, "调度", region_code="370100"
        )
        bench.coordinator_id = coordinator.id
        today = services.local_date(utcnow())
        create_demo_issuer(
            "云阳县卫健委", "500235", Path(folder) / "k.pem", today - timedelta(days=7), None
        )
        db.session.commit()
        pem = (Path(folder) / "k.pem").read_text()
        issuer = data.Issuer(pem, key_id(public_jwk_from_text(pem)), "500235")
        employers = data.campaign_employers(rng, workers)
        request_ids = data.populate(bench, employers, data.People(rng), issuer, departs, "load")
    data.campaign_case(bench, request_ids, workers, coaches, departs)


@contextmanager
def scratch_copy(postgres_url: str, template: str) -> Iterator[str]:
    """A scratch copy of database ``template`` (which stays as it was), dropped afterwards."""
    server = make_url(normalize_database_url(postgres_url))
    name = f"fangang_load_{uuid.uuid4().hex[:10]}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
    with psycopg.connect(libpq_dsn(postgres_url), autocommit=True, connect_timeout=5) as admin:
        admin.execute(create.format(sql.Identifier(name), sql.Identifier(template)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_dsn(postgres_url), autocommit=True, connect_timeout=5) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def analyze(database_uri: str) -> float:
    """ANALYZE every table, as autovacuum would after the bulk writes (this server runs with
    ``autovacuum = off``: without statistics the planner hash-joins whole tables)."""
    started = time.perf_counter()
    with psycopg.connect(libpq_dsn(database_uri), autocommit=True) as connection:
        connection.execute("ANALYZE")
    return time.perf_counter() - started


def make_clients(app, rng: random.Random) -> dict:
    """What the clients need, made through the services in the scratch database: trip-page
    links and lookups of seated workers picked at random, the employer account of the
    request with the most workers, eight coordinators of the region of the trips they
    allocate, with API tokens."""
    not_cancelled = Trip.status != TripStatus.CANCELLED
    with app.app_context():
        seated = db.session.scalars(
            select(SeatAssignment.roster_entry_id).join(Trip).where(not_cancelled).distinct()
        ).all()
        picked = rng.sample(sorted(seated), min(2 * LINKS, len(seated)))
        half = len(picked) // 2
        links = [f"/my-trip/{services.trip_page_token(entry_id)}" for entry_id in picked[:half]]
        lookups = db.session.execute(
            select(RosterEntry.booking_code, Worker.phone_last4)
            .join(Worker, RosterEntry.worker_id == Worker.id)
            .where(RosterEntry.id.in_(picked[half:]))
        ).all()
        request_id, request_size = db.session.execute(
            select(RosterEntry.request_id, func.count())
            .group_by(RosterEntry.request_id)
            .order_by(func.count().desc(), RosterEntry.request_id)
            .limit(1)
        ).one()
        request = db.session.get(TransportRequest, request_id)
        accounts.create_user(
            "hr@load.example.cn", PASSWORD, Role.EMPLOYER, "人事", request.organization
        )
        region = db.session.scalars(
            select(Trip.destination_region_code).where(not_cancelled).order_by(Trip.id).limit(1)
        ).one()
        trip_ids = db.session.scalars(
            select(Trip.id)
            .where(not_cancelled, Trip.destination_region_code == region)
            .order_by(Trip.id)
            .limit(4)
        ).all()
        coordinators = [
            accounts.create_user(
                f"c{n}@load.example.cn",
                PASSWORD,
                Role.COORDINATOR,
                f"调度{n}",
                region_code=region,
            )
            for n in range(8)
        ]
        db.session.commit()
        tokens = [api.create_token(user, "load")[1] for user in coordinators]
        db.session.commit()
        counts = {
            "workers": db.session.scalar(select(func.count()).select_from(Worker)),
            "seated": len(seated),
            "trips": db.session.scalar(select(func.count()).select_from(Trip).where(not_cancelled)),
        }
    return {
        "links": links,
        "lookups": [(services.shown_booking_code(code), last4) for code, last4 in lookups],
        "request_id": request_id,
        "request_size": request_size,
        "tokens": tokens,
        "trip_ids": trip_ids,
        "region": region,
        "employer": "hr@load.example.cn",
        **counts,
    }


def app_factory(lookup_limit: str | None) -> str:
    """gunicorn's app: the shipped one, or with the lookup's rate limits raised (gunicorn
    calls the factory with literal arguments)."""
    if not lookup_limit:
        return "app:create_app()"
    overrides = {
        "TRIP_LOOKUP_RATE_LIMIT_PER_IP": lookup_limit,
        "TRIP_LOOKUP_RATE_LIMIT_PER_CODE": lookup_limit,
    }
    return f"app:create_app({overrides!r})"


def start_gunicorn(
    database_uri: str, port: int, web_workers: int, log: Path, factory: str = "app:create_app()"
):
    env = {
        **os.environ,
        "FANGANG_ENV": "development",  # plain HTTP here: production cookies are Secure-only
        "DATABASE_URL": database_uri,
        "SECRET_KEY": "bench-secret",
        "PII_KEYS": TestingConfig.PII_KEYS,
        "PII_HASH_KEY": TestingConfig.PII_HASH_KEY,
        "REDIS_URL": "",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(web_workers),
        "FANGANG_INSTANCE_PATH": str(log.parent),
    }
    process = subprocess.Popen(  # noqa: S603 - our own command line
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "config" / "gunicorn.conf.py"),
            factory,
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    sys.exit(f"gunicorn did not start:\n{log.read_text()[-2000:]}")


def sign_in_cookie(base: str, email: str) -> str:
    """A real sign-in through the form: the session cookie to send."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login").read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "email": email, "password": PASSWORD})
    opener.open(f"{base}/login", body.encode())
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def lookup_form(base: str) -> tuple[str, str]:
    """The lookup form as a worker's phone gets it: its session cookie and CSRF token."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/trip").read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    return "; ".join(f"{c.name}={c.value}" for c in jar), token


def lookup_bodies(lookups: list[tuple[str, str]], csrf_token: str) -> list[str]:
    return [
        urllib.parse.urlencode(
            {"csrf_token": csrf_token, "booking_code": code, "phone_last4": last4}
        )
        for code, last4 in lookups
    ]


def check_lookups(port: int, cookie: str, bodies: list[str]) -> None:
    """A few lookups by hand first: each must find its trip (a 302 to the trip page), or the
    load run would measure the "no match" page."""
    for body in bodies[:20]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(
            "POST",
            "/trip",
            body,
            {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = connection.getresponse()
        answer.read()
        connection.close()
        if answer.status != 302 or "/my-trip/" not in (answer.getheader("Location") or ""):
            sys.exit(f"lookup did not find its trip: {answer.status} for {body}")


def _proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of a process (and of its reaped children), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Where the machine's CPU goes during a run: the benchmark's gunicorn (master, workers,
    and the workers it replaced, reaped into the master's counts), the PostgreSQL backends
    of the scratch database (sampled every 0.2 s: a backend's last count is kept when it
    exits with its gunicorn worker), and wrk (this process's reaped children)."""

    def __init__(self, gunicorn_pid: int, database_uri: str, log: Path) -> None:
        self.gunicorn_pid = gunicorn_pid
        self.dsn = libpq_dsn(database_uri)
        self.database = make_url(database_uri).database
        self.log = log

    def _gunicorn(self) -> float:
        total = _proc_cpu(self.gunicorn_pid, children=True)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.gunicorn_pid:
                total += _proc_cpu(int(stat.parent.name))
        return total

    def _boots(self) -> int:
        return self.log.read_text(errors="replace").count("Booting worker")

    @contextmanager
    def measure(self, result: dict) -> Iterator[None]:
        seen: dict[int, tuple[float, float]] = {}  # backend pid: (first, last) CPU seconds
        stop = threading.Event()
        query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"

        def sample(connection, starting: bool = False) -> None:
            for (pid,) in connection.execute(query, (self.database,)).fetchall():
                cpu = _proc_cpu(pid)
                # A backend that appears during the run counts from 0 (a new worker's).
                first = seen[pid][0] if pid in seen else (cpu if starting else 0.0)
                seen[pid] = (first, max(cpu, seen.get(pid, (0.0, 0.0))[1]))

        def sampler() -> None:
            with psycopg.connect(self.dsn, autocommit=True) as connection:
                while not stop.wait(0.2):
                    sample(connection)

        with psycopg.connect(self.dsn, autocommit=True) as connection:
            sample(connection, starting=True)
        started = (self._gunicorn(), resource.getrusage(resource.RUSAGE_CHILDREN), self._boots())
        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with psycopg.connect(self.dsn, autocommit=True) as connection:
                sample(connection)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            before = started[1]
            result["cpu"] = {
                "gunicorn": self._gunicorn() - started[0],
                "postgres": sum(last - first for first, last in seen.values()),
                "wrk": children.ru_utime + children.ru_stime - before.ru_utime - before.ru_stime,
            }
            result["boots"] = self._boots() - started[2]


def run_wrk(
    wrk: str,
    base: str,
    paths: list[str],
    seconds: int,
    connections: int,
    folder: Path,
    cookie: str | None = None,
) -> dict:
    listing = folder / f"paths-{len(paths)}.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = folder / "rotate.lua"
    script.write_text(WRK_SCRIPT % {"paths": listing})
    command = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base]
    if cookie:
        command[1:1] = ["-H", f"Cookie: {cookie}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    result = json.loads(output.split("JSON", 1)[1].splitlines()[0])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def allocate_race(base: str, tokens: list[str], trip_ids: list[int], calls: int) -> dict:
    """Coordinators at once, each allocating on the same trips (already full: the work is
    the locking, the re-reading and the answer)."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(token: str) -> None:
        for n in range(calls):
            trip_id = trip_ids[n % len(trip_ids)]
            request = urllib.request.Request(  # noqa: S310 - our own http:// server
                f"{base}/api/v1/trips/{trip_id}/allocate",
                method="POST",
                headers={"Authorization": f"Bearer {token}"},
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                    status = answer.status
            except urllib.error.HTTPError as error:
                status = error.code
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)
                statuses.append(status)

    threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / seconds,
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "non2xx": sum(1 for s in statuses if not 200 <= s < 300),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--database",
        metavar="NAME",
        help="use (a scratch copy of) this existing database, e.g. a campaign's "
        "--keep-database, instead of building one",
    )
    parser.add_argument("--workers", type=int, default=10_000, help="built data (no --database)")
    parser.add_argument("--coaches", type=int, default=250, help="built data (no --database)")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--no-analyze", action="store_true", help="leave the scratch database unanalyzed"
    )
    parser.add_argument(
        "--lookup-limit",
        metavar="LIMIT",
        help="raise the lookup's rate limits (per address and per code) to this, e.g. \"100000 "
        "per minute\", in the benchmark's gunicorn only",
    )
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    rng = random.Random(7)  # noqa: S311 - test data
    notes = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fangang-load-")))
        stack.enter_context(mock.patch.object(jobs, "dispatch", return_value=None))
        if args.database:
            database_uri = stack.enter_context(scratch_copy(args.postgres_url, args.database))
            app = data.build_app(database_uri)
            source = f"{args.database} (a scratch copy)"
        else:
            database_uri = stack.enter_context(data.fresh_database(args.postgres_url))
            app = data.build_app(database_uri)
            print(f"building {args.workers:,} workers on {args.coaches} coaches...", flush=True)
            build_data(app, args.workers, args.coaches, rng)
            source = "built by the trips benchmark"
        ids = make_clients(app, rng)
        with app.app_context():
            db.engine.dispose()
        if not args.no_analyze:
            notes.append(f"tables analyzed first ({analyze(database_uri):.1f} s)")
        else:
            notes.append("tables not analyzed")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        factory = app_factory(args.lookup_limit)
        if args.lookup_limit:
            notes.append(f"lookup rate limits raised to {args.lookup_limit!r} in this gunicorn")
        process = start_gunicorn(
            database_uri, port, args.web_workers, folder / "gunicorn.log", factory
        )
        stack.callback(process.wait, 30)
        stack.callback(process.terminate)
        meter = CpuMeter(process.pid, database_uri, folder / "gunicorn.log")

        def measured(run: Callable[[], dict]) -> dict:
            cpu: dict = {}
            with meter.measure(cpu):
                result = run()
            return result | cpu

        def wrk_run(paths: list[str], cookie: str | None = None) -> dict:
            return measured(
                lambda: run_wrk(wrk, base, paths, args.seconds, args.connections, folder, cookie)
            )

        load = os.getloadavg()
        print(f"machine load before measuring: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        rows = []
        # Each gunicorn worker's first requests load templates, catalogues and SQL caches:
        # a few seconds of warm-up, not measured.
        run_wrk(wrk, base, ids["links"], 3, args.connections, folder)
        rows.append(("worker trip page", wrk_run(ids["links"])))
        cookie, csrf_token = lookup_form(base)
        bodies = lookup_bodies(ids["lookups"], csrf_token)
        check_lookups(port, cookie, bodies)
        lookup_paths = [f"/trip\t{body}" for body in bodies]
        rows.append(("worker lookup (POST /trip, 302)", wrk_run(lookup_paths, cookie)))
        cookie = sign_in_cookie(base, ids["employer"])
        employer = wrk_run([f"/requests/{ids['request_id']}"], cookie)
        rows.append((f"employer request page ({ids['request_size']:,})", employer))
        race = measured(lambda: allocate_race(base, ids["tokens"], ids["trip_ids"], calls=25))
        rows.append((f"allocate, {len(ids['tokens'])} coordinators at once", race))
        load = os.getloadavg()
    print(
        f"\ngunicorn x{args.web_workers} on PostgreSQL, {source}: {ids['workers']:,} workers, "
        f"{ids['seated']:,} seated, {ids['trips']:,} trips; wrk -t2 -c{args.connections} "
        f"-d{args.seconds}s; {'; '.join(notes)}; machine load after: {load[0]:.2f}\n"
    )
    print(
        f"{'what':<40} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'4xx/5xx':>8}"
    )
    for name, r in rows:
        print(
            f"{name:<40} {r['requests']:>9,} {r['rps']:>8.0f} {r['p50']:>8.1f} "
            f"{r['p95']:>8.1f} {r['p99']:>8.1f} {r['non2xx']:>8}"
        )
    print(
        f"\n{'CPU ms a request':<40} {'gunicorn':>9} {'Postgres':>8} {'wrk':>8} {'total':>8} "
        f"{'workers booted':>15}"
    )
    for name, r in rows:
        cpu = {part: seconds * 1000 / r["requests"] for part, seconds in r["cpu"].items()}
        print(
            f"{name:<40} {cpu['gunicorn']:>9.2f} {cpu['postgres']:>8.2f} {cpu['wrk']:>8.2f} "
            f"{sum(cpu.values()):>8.2f} {r['boots']:>15}"
        )
    return 0 if all(r["non2xx"] == 0 for _, r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
