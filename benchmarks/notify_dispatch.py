"""Benchmark: 50,000 SMS notifications dispatched through Celery + Redis to the fake gateway.

    .venv/bin/python -m benchmarks.notify_dispatch [--messages 50000] [--workers 2]
        [--concurrency 2] [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
        [--redis-url redis://127.0.0.1:6379/13] [--timeout 600] [--profile-batches 20]

The issue's target: "Dispatch of 50,000 SMS notifications through Celery + Redis to the fake
gateway on this machine: messages per second end to end. Target at least 1,000 per second;
report where the time goes."

Set-up (none of it timed): a fresh PostgreSQL database ``fangang_bench_<random>`` (schema by
``db.create_all()``), the Redis database of ``--redis-url`` flushed, the fake SMS gateway as its
own process (``flask --app app notify fake-sms-gateway --port <free port>``) and ``--workers``
Celery worker processes (``celery -A workers worker --pool prefork --concurrency C``), each
started with DATABASE_URL, REDIS_URL, SMS_GATEWAY_URL, the PII keys of ``config.TestingConfig``
and a temporary FANGANG_INSTANCE_PATH, and waited for until its log says "ready".

Then:

1. N pending SMS rows are built exactly as ``services.notify`` would write them (idempotency key
   ``event|sms|<lookup hash>``, recipient encrypted with ``app.core.pii.vault()``, template
   ``seat_given`` with a realistic context, locale zh_CN, ``send_at`` now; one row is checked
   against a real ``notify()`` call) and written in bulk with one ``insert()``; building and
   writing are timed separately.
2. The clock starts, the ``fangang.notify.relay`` task is sent, and
   ``SELECT count(*) ... WHERE status = 'sent'`` is polled every 0.25 s until all N are sent
   (or ``--timeout``); the clock stops. CPU time of every process involved is read from /proc
   before and after.
3. Checks: the gateway holds exactly N messages with N distinct idempotency keys, the same keys
   as the table; no row is failed, dead, pending or sending.
4. Where the time goes: the relay's and every send_batch's duration from the worker logs; the
   workers are stopped; ``services.deliver`` of 100 rows (reset to 'sending', gateway emptied)
   in this process, timed by phase over ``--profile-batches`` batches and once under cProfile;
   ``relay_due`` (workers/notify.py) alone in this process on a fresh copy of the table
   (truncated, the same rows inserted again), its claims and its Redis publishes timed apart.

Everything started is stopped and the database dropped at the end, even on error.

Exit status: 0 when the end-to-end rate meets 1,000 messages/s, 1 when it does not, 2 when the
messages were not all delivered exactly once.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from pathlib import Path
from unittest import mock

import httpx
import psycopg
import redis
from flask import Flask
from psycopg import sql
from sqlalchemy import insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app import create_app
from app.core.clock import utcnow
from app.core.pii import PiiVault, vault
from app.extensions import db
from app.notify import services
from app.notify.channels import SmsGateway
from app.notify.models import Channel, Notification, NotificationStatus
from config import TestingConfig, normalize_database_url
from workers import notify as notify_tasks
from workers.notify import relay_due

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE = 1_000  # messages a second, end to end
DEFAULT_MESSAGES = 50_000
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
POLL_SECONDS = 0.25
PROGRESS_EVERY = 5.0
START_TIMEOUT = 60.0
PII_KEYS = {"PII_KEYS": TestingConfig.PII_KEYS, "PII_HASH_KEY": TestingConfig.PII_HASH_KEY}
TEMPLATE = "seat_given"
# relay_due hands out at most this many messages per call (max_batches x BATCH_SIZE).
PER_RELAY = 1000 * services.BATCH_SIZE
STALL_SECONDS = 60.0  # no row sent for this long: the run is stuck, stop waiting


class BenchmarkFailure(AssertionError):
    pass


# --- realistic messages ----------------------------------------------------------------------

# Where coaches leave from (county bus stations of labour-exporting counties) and their plates.
MEETING_POINTS = (
    ("云阳汽车站东门", "渝F"),
    ("奉节汽车站广场", "渝F"),
    ("万州江南客运站", "渝F"),
    ("开州汽车站", "渝F"),
    ("巫山客运中心", "渝F"),
    ("广安汽车站北广场", "川X"),
    ("岳池县客运站", "川X"),
    ("南部县汽车站", "川R"),
    ("仪陇县新政客运站", "川R"),
    ("平昌县汽车站", "川Y"),
    ("固始县汽车站", "豫S"),
    ("临泉汽车站", "皖K"),
)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁冉向谭"
GIVEN = "伟强军勇磊涛斌超明刚平辉鹏华飞波林峰建国文海俊杰兵成芳娟敏静丽艳霞燕玲梅琴英兰萍红秀"
MOBILE_PREFIXES = [f"13{d}" for d in range(10)] + [f"15{d}" for d in "0123789"] + ["182", "187"]
SHORT_CODE = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
SEATS_PER_COACH = 45


def generate_messages(count: int, seed: int = 2027) -> list[tuple[str, str, dict]]:
    """(event, E.164 mobile, context) for ``count`` seat messages: coaches of 45 seats."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    phones: set[str] = set()
    messages = []
    trip = 0
    while len(messages) < count:
        trip += 1
        place, plate = rng.choice(MEETING_POINTS)
        day = rng.randint(14, 28)
        trip_context = {
            "date": f"2月{day}日",
            "time": f"{rng.choice((5, 6, 7, 8))}:{rng.choice(('00', '30'))}".zfill(5),
            "meeting_point": place,
            "vehicle": f"{plate}·{rng.randrange(10000, 99999)}",
            "driver_phone": rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}",
        }
        for seat in range(1, min(SEATS_PER_COACH, count - len(messages)) + 1):
            phone = "+86" + rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
            while phone in phones:
                phone = "+86" + rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
            phones.add(phone)
            worker = 100_000 + len(messages)
            name = rng.choice(SURNAMES) + "".join(
                rng.choice(GIVEN) for _ in range(1 if rng.random() < 0.3 else 2)
            )
            code = "".join(rng.choice(SHORT_CODE) for _ in range(5))
            context = {
                "name": name,
                **trip_context,
                "seat": str(seat),
                "url": f"https://fgzt.cn/t/{code}",
            }
            messages.append((f"seat.given:{trip}:{worker}", phone, context))
    return messages


def notification_row(pii: PiiVault, locale: str, event: str, to: str, context: dict) -> dict:
    """The row ``services.notify(event, Channel.SMS, TEMPLATE, context, to=to)`` writes."""
    now = utcnow()
    recipient = pii.lookup_hash(to)[:24]
    return {
        "idempotency_key": f"{event}|{Channel.SMS}|{recipient}",
        "event": event,
        "channel": Channel.SMS.value,
        "recipient_token": pii.encrypt(to),
        "user_id": None,
        "template": TEMPLATE,
        "locale": locale,
        "context": context,
        "send_at": now,
        "status": NotificationStatus.PENDING.value,
        "attempts": 0,
        "created_at": now,
    }


def check_row_matches_notify(row: dict, event: str, to: str, context: dict) -> None:
    """One real notify() call, rolled back: the bulk rows must be what it writes."""
    real = services.notify(event, Channel.SMS, TEMPLATE, context, to=to)
    db.session.flush()
    pii = vault()
    different = [
        name
        for name in ("idempotency_key", "event", "channel", "user_id", "template", "locale")
        if getattr(real, name) != row[name]
    ]
    if real.context != row["context"]:
        different.append("context")
    if (real.status, real.attempts) != (row["status"], row["attempts"]):
        different.append("status/attempts")
    if pii.decrypt(real.recipient_token) != pii.decrypt(row["recipient_token"]):
        different.append("recipient_token")
    db.session.rollback()
    if different:
        raise BenchmarkFailure(f"bulk rows differ from what notify() writes in {different}")


# --- infrastructure ------------------------------------------------------------------------


@contextmanager
def fresh_database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(URL, name) of a new database, dropped at the end even on error."""
    server = make_url(normalize_database_url(postgres_url))
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"fangang_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False), name
    finally:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Child:
    """A child process started by this benchmark, its output in a log file."""

    name: str
    process: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 30, width: int = 240) -> str:
        return "\n".join(line[:width] for line in self.text().splitlines()[-lines:])

    def wait_for(self, marker: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkFailure(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (a Celery worker's warm shutdown), then SIGKILL to its own process group."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # its own group: see start()
            self.process.wait(timeout=10)


def start(name: str, command: list[str], env: dict[str, str], log: Path) -> Child:
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            command,
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own (a worker and its pool processes)
        )
    return Child(name, process, log)


def build_app(database_url: str, redis_url: str, gateway_url: str) -> Flask:
    """As tests/conftest.py's make_app, but with Redis (tasks go to the workers)."""
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench-secret",
            **PII_KEYS,
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
            "REDIS_URL": redis_url,
            "RATELIMIT_STORAGE_URI": "memory://",
            "SMS_GATEWAY_URL": gateway_url,
        }
    )


# --- CPU accounting from /proc ------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessCpu:
    ppid: int
    seconds: float
    cmdline: str


def processes() -> dict[int, ProcessCpu]:
    """Every process's parent and CPU seconds (user + system) so far."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        found[int(entry.name)] = ProcessCpu(int(fields[1]), seconds, cmdline.strip())
    return found


def system_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLOCK_TICKS, idle / CLOCK_TICKS


def descendants(table: dict[int, ProcessCpu], roots: set[int]) -> set[int]:
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid, p in table.items() if p.ppid in frontier} - found
        found |= frontier
    return found


@dataclass
class CpuSnapshot:
    table: dict[int, ProcessCpu]
    busy: float
    idle: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        busy, idle = system_cpu()
        return cls(processes(), busy, idle)


def cpu_by_group(
    before: CpuSnapshot, after: CpuSnapshot, groups: dict[str, Callable[[int, ProcessCpu], bool]]
) -> tuple[dict[str, float], float, float]:
    """CPU seconds each group used between the snapshots (a process started meanwhile counts
    in full), the whole machine's busy seconds and its idle seconds."""
    used = dict.fromkeys(groups, 0.0)
    for pid, process in after.table.items():
        earlier = before.table.get(pid)
        spent = process.seconds - (earlier.seconds if earlier else 0.0)
        for name, belongs in groups.items():
            if belongs(pid, process):
                used[name] += spent
                break
    return used, after.busy - before.busy, after.idle - before.idle


# --- worker logs ---------------------------------------------------------------------------

SUCCEEDED = re.compile(r"Task (fangang\.[\w.]+)\[[^\]]+\] succeeded in ([0-9.]+)s")
PROBLEM = re.compile(r"Task fangang\.[\w.]+\[[^\]]+\] (raised|retry)")


@dataclass
class TaskTimes:
    relay: list[float] = field(default_factory=list)
    send_batch: list[float] = field(default_factory=list)
    problems: int = 0


def task_times(logs: list[str]) -> TaskTimes:
    times = TaskTimes()
    for log in logs:
        for task, seconds in SUCCEEDED.findall(log):
            if task == services.RELAY_TASK:
                times.relay.append(float(seconds))
            elif task == services.SEND_TASK:
                times.send_batch.append(float(seconds))
        times.problems += len(PROBLEM.findall(log))
    return times


# --- timing phases in this process ----------------------------------------------------------


class PhaseClock:
    """Exclusive seconds per phase: a nested phase's time is taken out of its parent's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
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
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - frame[2]
            if self._open:
                self._open[-1][2] += elapsed

    def timed(self, name: str, function: Callable) -> Callable:
        @wraps(function)
        def wrapper(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)

        return wrapper


DELIVER_PHASES = (
    ("select", "load the 100 rows (SELECT ... IN, ORM objects)"),
    ("render", "render: Jinja template + Babel (zh_CN)"),
    ("decrypt", "decrypt recipients (AES-GCM)"),
    ("client", "channel_for: new SmsGateway + httpx.Client"),
    ("post", "POST the batch to the gateway, read the answer"),
    ("close", "close the httpx.Client"),
    ("flush", "flush: UPDATE 100 rows"),
    ("commit", "commit"),
    ("other", "other (ORM attributes, loops, bookkeeping)"),
)


def deliver_patches(clock: PhaseClock) -> list:
    return [
        mock.patch.object(Session, "scalars", clock.timed("select", Session.scalars)),
        mock.patch.object(services, "render", clock.timed("render", services.render)),
        mock.patch.object(PiiVault, "decrypt", clock.timed("decrypt", PiiVault.decrypt)),
        mock.patch.object(SmsGateway, "__init__", clock.timed("client", SmsGateway.__init__)),
        mock.patch.object(SmsGateway, "send", clock.timed("post", SmsGateway.send)),
        mock.patch.object(SmsGateway, "close", clock.timed("close", SmsGateway.close)),
        mock.patch.object(Session, "flush", clock.timed("flush", Session.flush)),
        mock.patch.object(Session, "commit", clock.timed("commit", Session.commit)),
    ]


def reset_to_sending(ids: list[int]) -> None:
    db.session.execute(
        update(Notification)
        .where(Notification.id.in_(ids))
        .values(
            status=NotificationStatus.SENDING.value,
            claimed_at=utcnow(),
            sent_at=None,
            provider_id=None,
            attempts=0,
        )
    )
    db.session.commit()


def deliver_one(ids: list[int]) -> dict[str, int]:
    """What the send_batch task does (its app context is the caller's)."""
    counts = services.deliver(ids)
    db.session.commit()
    if counts["sent"] != len(ids):
        raise BenchmarkFailure(f"in-process deliver of {len(ids)} rows: {counts}")
    return counts


@dataclass
class DeliverProfile:
    batches: int
    seconds: float  # all batches
    phases: dict[str, float]  # seconds, all batches
    stats: pstats.Stats


def profile_deliver(ids: list[int], batches: int, gateway_url: str) -> DeliverProfile:
    """``batches`` batches timed by phase, then one more under cProfile; each batch's rows are
    reset to 'sending' first (not timed) and the gateway emptied, so it accepts them afresh."""
    size = services.BATCH_SIZE
    chunks = [ids[n * size : (n + 1) * size] for n in range(batches + 2)]
    httpx.delete(f"{gateway_url}/v1/sms/messages").raise_for_status()
    reset_to_sending(chunks[0])
    deliver_one(chunks[0])  # warm-up: template compiled, catalogue loaded, imports done
    clock = PhaseClock()
    for chunk in chunks[1 : batches + 1]:
        reset_to_sending(chunk)
        with ExitStack() as patches:
            for patch in deliver_patches(clock):
                patches.enter_context(patch)
            with clock.phase("other"):
                deliver_one(chunk)
    profiler = cProfile.Profile()
    reset_to_sending(chunks[-1])
    profiler.enable()
    deliver_one(chunks[-1])
    profiler.disable()
    phases = dict(clock.seconds)
    return DeliverProfile(batches, sum(phases.values()), phases, pstats.Stats(profiler))


@dataclass
class RelayAlone:
    seconds: float
    handed: int
    phases: dict[str, float]
    claims: list[float]  # seconds of each claim_due call that claimed something, in order


def relay_alone(rows: list[dict], redis_url: str, analyze: bool) -> RelayAlone:
    """relay_due in this process on a fresh copy of the table (truncated, the same rows
    inserted again), the workers stopped: claims and Redis publishes timed apart."""
    db.session.execute(text("TRUNCATE notifications RESTART IDENTITY"))
    db.session.execute(insert(Notification), rows)
    db.session.commit()
    if analyze:
        analyze_table()
    clock = PhaseClock()
    claims: list[float] = []
    claim = clock.timed("claim", services.claim_due)

    def timed_claim(*args, **kwargs):
        started = time.perf_counter()
        ids = claim(*args, **kwargs)
        if ids:
            claims.append(time.perf_counter() - started)
        return ids

    patches = [
        mock.patch.object(
            services, "recover_stale", clock.timed("recover", services.recover_stale)
        ),
        mock.patch.object(services, "claim_due", timed_claim),
        mock.patch.object(notify_tasks, "dispatch", clock.timed("publish", notify_tasks.dispatch)),
        mock.patch.object(Session, "commit", clock.timed("commit", Session.commit)),
    ]
    with ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        with clock.phase("other"):
            handed = relay_due(utcnow())
    redis.Redis.from_url(redis_url).flushdb()  # nobody is there to take those tasks
    return RelayAlone(sum(clock.seconds.values()), handed, dict(clock.seconds), claims)


def analyze_table() -> None:
    """What autovacuum's auto-analyze does some time after a bulk write."""
    db.session.commit()
    with db.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("ANALYZE notifications")
        )


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Run:
    messages: int
    workers: int
    concurrency: int
    build_seconds: float = 0.0
    insert_seconds: float = 0.0
    total_seconds: float = 0.0
    first_seen: float | None = None  # first poll that saw a 'sent' row
    gateway_first: float | None = None  # first message received by the gateway
    gateway_last: float | None = None
    gateway_p10: float | None = None
    gateway_p90: float | None = None
    gateway_requests: int = 0
    sent: int = 0
    timed_out: bool = False
    statuses: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_busy: float = 0.0
    cpu_idle: float = 0.0
    tasks: TaskTimes = field(default_factory=TaskTimes)
    deliver: DeliverProfile | None = None
    relay: RelayAlone | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.total_seconds if self.total_seconds else 0.0


def status_counts(connection: psycopg.Connection) -> dict[str, int]:
    rows = connection.execute("SELECT status, count(*) FROM notifications GROUP BY status")
    return dict(rows.fetchall())


def wait_until_sent(
    connection: psycopg.Connection, run: Run, started: float, timeout: float, workers: list[Child]
) -> float:
    """Seconds until every row is 'sent' (or the timeout, or a worker died)."""
    next_report = PROGRESS_EVERY
    last_sent, last_change = 0, 0.0
    while True:
        time.sleep(POLL_SECONDS)
        (sent,) = connection.execute(
            "SELECT count(*) FROM notifications WHERE status = 'sent'"
        ).fetchone()
        elapsed = time.perf_counter() - started
        if sent and run.first_seen is None:
            run.first_seen = elapsed
        run.sent = sent
        if sent >= run.messages:
            return elapsed
        if sent != last_sent:
            last_sent, last_change = sent, elapsed
        if elapsed >= next_report:
            print(f"  {elapsed:6.1f} s: {sent:>7,} sent ({sent / elapsed:,.0f}/s)", flush=True)
            next_report += PROGRESS_EVERY
        dead = [w.name for w in workers if w.process.poll() is not None]
        stalled = elapsed - last_change > STALL_SECONDS
        if elapsed > timeout or dead or stalled:
            run.timed_out = True
            if dead:
                run.failures.append(f"{', '.join(dead)} exited during the run")
            if stalled:
                run.failures.append(f"no message sent for {STALL_SECONDS:.0f} s: stuck")
            return elapsed


def measure(args: argparse.Namespace) -> Run:
    run = Run(args.messages, args.workers, args.concurrency)
    redis.Redis.from_url(args.redis_url).flushdb()
    with ExitStack() as stack:
        database_url, database_name = stack.enter_context(fresh_database(args.postgres_url))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fangang-notify-")))
        port = free_port()
        gateway_url = f"http://127.0.0.1:{port}"
        env = {
            **PII_KEYS,
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis_url,
            "SMS_GATEWAY_URL": gateway_url,
            "FANGANG_INSTANCE_PATH": str(tmp),
            "FANGANG_ENV": "development",
        }
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        gateway = start(
            "the fake SMS gateway",
            [*flask, "notify", "fake-sms-gateway", "--port", str(port)],
            env,
            tmp / "gateway.log",
        )
        stack.callback(gateway.stop)
        gateway.wait_for("listening on")

        app = build_app(database_url, args.redis_url, gateway_url)
        stack.callback(lambda: _dispose(app))
        with app.app_context():
            db.create_all()

        workers: list[Child] = []
        for n in range(1, args.workers + 1):
            options = [
                *("-A", "workers", "worker"),
                *("--pool", "prefork", "--concurrency", str(args.concurrency)),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                *("--loglevel", "INFO", "--hostname", f"bench{n}@%h"),
            ]
            launcher = ["-m", "celery"]
            worker = start(
                f"celery worker {n}",
                [sys.executable, *launcher, *options],
                env,
                tmp / f"worker{n}.log",
            )
            stack.callback(worker.stop)
            workers.append(worker)
        for worker in workers:
            worker.wait_for(" ready.")
        print(
            f"{args.workers} worker(s) x {args.concurrency} ready; gateway at {gateway_url}; "
            f"database {database_name}",
            flush=True,
        )

        # 1. the outbox rows, in bulk
        messages = generate_messages(args.messages)
        with app.app_context():
            pii, locale = vault(), app.config["BABEL_DEFAULT_LOCALE"]
            started = time.perf_counter()
            rows = [notification_row(pii, locale, *message) for message in messages]
            run.build_seconds = time.perf_counter() - started
            check_row_matches_notify(rows[0], *messages[0])
            started = time.perf_counter()
            db.session.execute(insert(Notification), rows)
            db.session.commit()
            run.insert_seconds = time.perf_counter() - started
            if args.analyze:
                analyze_table()
        print(
            f"{args.messages:,} pending rows written in {run.insert_seconds:.2f} s; "
            "sending the relay task...",
            flush=True,
        )

        # 2. end to end
        dsn = make_url(database_url).set(drivername="postgresql")
        poll = psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True)
        stack.callback(poll.close)
        groups = cpu_groups({w.process.pid for w in workers}, gateway.process.pid, database_name)
        before = CpuSnapshot.take()
        wall_started = utcnow()
        started = time.perf_counter()
        celery_app = app.extensions["celery"]
        for _ in range(-(-args.messages // PER_RELAY)):  # one relay hands out 100,000 at most
            celery_app.send_task(services.RELAY_TASK)
        run.total_seconds = wait_until_sent(poll, run, started, args.timeout, workers)
        after = CpuSnapshot.take()
        run.cpu, run.cpu_busy, run.cpu_idle = cpu_by_group(before, after, groups)

        # 3. checks
        time.sleep(1.0)  # let the workers log their last tasks
        run.statuses = status_counts(poll)
        keys = {key for (key,) in poll.execute("SELECT idempotency_key FROM notifications")}
        received = httpx.get(f"{gateway_url}/v1/sms/messages", timeout=60).json()
        run.gateway_requests = httpx.get(f"{gateway_url}/v1/control").json()["requests"]
        received_keys = {m["idempotency_key"] for m in received}
        if run.timed_out:
            run.failures.append(f"only {run.sent:,} of {args.messages:,} sent")
        if len(received) != args.messages or len(received_keys) != args.messages:
            run.failures.append(
                f"the gateway holds {len(received):,} messages with {len(received_keys):,} "
                f"distinct keys, expected {args.messages:,}"
            )
        if received_keys != keys:
            run.failures.append(
                f"{len(keys - received_keys):,} keys of the table never reached the gateway, "
                f"{len(received_keys - keys):,} keys at the gateway are not in the table"
            )
        if run.statuses.get("sent", 0) != args.messages:
            run.failures.append(f"row statuses {run.statuses}")
        if received:
            moments = sorted(
                (datetime.fromisoformat(m["received_at"]) - wall_started).total_seconds()
                for m in received
            )
            run.gateway_first, run.gateway_last = moments[0], moments[-1]
            run.gateway_p10 = moments[len(moments) // 10]
            run.gateway_p90 = moments[len(moments) * 9 // 10]
        run.tasks = task_times([w.text() for w in workers])
        if run.failures:
            for worker in workers:
                print(f"\n--- {worker.name}, last lines ---\n{worker.tail()}", file=sys.stderr)
            return run

        # 4. where the time goes, in this process (the workers stopped: nothing competes)
        for worker in workers:
            worker.stop()
        ids = [i for (i,) in poll.execute("SELECT id FROM notifications ORDER BY id")]
        with app.app_context():
            print(f"profiling deliver() of {services.BATCH_SIZE} in-process...", flush=True)
            run.deliver = profile_deliver(ids, args.profile_batches, gateway_url)
            print("timing relay() alone in-process on a fresh copy of the table...", flush=True)
            run.relay = relay_alone(rows, args.redis_url, args.analyze)
        if run.relay.handed != args.messages:
            run.failures.append(f"relay alone handed out {run.relay.handed:,} messages")
    return run


def _dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def cpu_groups(
    worker_pids: set[int], gateway_pid: int, database: str
) -> dict[str, Callable[[int, ProcessCpu], bool]]:
    table = processes()
    workers = descendants(table, worker_pids)
    gateway = descendants(table, {gateway_pid})
    me = os.getpid()

    def postgres(process: ProcessCpu) -> bool:
        return process.cmdline.startswith("postgres")

    return {
        "Celery workers (all processes)": lambda pid, p: (
            pid in workers or p.ppid in workers or pid in worker_pids
        ),
        "fake SMS gateway": lambda pid, p: pid in gateway,
        "PostgreSQL backends of the bench database": lambda pid, p: (
            postgres(p) and f" {database} " in p.cmdline
        ),
        "PostgreSQL background (WAL writer, checkpointer...)": lambda pid, p: (
            postgres(p) and "(" not in p.cmdline and " fangang_" not in p.cmdline
        ),
        "Redis server": lambda pid, p: p.cmdline.startswith("redis-server"),
        "this benchmark (polling)": lambda pid, p: pid == me,
    }


# --- report ---------------------------------------------------------------------------------


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        cells = [
            cell.ljust(width) if i in (0, len(row) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * width for width in widths))


def _s(seconds: float | None, digits: int = 3) -> str:
    return "-" if seconds is None else f"{seconds:,.{digits}f}"


def _rate(count: int, seconds: float | None) -> str:
    return f"{count / seconds:,.0f}" if seconds else "-"


def report(run: Run, top: int) -> None:
    n = run.messages
    batches = -(-n // services.BATCH_SIZE)
    rows: list[tuple[str, str, str, str]] = []

    def line(label: str, seconds: float | None, count: int = 0, note: str = "") -> None:
        rows.append((label, _s(seconds), _rate(count, seconds) if count else "", note))

    def info(label: str, note: str) -> None:
        rows.append((label, "", "", note))

    line("build the rows: HMAC key, AES-GCM token (setup)", run.build_seconds, n)
    line("write them: one insert() + commit (setup)", run.insert_seconds, n, "rows/s")
    line("END TO END: relay sent -> all 'sent'", run.total_seconds, run.sent, f"{run.sent:,} sent")
    line("  first message at the gateway", run.gateway_first, note="its received_at")
    line("  first 'sent' row seen by the poll", run.first_seen, note=f"poll every {POLL_SECONDS} s")
    line("  last message at the gateway", run.gateway_last)
    steady = _span(run.gateway_p10, run.gateway_p90)
    line("  steady state: 10% -> 90% at the gateway", steady, int(n * 0.8))
    info("  gateway batch requests", f"{run.gateway_requests:,}")
    relay = run.tasks.relay
    if relay:
        line("relay task in the run (worker log)", sum(relay), n, f"{batches:,} claims+publishes")
    if run.relay:
        phases = run.relay.phases
        line("relay alone, in-process, fresh copy", run.relay.seconds, n)
        claim, commit, publish = (phases.get(k) for k in ("claim", "commit", "publish"))
        line("  claim_due (UPDATE .. SKIP LOCKED)", claim, note=_per(claim, batches, "ms each"))
        claims, k = run.relay.claims, max(1, min(50, len(run.relay.claims) // 4))
        if claims:
            first, last = statistics.mean(claims[:k]) * 1000, statistics.mean(claims[-k:]) * 1000
            info(f"    claim_due: first {k} / last {k}", f"{first:.1f} / {last:.1f} ms each")
        line("  commit after each claim", commit, note=_per(commit, batches, "ms each"))
        line("  publish to Redis (send_task)", publish, note=_per(publish, batches, "ms each"))
        line("  recover_stale + other", phases.get("recover", 0) + phases.get("other", 0))
    sends = run.tasks.send_batch
    if sends:
        slots = run.workers * run.concurrency
        busy = (sum(sends) + sum(relay)) / (slots * run.total_seconds) if run.total_seconds else 0
        ordered = sorted(sends)
        spread = (statistics.median(sends), ordered[int(len(ordered) * 0.95)], ordered[-1])
        line(f"send_batch tasks ({len(sends):,}, worker log): sum", sum(sends))
        info("  pool slots busy (send_batch + relay) / wall", f"{busy:.0%} of {slots}")
        line("  per task: mean; median / p95 / max", statistics.mean(sends))
        rows[-1] = (*rows[-1][:3], " / ".join(_s(v) for v in spread))
    info("task errors + retries in the worker logs", f"{run.tasks.problems:,}")
    if run.deliver:
        deliver = run.deliver
        per_batch = deliver.seconds / deliver.batches
        label = f"deliver({services.BATCH_SIZE}) + commit in-process, mean of {deliver.batches}"
        line(label, per_batch, services.BATCH_SIZE, "one process, nothing else running")
        for key, text_ in DELIVER_PHASES:
            seconds = deliver.phases.get(key, 0.0) / deliver.batches
            line(f"  {text_}", seconds, note=f"{seconds / per_batch:.0%}")
    print()
    print_table(("step", "seconds", "msgs/s", "note"), rows)

    if run.cpu:
        cpus = os.cpu_count() or 1
        capacity = cpus * run.total_seconds
        other = max(0.0, run.cpu_busy - sum(run.cpu.values()))
        cpu_rows = [
            (name, _s(seconds, 1), f"{seconds / capacity:.0%}", _s(seconds / n * 1e6, 0))
            for name, seconds in [*run.cpu.items(), ("everything else on the machine", other)]
        ]
        cpu_rows.append(("idle", _s(run.cpu_idle, 1), f"{run.cpu_idle / capacity:.0%}", ""))
        print(
            f"\nCPU during the end-to-end run: {run.total_seconds:.1f} s x {cpus} CPUs = "
            f"{capacity:.1f} CPU-seconds"
        )
        print_table(("process group", "CPU s", "of all CPUs", "µs/message"), cpu_rows)

    if run.deliver:
        print(f"\ncProfile of one deliver({services.BATCH_SIZE}) + commit, top {top} cumulative")
        run.deliver.stats.stream = sys.stdout
        run.deliver.stats.strip_dirs().sort_stats("cumulative").print_stats(top)
        print(f"the same, top {top // 2} by own time (tottime)")
        run.deliver.stats.sort_stats("tottime").print_stats(top // 2)


def _span(start: float | None, end: float | None) -> float | None:
    return end - start if start is not None and end is not None and end > start else None


def _per(seconds: float | None, count: int, unit: str) -> str:
    return f"{seconds / count * 1000:.2f} {unit}" if seconds and count else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.notify_dispatch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork pool size of each")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="flushed at the start")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all")
    parser.add_argument(
        "--profile-batches", type=int, default=20, help="in-process deliver() batches timed"
    )
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE the table after the bulk write (autovacuum would, a while later)",
    )
    args = parser.parse_args(argv)
    if min(args.messages, args.workers, args.concurrency, args.profile_batches) < 1:
        parser.error("--messages, --workers, --concurrency and --profile-batches must be >= 1")
    if args.messages < (args.profile_batches + 2) * services.BATCH_SIZE:
        parser.error("--messages must cover --profile-batches + 2 batches of 100")

    print(
        f"notify dispatch benchmark: {args.messages:,} SMS, {args.workers} Celery worker(s) x "
        f"{args.concurrency} prefork processes, {os.cpu_count()} CPUs, Redis {args.redis_url}",
        flush=True,
    )
    print("workers: exactly `python -m celery -A workers worker ...`")
    if args.analyze:
        print("table statistics: ANALYZE right after the bulk write (--analyze)")
    else:
        print("table statistics: none yet (a fresh table, relayed right after its bulk write)")
    run = measure(args)
    report(run, args.profile_top)

    print(f"\ntarget: at least {TARGET_RATE:,} messages/s end to end")
    if run.failures:
        raise BenchmarkFailure("; ".join(run.failures))
    ok = run.rate >= TARGET_RATE
    print(
        f"  {'PASS' if ok else 'FAIL'}: {run.sent:,} messages in {run.total_seconds:.2f} s = "
        f"{run.rate:,.0f}/s ({run.rate / TARGET_RATE:.0%} of the target) with "
        f"{args.workers} worker(s) x {args.concurrency}"
    )
    return 0 if ok else 1


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: workers and gateway stopped, database dropped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    try:
        sys.exit(main())
    except BenchmarkFailure as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        sys.exit(2)
