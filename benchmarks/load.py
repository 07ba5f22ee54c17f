"""Load test: gunicorn with several workers on PostgreSQL, campaign-sized data, wrk as the client.

    python -m benchmarks.load [--workers 10000 --web-workers 4 --seconds 20 --connections 32]

Builds a scratch PostgreSQL database with the trips benchmark's data (benchmarks/trips_service.py:
approved requests of health-cleared workers, planned, allocated and locked onto coaches), starts
``gunicorn -c config/gunicorn.conf.py 'app:create_app()'`` on a free port, and measures with wrk
(C, Debian's package; installed with apt when missing):

- the worker's trip page, ``GET /my-trip/<signed link>``, rotating over 2,000 workers' links;
- the employer's request page, ``GET /requests/<id>``, signed in (a session cookie);
- the coordinators' allocation under concurrency: N clients at once call
  ``POST /api/v1/trips/<id>/allocate`` on the same trips (each with its own token).

It prints requests per second, p50/p95/p99 latency and the non-2xx answers. Targets (issue #10):
trip page >= 300 requests/s with p99 under 100 ms, no error responses. Not a CI gate.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
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
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from unittest import mock

from sqlalchemy import select

from app.accounts import services as accounts
from app.api import services as api
from app.core import jobs
from app.core.access import Role
from app.core.clock import utcnow
from app.demand.models import TransportRequest
from app.extensions import db
from app.health.cli import create_demo_issuer
from app.health.passes import key_id, public_jwk_from_text
from app.trips import services
from app.trips.models import SeatAssignment, Trip
from benchmarks import trips_service as data
from config import TestingConfig

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load-test-password-2026"  # noqa: S105 - a scratch database's test account

WRK_SCRIPT = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
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


def build_data(app, workers: int, coaches: int, rng: random.Random) -> dict:
    """The trips benchmark's campaign, planned, allocated and locked; ids for the clients."""
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
    with app.app_context():
        seats = db.session.execute(
            select(SeatAssignment.roster_entry_id).order_by(SeatAssignment.id).limit(2000)
        ).scalars()
        links = [f"/my-trip/{services.trip_page_token(entry_id)}" for entry_id in seats]
        first = db.session.get(TransportRequest, request_ids[0])
        accounts.create_user(
            "hr@load.example.cn", PASSWORD, Role.EMPLOYER, "人事", first.organization
        )
        coordinators = [
            accounts.create_user(
                f"c{n}@load.example.cn",
                PASSWORD,
                Role.COORDINATOR,
                f"调度{n}",
                region_code="370100",
            )
            for n in range(8)
        ]
        db.session.commit()
        tokens = [api.create_token(user, "load")[1] for user in coordinators]
        db.session.commit()
        trip_ids = db.session.scalars(select(Trip.id).order_by(Trip.id)).all()
    return {
        "links": links,
        "request_id": request_ids[0],
        "tokens": tokens,
        "trip_ids": trip_ids,
        "employer": "hr@load.example.cn",
    }


def start_gunicorn(database_uri: str, port: int, web_workers: int, log: Path):
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
            "app:create_app()",
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
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--coaches", type=int, default=250)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    rng = random.Random(7)  # noqa: S311 - test data
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fangang-load-")))
        database_uri = stack.enter_context(data.fresh_database(args.postgres_url))
        app = data.build_app(database_uri)
        stack.enter_context(mock.patch.object(jobs, "dispatch", return_value=None))
        print(f"building {args.workers:,} workers on {args.coaches} coaches...", flush=True)
        ids = build_data(app, args.workers, args.coaches, rng)
        with app.app_context():
            db.engine.dispose()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = start_gunicorn(database_uri, port, args.web_workers, folder / "gunicorn.log")
        stack.callback(process.wait, 30)
        stack.callback(process.terminate)
        rows = []
        # Each gunicorn worker's first requests load templates, catalogues and SQL caches:
        # a few seconds of warm-up, not measured.
        run_wrk(wrk, base, ids["links"], 3, args.connections, folder)
        page = run_wrk(wrk, base, ids["links"], args.seconds, args.connections, folder)
        rows.append(("worker trip page", page))
        cookie = sign_in_cookie(base, ids["employer"])
        employer = run_wrk(
            wrk,
            base,
            [f"/requests/{ids['request_id']}"],
            args.seconds,
            args.connections,
            folder,
            cookie,
        )
        rows.append(("employer request page", employer))
        race = allocate_race(base, ids["tokens"], ids["trip_ids"][:4], calls=25)
        rows.append((f"allocate, {len(ids['tokens'])} coordinators at once", race))
    print(
        f"\ngunicorn x{args.web_workers} on PostgreSQL, {args.workers:,} workers seated; "
        f"wrk -t2 -c{args.connections} -d{args.seconds}s\n"
    )
    print(
        f"{'what':<36} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'non-2xx':>8}"
    )
    for name, r in rows:
        print(
            f"{name:<36} {r['requests']:>9,} {r['rps']:>8.0f} {r['p50']:>8.1f} "
            f"{r['p95']:>8.1f} {r['p99']:>8.1f} {r['non2xx']:>8}"
        )
    return 0 if all(r["non2xx"] == 0 for _, r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
