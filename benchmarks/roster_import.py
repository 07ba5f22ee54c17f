"""Benchmark: an employer's 10,000-row roster (.xlsx) imported the way the app does it.

    .venv/bin/python -m benchmarks.roster_import [--rows 10000] [--database sqlite|postgres|both]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test] [--repeat 3] [--profile]

A realistic roster is generated in memory (Chinese headers, valid GB 11643 ID numbers as text,
unique mobiles, village groups of 5-40 fellow villagers). For each database and each repeat a
fresh app is built in the embedded mode (``REDIS_URL`` None) on a fresh database (SQLite: a temp
file; PostgreSQL: ``fangang_bench_<random>`` created on the server and dropped at the end, even on
error), the schema made with ``db.create_all()``, one employer organization and user created
through the services; then the real path is timed:

- ``create_roster_import(...)`` + commit (the upload request), with the job dispatch replaced by
  a recorder, so the job does not run inside that commit;
- ``run_roster_import(import_id, report_progress)`` in a new app context, as the Celery task
  runs it (``report_progress`` commits), + the final commit.

Inside the job, ``read_table``, ``check_rows``, ``_roster_clashes``, ``_save_roster`` and
``report_progress`` are wrapped (at run time; the app code is unchanged) and timed exclusively:
each phase's seconds leave out the phases nested in it, so the rows add up to the total. The
table shows the median of ``--repeat`` runs. Peak memory comes from one extra run under
``tracemalloc`` (not timed: tracing slows Python down); it is the peak of Python allocations
made since the import started. Afterwards the database must hold every row as a worker and the
import must be "done", or the benchmark fails.

Exit status: 0 when every database meets the target (10,000 rows in under 5 seconds, scaled
to ``--rows``), 1 when one misses it, 2 when the import did not do its job.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import wraps
from unittest import mock

import psycopg
from flask import Flask
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app import create_app
from app.accounts import services as accounts
from app.core import jobs
from app.core.access import Role
from app.core.identity import id_number_check_character
from app.demand import services
from app.demand.models import ImportStatus, RosterImport, Worker
from app.demand.spreadsheets import read_table
from app.extensions import db
from config import TestingConfig, normalize_database_url

TARGET_SECONDS = 5.0
TARGET_ROWS = 10_000
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
FILENAME = "返岗花名册.xlsx"
HEADERS = ["姓名", "身份证号", "手机号", "户籍地区代码", "户籍地区", "分组"]
CREDIT_CODE = "91370100MA3C12340R"  # a valid GB 32100-2015 code (as in tests/conftest.py)
PASSWORD = "bench-password-2026"  # noqa: S105 - a throwaway account in a throwaway database

# --- a realistic roster ---------------------------------------------------------------------

# Labour-exporting counties (GB/T 2260) and how many of the roster come from each (weights).
COUNTIES: tuple[tuple[str, str, int], ...] = (
    ("500101", "重庆市万州区", 6),
    ("500154", "重庆市开州区", 6),
    ("500229", "重庆市城口县", 2),
    ("500230", "重庆市丰都县", 3),
    ("500231", "重庆市垫江县", 3),
    ("500233", "重庆市忠县", 3),
    ("500235", "重庆市云阳县", 8),
    ("500236", "重庆市奉节县", 6),
    ("500237", "重庆市巫山县", 3),
    ("500238", "重庆市巫溪县", 3),
    ("500240", "重庆市石柱土家族自治县", 2),
    ("500242", "重庆市酉阳土家族苗族自治县", 3),
    ("500243", "重庆市彭水苗族土家族自治县", 3),
    ("511602", "四川省广安市广安区", 4),
    ("511621", "四川省广安市岳池县", 4),
    ("511622", "四川省广安市武胜县", 3),
    ("511623", "四川省广安市邻水县", 4),
    ("511321", "四川省南充市南部县", 4),
    ("511322", "四川省南充市营山县", 3),
    ("511323", "四川省南充市蓬安县", 2),
    ("511324", "四川省南充市仪陇县", 4),
    ("511325", "四川省南充市西充县", 2),
    ("511921", "四川省巴中市通江县", 2),
    ("511922", "四川省巴中市南江县", 2),
    ("511923", "四川省巴中市平昌县", 3),
    ("510722", "四川省绵阳市三台县", 3),
    ("511025", "四川省内江市资中县", 2),
    ("522422", "贵州省毕节市大方县", 2),
    ("520324", "贵州省遵义市正安县", 2),
    ("411522", "河南省信阳市光山县", 2),
    ("411524", "河南省信阳市商城县", 2),
    ("411525", "河南省信阳市固始县", 3),
    ("341221", "安徽省阜阳市临泉县", 2),
    ("341222", "安徽省阜阳市太和县", 2),
    ("431224", "湖南省怀化市溆浦县", 2),
    ("421127", "湖北省黄冈市黄梅县", 2),
)
# Surnames by rough frequency band (weight per surname in the band).
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王李张", 7.0),
    ("刘陈", 5.0),
    ("杨黄赵吴周", 2.2),
    ("徐孙马朱胡郭何高林罗郑梁", 1.0),
    ("谢宋唐许韩冯邓曹彭曾肖田董袁冉向谭", 0.5),
    (
        "潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段"
        "雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤牟",
        0.2,
    ),
)
GIVEN_MALE = "伟强军勇磊涛斌超明刚平辉鹏华飞波林峰建国文海俊杰兵成东志宏春德福贵发全忠荣祥清云永"
GIVEN_FEMALE = "芳娟敏静丽艳霞燕玲梅琴英兰萍红秀华娥凤莉婷雪慧琳桂珍春小月"
# Village names, two characters each.
_VILLAGE_TEXT = (
    "龙洞石桥青山双河黄桷柏杨桂花大坪新华红岩金竹白果杨柳凉水长岭高峰马鞍团结胜利和平"
    "水井沙坝天池三合五星向阳茶园松林梨子枫香桃园核桃大湾中坝岩口太平兴隆永安庙垭鹿鸣"
    "梧桐回龙七里磨刀观音紫阳凤凰盘石清水龙泉"
)
VILLAGES = [_VILLAGE_TEXT[i : i + 2] for i in range(0, len(_VILLAGE_TEXT), 2)]
MOBILE_PREFIXES = (
    [f"13{d}" for d in range(10)] + [f"15{d}" for d in "012356789"] + [f"18{d}" for d in range(10)]
)
BIRTH_FIRST, BIRTH_LAST, BIRTH_MODE = date(1966, 1, 1), date(2004, 12, 31), date(1980, 6, 1)

Row = tuple[str, str, str, int, str, str]


def id_number(region: str, birth: date, sequence: int) -> str:
    """A valid GB 11643-1999 number: region, birth date, sequence (odd: male), check."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + id_number_check_character(first17)


def generate_rows(count: int, seed: int = 2026) -> list[Row]:
    """``count`` workers in groups of 5-40 fellow villagers, as an employer's roster lists them."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    surnames = [s for chars, _ in SURNAMES for s in chars]
    surname_weights = [w for chars, w in SURNAMES for _ in chars]
    county_weights = [weight for _, _, weight in COUNTIES]
    first_day, span = BIRTH_FIRST.toordinal(), (BIRTH_LAST - BIRTH_FIRST).days
    mode = (BIRTH_MODE - BIRTH_FIRST).days
    ids: set[str] = set()
    phones: set[str] = set()
    tags: set[tuple[str, str]] = set()
    rows: list[Row] = []
    while len(rows) < count:
        code, county, _ = rng.choices(COUNTIES, county_weights)[0]
        size = min(rng.randint(5, 40), count - len(rows))
        while True:
            village = rng.choice(VILLAGES)
            kind = rng.random()
            tag = (
                f"{village}村"
                if kind < 0.7
                else f"{village}村{rng.randint(1, 12)}组"
                if kind < 0.9
                else f"{village}社区"
            )
            if (code, tag) not in tags:
                tags.add((code, tag))
                break
        for _ in range(size):
            male = rng.random() < 0.65
            birth = date.fromordinal(first_day + round(rng.triangular(0, span, mode)))
            number = id_number(code, birth, rng.randrange(500) * 2 + male)
            while number in ids:
                number = id_number(code, birth, rng.randrange(500) * 2 + male)
            ids.add(number)
            phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
            while phone in phones:
                phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
            phones.add(phone)
            given = GIVEN_MALE if male else GIVEN_FEMALE
            name = rng.choices(surnames, surname_weights)[0] + "".join(
                rng.choice(given) for _ in range(1 if rng.random() < 0.25 else 2)
            )
            # The county code typed into a General cell is a number; ID and phone are text.
            rows.append((name, number, phone, int(code), county, tag))
    return rows


def write_roster(rows: list[Row]) -> bytes:
    """The roster as an .xlsx, ID and phone numbers in text ("@") cells as the template has."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("花名册")
    for letter, width in zip("ABCDEF", (10, 22, 14, 14, 30, 16), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.append(HEADERS)
    for name, number, phone, code, county, tag in rows:
        id_cell = WriteOnlyCell(sheet, value=number)
        id_cell.number_format = "@"
        phone_cell = WriteOnlyCell(sheet, value=phone)
        phone_cell.number_format = "@"
        sheet.append([name, id_cell, phone_cell, code, county, tag])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- timing ---------------------------------------------------------------------------------


class PhaseClock:
    """Exclusive time per phase (a nested phase's time is taken out of its parent's) and, when
    tracemalloc is tracing, the peak of traced memory while each phase was open."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.peaks: dict[str, int] = defaultdict(int)
        self._open: list[list] = []  # [name, started, time spent in nested phases]

    def _fold_peak(self) -> None:
        if not tracemalloc.is_tracing():
            return
        peak = tracemalloc.get_traced_memory()[1]
        for name, *_ in self._open:
            self.peaks[name] = max(self.peaks[name], peak)
        tracemalloc.reset_peak()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._fold_peak()
        frame = [name, time.perf_counter(), 0.0]
        self._open.append(frame)
        try:
            yield
        finally:
            self._fold_peak()
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


# Phases of one import, in the order they are shown. "save" is everything of the job after
# check_rows (and its progress commits), broken down in the rows below it.
QUEUE, READ, CHECK = "queue", "read", "check"
CLASHES, WRITE, PROGRESS, FINAL_COMMIT, OTHER = "clashes", "write", "progress", "commit", "other"
SAVE_PARTS = (CLASHES, WRITE, PROGRESS, FINAL_COMMIT, OTHER)
TOTAL, SAVE = "total", "save"
LABELS = {
    QUEUE: "queue: create_roster_import + commit",
    READ: "read: read_table",
    CHECK: "check: check_rows",
    SAVE: "save: the rest of the job, of which",
    CLASHES: "  _roster_clashes",
    WRITE: "  _save_roster (encrypt, INSERT)",
    PROGRESS: "  report_progress commits",
    FINAL_COMMIT: "  final commit",
    OTHER: "  other (status, savepoint, finish)",
    TOTAL: "total",
}
SHOWN = (QUEUE, READ, CHECK, SAVE, *SAVE_PARTS, TOTAL)


@dataclass
class RunResult:
    seconds: dict[str, float]
    peaks: dict[str, int] = field(default_factory=dict)


def _summarise(clock: PhaseClock) -> RunResult:
    seconds = dict(clock.seconds)
    # The outer "total" and "run" frames' own time is the job's glue: shown as "other".
    seconds[OTHER] = seconds.pop("run", 0.0) + seconds.pop(TOTAL, 0.0)
    seconds[SAVE] = sum(seconds.get(part, 0.0) for part in SAVE_PARTS)
    seconds[TOTAL] = sum(seconds.get(name, 0.0) for name in (QUEUE, READ, CHECK, SAVE))
    peaks = dict(clock.peaks)
    peaks.pop("run", None)  # the whole job: not "other"'s own peak
    peaks[SAVE] = max(peaks.get(part, 0) for part in SAVE_PARTS)
    return RunResult(seconds, peaks)


# --- one import on a fresh database ---------------------------------------------------------


@contextmanager
def fresh_database(kind: str, postgres_url: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="fangang-bench-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    server = make_url(normalize_database_url(postgres_url))
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"fangang_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def build_app(database_uri: str) -> Flask:
    """As tests/conftest.py's make_app: embedded mode (no Redis, jobs in-process)."""
    app = create_app(
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
    # The job is run (and timed) by the benchmark itself, not inside the upload's commit.
    app.extensions["celery"].conf.task_always_eager = False
    return app


class BenchmarkFailure(AssertionError):
    pass


def import_once(
    kind: str,
    postgres_url: str,
    content: bytes,
    rows: int,
    trace_memory: bool = False,
    profiler: cProfile.Profile | None = None,
) -> RunResult:
    with fresh_database(kind, postgres_url) as database_uri:
        app = build_app(database_uri)
        try:
            return _import(app, content, rows, trace_memory, profiler)
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def _import(
    app: Flask,
    content: bytes,
    rows: int,
    trace_memory: bool,
    profiler: cProfile.Profile | None,
) -> RunResult:
    clock = PhaseClock()
    dispatched: list[tuple[str, tuple[int, ...]]] = []

    def report_progress(_roster_import: RosterImport) -> None:
        db.session.commit()  # as workers/demand.py's task does

    with ExitStack() as patches:
        patches.enter_context(
            mock.patch.object(jobs, "dispatch", lambda task, ids: dispatched.append((task, ids)))
        )
        for name, phase in (
            ("read_table", READ),
            ("check_rows", CHECK),
            ("_roster_clashes", CLASHES),
            ("_save_roster", WRITE),
        ):
            timed = clock.timed(phase, getattr(services, name))
            patches.enter_context(mock.patch.object(services, name, timed))
        report_progress = clock.timed(PROGRESS, report_progress)

        with app.app_context():
            db.create_all()
            organization = accounts.create_organization(
                "重庆渝建劳务有限公司", CREDIT_CODE, "500101"
            )
            user = accounts.create_user(
                "hr@bench.example.cn", PASSWORD, Role.EMPLOYER, "人事部", organization
            )
            db.session.commit()
            organization_id = organization.id

            gc.collect()
            if trace_memory:
                tracemalloc.start()
            if profiler:
                profiler.enable()
            try:
                with clock.phase(TOTAL):
                    with clock.phase(QUEUE):  # the upload request
                        roster_import = services.create_roster_import(
                            organization, FILENAME, content, user
                        )
                        db.session.commit()
                    import_id = roster_import.id
                    with app.app_context(), clock.phase("run"):  # the task: its own session
                        services.run_roster_import(import_id, report_progress)
                        with clock.phase(FINAL_COMMIT):
                            db.session.commit()
            finally:
                if profiler:
                    profiler.disable()
                if trace_memory:
                    tracemalloc.stop()

            db.session.rollback()  # end this session's snapshot: read what the job committed
            _verify(import_id, organization_id, rows, dispatched)
    return _summarise(clock)


def _verify(
    import_id: int, organization_id: int, rows: int, dispatched: list[tuple[str, tuple]]
) -> None:
    """Fail loudly unless the job was queued once and saved every row."""
    roster_import = db.session.get(RosterImport, import_id)
    saved = db.session.scalar(
        select(func.count()).select_from(Worker).where(Worker.organization_id == organization_id)
    )
    expected_jobs = [(services.IMPORT_TASK, (import_id,))]
    failures = []
    if dispatched != expected_jobs:
        failures.append(f"jobs dispatched {dispatched!r}, expected {expected_jobs!r}")
    if roster_import is None:
        failures.append(f"no import {import_id}")
    elif roster_import.status != ImportStatus.DONE:
        failures.append(
            f"import status {roster_import.status!r} (problem {roster_import.problem!r}, "
            f"first errors {(roster_import.errors or [])[:5]!r})"
        )
    elif (roster_import.total_rows, roster_import.added) != (rows, rows):
        failures.append(
            f"import counted {roster_import.total_rows} rows and added {roster_import.added}"
        )
    if saved != rows:
        failures.append(f"{saved} workers in the database, expected {rows}")
    if failures:
        raise BenchmarkFailure("the import did not do its job: " + "; ".join(failures))


# --- report ---------------------------------------------------------------------------------


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds >= 0.0005 else "-"


def _mb(peak: int | None) -> str:
    return f"{peak / 2**20:.1f}" if peak else "-"


def print_table(lines: list[tuple[str, int, str, float, int | None]]) -> None:
    header = ("database", "rows", "phase", "seconds", "rows/s", "peak MB")
    table = [header] + [
        (database, f"{rows:,}", phase, f"{seconds:.3f}", _rate(rows, seconds), _mb(peak))
        for database, rows, phase, seconds, peak in lines
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = (False, True, False, True, True, True)
    for n, row in enumerate(table):
        cells = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ]
        print(" | ".join(cells).rstrip())
        if n == 0:
            print("-+-".join("-" * width for width in widths))


def median_result(results: list[RunResult]) -> dict[str, float]:
    return {name: statistics.median(r.seconds.get(name, 0.0) for r in results) for name in SHOWN}


def measure(function: Callable, repeat: int) -> tuple[float, int, object]:
    """Median seconds of ``repeat`` calls, and the traced peak of one more call."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    gc.collect()
    tracemalloc.start()
    try:
        value = function()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.roster_import", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=TARGET_ROWS)
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per database")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the extra tracemalloc run per database"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more run per database under cProfile; print the top functions",
    )
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    databases = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    rows = args.rows
    target = TARGET_SECONDS * rows / TARGET_ROWS

    print(f"roster import benchmark: {rows:,} rows, median of {args.repeat} runs", flush=True)
    lines: list[tuple[str, int, str, float, int | None]] = []
    generate_seconds, generate_peak, roster = measure(lambda: generate_rows(rows), args.repeat)
    write_seconds, write_peak, content = measure(lambda: write_roster(roster), args.repeat)
    read_seconds, read_peak, table = measure(lambda: read_table(FILENAME, content), args.repeat)
    if len(table.rows) != rows or table.headers != HEADERS:
        raise BenchmarkFailure(f"the generated file reads back as {len(table.rows)} rows")
    lines += [
        ("-", rows, "generate rows (in memory)", generate_seconds, generate_peak),
        ("-", rows, f"write .xlsx ({len(content) / 2**20:.2f} MB)", write_seconds, write_peak),
        ("-", rows, "read .xlsx alone: read_table", read_seconds, read_peak),
    ]

    verdicts = []
    for kind in databases:
        peaks: dict[str, int] = {}
        if not args.no_memory:  # also warms up imports and caches before the timed runs
            print(f"{kind}: memory run (tracemalloc)...", flush=True)
            peaks = import_once(kind, args.postgres_url, content, rows, trace_memory=True).peaks
        results = []
        for n in range(args.repeat):
            print(f"{kind}: timed run {n + 1}/{args.repeat}...", flush=True)
            results.append(import_once(kind, args.postgres_url, content, rows))
        medians = median_result(results)
        totals = ", ".join(f"{r.seconds[TOTAL]:.2f}" for r in results)
        print(f"{kind}: totals {totals} s", flush=True)
        for name in SHOWN:
            lines.append((kind, rows, LABELS[name], medians[name], peaks.get(name)))
        verdicts.append((kind, medians[TOTAL]))
        if args.profile:
            profiler = cProfile.Profile()
            import_once(kind, args.postgres_url, content, rows, profiler=profiler)
            print(f"\n{kind}: cProfile of one import, top {args.profile_top} by cumulative time")
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.strip_dirs().sort_stats("cumulative").print_stats(args.profile_top)

    print()
    print_table(lines)
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        "\npeak MB: tracemalloc peak of the Python memory allocated since the import started, "
        "while the phase ran\n(one extra, untimed run per database; the '-' rows: one extra "
        f"call). Process max RSS over the whole benchmark: {maxrss_mb:.0f} MB."
    )
    print(f"\ntarget: under {target:.1f} s for {rows:,} rows (5 s per 10,000), end to end")
    missed = False
    for kind, seconds in verdicts:
        ok = seconds < target
        missed |= not ok
        verdict = "PASS" if ok else "FAIL"
        print(
            f"  {kind:<8} {verdict}: median {seconds:.2f} s "
            f"({rows / seconds:,.0f} rows/s, {seconds / target:.0%} of the budget)"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkFailure as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        sys.exit(2)
