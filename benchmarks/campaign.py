"""Benchmark: a province's return-to-work campaign, end to end, through the real services.

    .venv/bin/python -m benchmarks.campaign [--scale 1] [--workers 238300] [--employers 1000]
        [--counties 300] [--days 10] [--trains 20] [--format xlsx|csv] [--clients 2]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
        [--redis-url redis://127.0.0.1:6379/13] [--analyze-every 60]
        [--profile STAGE [--profile-callees REGEX] [--profile-dump PATH]] [--sql-top N]
        [--stop-after STAGE] [--keep-database NAME] [--no-dispatch]
        [--external-workers --database-url URL --gateway-url URL]

(benchmarks/README.md describes it and its results.)

``--scale`` multiplies ``--workers`` and ``--employers`` (``--scale 0.05``: about 12,000 workers
of 50 employers). The issue (#8): "A generator builds a realistic campaign at a chosen scale and
drives it through the real services on PostgreSQL: import rosters, submit, approve, plan,
allocate, lock (writing all seat notifications to the outbox), and dispatch the notifications
through Celery + Redis to the fake SMS gateway", with the COPY floor of the same rows as the
yardstick. Targets on this 2-core machine: the whole campaign, notifications included, in under
10 minutes; import + plan + allocate within 10x the COPY floor; peak memory under 1 GB.

The campaign (setup, timed apart; see ``generate``): Shandong's 16 cities take workers home from
``--counties`` origin counties in 9 provinces (the real labour-exporting counties first, then
made-up ones), each province's health commission an issuer on the trust list. Employers (sizes
log-normal, 15 to 6,000 workers) recruit from 1 to 20 counties, in village groups of 5 to 40.
Each employer's roster is a generated .xlsx (or .csv) with the 健康码 column holding each
worker's signed pass (issued the day before their departure; 2% yellow, 1.5% expiring before
departure). Each (origin county, destination city) pair travels on one day of ``--days``;
the largest pairs from the far provinces ride a special train, the others coaches.

The service path, each call in its own app context (a new session: one web request or one task)
and committed as its view or task commits it; jobs after commit are recorded, not run:

1. import: ``create_roster_import`` + commit (the upload), then the import task's own code
   (``workers.demand.import_roster``: ``run_roster_import`` with progress commits), per employer.
2. requests: per employer and origin county, ``create_request`` + commit, then the workers of that
   county chosen as the request-workers page chooses them and ``add_workers`` + commit.
3. submit: ``submit_request`` + commit, per request.
4. approve: ``approve_request`` + commit by the destination city's coordinator, per request.
5. plan: per (origin, destination, day): ``make_plan`` over the approved requests and a handful of
   free coaches (coach-53 and coach-45 at the 2020 rule: 50% of rated seats, last two rows empty:
   26 and 22 seats) or the special train (train-hard-seat-118 carriages at 50% with alternate
   seats: 59 a carriage), then ``apply_plan`` + commit.
6. allocate: ``allocate_trips`` + commit, per (origin, destination, day): the seats of the trips
   its plan made, in one call, as the plan page's "create these trips and give seats" gives them
   (the health of each worker is checked again at the trip's departure).
7. lock: ``lock_manifest`` + commit, per trip: every seat SMS and two reminders to the outbox.
8. dispatch: a real Celery worker (``celery -A workers worker --pool prefork --concurrency 2``)
   on Redis db 13 and the fake SMS gateway (its own process); the relay task is kicked once (and
   sent again every 10 s, as beat would) until every due message is sent. Reminders are due
   later: counted, not waited for. ``--external-workers``: the workers already running (``honcho
   start -c web=2,worker=2,beat=1``, README.md) do it instead, on their own database
   (``--database-url``: migrated and empty; the campaign runs in it and empties it again at the
   end), Redis (``--redis-url``, not flushed) and fake gateway (``--gateway-url``, emptied first);
   they need config.TestingConfig's PII keys. Each worker's share is reported either way.

``--clients N`` (default 2, one per core) spreads each stage's calls over N forked processes,
each with its own database connections, as web and Celery workers serve many users at once;
calls that lock the same rows stay in one client. When the server's autovacuum is off (this
machine's is), a process beside the run analyzes the tables as autovacuum would (every
``--analyze-every`` seconds, tables changed by more than 50 + 10% rows).

Then the COPY floor: the rows each stage wrote, copied out of the campaign's tables (not timed)
and ``COPY ... FROM STDIN`` into scratch tables with the same columns, defaults, checks and
unique keys (primary key, unique constraints and unique partial indexes), timed.

Checked at the end (exit status 2 if not): every cleared worker seated exactly once and every
failing pass blocked, no seat twice on a trip, no trip over its policy capacity, each trip
seated as planned, every trip locked, one ``seat_given`` SMS per seated worker sent and at the
gateway (the gateway's keys are the table's), two pending reminders per seated worker.
Exit status 1 when the end state is right but a target is missed, 0 when all are met.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import csv
import hashlib
import hmac
import io
import json
import logging
import math
import multiprocessing
import os
import pstats
import random
import re
import resource
import signal
import sys
import tempfile
import time
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from functools import wraps
from pathlib import Path
from unittest import mock
from xml.parsers import expat
from zoneinfo import ZoneInfo

import httpx
import psycopg
import redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from sqlalchemy import event, insert, select, text
from sqlalchemy.engine import make_url

from app.accounts import services as accounts
from app.accounts.models import Organization, User
from app.core import jobs
from app.core.access import Role
from app.core.identity import credit_code_check_character, id_number_check_character
from app.demand import services as demand
from app.demand.models import TransportRequest, Worker
from app.demand.spreadsheets import read_table
from app.extensions import db
from app.fleet.models import Operator, Vehicle
from app.health import services as health
from app.health.passes import generate_key, key_id, sign_pass
from app.notify import services as notify
from app.trips import allocation
from app.trips import services as trips
from app.trips.seatmaps import build_vehicle
from benchmarks.notify_dispatch import (
    PII_KEYS,
    free_port,
    start,
    system_cpu,
    task_times,
)
from benchmarks.notify_dispatch import build_app as build_redis_app
from benchmarks.notify_dispatch import fresh_database as fresh_named_database
from benchmarks.roster_import import (
    BIRTH_FIRST,
    BIRTH_LAST,
    BIRTH_MODE,
    COUNTIES,
    GIVEN_FEMALE,
    GIVEN_MALE,
    MOBILE_PREFIXES,
    SURNAMES,
    VILLAGES,
)
from benchmarks.trips_service import PhaseClock, SqlMeter, maxrss_mb, print_table
from benchmarks.trips_service import build_app as build_embedded_app
from config import normalize_database_url
from workers.demand import import_roster

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
FULL_WORKERS, FULL_EMPLOYERS = 238_300, 1_000
PASSWORD = "bench-password-2026"  # noqa: S105 - throwaway accounts in a throwaway database
ZONE = ZoneInfo("Asia/Shanghai")
TARGET_SECONDS = 600.0  # the whole campaign, notifications included
TARGET_FLOOR_MULTIPLE = 10.0  # import + plan + allocate, against the COPY floor
TARGET_RSS_MB = 1024.0
YELLOW_RATE, EXPIRED_RATE = 0.02, 0.015
RELAY_EVERY = 10.0  # seconds, as beat sends it (app/extensions.py BEAT_SCHEDULE)
STALL_SECONDS = 90.0
UNSENT_EVERY = 5.0  # seconds between counts of the outbox during dispatch (see _unsent)
FLASK = [sys.executable, "-m", "flask", "--app", "app"]
CELERY_WORKER = [
    *(sys.executable, "-m", "celery", "-A", "workers", "worker"),
    *("--pool", "prefork", "--concurrency", "2"),
    *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"),
]
TABLE_HEADER = ("stage", "calls", "rows", "seconds", "CPU s", "busy", "rows/s", "x floor")
TABLE_HEADER += ("SQL stmts",)
TABLE_HEADER += ("SQL s", "RSS MB")
STAGES = ("import", "requests", "submit", "approve", "plan", "allocate", "lock", "dispatch")

# --- geography ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Province:
    code: str  # two digits
    name: str
    weight: float  # share of the campaign's workers
    hours: int  # by coach to Shandong
    far: bool  # a special train is worth it


PROVINCES = (
    Province("37", "山东省", 30, 5, False),
    Province("41", "河南省", 16, 9, False),
    Province("34", "安徽省", 10, 10, False),
    Province("51", "四川省", 12, 23, True),
    Province("50", "重庆市", 9, 22, True),
    Province("52", "贵州省", 6, 23, True),
    Province("42", "湖北省", 6, 14, False),
    Province("43", "湖南省", 6, 18, False),
    Province("53", "云南省", 5, 23, True),
)
PROVINCE = {p.code: p for p in PROVINCES}
# More real labour-exporting counties (benchmarks/roster_import.py has 36 of Chongqing, Sichuan,
# Guizhou, Henan, Anhui, Hunan and Hubei).
MORE_COUNTIES = (
    ("371721", "山东省菏泽市曹县"),
    ("371722", "山东省菏泽市单县"),
    ("371723", "山东省菏泽市成武县"),
    ("371724", "山东省菏泽市巨野县"),
    ("371725", "山东省菏泽市郓城县"),
    ("371726", "山东省菏泽市鄄城县"),
    ("371728", "山东省菏泽市东明县"),
    ("371321", "山东省临沂市沂南县"),
    ("371322", "山东省临沂市郯城县"),
    ("371323", "山东省临沂市沂水县"),
    ("371324", "山东省临沂市兰陵县"),
    ("371325", "山东省临沂市费县"),
    ("371326", "山东省临沂市平邑县"),
    ("371327", "山东省临沂市莒南县"),
    ("371328", "山东省临沂市蒙阴县"),
    ("371329", "山东省临沂市临沭县"),
    ("371521", "山东省聊城市阳谷县"),
    ("371522", "山东省聊城市莘县"),
    ("371524", "山东省聊城市东阿县"),
    ("371525", "山东省聊城市冠县"),
    ("371426", "山东省德州市平原县"),
    ("371427", "山东省德州市夏津县"),
    ("411526", "河南省信阳市潢川县"),
    ("411527", "河南省信阳市淮滨县"),
    ("411528", "河南省信阳市息县"),
    ("411721", "河南省驻马店市西平县"),
    ("411722", "河南省驻马店市上蔡县"),
    ("411723", "河南省驻马店市平舆县"),
    ("411724", "河南省驻马店市正阳县"),
    ("411729", "河南省驻马店市新蔡县"),
    ("411623", "河南省周口市商水县"),
    ("411624", "河南省周口市沈丘县"),
    ("411625", "河南省周口市郸城县"),
    ("411627", "河南省周口市太康县"),
    ("411628", "河南省周口市鹿邑县"),
    ("341225", "安徽省阜阳市阜南县"),
    ("341226", "安徽省阜阳市颍上县"),
    ("341321", "安徽省宿州市砀山县"),
    ("341322", "安徽省宿州市萧县"),
    ("341323", "安徽省宿州市灵璧县"),
    ("341324", "安徽省宿州市泗县"),
    ("530621", "云南省昭通市鲁甸县"),
    ("530622", "云南省昭通市巧家县"),
    ("530623", "云南省昭通市盐津县"),
    ("530626", "云南省昭通市绥江县"),
    ("530627", "云南省昭通市镇雄县"),
    ("530628", "云南省昭通市彝良县"),
    ("430523", "湖南省邵阳市邵阳县"),
    ("430524", "湖南省邵阳市隆回县"),
    ("421122", "湖北省黄冈市红安县"),
    ("421123", "湖北省黄冈市罗田县"),
)
# Two-character place names for made-up counties.
PLACE_CHARS = "安宁平和兴隆昌盛永丰富源泰康顺德广福长乐新华清河白水青龙金山石城东阳西林南江北川"


@dataclass(frozen=True)
class County:
    code: str
    name: str
    weight: float

    @property
    def province(self) -> Province:
        return PROVINCE[self.code[:2]]

    @property
    def short(self) -> str:
        """云阳县 of 重庆市云阳县."""
        return re.split(r"[省市]", self.name)[-1] or self.name


@dataclass(frozen=True)
class City:
    code: str
    name: str
    weight: float

    @property
    def short(self) -> str:
        return self.name.removeprefix("山东省")


CITIES = (
    City("370100", "山东省济南市", 14),
    City("370200", "山东省青岛市", 18),
    City("370300", "山东省淄博市", 6),
    City("370400", "山东省枣庄市", 3),
    City("370500", "山东省东营市", 4),
    City("370600", "山东省烟台市", 9),
    City("370700", "山东省潍坊市", 9),
    City("370800", "山东省济宁市", 6),
    City("370900", "山东省泰安市", 4),
    City("371000", "山东省威海市", 4),
    City("371100", "山东省日照市", 3),
    City("371300", "山东省临沂市", 7),
    City("371400", "山东省德州市", 4),
    City("371500", "山东省聊城市", 3),
    City("371600", "山东省滨州市", 3),
    City("371700", "山东省菏泽市", 3),
)
INDUSTRIES = (
    "建设集团有限公司",
    "建筑劳务有限公司",
    "电子科技有限公司",
    "机械制造有限公司",
    "纺织服装有限公司",
    "食品有限公司",
    "汽车零部件有限公司",
    "化工有限公司",
    "物流有限公司",
    "家电有限公司",
)
OPERATORS = ("山东交运集团", "青岛交运集团", "济南长途汽车运输公司", "烟台交运集团", "临沂交运集团")


def make_counties(rng: random.Random, count: int) -> list[County]:
    """``count`` origin counties: the real ones first, then made-up ones; weighted so each
    province carries its share of the workers (Zipf-like inside a province)."""
    known = [(code, name) for code, name, _ in COUNTIES] + list(MORE_COUNTIES)
    known = [(code, name) for code, name in known if code[:2] in PROVINCE]
    chosen = known[:count]
    taken = {code for code, _ in chosen}
    serial = 0
    while len(chosen) < count:
        province = rng.choices(PROVINCES, [p.weight for p in PROVINCES])[0]
        city, county = rng.randrange(1, 30), rng.randrange(21, 30)
        code = f"{province.code}{city:02d}{county:02d}"
        if code in taken:
            continue
        taken.add(code)
        serial += 1
        place = rng.choice(PLACE_CHARS) + rng.choice(PLACE_CHARS)
        chosen.append((code, f"{province.name}{place}县"))
    by_province: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for code, name in chosen:
        by_province[code[:2]].append((code, name))
    counties = []
    for code2, members in by_province.items():
        ranks = [1 / (rank + 1) ** 0.8 for rank in range(len(members))]
        for (code, name), rank in zip(members, ranks, strict=True):
            counties.append(County(code, name, PROVINCE[code2].weight * rank / sum(ranks)))
    return counties


# --- the campaign ---------------------------------------------------------------------------


@dataclass
class Request:
    """One transport request: an employer's workers from one origin county."""

    county: County
    groups: list[tuple[str, int]]  # village group tag -> workers
    failing: int = 0  # passes yellow or expiring before departure (from the roster files)
    request_id: int = 0

    @property
    def size(self) -> int:
        return sum(n for _, n in self.groups)


@dataclass
class Employer:
    index: int
    name: str
    city: City
    requests: list[Request]
    organization_id: int = 0
    user_id: int = 0
    roster: Path | None = None

    @property
    def size(self) -> int:
        return sum(r.size for r in self.requests)


@dataclass
class Cell:
    """Everyone from one origin county to one destination city travels on one day."""

    county: County
    city: City
    day: date
    requests: list[tuple[Employer, Request]] = field(default_factory=list)
    train: bool = False

    @property
    def size(self) -> int:
        return sum(r.size for _, r in self.requests)

    @property
    def cleared(self) -> int:
        return sum(r.size - r.failing for _, r in self.requests)

    @property
    def departs(self) -> datetime:
        return datetime.combine(self.day, clock_time(9 if self.train else 7), ZONE)

    @property
    def hours(self) -> int:
        return self.county.province.hours + (6 if self.train else 0)


@dataclass
class Campaign:
    employers: list[Employer]
    cells: dict[tuple[str, str], Cell]
    counties: list[County]
    first_day: date

    @property
    def workers(self) -> int:
        return sum(e.size for e in self.employers)

    @property
    def requests(self) -> list[tuple[Employer, Request]]:
        return [(e, r) for e in self.employers for r in e.requests]


def employer_sizes(rng: random.Random, workers: int, employers: int) -> list[int]:
    """Log-normal (median about 0.6 x the mean), 15 to 6,000 each, adding up to ``workers``."""
    raw = [rng.lognormvariate(0, 1.0) for _ in range(employers)]
    scale = workers / sum(raw)
    sizes = [min(6000, max(15, round(x * scale))) for x in raw]
    while (gap := workers - sum(sizes)) != 0:  # the rounding and the clamps, spread out
        i = rng.randrange(employers)
        sizes[i] = min(6000, max(15, sizes[i] + max(-50, min(50, gap))))
    return sizes


def village_groups(rng: random.Random, size: int, taken: set[str]) -> list[tuple[str, int]]:
    groups = []
    while size:
        n = min(rng.randint(5, 40), size)
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
            if tag not in taken:
                taken.add(tag)
                break
        groups.append((tag, n))
        size -= n
    return groups


def generate(args: argparse.Namespace, first_day: date) -> Campaign:
    rng = random.Random(args.seed)  # noqa: S311 - test data, not secrets
    counties = make_counties(rng, args.counties)
    county_weights = [c.weight for c in counties]
    employers: list[Employer] = []
    names: set[str] = set()
    for index, size in enumerate(employer_sizes(rng, args.workers, args.employers)):
        city = rng.choices(CITIES, [c.weight for c in CITIES])[0]
        while True:
            name = (
                city.short.removesuffix("市")
                + rng.choice(PLACE_CHARS)
                + rng.choice(PLACE_CHARS)
                + rng.choice(INDUSTRIES)
            )
            if name not in names:
                names.add(name)
                break
        # Bigger employers recruit in more counties; most of them in one home province.
        k = max(1, min(20, round(math.sqrt(size) / 3 * rng.uniform(0.6, 1.4))))
        home = rng.choices(PROVINCES, [p.weight for p in PROVINCES])[0]
        picked: dict[str, County] = {}
        while len(picked) < min(k, len(counties)):
            if rng.random() < 0.7:
                pool = [c for c in counties if c.code[:2] == home.code] or counties
                county = rng.choices(pool, [c.weight for c in pool])[0]
            else:
                county = rng.choices(counties, county_weights)[0]
            picked[county.code] = county
        shares = [rng.gammavariate(1.0, 1.0) for _ in picked]
        counts = [max(1, int(size * s / sum(shares))) for s in shares]
        counts[counts.index(max(counts))] += size - sum(counts)
        if min(counts) < 1:  # many tiny counties on a small roster: one county only
            counts, picked = [size], dict(list(picked.items())[:1])
        tags: set[str] = set()
        requests = [
            Request(county, village_groups(rng, n, tags))
            for county, n in zip(picked.values(), counts, strict=True)
        ]
        employers.append(Employer(index, name, city, requests))
    cells: dict[tuple[str, str], Cell] = {}
    for employer in employers:
        for request in employer.requests:
            key = (request.county.code, employer.city.code)
            if key not in cells:
                day = first_day + timedelta(days=rng.randrange(args.days))
                cells[key] = Cell(request.county, employer.city, day)
            cells[key].requests.append((employer, request))
    far = sorted((c for c in cells.values() if c.county.province.far), key=lambda c: -c.size)
    for cell in far[: max(1, round(args.trains * args.scale))]:
        if cell.size >= 50:
            cell.train = True
    return Campaign(employers, cells, counties, first_day)


def issue_id_numbers(campaign: Campaign, seed: int) -> dict[int, list[list[list[str]]]]:
    """Valid, unique GB 11643 numbers: employer -> request -> group -> numbers. The region is
    the origin county; 65% men (odd sequence digit); born 1966-2004 (mode 1980)."""
    rng = random.Random(seed + 1)  # noqa: S311 - test data, not secrets
    first, span = BIRTH_FIRST.toordinal(), (BIRTH_LAST - BIRTH_FIRST).days
    mode = (BIRTH_MODE - BIRTH_FIRST).days
    seen: set[str] = set()
    numbers: dict[int, list[list[list[str]]]] = {}
    for employer in campaign.employers:
        per_request = []
        for request in employer.requests:
            per_group = []
            for _, n in request.groups:
                group = []
                for _ in range(n):
                    while True:
                        born = date.fromordinal(first + round(rng.triangular(0, span, mode)))
                        male = rng.random() < 0.65
                        first17 = f"{request.county.code}{born:%Y%m%d}"
                        first17 += f"{rng.randrange(500) * 2 + male:03d}"
                        number = first17 + id_number_check_character(first17)
                        if number not in seen:
                            seen.add(number)
                            break
                    group.append(number)
                per_group.append(group)
            per_request.append(per_group)
        numbers[employer.index] = per_request
    return numbers


# --- roster files (made in 2 processes: signing passes is the slow part) --------------------

HEADERS = ["姓名", "身份证号", "手机号", "户籍地区代码", "户籍地区", "分组", "紧急联系人"]
HEADERS += ["紧急联系人电话", "健康码"]
_ISSUER_KEYS: dict[str, str] = {}  # province code -> private PEM, in each file-making process


@dataclass
class RosterJob:
    employer: int
    seed: int
    path: str
    # per request: (county code, county name, departure day ISO, [(tag, [ID numbers])])
    requests: list[tuple[str, str, str, list[tuple[str, list[str]]]]]
    first_worker: int  # global worker number of the first row (unique mobiles)


@dataclass
class RosterFile:
    employer: int
    path: str
    size: int  # bytes
    rows: int
    failing: list[int]  # per request


def _init_signer(keys: dict[str, str]) -> None:
    _ISSUER_KEYS.update(keys)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and stops the pool


def mobile(number: int, rng: random.Random, salt: int = 48271) -> str:
    """A mobile unique for each ``number`` (an affine map of 10^8 onto itself)."""
    return rng.choice(MOBILE_PREFIXES) + f"{(number * salt + 7) % 10**8:08d}"


def write_roster(job: RosterJob) -> RosterFile:
    rng = random.Random(job.seed)  # noqa: S311 - test data, not secrets
    surnames = [s for chars, _ in SURNAMES for s in chars]
    weights = [w for chars, w in SURNAMES for _ in chars]
    rows, failing = [], []
    number = job.first_worker
    for county_code, county_name, day_text, groups in job.requests:
        day = date.fromisoformat(day_text)
        issued = datetime.combine(day - timedelta(days=1), clock_time(10), ZONE)
        failed = 0
        for tag, id_numbers in groups:
            for id_number in id_numbers:
                number += 1
                male = int(id_number[16]) % 2 == 1
                given = GIVEN_MALE if male else GIVEN_FEMALE
                name = rng.choices(surnames, weights)[0] + "".join(
                    rng.choice(given) for _ in range(1 if rng.random() < 0.25 else 2)
                )
                status, expires = "green", issued + timedelta(days=7)
                roll = rng.random()
                if roll < YELLOW_RATE:
                    status = "yellow"
                elif roll < YELLOW_RATE + EXPIRED_RATE:
                    expires = issued + timedelta(hours=12)  # 22:00 the evening before
                failed += status != "green" or expires < issued + timedelta(days=1)
                claims = {
                    "iss": f"{county_code[:2]}0000",
                    "sub": id_number,
                    "name": name,
                    "status": status,
                    "iat": int(issued.timestamp()),
                    "exp": int(expires.timestamp()),
                    "jti": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                }
                token = sign_pass(_ISSUER_KEYS[county_code[:2]], claims)
                contact = ("", "")
                if rng.random() < 0.3:
                    contact = (
                        rng.choices(surnames, weights)[0] + rng.choice(GIVEN_FEMALE),
                        mobile(number, rng, 69621),
                    )
                rows.append(
                    (
                        name,
                        id_number,
                        mobile(number, rng),
                        int(county_code),
                        county_name,
                        tag,
                        *contact,
                        token,
                    )
                )
        failing.append(failed)
    path = Path(job.path)
    if path.suffix == ".csv":
        buffer = io.StringIO()
        buffer.write(",".join(HEADERS) + "\r\n")
        for row in rows:
            buffer.write(",".join(str(cell) for cell in row) + "\r\n")
        data = buffer.getvalue().encode("utf-8-sig")
    else:
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("返岗人员花名册")
        sheet.append(HEADERS)
        for row in rows:
            cells = list(row)
            for i in (1, 2, 7):  # ID and mobile numbers in text cells, as the template has them
                cell = WriteOnlyCell(sheet, value=cells[i] or None)
                cell.number_format = "@"
                cells[i] = cell
            sheet.append(cells)
        out = io.BytesIO()
        workbook.save(out)
        data = out.getvalue()
    path.write_bytes(data)
    return RosterFile(job.employer, job.path, len(data), len(rows), failing)


def make_rosters(
    campaign: Campaign, numbers: dict, keys: dict[str, str], folder: Path, fmt: str, seed: int
) -> int:
    """Every employer's roster file, in 2 processes (at most 8 jobs in flight). Returns bytes."""
    context = multiprocessing.get_context("spawn")
    total = 0
    first_worker = 0
    pending: list[Future] = []

    def collect(future: Future) -> None:
        nonlocal total
        result: RosterFile = future.result()
        employer = campaign.employers[result.employer]
        employer.roster = Path(result.path)
        for request, failed in zip(employer.requests, result.failing, strict=True):
            request.failing = failed
        total += result.size

    with ProcessPoolExecutor(2, context, initializer=_init_signer, initargs=(keys,)) as pool:
        for employer in campaign.employers:
            cells = {
                r.county.code: campaign.cells[(r.county.code, employer.city.code)]
                for r in employer.requests
            }
            job = RosterJob(
                employer.index,
                seed * 100_003 + employer.index,
                str(folder / f"{employer.index:04d}-返岗人员花名册.{fmt}"),
                [
                    (
                        r.county.code,
                        r.county.name,
                        cells[r.county.code].day.isoformat(),
                        [
                            (tag, ids)
                            for (tag, _), ids in zip(
                                r.groups, numbers[employer.index][i], strict=True
                            )
                        ],
                    )
                    for i, r in enumerate(employer.requests)
                ],
                first_worker,
            )
            first_worker += employer.size
            pending.append(pool.submit(write_roster, job))
            while len(pending) >= 8:
                collect(pending.pop(0))
        for future in pending:
            collect(future)
    return total


# --- measuring ------------------------------------------------------------------------------


@dataclass
class StageResult:
    name: str
    what: str
    calls: int = 0
    rows: int = 0
    rows_label: str = ""
    seconds: float = 0.0
    statements: int = 0
    sql_seconds: float = 0.0
    rss_mb: float = 0.0  # the process's peak RSS at the end of the stage
    cpu_seconds: float = 0.0  # CPU time (user + system) of this process and its clients
    busy: float = 0.0  # share of the machine's CPU time busy during the stage (anyone's)
    parts: dict[str, float] = field(default_factory=dict)
    work_seconds: float = 0.0  # wall time of the units of work, summed over the clients
    floor: tuple[str, ...] = ()  # floor items this stage's rows are compared with


# Functions timed exclusively inside the stages: (modules holding the name, name, label). A
# function imported by name into several modules is wrapped in each of them.
PARTS = (
    ((demand,), "read_table", "read_table (parse the file)"),
    ((demand,), "check_rows", "check_rows (validate rows)"),
    ((demand,), "_read_passes", "_read_passes (verify signatures)"),
    ((demand,), "_roster_clashes", "_roster_clashes"),
    ((demand,), "_save_roster", "_save_roster (encrypt, INSERT)"),
    ((health,), "add_passes", "health.add_passes"),
    ((demand,), "live_places", "live_places"),
    ((demand,), "_new_entries", "_new_entries (INSERT entries)"),
    ((demand,), "_claim_places", "_claim_places"),
    ((demand,), "_check_ages", "_check_ages"),
    ((demand,), "active_entries", "active_entries"),
    ((health,), "check_entries", "health.check_entries (rest)"),
    ((health.Checker,), "verdict", "Checker.verdict (rest: a pass read again)"),
    ((health.Checker,), "judge", "Checker.judge (the kept claims)"),
    ((health.Checker,), "know_holders", "Checker.know_holders"),
    ((health,), "_issuer_facts", "health._issuer_facts (trust list)"),
    ((health,), "check_entries_by_id", "health.check_entries_by_id (rest)"),
    ((health,), "plainly_cleared", "health.plainly_cleared (rest)"),
    ((health,), "current_claims", "health.current_claims"),
    ((health,), "write_stamps", "health.write_stamps (check times)"),
    ((health,), "_tell_employer", "health._tell_employer"),
    ((trips,), "make_plan", "make_plan"),
    ((trips,), "create_trips", "create_trips"),
    ((trips,), "_lock_trips", "_lock_trips"),
    ((trips,), "_lock_requests", "_lock_requests"),
    ((trips,), "_assignments_of", "assignments (seats, entries, workers)"),
    ((trips,), "_waiting_in_order", "_waiting_in_order"),
    ((allocation,), "allocate", "allocation.allocate (pure)"),
    ((trips,), "_give", "_give (rest)"),
    ((trips,), "_mark_entries", "_mark_entries"),
    ((trips,), "_seat_entries", "_seat_entries (status, codes, checks)"),
    ((trips,), "_update_requests", "_update_requests"),
    ((trips,), "_tell_seats", "_tell_seats (build messages)"),
    ((trips,), "notify_many", "notify_many (outbox INSERT)"),
    ((trips,), "_tell_destination", "_tell_destination (rest)"),
    ((trips, demand, health), "notify_users", "notify_users (staff email + inbox)"),
    ((trips, demand, health), "organization_users", "organization_users"),
    ((trips, demand), "region_coordinators", "region_coordinators"),
    ((trips, demand, health, notify, accounts), "record_audit", "record_audit"),
    ((trips,), "record_audits", "record_audits"),
)
COMMIT = "commit"


class StatementMeter(SqlMeter):
    """SqlMeter, and per statement (its first words): how many and how long."""

    def __init__(self) -> None:
        super().__init__()
        self.by_statement: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])

    def attach(self, engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info.setdefault("bench_started", []).append(time.perf_counter())

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):
            seconds = time.perf_counter() - conn.info["bench_started"].pop()
            self.statements += 1
            self.seconds += seconds
            key = " ".join(statement.split())[:110]
            counts = self.by_statement[key]
            counts[0] += 1
            counts[1] += seconds
            counts[2] += len(parameters) if executemany else 1


class Meter:
    """Times stages: wall, CPU (this process and its clients), SQL statements and their time,
    exclusive time of ``PARTS`` (summed over the client processes)."""

    def __init__(self, sql: StatementMeter, profile: str | None, sql_top: int = 0) -> None:
        self.sql = sql
        self.sql_top = sql_top
        self.clock = PhaseClock()
        self.stages: list[StageResult] = []
        self.profile = profile
        self.profiler: cProfile.Profile | None = None

    def patches(self) -> list:
        def timed(label: str, function: Callable) -> Callable:
            @wraps(function)
            def wrapper(*args, **kwargs):
                with self.clock.phase(label):
                    return function(*args, **kwargs)

            return wrapper

        return [
            mock.patch.object(module, name, timed(label, getattr(module, name)))
            for modules, name, label in PARTS
            for module in modules
        ]

    @contextmanager
    def stage(self, name: str, what: str, floor: tuple[str, ...] = ()) -> Iterator[StageResult]:
        result = StageResult(name, what, floor=floor)
        self.sql.by_statement.clear()
        profiler = cProfile.Profile() if self.profile == name else None
        print(f"{name}: {what}...", flush=True)
        started, cpu, children = time.perf_counter(), time.process_time(), children_cpu()
        busy, idle = system_cpu()
        if profiler:
            profiler.enable()
        try:
            yield result
        finally:
            if profiler:
                profiler.disable()
                self.profiler = profiler
            result.seconds = time.perf_counter() - started
            result.cpu_seconds = time.process_time() - cpu + children_cpu() - children
            busy_now, idle_now = system_cpu()
            spent = (busy_now - busy) + (idle_now - idle)
            result.busy = (busy_now - busy) / spent if spent else 0.0
            result.rss_mb = max(result.rss_mb, maxrss_mb())
            self.stages.append(result)
            if self.sql_top:
                top = sorted(self.sql.by_statement.items(), key=lambda kv: -kv[1][1])
                for statement, (n, seconds, rows) in top[: self.sql_top]:
                    print(f"    {seconds:7.2f} s {n:7,} x {rows:8,} rows  {statement}")
            rate = result.rows / result.seconds if result.seconds else 0
            print(
                f"  {result.seconds:.1f} s (CPU {result.cpu_seconds:.1f} s), {result.calls:,} "
                f"calls, {result.rows:,} {result.rows_label} ({rate:,.0f}/s), "
                f"peak RSS {result.rss_mb:.0f} MB, machine {result.busy:.0%} busy",
                flush=True,
            )

    def commit(self) -> None:
        with self.clock.phase(COMMIT):
            db.session.commit()


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the client processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Progress:
    """A line every ``every`` seconds during a long stage."""

    def __init__(self, total: int, every: float = 30.0) -> None:
        self.total, self.every = total, every
        self.started = self.last = time.perf_counter()

    def tick(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            elapsed = now - self.started
            eta = elapsed / done * (self.total - done) if done else 0
            print(f"    {done:,} of {self.total:,} in {elapsed:.0f} s (~{eta:.0f} s to go)")
            sys.stdout.flush()


# --- setup ----------------------------------------------------------------------------------


@dataclass
class Setup:
    coordinators: dict[str, int] = field(default_factory=dict)  # city code -> user id
    province_coordinator: int = 0
    coaches: list[tuple[int, int]] = field(default_factory=list)  # (vehicle id, seats)
    trains: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    steps: list[tuple[str, int, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, rows: int) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.steps.append((name, rows, time.perf_counter() - started))
        print(f"setup: {name}: {rows:,} in {time.perf_counter() - started:.1f} s", flush=True)


def issuer_keys() -> tuple[dict[str, str], dict[str, dict]]:
    private, public = {}, {}
    for province in PROVINCES:
        private[province.code], public[province.code] = generate_key()
    return private, public


def set_up_accounts(app: Flask, campaign: Campaign, public_keys: dict, setup: Setup) -> None:
    with app.app_context():
        now = datetime.now(ZONE)
        with setup.step("issuers on the trust list (health.create_issuer)", len(PROVINCES)):
            for province in PROVINCES:
                health.create_issuer(
                    f"{province.name}卫生健康委员会",
                    f"{province.code}0000",
                    json.dumps(public_keys[province.code]),
                    now - timedelta(days=30),
                    None,
                    None,
                )
        with setup.step("coordinators (accounts.create_user)", len(CITIES) + 1):
            for city in CITIES:
                user = accounts.create_user(
                    f"dispatch{city.code}@bench.example.cn",
                    PASSWORD,
                    Role.COORDINATOR,
                    f"{city.short}返岗调度",
                    region_code=city.code,
                )
                setup.coordinators[city.code] = user.id
            setup.province_coordinator = accounts.create_user(
                "dispatch370000@bench.example.cn",
                PASSWORD,
                Role.COORDINATOR,
                "山东省返岗专班",
                region_code="370000",
            ).id
        with setup.step("employers (accounts.create_organization)", len(campaign.employers)):
            for employer in campaign.employers:
                first17 = f"91{employer.city.code}MA3{employer.index:06d}"
                employer.organization_id = accounts.create_organization(
                    employer.name,
                    first17 + credit_code_check_character(first17),
                    employer.city.code,
                ).id
        with setup.step("employer accounts (INSERT, one password hash)", len(campaign.employers)):
            probe = User(email="x@example.cn", display_name="x", role=Role.EMPLOYER.value)
            probe.set_password(PASSWORD)
            rows = [
                {
                    "email": f"hr{employer.index:04d}@employer.example.cn",
                    "display_name": f"{employer.name}人事部",
                    "password_hash": probe.password_hash,
                    "role": Role.EMPLOYER.value,
                    "organization_id": employer.organization_id,
                    "active": True,
                }
                for employer in campaign.employers
            ]
            ids = db.session.scalars(
                insert(User).returning(User.id, sort_by_parameter_order=True), rows
            ).all()
            for employer, user_id in zip(campaign.employers, ids, strict=True):
                employer.user_id = user_id
        db.session.commit()


def set_up_fleet(app: Flask, campaign: Campaign, setup: Setup) -> None:
    """Coaches enough for the busiest two days (a coach from Yunnan is on the road 23 hours),
    half coach-53, half coach-45; one special train per train pair, 59 seats a carriage."""
    per_day: Counter = Counter()
    for cell in campaign.cells.values():
        if not cell.train:
            per_day[cell.day] += math.ceil(cell.size / 22) + 1
    busiest = sorted(per_day.values(), reverse=True)[:2]
    coaches = sum(busiest) + 10
    with app.app_context(), setup.step("fleet (operators, coaches, trains: INSERT)", coaches):
        operators = []
        for name in OPERATORS:
            operator = Operator(name=name, contact_phone="053188886666")
            db.session.add(operator)
            operators.append(operator)
        db.session.flush()
        letters = "ABCDEFGHJKLMNPQRSU"
        rows = [
            {
                "operator_id": operators[i % len(operators)].id,
                "kind": "coach",
                "identifier": f"鲁{letters[i % len(letters)]}{10000 + i}",
                "seatmap_template": "coach-53" if i % 2 == 0 else "coach-45",
                "blocked_seats": [],
            }
            for i in range(coaches)
        ]
        ids = db.session.scalars(
            insert(Vehicle).returning(Vehicle.id, sort_by_parameter_order=True), rows
        ).all()
        setup.coaches = [(vid, 26 if i % 2 == 0 else 22) for i, vid in enumerate(ids)]
        serial = 0
        for key, cell in campaign.cells.items():
            if not cell.train:
                continue
            count = math.ceil(cell.size / 1062)  # 18 carriages at most
            carriages = math.ceil(cell.size / count / 59)
            rows = []
            for _ in range(count):
                serial += 1
                rows.append(
                    {
                        "operator_id": operators[0].id,
                        "kind": "train",
                        "identifier": f"Y{500 + serial}",
                        "seatmap_template": "train-hard-seat-118",
                        "carriages": carriages,
                        "blocked_seats": [],
                    }
                )
            setup.trains[key] = list(
                db.session.scalars(
                    insert(Vehicle).returning(Vehicle.id, sort_by_parameter_order=True), rows
                ).all()
            )
        db.session.commit()


# --- the stages -----------------------------------------------------------------------------


@dataclass
class Run:
    app: Flask
    campaign: Campaign
    setup: Setup
    meter: Meter
    clients: int = 1
    dispatched: Counter = field(default_factory=Counter)
    trips: list[int] = field(default_factory=list)
    blocked: int = 0  # health refusals the services reported at allocation
    seated: int = 0
    plan_splits: int = 0
    lock_told: int = 0
    analyzer: AutoAnalyze | None = None


@dataclass
class Done:
    """What one unit of a stage's work did, in whichever client process ran it."""

    calls: int = 0
    rows: int = 0
    values: dict = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)
    statements: int = 0
    sql_seconds: float = 0.0
    dispatched: Counter = field(default_factory=Counter)
    rss_mb: float = 0.0
    seconds: float = 0.0


_RUN: Run | None = None  # the run, in this process and (copied by fork) in each client


def _client_started() -> None:
    """A forked client: its own database connections, never the parent's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _RUN.app.app_context():
        db.engine.dispose(close=False)


def _do(job: tuple[str, object]) -> Done:
    """One unit of work (``WORK[name](run, item)``), with what it cost."""
    name, item = job
    run = _RUN
    meter = run.meter
    meter.clock = PhaseClock()
    statements, sql_seconds = meter.sql.statements, meter.sql.seconds
    dispatched = Counter(run.dispatched)
    started = time.perf_counter()
    done = WORK[name](run, item)
    done.seconds = time.perf_counter() - started
    done.parts = dict(meter.clock.seconds)
    done.statements = meter.sql.statements - statements
    done.sql_seconds = meter.sql.seconds - sql_seconds
    done.dispatched = Counter(run.dispatched)
    done.dispatched.subtract(dispatched)
    done.rss_mb = maxrss_mb()
    return done


def execute(
    run: Run,
    stage: StageResult,
    name: str,
    items: list,
    on_done: Callable[[object, Done], None] | None = None,
    chunksize: int = 1,
) -> None:
    """Every item through ``WORK[name]``: here, or spread over ``run.clients`` forked client
    processes (as web and Celery workers serve many coordinators and employers at once)."""
    progress = Progress(len(items))
    pool = None
    if run.clients > 1 and len(items) > 1:
        pool = multiprocessing.get_context("fork").Pool(run.clients, _client_started)
        # imap keeps the order, so on_done sees each item with its result.
        results = pool.imap(_do, [(name, item) for item in items], chunksize)
    else:
        results = (_do((name, item)) for item in items)
    ok = False
    try:
        for n, (item, done) in enumerate(zip(items, results, strict=True), start=1):
            stage.calls += done.calls
            stage.rows += done.rows
            for label, seconds in done.parts.items():
                stage.parts[label] = stage.parts.get(label, 0.0) + seconds
            stage.work_seconds += done.seconds
            stage.statements += done.statements
            stage.sql_seconds += done.sql_seconds
            stage.rss_mb = max(stage.rss_mb, done.rss_mb)
            run.dispatched.update({k: v for k, v in done.dispatched.items() if v > 0})
            if on_done:
                on_done(item, done)
            progress.tick(n)
        ok = True
    finally:
        if pool is not None:
            if not ok:  # a failure or ^C: the clients stop now, not after the queued work
                pool.terminate()
            pool.close()
            pool.join()  # its CPU time counts in the stage once it is reaped


def work_import(run: Run, index: int) -> Done:
    employer = run.campaign.employers[index]
    meter = run.meter
    content = employer.roster.read_bytes()
    with run.app.app_context():  # the upload request
        organization = db.session.get(Organization, employer.organization_id)
        actor = db.session.get(User, employer.user_id)
        roster_import = demand.create_roster_import(
            organization, employer.roster.name.split("-", 1)[1], content, actor
        )
        import_id = roster_import.id
        meter.commit()
    del content
    with run.app.app_context():  # the Celery task, exactly its code
        with meter.clock.phase("import task (rest)"):
            import_roster.run(import_id)
        status = db.session.execute(
            text("SELECT status, added, errors FROM roster_imports WHERE id = :id"),
            {"id": import_id},
        ).one()
    if status.status != "done" or status.added != employer.size:
        raise BenchmarkFailure(
            f"import of {employer.name}: {status.status}, {status.added} added of "
            f"{employer.size}: {str(status.errors)[:300]}"
        )
    return Done(2, employer.size)


def stage_import(run: Run) -> None:
    with run.meter.stage(
        "import", "create_roster_import + import task, per employer", ("workers",)
    ) as stage:
        stage.rows_label = "workers"
        # The biggest rosters first: the clients finish together.
        order = sorted(
            range(len(run.campaign.employers)), key=lambda i: -run.campaign.employers[i].size
        )
        execute(run, stage, "import", order)


def request_fields(employer: Employer, request: Request, cell: Cell) -> dict:
    county = request.county
    return {
        "origin_region_code": county.code,
        "origin_region_name": county.name,
        "pickup_point": f"{county.short}{'火车站' if cell.train else '汽车站'}",
        "pickup_address": f"{county.name}城关镇车站路1号",
        "destination_region_code": employer.city.code,
        "destination_region_name": employer.city.name,
        "site_name": employer.name,
        "site_address": f"{employer.city.short}经济技术开发区{employer.index % 90 + 1}号",
        "site_contact_name": "赵经理",
        "site_contact_phone": f"1396{employer.index:07d}",
        "earliest_departure": cell.day,
        "latest_departure": cell.day + timedelta(days=2),
        "preferred_mode": "train" if cell.train else "coach",
    }


def request_items(run: Run) -> list[tuple[int, int]]:
    return [
        (employer.index, i)
        for employer in run.campaign.employers
        for i in range(len(employer.requests))
    ]


def work_request(run: Run, item: tuple[int, int]) -> Done:
    employer = run.campaign.employers[item[0]]
    request = employer.requests[item[1]]
    cell = run.campaign.cells[(request.county.code, employer.city.code)]
    with run.app.app_context():
        organization = db.session.get(Organization, employer.organization_id)
        actor = db.session.get(User, employer.user_id)
        created = demand.create_request(
            organization, request_fields(employer, request, cell), actor
        )
        request_id = created.id
        run.meter.commit()
    with run.app.app_context():  # the request-workers page, choosing the county's workers
        transport_request = db.session.get(TransportRequest, request_id)
        actor = db.session.get(User, employer.user_id)
        workers = list(
            db.session.scalars(
                select(Worker).where(
                    Worker.organization_id == employer.organization_id,
                    Worker.home_region_code == request.county.code,
                )
            )
        )
        added = demand.add_workers(transport_request, workers, actor)
        run.meter.commit()
    if added != request.size:
        raise BenchmarkFailure(f"add_workers added {added} of {request.size}")
    return Done(2, added, {"request_id": request_id})


def stage_requests(run: Run) -> None:
    def keep_id(item: tuple[int, int], done: Done) -> None:
        run.campaign.employers[item[0]].requests[item[1]].request_id = done.values["request_id"]

    with run.meter.stage(
        "requests",
        "create_request + commit, then add_workers (one county's workers) + commit",
        ("transport_requests", "roster_entries"),
    ) as stage:
        stage.rows_label = "entries"
        execute(run, stage, "request", request_items(run), keep_id, chunksize=4)


def work_submit(run: Run, item: tuple[int, int]) -> Done:
    employer = run.campaign.employers[item[0]]
    request = employer.requests[item[1]]
    with run.app.app_context():
        transport_request = db.session.get(TransportRequest, request.request_id)
        demand.submit_request(transport_request, db.session.get(User, employer.user_id))
        run.meter.commit()
    return Done(1, request.size)


def stage_submit(run: Run) -> None:
    with run.meter.stage(
        "submit", "submit_request + commit, per request", ("roster_entries",)
    ) as stage:
        stage.rows_label = "entries"
        execute(run, stage, "submit", request_items(run), chunksize=4)


def work_approve(run: Run, item: tuple[int, int]) -> Done:
    employer = run.campaign.employers[item[0]]
    request = employer.requests[item[1]]
    with run.app.app_context():
        transport_request = db.session.get(TransportRequest, request.request_id)
        coordinator = db.session.get(User, run.setup.coordinators[employer.city.code])
        demand.approve_request(transport_request, coordinator, "同意")
        run.meter.commit()
    return Done(1, 1)


def stage_approve(run: Run) -> None:
    with run.meter.stage("approve", "approve_request + commit, per request", ()) as stage:
        stage.rows_label = "requests"
        execute(run, stage, "approve", request_items(run), chunksize=8)


def cell_leg(cell: Cell) -> trips.Leg:
    departs = cell.departs
    county = cell.county
    return trips.Leg(
        origin_region_code=county.code,
        origin_point=f"{county.short}{'火车站' if cell.train else '汽车站'}",
        origin_address=f"{county.name}城关镇车站路1号",
        destination_region_code=cell.city.code,
        destination_point=f"{cell.city.short}返岗人员接收站",
        destination_address=None,
        departs_at=departs,
        arrives_at=departs + timedelta(hours=cell.hours),
        max_load_percent=50,
        isolation_rows=0 if cell.train else 2,
        alternate_seats=cell.train,
    )


def work_plan(run: Run, day: date) -> Done:
    """One departure day, as its coordinators plan it, pair by pair: the plan page over the
    approved requests and the free coaches offered (or the special train), then apply +
    commit. Coaches leave at 07:00 and are back by the next morning (23 hours at most), so
    every coach is free each day; even days take them from the start of the fleet, odd
    days from the end (two clients planning two days rarely want the same coach)."""
    setup = run.setup
    cells = sorted(
        (c for c in run.campaign.cells.values() if c.day == day),
        key=lambda c: (c.county.code, c.city.code),
    )
    free = list(setup.coaches if day.toordinal() % 2 == 0 else reversed(setup.coaches))
    done = Done(values={"trips": [], "splits": 0})
    for cell in cells:
        leg = cell_leg(cell)
        if cell.train:
            offered = setup.trains[(cell.county.code, cell.city.code)]
        else:  # free coaches whose seats cover the cell, and one more
            offered, room = [], 0
            for vid, seats in free:
                offered.append(vid)
                room += seats
                if room >= cell.cleared + 26:
                    break
        request_ids = sorted(r.request_id for _, r in cell.requests)
        with run.app.app_context():  # the plan page: the chosen rows, the plan shown
            requests = db.session.scalars(
                select(TransportRequest)
                .where(TransportRequest.id.in_(request_ids))
                .order_by(TransportRequest.id)
            ).all()
            vehicles = db.session.scalars(
                select(Vehicle).where(Vehicle.id.in_(offered)).order_by(Vehicle.id)
            ).all()
            the_plan = trips.make_plan(requests, vehicles, leg.policy)
            if not the_plan.ok:
                raise BenchmarkFailure(
                    f"{cell.county.name} -> {cell.city.name}: {the_plan.missing_seats} "
                    f"seats short with {len(vehicles)} vehicles"
                )
            loads = {
                vehicles[planned.option].id: {int(key): n for key, n in planned.loads}
                for planned in the_plan.vehicles
            }
            done.values["splits"] += sum(1 for n in the_plan.pieces.values() if n > 1)
        with run.app.app_context():  # the plan form posted: apply
            actor = db.session.get(User, setup.coordinators[cell.city.code])
            created, problems = trips.apply_plan(leg, loads, actor)
            if problems:
                raise BenchmarkFailure(f"apply_plan refused the plan: {problems[:3]}")
            done.values["trips"].extend(t.id for t in created)
            run.meter.commit()
        done.calls += 2
        done.rows += len(created)
        free = [(vid, seats) for vid, seats in free if vid not in loads]
    return done


def stage_plan(run: Run) -> None:
    def keep(_day: date, done: Done) -> None:
        run.trips.extend(done.values["trips"])
        run.plan_splits += done.values["splits"]

    days = sorted({c.day for c in run.campaign.cells.values()})
    with run.meter.stage(
        "plan", "make_plan + apply_plan + commit, per (origin, destination, day)", ("trips",)
    ) as stage:
        stage.rows_label = "trips"
        execute(run, stage, "plan", days, keep)
    run.trips.sort()


def trip_groups(run: Run) -> list[tuple[int, list[int]]]:
    """The trips, as (coordinator, trip ids) per (origin, destination, day), the biggest pairs
    first: a pair's trips share requests, whose rows allocation locks."""
    with run.app.app_context():
        rows = db.session.execute(
            text(
                "SELECT id, origin_region_code, destination_region_code, departs_at FROM trips "
                "ORDER BY id"
            )
        ).all()
    groups: dict[tuple, list[int]] = defaultdict(list)
    for trip_id, origin, destination, departs in rows:
        groups[(origin, destination, departs)].append(trip_id)
    return sorted(
        ((run.setup.coordinators[key[1]], ids) for key, ids in groups.items()),
        key=lambda group: -len(group[1]),
    )


def work_allocate(run: Run, item: tuple[int, list[int]]) -> Done:
    actor_id, trip_ids = item
    with run.app.app_context():
        actor = db.session.get(User, actor_id)
        outcomes = trips.safe_integrity(lambda: trips.allocate_trips(trip_ids, actor))
        run.meter.commit()
    done = Done(calls=1, values={"blocked": 0})
    for trip_id, outcome in outcomes.items():
        if outcome.unplaced:
            raise BenchmarkFailure(f"trip {trip_id}: unplaced {outcome.unplaced}")
        done.rows += outcome.seated
        done.values["blocked"] += outcome.blocked
    return done


def stage_allocate(run: Run) -> None:
    def keep(_item, done: Done) -> None:
        run.blocked += done.values["blocked"]

    groups = trip_groups(run)
    with run.meter.stage(
        "allocate", "allocate_trips + commit, per (origin, destination, day)", ("seat_assignments",)
    ) as stage:
        stage.rows_label = "seats"
        execute(run, stage, "allocate", groups, keep)
    run.seated = stage.rows


def work_lock(run: Run, item: tuple[int, list[int]]) -> Done:
    actor_id, trip_ids = item
    done = Done(values={"told": 0})
    for trip_id in trip_ids:
        with run.app.app_context():
            actor = db.session.get(User, actor_id)
            told = trips.safe_integrity(lambda t=trip_id, a=actor: trips.lock_manifest(t, a))
            run.meter.commit()
        done.calls += 1
        done.values["told"] += told
    return done


def stage_lock(run: Run) -> None:
    def keep(_item, done: Done) -> None:
        run.lock_told += done.values["told"]

    groups = trip_groups(run)
    with run.meter.stage(
        "lock", "lock_manifest + commit, per trip", ("notifications (lock)",)
    ) as stage:
        stage.rows_label = "outbox rows"
        execute(run, stage, "lock", groups, keep)
        with run.app.app_context():
            stage.rows = db.session.execute(
                text(
                    "SELECT count(*) FROM notifications WHERE template IN "
                    "('seat_given', 'departure_reminder', 'trip_advance_notice')"
                )
            ).scalar_one()


WORK: dict[str, Callable[[Run, object], Done]] = {
    "import": work_import,
    "request": work_request,
    "submit": work_submit,
    "approve": work_approve,
    "plan": work_plan,
    "allocate": work_allocate,
    "lock": work_lock,
}


# --- dispatch through Celery + Redis --------------------------------------------------------


@dataclass
class Dispatch:
    due_sms: int = 0
    due_other: int = 0
    reminders: int = 0
    seconds: float = 0.0
    sms_seconds: float = 0.0
    first_sent: float | None = None
    relays_sent: int = 0
    gateway_messages: int = 0
    gateway_keys: int = 0
    gateway_digest: str = ""
    gateway_requests: int = 0
    worker_rss_mb: float = 0.0
    relay_seconds: list[float] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)
    task_problems: int = 0
    failures: list[str] = field(default_factory=list)
    # Tasks each worker ran during the stage (hostname -> task name -> count), from the workers'
    # own counters (`celery inspect stats`), so external workers are counted too.
    per_worker: dict[str, dict[str, int]] = field(default_factory=dict)
    external: bool = False

    @property
    def batches(self) -> int:
        counted = sum(tasks.get(notify.SEND_TASK, 0) for tasks in self.per_worker.values())
        return counted or len(self.batch_seconds)

    def split(self) -> str:
        """'worker.1@vm 1,200 send_batch (52%) + 3 relay; ...' (batches of up to 100 SMS)."""
        total = max(self.batches, 1)
        return "; ".join(
            f"{name} {tasks.get(notify.SEND_TASK, 0):,} send_batch "
            f"({tasks.get(notify.SEND_TASK, 0) / total:.0%}) + {tasks.get(notify.RELAY_TASK, 0)} "
            "relay"
            for name, tasks in sorted(self.per_worker.items())
        )


@contextmanager
def campaign_database(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(URL, name) of the campaign's database: a fresh one, dropped at the end; with
    ``--external-workers`` the one the running workers use (``--database-url``), which must be
    migrated and empty (no one's data is ever emptied), and is emptied again at the end."""
    if not args.external_workers:
        with fresh_named_database(args.postgres_url) as found:
            yield found
        return
    url = normalize_database_url(args.database_url)
    name = make_url(url).database
    tables_query = (
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename != 'alembic_version' ORDER BY tablename"
    )
    with psycopg.connect(libpq_dsn(url), autocommit=True, connect_timeout=5) as connection:
        tables = [table for (table,) in connection.execute(tables_query)]
        if not tables:
            raise BenchmarkFailure(
                f"database {name} has no tables: migrate it first "
                "(honcho run flask --app app db upgrade)"
            )
        has_rows = 'SELECT EXISTS (SELECT FROM "{}")'
        full = [t for t in tables if connection.execute(has_rows.format(t)).fetchone()[0]]
        if full:
            raise BenchmarkFailure(
                f"database {name} is not empty (rows in {', '.join(full[:5])}): the campaign "
                "needs a migrated, empty database of its own, and empties it at the end"
            )
    try:
        yield url, name
    finally:
        with psycopg.connect(libpq_dsn(url), autocommit=True, connect_timeout=5) as connection:
            tables = [table for (table,) in connection.execute(tables_query)]
            listed = ", ".join(f'"{table}"' for table in tables)
            connection.execute(f"TRUNCATE {listed} RESTART IDENTITY CASCADE")
        print(f"database {name} emptied (the workers' database: the campaign's rows are gone)")


def worker_stats(celery_app) -> dict[str, dict]:
    """hostname -> `celery inspect stats` of every worker that answers within a second."""
    return celery_app.control.inspect(timeout=1.0).stats() or {}


def tasks_run(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Tasks each worker ran between two `worker_stats` (their ``total`` counters)."""
    ran = {}
    for name, stats in after.items():
        earlier = before.get(name, {}).get("total", {})
        ran[name] = {
            task: count - earlier.get(task, 0)
            for task, count in stats.get("total", {}).items()
            if count - earlier.get(task, 0)
        }
    return ran


def _unsent(poll: psycopg.Connection) -> tuple[int, int]:
    """(due messages of any channel not sent yet, any failed or dead). A count over the whole
    outbox (1.1 million rows, by two parallel workers): asked every few seconds, not at each
    poll, or the benchmark takes a core from the dispatch it measures."""
    return poll.execute(
        "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending') AND send_at <= now()), "
        "count(*) FILTER (WHERE status IN ('failed', 'dead')) FROM notifications"
    ).fetchone()


def gateway_summary(url: str) -> tuple[int, int, str]:
    """(messages, distinct keys, digest of the sorted keys) held by the gateway: run in a child
    process, so the big JSON list does not count in this process's memory."""
    messages = httpx.get(f"{url}/v1/sms/messages", timeout=300).json()
    keys = sorted({m["idempotency_key"] for m in messages})
    return len(messages), len(keys), hashlib.sha256("\n".join(keys).encode()).hexdigest()


def peak_rss_of_group(pid: int) -> float:
    """The largest VmHWM (peak RSS) among a process and its children, in MB."""
    peaks = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(entry.name) == pid or fields.get("PPid", "").strip() == str(pid):
            peaks.append(int(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
    return max(peaks, default=0.0)


def stage_dispatch(run: Run, args: argparse.Namespace, database_url: str, tmp: Path) -> Dispatch:
    result = Dispatch(external=args.external_workers)
    if args.external_workers:
        gateway_url = args.gateway_url.rstrip("/")
        httpx.delete(f"{gateway_url}/v1/sms/messages", timeout=30).raise_for_status()
    else:
        redis.Redis.from_url(args.redis_url).flushdb()
        gateway_url = f"http://127.0.0.1:{free_port()}"
    env = {
        **PII_KEYS,
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis_url,
        "SMS_GATEWAY_URL": gateway_url,
        "FANGANG_INSTANCE_PATH": str(tmp),
        "FANGANG_ENV": "development",
    }
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with ExitStack() as stack:
        worker = None
        if not args.external_workers:
            gateway = start(
                "the fake SMS gateway",
                [*FLASK, "notify", "fake-sms-gateway", "--port", gateway_url.rsplit(":", 1)[1]],
                env,
                tmp / "gateway.log",
            )
            stack.callback(gateway.stop)
            gateway.wait_for("listening on")
            worker = start(
                "celery worker",
                [*CELERY_WORKER, "--hostname", "campaign@%h"],
                env,
                tmp / "worker.log",
            )
            stack.callback(worker.stop)
            worker.wait_for(" ready.")
        sender = build_redis_app(database_url, args.redis_url, gateway_url)
        # The app logs at INFO: not a line per poll of the gateway's count.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        celery_app = sender.extensions["celery"]
        before = worker_stats(celery_app)
        if not before:
            raise BenchmarkFailure(
                f"no Celery worker answers on {args.redis_url}"
                + (": start them first (README.md: honcho)" if args.external_workers else "")
            )
        poll = psycopg.connect(dsn, autocommit=True)
        stack.callback(poll.close)
        result.due_sms, result.due_other, result.reminders = poll.execute(
            "SELECT count(*) FILTER (WHERE channel = 'sms' AND send_at <= now()), "
            "count(*) FILTER (WHERE channel != 'sms' AND send_at <= now()), "
            "count(*) FILTER (WHERE template = 'departure_reminder') FROM notifications "
            "WHERE status = 'pending'"
        ).fetchone()
        print(
            f"dispatch: {result.due_sms:,} SMS and {result.due_other:,} staff messages due, "
            f"{result.reminders:,} reminders later; {len(before)} worker(s) ready "
            f"({', '.join(sorted(before))}), gateway at {gateway_url}",
            flush=True,
        )
        # One kick, then beat's relay every 10 s. (A kick per 100,000 due messages, as
        # notify_dispatch sends, keeps both pool processes claiming and none sending: with
        # 300,000 due the first SMS left after 23 s.) External workers have their own beat too:
        # its relays come on top (relays are safe to run at once: SKIP LOCKED claims).
        started = time.perf_counter()
        celery_app.send_task(notify.RELAY_TASK)
        result.relays_sent += 1
        last_relay = started
        last_change, last_sent, next_report = started, -1, started + 15
        waiting, bad, next_unsent = None, 0, started + UNSENT_EVERY
        while True:
            time.sleep(0.25)
            # SMS sent: as the gateway counts them (cheap); the rest from the outbox, now and then.
            sent = httpx.get(f"{gateway_url}/v1/control", timeout=30).json()["messages"]
            now = time.perf_counter()
            if now >= next_unsent:
                waiting, bad = _unsent(poll)
                # Once every SMS is out, only the staff messages are left to wait for.
                next_unsent = now + (1.0 if sent >= result.due_sms else UNSENT_EVERY)
            if sent and result.first_sent is None:
                result.first_sent = now - started
            if sent >= result.due_sms and result.sms_seconds == 0.0:
                result.sms_seconds = now - started
            if waiting == 0 and sent >= result.due_sms:
                result.seconds = now - started
                break
            if sent != last_sent:
                last_sent, last_change = sent, now
            if now - last_relay >= RELAY_EVERY:  # beat's periodic relay
                celery_app.send_task(notify.RELAY_TASK)
                result.relays_sent += 1
                last_relay = now
            if now >= next_report:
                print(f"    {now - started:6.1f} s: {sent:,} SMS sent, {waiting:,} waiting")
                sys.stdout.flush()
                next_report += 15
            exited = worker is not None and worker.process.poll() is not None
            if bad or exited or now - last_change > STALL_SECONDS:
                result.seconds = now - started
                result.failures.append(
                    f"dispatch stopped: {sent:,} of {result.due_sms:,} SMS sent, {bad} failed, "
                    f"worker {'exited' if exited else 'running'}"
                    + (
                        " (do the workers use config.TestingConfig's PII keys, this database "
                        "and this gateway?)"
                        if args.external_workers
                        else ""
                    )
                )
                if worker is not None:
                    print(f"\n--- worker log ---\n{worker.tail()}", file=sys.stderr)
                break
        after = worker_stats(celery_app)
        result.per_worker = tasks_run(before, after)
        # Each worker's main process and its pool processes (this machine's workers only).
        pids = [stats["pid"] for stats in after.values() if "pid" in stats]
        result.worker_rss_mb = max(map(peak_rss_of_group, pids), default=0.0)
        if worker is not None:
            time.sleep(1.0)  # the worker's last log lines
            times = task_times([worker.text()])
            result.relay_seconds, result.batch_seconds = times.relay, times.send_batch
            result.task_problems = times.problems
        print(f"dispatch per worker: {result.split()}", flush=True)
        with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
            messages, keys, digest = pool.submit(gateway_summary, gateway_url).result()
        result.gateway_messages, result.gateway_keys, result.gateway_digest = messages, keys, digest
        result.gateway_requests = httpx.get(f"{gateway_url}/v1/control").json()["requests"]
        with sender.app_context():
            db.session.remove()
            db.engine.dispose()
    return result


# --- statistics, as autovacuum keeps them ---------------------------------------------------


def auto_analyze(dsn: str, naptime: float, stop, log: str) -> None:
    """What autovacuum does for the planner, for a server where it is off (this machine's is):
    every ``naptime`` seconds, ANALYZE each table changed by more than 50 + 10% of its rows
    since it was last analyzed (autovacuum_analyze_threshold and _scale_factor, defaults).
    Runs in its own process; appends "seconds<TAB>table" lines to the file ``log``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with psycopg.connect(dsn, autocommit=True) as connection:
        while not stop.wait(naptime):
            due = connection.execute(
                "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
                "WHERE s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0) "
                # Not the sessions' temporary tables (notify_many's outbox_batch): autovacuum
                # leaves them alone, and another session cannot analyze them.
                "AND s.schemaname = 'public'"
            ).fetchall()
            for (table,) in due:
                started = time.perf_counter()
                connection.execute(f'ANALYZE "{table}"')
                with open(log, "a") as out:
                    out.write(f"{time.perf_counter() - started:.3f}\t{table}\n")


class AutoAnalyze:
    """The auto-analyzer beside the run, when the server's autovacuum is off."""

    def __init__(self, dsn: str, naptime: float, log: Path) -> None:
        self.dsn, self.naptime, self.log = dsn, naptime, log
        self.entries: list[tuple[float, str]] = []
        self.active = False
        self._process = self._stop = None

    def start(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            off = connection.execute("SHOW autovacuum").fetchone()[0] != "on"
        if not off or self.naptime <= 0:
            return
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._process = context.Process(
            target=auto_analyze,
            args=(self.dsn, self.naptime, self._stop, str(self.log)),
            daemon=True,
        )
        self._process.start()
        self.active = True

    def stop(self) -> None:
        if self._process is None:
            return
        self._stop.set()
        self._process.join(timeout=300)
        if self._process.is_alive():
            self._process.terminate()
        self._process = None
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                seconds, table = line.split("\t")
                self.entries.append((float(seconds), table))


# --- the COPY floor -------------------------------------------------------------------------

# What each stage wrote: (label, table, rows to copy).
FLOOR_ITEMS = (
    ("workers", "workers", "TRUE"),
    ("health_certificates", "health_certificates", "TRUE"),
    ("transport_requests", "transport_requests", "TRUE"),
    ("roster_entries", "roster_entries", "TRUE"),
    ("trips", "trips", "TRUE"),
    ("trip_loads", "trip_loads", "TRUE"),
    ("seat_assignments", "seat_assignments", "TRUE"),
    (
        "notifications (lock)",
        "notifications",
        "template IN ('seat_given', 'departure_reminder', 'trip_advance_notice')",
    ),
)
STAGE_FLOORS = {
    "import": ("workers", "health_certificates"),
    "requests": ("transport_requests", "roster_entries"),
    "submit": ("roster_entries",),
    "approve": ("transport_requests",),
    "plan": ("trips", "trip_loads"),
    "allocate": ("seat_assignments",),
    "lock": ("notifications (lock)",),
}


def copy_floor(dsn: str, tmp: Path) -> dict[str, tuple[int, float]]:
    """Label -> (rows, seconds of COPY FROM STDIN + commit into an equivalent scratch table)."""
    floor = {}
    with psycopg.connect(dsn, autocommit=True) as connection:
        for label, table, where in FLOOR_ITEMS:
            scratch = f"floor_{table}"
            connection.execute(f"DROP TABLE IF EXISTS {scratch}")
            connection.execute(
                f"CREATE TABLE {scratch} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            unique = connection.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = %s::regclass AND indisunique",
                (table,),
            ).fetchall()
            for (definition,) in unique:
                connection.execute(
                    re.sub(
                        r"^CREATE UNIQUE INDEX (\S+) ON (\S+) ",
                        rf"CREATE UNIQUE INDEX floor_\1 ON public.{scratch} ",
                        definition,
                    )
                )
            path = tmp / f"{scratch}.copy"
            rows = 0
            with (
                path.open("wb") as out,
                connection.cursor().copy(
                    f"COPY (SELECT * FROM {table} WHERE {where}) TO STDOUT"  # noqa: S608
                ) as copy,
            ):
                for data in copy:
                    out.write(data)
                    rows += bytes(data).count(b"\n")
            best = math.inf
            for _ in range(3):  # the best of three: the machine is shared
                connection.execute(f"TRUNCATE {scratch}")
                connection.execute("CHECKPOINT")  # earlier dirty pages are not the floor's
                started = time.perf_counter()
                with (
                    connection.transaction(),
                    path.open("rb") as source,
                    connection.cursor().copy(f"COPY {scratch} FROM STDIN") as copy,
                ):
                    while chunk := source.read(1 << 20):
                        copy.write(chunk)
                best = min(best, time.perf_counter() - started)
            floor[label] = (rows, best)
            path.unlink()
            connection.execute(f"DROP TABLE {scratch}")
    return floor


# --- the work floor -------------------------------------------------------------------------

WORK_FLOOR_ROWS = 20_000  # rows of the campaign's own files timed; the rest scaled from them


@dataclass
class WorkFloor:
    """What the import must do for each worker that a COPY does not, in C primitives alone:
    microseconds a worker per part, timed on ``rows`` rows of the campaign's files in one
    process; ``seconds`` scales the sum to the campaign's workers, spread over ``cores``."""

    rows: int
    workers: int
    cores: int
    parts: dict[str, float]  # label -> µs a worker

    @property
    def seconds(self) -> float:
        return sum(self.parts.values()) * self.workers / self.cores / 1e6


def work_floor(campaign: Campaign, public_keys: dict[str, dict], cores: int) -> WorkFloor:
    """No Python row handling at all is timed: inflating and Expat-parsing each sheet's XML
    (no cells built), one ECDSA P-256 verification per pass (OpenSSL through
    ``cryptography``), and sealing what a worker and their certificate keep (AES-GCM of the ID
    number, phone, emergency phone and pass; HMAC-SHA256 of the ID number, phone, the pass's
    subject and name). Any design that checks every pass and seals the personal data when the
    roster comes in, as the issue asks, does at least this."""
    verifiers = {}
    for jwk in public_keys.values():
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_b64url(jwk["x"])), int.from_bytes(_b64url(jwk["y"])), ec.SECP256R1()
        )
        verifiers[key_id(jwk)] = numbers.public_key()
    sealer, hash_key = AESGCM(AESGCM.generate_key(256)), os.urandom(32)
    es256 = ec.ECDSA(hashes.SHA256())
    parse = verify = seal = 0.0
    rows = 0
    for employer in campaign.employers:
        if rows >= WORK_FLOOR_ROWS:
            break
        data = employer.roster.read_bytes()
        started = time.perf_counter()
        if employer.roster.suffix == ".xlsx":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                expat.ParserCreate().Parse(archive.read("xl/worksheets/sheet1.xml"), True)
        else:
            for _ in csv.reader(io.StringIO(data.decode("utf-8-sig"))):
                pass
        parse += time.perf_counter() - started
        table = read_table(employer.roster.name, data)  # untimed: the values to work on
        signed = []
        for _, cells in table.rows:
            header, payload, signature = str(cells[-1]).split(".")
            kid = json.loads(_b64url(header))["kid"]
            raw = _b64url(signature)
            der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
            signed.append((verifiers[kid], der, f"{header}.{payload}".encode()))
        started = time.perf_counter()
        for key, der, message in signed:
            key.verify(der, message, es256)
        verify += time.perf_counter() - started
        values = [
            (str(cells[0]), str(cells[1]), str(cells[2]), cells[7] and str(cells[7]), cells[-1])
            for _, cells in table.rows
        ]
        started = time.perf_counter()
        for name, id_number, phone, contact, token in values:
            for value in (id_number, phone, contact, token):
                if value:
                    sealer.encrypt(os.urandom(12), value.encode(), None)
            for value in (id_number, phone, id_number, name):
                hmac.new(hash_key, value.encode(), hashlib.sha256).hexdigest()
        seal += time.perf_counter() - started
        rows += len(table.rows)
    per_row = 1e6 / rows
    return WorkFloor(
        rows,
        campaign.workers,
        cores,
        {
            "inflate + Expat (the sheet's XML, no cells built)": parse * per_row,
            "ECDSA P-256 verification of the pass (OpenSSL)": verify * per_row,
            "AES-GCM x3-4 + HMAC-SHA256 x4 (the sealed columns)": seal * per_row,
        },
    )


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- the end state --------------------------------------------------------------------------


def verify(run: Run, dispatch: Dispatch | None) -> tuple[list[str], dict[str, int]]:
    campaign = run.campaign
    workers = campaign.workers
    failing = sum(r.failing for _, r in campaign.requests)
    cleared = workers - failing
    problems: list[str] = []
    facts: dict[str, int] = {}

    def scalar(query: str) -> int:
        return db.session.execute(text(query)).scalar_one()

    with run.app.app_context():
        statuses = dict(
            db.session.execute(
                text("SELECT status, count(*) FROM roster_entries GROUP BY status")
            ).all()
        )
        facts.update({f"entries {k}": v for k, v in statuses.items()})
        if statuses.get("seated", 0) != cleared or statuses.get("blocked", 0) != failing:
            problems.append(
                f"entries {statuses}: expected {cleared:,} seated and {failing:,} blocked"
            )
        checks = {
            "seated entries without exactly one seat": (
                "SELECT count(*) FROM roster_entries e WHERE e.status = 'seated' AND "
                "(SELECT count(*) FROM seat_assignments a WHERE a.roster_entry_id = e.id) != 1"
            ),
            "seats of entries not seated": (
                "SELECT count(*) FROM seat_assignments a JOIN roster_entries e "
                "ON e.id = a.roster_entry_id WHERE e.status != 'seated'"
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
            "workers on no request or on two": (
                "SELECT count(*) FROM workers w WHERE "
                "(SELECT count(*) FROM roster_entries e WHERE e.worker_id = w.id) != 1"
            ),
        }
        for what, query in checks.items():
            if n := scalar(query):
                problems.append(f"{n:,} {what}")
        facts["seats"] = scalar("SELECT count(*) FROM seat_assignments")
        facts["trips"] = scalar("SELECT count(*) FROM trips")
        if facts["seats"] != cleared:
            problems.append(f"{facts['seats']:,} seats for {cleared:,} cleared workers")
        # No vehicle over its policy capacity.
        capacity_of: dict[tuple, int] = {}
        over = 0
        rows = db.session.execute(
            text(
                "SELECT t.id, v.seatmap_template, v.first_carriage, v.carriages, "
                "v.blocked_seats, t.blocked_seats, t.max_load_percent, t.isolation_rows, "
                "t.alternate_seats, (SELECT count(*) FROM seat_assignments a "
                "WHERE a.trip_id = t.id) FROM trips t JOIN vehicles v ON v.id = t.vehicle_id"
            )
        ).all()
        for _tid, template, first, carriages, vblocked, tblocked, pct, iso, alt, n in rows:
            key = (template, first, carriages, tuple(vblocked or ()), tuple(tblocked or ()))
            key += (pct, iso, alt)
            if key not in capacity_of:
                seat_map = build_vehicle(template, range(first, first + carriages))
                policy = allocation.Policy.of_percent(pct, iso, alt)
                blocked = frozenset(vblocked or ()) | frozenset(tblocked or ())
                capacity_of[key] = allocation.capacity(seat_map, policy, blocked)
            over += n > capacity_of[key]
        if over:
            problems.append(f"{over} trips over their policy capacity")
        sms = db.session.execute(
            text(
                "SELECT count(*), count(DISTINCT split_part(event, ':', 3)), "
                "count(*) FILTER (WHERE status = 'sent') FROM notifications "
                "WHERE template = 'seat_given' AND channel = 'sms'"
            )
        ).one()
        facts["seat SMS"], facts["seat SMS sent"] = sms[0], sms[2]
        if (sms[0], sms[1]) != (cleared, cleared):
            problems.append(f"{sms[0]:,} seat SMS for {sms[1]:,} entries, expected {cleared:,}")
        reminders = db.session.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE status = 'pending' AND send_at > now()) "
                "FROM notifications WHERE template = 'departure_reminder'"
            )
        ).one()
        facts["reminders"], facts["reminders pending, due later"] = reminders
        if tuple(reminders) != (2 * cleared, 2 * cleared):
            problems.append(f"reminders {tuple(reminders)}, expected {2 * cleared:,} pending")
        if dispatch is not None:
            problems.extend(dispatch.failures)
            if sms[2] != cleared:
                problems.append(f"{sms[2]:,} of {cleared:,} seat SMS sent")
            keys = db.session.scalars(
                text(
                    "SELECT idempotency_key FROM notifications WHERE channel = 'sms' "
                    "AND status = 'sent' ORDER BY idempotency_key"
                )
            ).all()
            digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
            del keys
            if (dispatch.gateway_messages, dispatch.gateway_keys) != (cleared, cleared):
                problems.append(
                    f"the gateway holds {dispatch.gateway_messages:,} SMS with "
                    f"{dispatch.gateway_keys:,} keys, expected {cleared:,}"
                )
            if digest != dispatch.gateway_digest:
                problems.append("the gateway's message keys are not the table's sent SMS keys")
            failed = scalar("SELECT count(*) FROM notifications WHERE status IN ('failed', 'dead')")
            if failed:
                problems.append(f"{failed:,} messages failed or dead")
    facts["cleared (expected seated)"], facts["failing passes"] = cleared, failing
    return problems, facts


# --- report ---------------------------------------------------------------------------------


def describe(campaign: Campaign, setup: Setup) -> None:
    cells = list(campaign.cells.values())
    train_cells = [c for c in cells if c.train]
    sizes = sorted(e.size for e in campaign.employers)
    requests = campaign.requests
    print(
        f"campaign: {campaign.workers:,} workers of {len(campaign.employers):,} employers "
        f"(sizes {sizes[0]}-{sizes[-1]}, median {sizes[len(sizes) // 2]}) in {len(requests):,} "
        f"requests, from {len({c.county.code for c in cells})} origin counties to "
        f"{len({c.city.code for c in cells})} cities, {len(cells):,} (origin, destination, "
        f"day) pairs over {len({c.day for c in cells})} days from {campaign.first_day}; "
        f"{len(train_cells)} by special train ({sum(c.size for c in train_cells):,} workers); "
        f"fleet {len(setup.coaches):,} coaches (coach-53 / coach-45 at 50%, 2 rows empty: "
        f"26 / 22 seats), {sum(len(v) for v in setup.trains.values())} trains."
    )


def report(
    run: Run,
    dispatch: Dispatch | None,
    floor: dict[str, tuple[int, float]],
    work: WorkFloor,
    facts: dict[str, int],
    top: int,
    callees: str | None = None,
    dump: str | None = None,
) -> list[str]:
    meter = run.meter
    print("\nsetup (generation and bulk set-up, not part of the campaign's time):")
    print_table(
        ("step", "rows", "seconds"),
        [(name, f"{n:,}", f"{s:.1f}") for name, n, s in run.setup.steps],
        (False, True, True),
    )
    print("\nthe COPY floor (COPY FROM STDIN into a scratch table: same columns, unique keys):")
    print_table(
        ("rows of", "rows", "seconds", "rows/s"),
        [(label, f"{n:,}", f"{s:.2f}", f"{n / s:,.0f}") for label, (n, s) in floor.items()],
        (False, True, True, True),
    )

    print(
        f"\nthe work floor (what the import does beyond a COPY, in C primitives alone, no "
        f"Python row handling: timed on {work.rows:,} rows of the campaign's files, scaled to "
        f"{work.workers:,} workers on {work.cores} cores):"
    )
    print_table(
        ("part", "µs a worker", "seconds"),
        [
            (label, f"{us:.1f}", f"{us * work.workers / work.cores / 1e6:.1f}")
            for label, us in work.parts.items()
        ]
        + [("total", f"{sum(work.parts.values()):.1f}", f"{work.seconds:.1f}")],
        (False, True, True),
    )

    def floor_of(name: str) -> float:
        return sum(floor[label][1] for label in STAGE_FLOORS.get(name, ()) if label in floor)

    print("\nthe campaign, stage by stage (each call its own app context and commit):")
    if run.clients > 1:
        print(
            f"(the calls of each stage spread over {run.clients} client processes; the indented "
            "parts are exclusive times summed over the clients, process-seconds, not wall)"
        )
    rows = []
    for stage in meter.stages:
        f = floor_of(stage.name)
        rows.append(
            (
                stage.name,
                f"{stage.calls:,}",
                f"{stage.rows:,} {stage.rows_label}",
                f"{stage.seconds:.1f}",
                f"{stage.cpu_seconds:.1f}" if stage.cpu_seconds else "",
                f"{stage.busy:.0%}" if stage.busy else "",
                f"{stage.rows / stage.seconds:,.0f}" if stage.seconds else "",
                f"{stage.seconds / f:,.0f}x" if f else "",
                f"{stage.statements:,}" if stage.statements else "",
                f"{stage.sql_seconds:.1f}" if stage.statements else "",
                f"{stage.rss_mb:.0f}",
            )
        )
        shown = 0.0
        for label, seconds in sorted(stage.parts.items(), key=lambda kv: -kv[1]):
            if seconds >= 0.03 * stage.seconds or seconds >= 5:
                shown += seconds
                rows.append((f"  {label}", "", "", f"{seconds:.1f}", *[""] * 7))
        if shown:
            rest = (stage.work_seconds or stage.seconds) - shown
            rows.append(("  the rest", "", "", f"{rest:.1f}", *[""] * 7))
    total = sum(s.seconds for s in meter.stages)
    rows.append(
        (
            "total",
            "",
            f"{run.campaign.workers:,} workers",
            f"{total:.1f}",
            f"{sum(s.cpu_seconds for s in meter.stages):.1f}",
            "",
            "",
            "",
            "",
            "",
            f"{maxrss_mb():.0f}",
        )
    )
    print_table(
        TABLE_HEADER,
        rows,
        (False, *[True] * 10),
    )
    if dispatch is not None:
        first = f"{dispatch.first_sent:.2f}" if dispatch.first_sent is not None else "-"
        print(
            f"\ndispatch: {dispatch.due_sms:,} due SMS sent in {dispatch.sms_seconds:.1f} s "
            f"({dispatch.due_sms / max(dispatch.sms_seconds, 1e-9):,.0f}/s, first after "
            f"{first} s), all {dispatch.due_sms + dispatch.due_other:,} due messages (staff "
            f"email and inbox too) in {dispatch.seconds:.1f} s; {dispatch.reminders:,} "
            f"reminders wait for their time. {dispatch.relays_sent} relay tasks sent; "
            f"{dispatch.batches:,} send_batch tasks"
            + (
                f" (mean {_mean(dispatch.batch_seconds) * 1000:.0f} ms), relays mean "
                f"{_mean(dispatch.relay_seconds):.2f} s"
                if dispatch.batch_seconds
                else ""
            )
            + f"; {dispatch.gateway_requests:,} gateway requests; worker peak RSS "
            f"{dispatch.worker_rss_mb:.0f} MB (largest process)."
        )
        kind = "external workers" if dispatch.external else "the benchmark's worker"
        print(f"per worker ({kind}): {dispatch.split()}.")
    analyzer = run.analyzer
    if analyzer is not None and analyzer.active:
        tables = Counter(table for _, table in analyzer.entries)
        print(
            f"\nautovacuum is off on this server: the run analyzed as it would (every "
            f"{analyzer.naptime:.0f} s, tables changed by over 50 + 10% rows): "
            f"{len(analyzer.entries)} ANALYZE, {sum(s for s, _ in analyzer.entries):.1f} s in "
            f"all ({', '.join(f'{t} {n}' for t, n in tables.most_common(6))})."
        )
    print("\nend state: " + ", ".join(f"{k} {v:,}" for k, v in facts.items()))
    print(
        f"plan: {len(run.trips):,} trips, {run.plan_splits:,} requests split across vehicles; "
        f"allocation: {run.seated:,} seated, {run.blocked:,} health refusals (a blocked worker is "
        "counted once for each departure they are judged for); "
        f"jobs recorded (not run) during the service stages: {dict(run.dispatched)}"
    )
    # The targets.
    by_name = {s.name: s for s in meter.stages}
    whole = sum(s.seconds for s in meter.stages)
    path = ("import", "requests", "submit", "approve", "plan", "allocate")
    strict = ("import", "plan", "allocate")

    def seconds(names) -> float:
        return sum(by_name[n].seconds for n in names if n in by_name)

    def floors(names) -> float:
        labels = {label for n in names for label in STAGE_FLOORS.get(n, ())}
        return sum(floor[label][1] for label in labels if label in floor)

    misses = []
    print("\ntargets:")
    ok = dispatch is not None and whole < TARGET_SECONDS
    print(
        f"  {'PASS' if ok else 'FAIL'}: the whole campaign{'' if dispatch else ' (no dispatch)'}"
        f" in {whole:.0f} s (target < {TARGET_SECONDS:.0f} s)"
    )
    if not ok:
        misses.append("time")
    if floor:
        for label, names in (("import..allocate", path), ("import + plan + allocate", strict)):
            multiple = seconds(names) / floors(names)
            ok = multiple <= TARGET_FLOOR_MULTIPLE
            print(
                f"  {'PASS' if ok else 'FAIL'}: {label} ({' + '.join(names)}) "
                f"{seconds(names):.0f} s = {multiple:.0f}x its COPY floor of "
                f"{floors(names):.2f} s (target <= {TARGET_FLOOR_MULTIPLE:.0f}x)"
            )
            if not ok:
                misses.append(label)
        least = floors(strict) + work.seconds
        print(
            f"        the least import + plan + allocate can take: {work.seconds:.1f} s of work "
            f"floor + {floors(strict):.2f} s of COPY floor = {least:.1f} s = "
            f"{least / floors(strict):.1f}x the COPY floor, before any Python, ORM or SQL"
        )
    peak = max(maxrss_mb(), dispatch.worker_rss_mb if dispatch else 0.0)
    ok = peak < TARGET_RSS_MB
    print(
        f"  {'PASS' if ok else 'FAIL'}: peak RSS {maxrss_mb():.0f} MB (this process), "
        f"{dispatch.worker_rss_mb if dispatch else 0:.0f} MB (the Celery worker's largest "
        f"process) (target < {TARGET_RSS_MB:.0f} MB)"
    )
    if not ok:
        misses.append("memory")
    print_profile(meter, top, callees, dump)
    return misses


def print_profile(meter: Meter, top: int, callees: str | None, dump: str | None) -> None:
    if not meter.profiler:
        return
    print(f"\ncProfile of the {meter.profile} stage, top {top}:")
    stats = pstats.Stats(meter.profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    if callees:
        stats.sort_stats("cumulative").print_callees(callees)
    if dump:
        meter.profiler.dump_stats(dump)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# --- the run --------------------------------------------------------------------------------


class BenchmarkFailure(AssertionError):
    pass


def run_campaign(args: argparse.Namespace) -> int:
    first_day = datetime.now(ZONE).date() + timedelta(days=2)
    setup = Setup()
    with setup.step("generate the campaign (employers, requests, pairs)", args.workers):
        campaign = generate(args, first_day)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fangang-campaign-")))
        private_keys, public_keys = issuer_keys()
        with setup.step("ID numbers (unique, valid)", campaign.workers):
            numbers = issue_id_numbers(campaign, args.seed)
        with setup.step(
            f"roster files ({args.format}, passes signed: sign_pass, 2 processes)",
            campaign.workers,
        ):
            size = make_rosters(campaign, numbers, private_keys, tmp, args.format, args.seed)
            del numbers
        print(f"setup: {len(campaign.employers):,} roster files, {size / 1e6:,.1f} MB", flush=True)
        database_url, database_name = stack.enter_context(campaign_database(args))
        app = build_embedded_app(database_url)
        stack.callback(lambda: _dispose(app))
        meter = Meter(StatementMeter(), args.profile, args.sql_top)
        run = Run(app, campaign, setup, meter, args.clients)
        global _RUN
        _RUN = run
        stack.enter_context(
            mock.patch.object(jobs, "dispatch", lambda task, ids: run.dispatched.update([task]))
        )
        for patch in meter.patches():
            stack.enter_context(patch)
        with app.app_context():
            db.create_all()
            meter.sql.attach(db.engine)
        set_up_accounts(app, campaign, public_keys, setup)
        set_up_fleet(app, campaign, setup)
        describe(campaign, setup)
        analyzer = AutoAnalyze(libpq_dsn(database_url), args.analyze_every, tmp / "analyze.log")
        analyzer.start()
        stack.callback(analyzer.stop)
        run.analyzer = analyzer

        steps = {
            "import": stage_import,
            "requests": stage_requests,
            "submit": stage_submit,
            "approve": stage_approve,
            "plan": stage_plan,
            "allocate": stage_allocate,
            "lock": stage_lock,
        }
        for name, step in steps.items():
            step(run)
            if name == args.stop_after:
                break
        if args.stop_after in steps:
            print(f"stopped after {args.stop_after}")
            print_profile(meter, args.profile_top, args.profile_callees, args.profile_dump)
            if args.keep_database:
                analyzer.stop()  # its connection would keep the database from being copied
                _dispose(app)
                keep_copy(args.postgres_url, database_name, args.keep_database)
            return 0
        dispatch = None
        if not args.no_dispatch:
            on = "the running Celery workers" if args.external_workers else "a Celery worker"
            print(f"dispatch: relay + send_batch on {on}, to the gateway...", flush=True)
            busy, idle = system_cpu()
            dispatch = stage_dispatch(run, args, database_url, tmp)
            busy_now, idle_now = system_cpu()
            meter.stages.append(
                StageResult(
                    "dispatch",
                    f"{len(dispatch.per_worker)} running Celery workers + Redis + fake gateway"
                    if args.external_workers
                    else "Celery prefork x2 + Redis + fake gateway",
                    calls=dispatch.relays_sent + dispatch.batches,
                    rows=dispatch.due_sms,
                    rows_label="SMS",
                    seconds=dispatch.seconds,
                    rss_mb=maxrss_mb(),
                    busy=(busy_now - busy) / ((busy_now - busy) + (idle_now - idle)),
                )
            )
            print(f"  {dispatch.seconds:.1f} s", flush=True)
        analyzer.stop()
        print("checking the end state...", flush=True)
        problems, facts = verify(run, dispatch)
        print("measuring the COPY floor...", flush=True)
        floor = copy_floor(libpq_dsn(database_url), tmp)
        print("measuring the work floor...", flush=True)
        work = work_floor(campaign, public_keys, os.cpu_count() or 1)
        misses = report(
            run,
            dispatch,
            floor,
            work,
            facts,
            args.profile_top,
            args.profile_callees,
            args.profile_dump,
        )
        if args.keep_database:
            _dispose(app)
            keep_copy(args.postgres_url, database_name, args.keep_database)
    if problems:
        print(f"\nFAILED: {len(problems)} wrong results:", file=sys.stderr)
        for problem in problems[:10]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(
        "\nend state verified: every cleared worker seated exactly once, every failing pass "
        "blocked, no seat twice, no trip over its policy capacity"
        + (", one SMS per seated worker at the gateway." if dispatch else ".")
    )
    return 1 if misses else 0


def libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def keep_copy(postgres_url: str, name: str, copy: str) -> None:
    """A copy of the campaign's database that outlives the run (to study its query plans)."""
    server = make_url(postgres_url).set(drivername="postgresql")
    dsn = server.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{copy}"')
        connection.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
    print(f"kept a copy of the database as {copy}")


def _dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.campaign", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=FULL_WORKERS, help="at scale 1")
    parser.add_argument("--employers", type=int, default=FULL_EMPLOYERS, help="at scale 1")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the two above")
    parser.add_argument("--counties", type=int, default=300, help="origin counties")
    parser.add_argument("--days", type=int, default=10, help="departure days")
    parser.add_argument("--trains", type=int, default=20, help="special trains at scale 1")
    parser.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    parser.add_argument(
        "--analyze-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="when the server's autovacuum is off: analyze as it would, this often (0: never)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=2,
        help="processes making the service calls of each stage (default 2: one per core)",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--profile", choices=STAGES[:-1], help="run one stage under cProfile")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--profile-callees", help="also show what functions matching this call")
    parser.add_argument("--profile-dump", metavar="PATH", help="write the cProfile stats here")
    parser.add_argument(
        "--sql-top", type=int, default=0, help="show each stage's N costliest statements"
    )
    parser.add_argument("--keep-database", metavar="NAME", help="keep a copy under this name")
    parser.add_argument(
        "--stop-after", choices=STAGES[:-1], help="stop after this stage (no checks, no report)"
    )
    parser.add_argument("--no-dispatch", action="store_true", help="stop after the lock stage")
    parser.add_argument(
        "--external-workers",
        action="store_true",
        help="dispatch on the Celery workers already running (honcho start: README.md) instead "
        "of starting one; they must use --database-url, --redis-url (not flushed), "
        "--gateway-url and config.TestingConfig's PII keys",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="with --external-workers: their DATABASE_URL, migrated and empty; the campaign runs "
        "in it and empties it at the end",
    )
    parser.add_argument(
        "--gateway-url",
        metavar="URL",
        help="with --external-workers: their SMS_GATEWAY_URL, a fake gateway (emptied first)",
    )
    args = parser.parse_args(argv)
    if args.external_workers and not (args.database_url and args.gateway_url):
        parser.error("--external-workers needs --database-url and --gateway-url")
    if args.external_workers and args.keep_database:
        parser.error("--keep-database copies the database, which running workers hold open")
    if not args.external_workers and (args.database_url or args.gateway_url):
        parser.error("--database-url and --gateway-url go with --external-workers")
    args.workers = round(args.workers * args.scale)
    args.employers = max(1, round(args.employers * args.scale))
    if args.workers < 15 * args.employers or args.days < 1 or args.counties < 1:
        parser.error("at least 15 workers per employer, one day and one county")
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    if args.profile or args.sql_top:
        args.clients = 1  # cProfile and the statement table see this process only
    return run_campaign(args)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: worker and gateway stopped, database dropped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    try:
        sys.exit(main())
    except BenchmarkFailure as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        sys.exit(2)
