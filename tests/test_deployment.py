"""Deployment beyond one machine: the load balancer's checks (/healthz, /readyz), JSON logs with
request ids (web and Celery), and the web under gunicorn as production starts it."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from alembic.script import ScriptDirectory
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from app.core import logs
from app.core.services import TEST_JOB_TASK
from app.extensions import db, limiter
from config import normalize_database_url
from tests.conftest import (
    ROOT,
    TEST_DATABASE_URL,
    TEST_PII_KEYS,
    flask_cli,
    make_app,
    service_env,
)
from tests.test_notify import SEAT

PHONE = "13800138000"
ID_NUMBER = "11010519491231002X"


# --- helpers -------------------------------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite file built by the migrations (`flask db upgrade`, as a deployment does)."""
    tmp = tmp_path_factory.mktemp("migrated-sqlite")
    path = tmp / "fangang.db"
    result = flask_cli("db", "upgrade", env=service_env(tmp, f"sqlite:///{path}"))
    assert result.returncode == 0, result.stderr
    return path


def sqlite_copy(migrated_sqlite: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.db"
    shutil.copy(migrated_sqlite, copy)
    return copy


@contextmanager
def app_on(database_uri: str, **overrides) -> Iterator:
    app = make_app(database_uri, reset_limits=False, **overrides)
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


def ready(app, **kwargs):
    response = app.test_client().get("/readyz", **kwargs)
    assert response.status_code in (200, 503), response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    return response, response.get_json()


# --- /healthz and /readyz ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_ready_on_migrated_postgres_with_redis(migrated_postgres_url, redis_url):
    with app_on(migrated_postgres_url, REDIS_URL=redis_url) as app:
        response, body = ready(app)
    assert response.status_code == 200
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "redis": "ok"},
    }


@pytest.mark.postgres
def test_ready_on_postgres_without_redis(pg_app):
    response, body = ready(pg_app)
    assert response.status_code == 200
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "not configured"}


def test_empty_database_is_not_ready(tmp_path):
    """The app never migrates by itself: an empty database stays out of the pool."""
    with app_on(f"sqlite:///{tmp_path / 'empty.db'}") as app:
        response, body = ready(app)
        # ...and /readyz did not create the tables either.
        with app.app_context():
            assert db.session.execute(text("SELECT count(*) FROM sqlite_master")).scalar() == 0
    assert response.status_code == 503
    assert body["failed"] == ["migrations"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "behind"


def test_database_one_migration_behind_is_not_ready(tmp_path):
    head = ScriptDirectory(str(ROOT / "migrations")).get_revision("head")
    path = tmp_path / "behind.db"
    env = service_env(tmp_path, f"sqlite:///{path}")
    result = flask_cli("db", "upgrade", head.down_revision, env=env)
    assert result.returncode == 0, result.stderr
    with app_on(f"sqlite:///{path}") as app:
        response, body = ready(app)
    assert response.status_code == 503
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"] == "behind"


def test_database_migrated_by_a_newer_release_stays_ready(migrated_sqlite, tmp_path):
    """Migrate first, then replace the code: the old code stays in the pool meanwhile."""
    path = sqlite_copy(migrated_sqlite, tmp_path)
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00dcafe0001'")
    with app_on(f"sqlite:///{path}") as app:
        response, body = ready(app)
    assert response.status_code == 200
    assert body["checks"]["migrations"] == "ahead"


def test_unreachable_database_is_a_503_not_a_500(tmp_path):
    with app_on(f"sqlite:///{tmp_path}/missing-dir/x.db", STARTUP_CHECKS=False) as app:
        response, body = ready(app)
    assert response.status_code == 503
    assert body["failed"] == ["database"]
    assert body["checks"]["migrations"] == "not checked"
    assert "missing-dir" not in response.get_data(as_text=True)


def test_unreachable_redis_is_degraded_not_down_quickly_without_the_address(
    migrated_sqlite, tmp_path
):
    """Ready still (the pages work without Redis): a load balancer must not take every web
    node out during a Redis outage. Said in the body, found out quickly."""
    url = f"redis://:s3cret-password@127.0.0.1:{free_port()}/0"
    with app_on(f"sqlite:///{migrated_sqlite}", REDIS_URL=url, STARTUP_CHECKS=False) as app:
        started = time.monotonic()
        response, body = ready(app)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["failed"] == ["redis"]
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "unreachable"}
    assert elapsed < 2
    shown = response.get_data(as_text=True)
    assert "s3cret" not in shown
    assert "127.0.0.1" not in shown


def test_hung_redis_is_found_out_within_the_timeout(migrated_sqlite):
    with (
        silent_server() as port,
        app_on(
            f"sqlite:///{migrated_sqlite}",
            REDIS_URL=f"redis://127.0.0.1:{port}/0",
            STARTUP_CHECKS=False,
            READINESS_TIMEOUT=0.5,
        ) as app,
    ):
        started = time.monotonic()
        response, body = ready(app)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert (body["status"], body["failed"]) == ("degraded", ["redis"])
    assert elapsed < 3


def test_checks_need_no_sign_in_and_skip_rate_limits(migrated_sqlite):
    """Even under an application-wide limit of 2 a minute (negative control: /login gets 429)."""
    try:
        with app_on(f"sqlite:///{migrated_sqlite}", RATELIMIT_APPLICATION="2 per minute") as app:
            with app.app_context():
                limiter.reset()
            client = app.test_client()
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
                assert client.get("/readyz").status_code == 200
            assert [client.get("/login").status_code for _ in range(3)][-1] == 429
    finally:
        limiter.limit_manager.set_application_limits([])


# --- logs ----------------------------------------------------------------------------------


@dataclass
class JsonApp:
    app: Flask
    stream: io.StringIO

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines()]

    def access_lines(self) -> list[dict]:
        return [line for line in self.lines() if line["logger"] == "fangang.access"]


@pytest.fixture
def json_app(migrated_sqlite, tmp_path) -> Iterator[JsonApp]:
    """The app with LOG_FORMAT=json, its log lines caught; the root logger restored after."""
    root = logging.getLogger()
    level = root.level
    path = sqlite_copy(migrated_sqlite, tmp_path)
    app = make_app(f"sqlite:///{path}", reset_limits=False, LOG_FORMAT="json")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # errors go through the error pages, as in prod
    stream = io.StringIO()
    next(h for h in root.handlers if getattr(h, "_fangang", False)).setStream(stream)
    yield JsonApp(app, stream)
    logs.remove(root)
    root.setLevel(level)
    with app.app_context():
        db.engine.dispose()


def test_a_request_makes_one_json_access_line_with_its_request_id(json_app):
    response = json_app.client().get(
        f"/healthz?phone={PHONE}&id={ID_NUMBER}", headers={"X-Request-ID": "lb-7f3a9c21"}
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "lb-7f3a9c21"
    [line] = json_app.access_lines()
    assert line["request_id"] == "lb-7f3a9c21"
    assert line["method"] == "GET"
    assert line["path"] == "/healthz"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO"
    assert line["time"].endswith("+00:00")
    assert PHONE not in json_app.text()
    assert ID_NUMBER not in json_app.text()


@pytest.mark.parametrize("given", [None, "", "x" * 200, "has space", "<script>", "a\tb"])
def test_a_missing_or_strange_request_id_is_replaced(json_app, given):
    headers = {} if given is None else {"X-Request-ID": given}
    response = json_app.client().get("/healthz", headers=headers)
    request_id = response.headers["X-Request-ID"]
    assert request_id != given
    assert len(request_id) == 32
    [line] = json_app.access_lines()
    assert line["request_id"] == request_id


def test_each_request_gets_its_own_id(json_app):
    client = json_app.client()
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert {line["request_id"] for line in json_app.access_lines()} == ids


def test_an_error_is_logged_with_its_traceback_and_request_id(json_app):
    def boom():
        raise RuntimeError("boom in a view")

    json_app.app.add_url_rule("/test-boom", "test_boom", boom)
    response = json_app.client().get("/test-boom", headers={"X-Request-ID": "req-err-1"})
    assert response.status_code == 500
    errors = [line for line in json_app.lines() if line["level"] == "ERROR"]
    assert errors  # (Flask logs it, and so does app/core/errors.py)
    for error in errors:
        assert error["request_id"] == "req-err-1"
        assert "RuntimeError: boom in a view" in error["exception"]
    [access] = json_app.access_lines()
    assert access["status"] == 500


def test_a_signed_link_token_is_not_logged(json_app):
    token = "eyJ0cmlwIjoxfQ.c2lnbmF0dXJl"
    json_app.client().get(f"/my-trip/{token}")
    [line] = json_app.access_lines()
    assert line["path"] == "/my-trip/<token>"
    assert token not in json_app.text()


def test_log_format_is_checked_at_start(tmp_path):
    result = flask_cli(
        "routes",
        env={
            "FANGANG_INSTANCE_PATH": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
            "LOG_FORMAT": "xml",
        },
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "fangang: LOG_FORMAT='xml' is not one of json, text."
    ]


@pytest.mark.postgres
@pytest.mark.redis
def test_celery_worker_logs_json_lines_with_the_task_id(migrated_postgres_url, redis_url, tmp_path):
    queue = f"fangang-log-test-{uuid.uuid4().hex[:8]}"  # no other test's worker takes ours
    env = {
        **os.environ,
        **service_env(tmp_path, migrated_postgres_url, redis_url),
        "LOG_FORMAT": "json",
    }
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "workers", "--quiet", "worker"),
                *("--loglevel", "INFO", "--pool", "solo", "-Q", queue),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "ready." in out.read_text(), worker, out, err)
        with app_on(migrated_postgres_url, REDIS_URL=redis_url) as app:
            sent = app.extensions["celery"].send_task(TEST_JOB_TASK, args=[2**31 - 1], queue=queue)
        wait_for(
            lambda: sent.id in out.read_text() and "succeeded" in out.read_text(), worker, out, err
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    # Every line is JSON but the notice Celery prints itself (not through logging) on SIGTERM.
    text_lines = out.read_text().splitlines()
    assert [line for line in text_lines if not line.startswith("{")] == [
        "",
        "worker: Warm shutdown (MainProcess)",
    ]
    lines = [json.loads(line) for line in text_lines if line.startswith("{")]
    assert any(line["message"].endswith("ready.") for line in lines)
    done = [line for line in lines if line.get("task_id") == sent.id]
    assert done, lines
    assert all(line["task_name"] == TEST_JOB_TASK for line in done)


def wait_for(condition, process, *outputs: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail("\n".join(path.read_text() for path in outputs))
        time.sleep(0.2)


# --- gunicorn ------------------------------------------------------------------------------


def test_gunicorn_master_never_imports_the_app():
    """So the workers a `systemctl reload` (SIGHUP) starts load the new code, not the old."""
    script = (
        "import runpy, sys\n"
        "settings = runpy.run_path('config/gunicorn.conf.py')\n"
        "assert settings['preload_app'] is False\n"
        "assert 'logconfig_dict' in settings\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('app', 'config', 'workers')]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "FANGANG_ENV": "production"}
    env.pop("LOG_FORMAT", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_gunicorn_serves_the_checks_and_stops_cleanly_on_sigterm(
    migrated_sqlite, tmp_path, redis_url
):
    """Production as deployed: gunicorn with config/gunicorn.conf.py, FANGANG_ENV=production
    (JSON logs), two workers on a migrated database; then SIGTERM, as systemd stops it."""
    port = free_port()
    env = {
        **os.environ,
        **TEST_PII_KEYS,
        "FANGANG_ENV": "production",
        "SECRET_KEY": "deployment-test-secret-key-deployment-test",
        "DATABASE_URL": f"sqlite:///{sqlite_copy(migrated_sqlite, tmp_path)}",
        "REDIS_URL": redis_url,
        "FANGANG_INSTANCE_PATH": str(tmp_path),
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }
    env.pop("BIND", None)
    env.pop("LOG_FORMAT", None)
    out, err = tmp_path / "gunicorn.out", tmp_path / "gunicorn.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn"),
                *("-c", "config/gunicorn.conf.py", "app:create_app()"),
            ],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(out.read_text() + err.read_text())
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        live = httpx.get(f"{base}/healthz?phone={PHONE}", headers={"X-Request-ID": "gw-live-1"})
        readiness = httpx.get(f"{base}/readyz", headers={"X-Request-ID": "gw-ready-1"})
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            returncode = server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert live.status_code == 200
    assert live.headers["X-Request-ID"] == "gw-live-1"
    assert readiness.status_code == 200, readiness.text
    assert readiness.json()["checks"]["migrations"] == "ok"
    assert returncode == 0, err.read_text()
    # Every line gunicorn and the app wrote is one JSON object; one access line per request.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    requests = {line["request_id"]: line for line in lines if line["logger"] == "fangang.access"}
    assert requests["gw-live-1"]["path"] == "/healthz"
    assert requests["gw-ready-1"]["status"] == 200
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
    assert any(line["message"] == "Handling signal: term" for line in lines)
    assert PHONE not in out.read_text() + err.read_text()


# --- honcho: every process of the Procfile, locally ------------------------------------------

HONCHO_BATCH = re.compile(
    r"^\S+ (worker\.\d+) +\| .*Task fangang\.notify\.send_batch\[[^\]]+\] succeeded in "
    r"[0-9.e-]+s: \{'sent': (\d+)",
    re.MULTILINE,
)
HONCHO_MESSAGES = 1500  # 15 batches of 100: more than one worker's two pool processes hold


def process_tree(root: int) -> dict[int, str]:
    """Every living descendant of ``root`` (and itself): pid -> start time (/proc stat field
    22), so a pid reused later is not mistaken for one of them."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[19])
    found = {root} if root in table else set()
    frontier = set(found)
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return {pid: table[pid][1] for pid in found}


def still_alive(tree: dict[int, str]) -> dict[int, str]:
    alive = {}
    for pid, started in tree.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[19] == started and fields[0] != "Z":
            alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return alive


def two_free_ports() -> int:
    """A base port P with P + 1 free as well (honcho gives web.1 P and web.2 P + 1)."""
    for _ in range(50):
        port = free_port()
        with closing(socket.socket()) as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no two free ports in a row")


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    server = make_url(normalize_database_url(server_url))
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"fangang_honcho_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        pytest.fail(f"PostgreSQL at TEST_DATABASE_URL={server_url} cannot be reached: {error}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def honcho(*args: str) -> list[str]:
    return [sys.executable, "-m", "honcho", *args]


@pytest.mark.postgres
@pytest.mark.redis
def test_honcho_runs_the_procfile_two_webs_two_workers_one_beat(redis_url, tmp_path):
    """README, "Run everything locally with honcho": the migrations through `honcho run`, then
    `honcho start -c web=2,worker=2,beat=1` on a scratch PostgreSQL database and Redis; both
    webs ready, an outbox of 1,500 SMS delivered exactly once with both workers sending, and
    Ctrl-C (SIGINT to honcho) stops every process it started, none killed."""
    from app.notify import services as notify
    from app.notify.fake_gateway import FakeSmsGateway
    from app.notify.models import Channel, Notification

    redis.Redis.from_url(redis_url).flushdb()  # no task another test left behind
    port = two_free_ports()
    with (
        scratch_database(TEST_DATABASE_URL) as database_url,
        FakeSmsGateway() as gateway,
    ):
        gateway.set_delay(0.05)  # a batch takes a while, so one worker cannot take them all
        env_file = tmp_path / "honcho.env"
        settings = {
            **service_env(tmp_path, database_url, redis_url),
            "LOG_FORMAT": "text",
            "WEB_CONCURRENCY": "1",
            "SMS_GATEWAY_URL": gateway.url,
        }
        env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items()))
        env = {k: v for k, v in os.environ.items() if k not in ("PORT", "BIND")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

        # 1. Migrations: their own step, with the same environment.
        migrate = subprocess.run(
            honcho("run", "-e", str(env_file), "flask", "--app", "app", "db", "upgrade"),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr

        # 2. Everything else.
        log = tmp_path / "honcho.log"
        start = ("start", "-e", str(env_file), "--no-colour", "-p", str(port))
        with log.open("w") as output:
            manager = subprocess.Popen(
                honcho(*start, "-c", "web=2,worker=2,beat=1"),
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        tree: dict[int, str] = {}  # every process honcho started, seen while running
        try:
            webs = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]

            def up() -> bool:
                text = log.read_text()
                if not all(re.search(rf"worker\.{n}@\S+ ready\.", text) for n in (1, 2)):
                    return False
                if "beat: Starting..." not in text:
                    return False
                for web in webs:
                    try:
                        if httpx.get(f"{web}/readyz", timeout=2).status_code != 200:
                            return False
                    except httpx.TransportError:
                        return False
                return True

            wait_for(up, manager, log)
            tree.update(process_tree(manager.pid))
            started = log.read_text()
            assert re.search(rf"^\S+ web\.1 +\| .*Listening at: \S+:{port} ", started, re.M)
            assert re.search(rf"^\S+ web\.2 +\| .*Listening at: \S+:{port + 1} ", started, re.M)
            assert len(re.findall(r"^\S+ beat\.\d+ +\|.*beat: Starting", started, re.M)) == 1
            for web in webs:
                assert httpx.get(f"{web}/readyz").json()["checks"] == {
                    "database": "ok",
                    "migrations": "ok",
                    "redis": "ok",
                }

            # 3. The outbox, as a locked trip writes it; its commit nudges the relay.
            app = make_app(database_url, REDIS_URL=redis_url, SMS_GATEWAY_URL=gateway.url)
            pings = app.extensions["celery"].control.inspect(timeout=5, limit=2).ping() or {}
            assert {name.split("@")[0] for name in pings} == {"worker.1", "worker.2"}
            with app.app_context():
                notify.notify_many(
                    notify.Outgoing(
                        f"seat.given:h:{n}", Channel.SMS, f"+86139{n:08d}", "seat_given", SEAT
                    )
                    for n in range(HONCHO_MESSAGES)
                )
                db.session.commit()

            def sent_by_worker() -> Counter:
                counts: Counter = Counter()
                for worker, sent in HONCHO_BATCH.findall(log.read_text()):
                    counts[worker] += int(sent)
                return counts

            wait_for(lambda: sum(sent_by_worker().values()) >= HONCHO_MESSAGES, manager, log)
            with app.app_context():
                statuses = Counter(db.session.scalars(select(Notification.status)))
                keys = set(db.session.scalars(select(Notification.idempotency_key)))
                db.session.remove()
                db.engine.dispose()
        finally:
            # 4. Ctrl-C: honcho sends SIGTERM to each process's group and waits for them.
            tree.update(process_tree(manager.pid))
            manager.send_signal(signal.SIGINT)
            try:
                returncode = manager.wait(timeout=40)
            except subprocess.TimeoutExpired:
                manager.kill()
                raise
            finally:
                leftovers = still_alive(tree)
                for pid in leftovers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        delivered = [m["idempotency_key"] for m in gateway.messages]

    text = log.read_text()
    assert statuses == {"sent": HONCHO_MESSAGES}
    assert len(delivered) == HONCHO_MESSAGES  # exactly once each...
    assert set(delivered) == keys  # ...and these very messages
    split = sent_by_worker()
    assert sum(split.values()) == HONCHO_MESSAGES, split  # no batch sent twice
    assert set(split) == {"worker.1", "worker.2"}, split  # both workers did some of the work
    assert all(split.values()), split
    # Stopped cleanly: SIGINT's 130, every process stopped by itself (none needed a SIGKILL),
    # and nothing honcho started is left: the five it reports, their children (gunicorn's
    # worker, Celery's pool processes) and honcho's own helpers.
    assert returncode == 130, text[-3000:]
    assert "SIGKILL" not in text, text[-3000:]
    stopped = re.findall(r"^\S+ system +\| (\S+) stopped \(rc=(-?\d+)\)", text, re.M)
    assert sorted(stopped) == [
        ("beat.1", "0"),
        ("web.1", "0"),
        ("web.2", "0"),
        ("worker.1", "0"),
        ("worker.2", "0"),
    ], text[-3000:]
    reported = {int(pid) for pid in re.findall(r"\| \S+ started \(pid=(\d+)\)", text)}
    assert len(reported) == 5, text[:2000]
    assert reported < set(tree), tree  # seen running, with children of their own
    assert len(tree) > 1 + 2 * len(reported), tree
    assert leftovers == {}, leftovers
