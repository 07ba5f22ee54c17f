"""Fixtures: the app on SQLite and on real PostgreSQL, real Redis, a real Celery worker, and a
signed-in client per role.

PostgreSQL and Redis are required, not optional: when TEST_DATABASE_URL or TEST_REDIS_URL cannot
be reached, the tests that need them fail with a line that says so (CI starts both first).
"""

from __future__ import annotations

import contextlib
import os
import tempfile

# Tests keep their instance files (dev keys, demo issuer key) out of the checkout.
os.environ.setdefault("FANGANG_INSTANCE_PATH", tempfile.mkdtemp(prefix="fangang-test-"))
import email
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.policy import default as default_policy
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
import redis
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from app import create_app
from app.accounts import services as accounts
from app.core.access import Role
from app.extensions import db, limiter
from app.notify.fake_gateway import FakeSmsGateway
from config import TestingConfig, normalize_database_url

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "correct horse battery"

# Valid GB 32100-2015 codes for the two test employers.
CREDIT_CODE_A = "91370100MA3C12340R"
CREDIT_CODE_B = "91370102MA3D567800"


# --- the real services ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis at TEST_REDIS_URL={TEST_REDIS_URL} cannot be reached: {error}")
    client.flushdb()
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this run, dropped at the end."""
    server = make_url(normalize_database_url(TEST_DATABASE_URL))
    name = f"fangang_test_{uuid.uuid4().hex[:10]}"
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        pytest.fail(
            f"PostgreSQL at TEST_DATABASE_URL={TEST_DATABASE_URL} cannot be reached: {error}"
        )
    yield server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flask_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``flask --app app ...`` as a user would, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def service_env(tmp: Path, database_url: str, redis_url: str | None = None) -> dict[str, str]:
    env = {
        **TEST_PII_KEYS,
        "DATABASE_URL": database_url,
        "FANGANG_INSTANCE_PATH": str(tmp),
        "FANGANG_ENV": "development",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env["REDIS_URL"] = ""
    return env


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str, tmp_path_factory) -> str:
    """The run's PostgreSQL database, built by the migrations (not by create_all)."""
    tmp = tmp_path_factory.mktemp("pg-instance")
    result = flask_cli("db", "upgrade", env=service_env(tmp, postgres_url))
    assert result.returncode == 0, result.stderr
    return postgres_url


# --- apps ----------------------------------------------------------------------------------


TEST_PII_KEYS = {"PII_KEYS": TestingConfig.PII_KEYS, "PII_HASH_KEY": TestingConfig.PII_HASH_KEY}


def make_app(database_uri: str, reset_limits: bool = True, **overrides) -> Flask:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            **TEST_PII_KEYS,
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_uri),
            "REDIS_URL": None,
            "RATELIMIT_STORAGE_URI": "memory://",
            **overrides,
        }
    )
    # The limiter is one object per process (as in production, where there is one app); a
    # test that took Redis away must not leave the next app on the in-memory fallback, and
    # no test inherits another's sign-in failures.
    limiter._storage_dead = False
    if reset_limits:
        with app.app_context(), contextlib.suppress(redis.RedisError):  # Redis down on purpose
            limiter.reset()
    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The embedded default: SQLite in a file, jobs in-process."""
    app = make_app(f"sqlite:///{tmp_path / 'fangang.db'}")
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


def truncate_all(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        tables = ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables)
        with db.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture
def pg_app(migrated_postgres_url: str) -> Iterator[Flask]:
    """The app on the real PostgreSQL database; every table is emptied after each test
    (truncation rather than a rolled-back transaction, so other processes see the data).

    A new app per test: the rate limiter is one object per process, bound to the newest app."""
    app = make_app(migrated_postgres_url)
    yield app
    truncate_all(app)


class Executed(NamedTuple):
    sql: str
    parameters: object


@contextmanager
def statements_run(app: Flask) -> Iterator[list[Executed]]:
    """The SQL statements the app's engine runs inside the block (pages asked for, services
    called), with their parameters: for the tests that count them."""
    statements: list[Executed] = []

    def record(_connection, _cursor, sql: str, parameters, *_args) -> None:
        statements.append(Executed(sql, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


# --- people --------------------------------------------------------------------------------


@dataclass
class People:
    admin_id: int
    coordinator_id: int
    employer_a_id: int
    employer_b_id: int
    organization_a_id: int
    organization_b_id: int

    EMAILS = {  # noqa: RUF012 - constant table
        "admin": "admin@example.cn",
        "coordinator": "coordinator@example.cn",
        "employer": "hr@a.example.cn",
        "employer_b": "hr@b.example.cn",
    }


def create_people(app: Flask) -> People:
    with app.app_context():
        org_a = accounts.create_organization("甲建筑有限公司", CREDIT_CODE_A, "370100")
        org_b = accounts.create_organization("乙制造有限公司", CREDIT_CODE_B, "370102")
        emails = People.EMAILS
        admin = accounts.create_user(emails["admin"], PASSWORD, Role.ADMIN, "管理员")
        coordinator = accounts.create_user(
            emails["coordinator"], PASSWORD, Role.COORDINATOR, "调度员", region_code="370100"
        )
        employer_a = accounts.create_user(
            emails["employer"], PASSWORD, Role.EMPLOYER, "甲人事", org_a
        )
        employer_b = accounts.create_user(
            emails["employer_b"], PASSWORD, Role.EMPLOYER, "乙人事", org_b
        )
        db.session.commit()
        return People(admin.id, coordinator.id, employer_a.id, employer_b.id, org_a.id, org_b.id)


@pytest.fixture
def issuer_key(app: Flask, tmp_path: Path) -> str:
    """A health authority on the trust list (valid from a week ago); its private key."""
    from app.core.clock import local_today
    from tests.scenario import trusted_issuer

    with app.app_context():
        key = trusted_issuer(tmp_path, local_today("Asia/Shanghai"))
        db.session.commit()
    return key


@pytest.fixture
def people(app: Flask) -> People:
    return create_people(app)


@pytest.fixture
def pg_people(pg_app: Flask) -> People:
    return create_people(pg_app)


# --- clients -------------------------------------------------------------------------------

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: FlaskClient, url: str) -> str:
    page = client.get(url)
    found = CSRF_FIELD.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {url} ({page.status_code})"
    return found.group(1)


def submit(
    client: FlaskClient, url: str, data: dict | None = None, form_url: str | None = None, **kwargs
):
    """POST a form the way a browser does: with the CSRF token of the page that shows it."""
    token = csrf_token(client, form_url or url)
    return client.post(url, data={"csrf_token": token, **(data or {})}, **kwargs)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD):
    return submit(client, "/login", {"email": email, "password": password})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def client_as(app: Flask, people: People):
    """``client_as("employer")``: a client signed in with that role's account."""

    def signed_in(role: str) -> FlaskClient:
        client = app.test_client()
        response = sign_in(client, People.EMAILS[role])
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return signed_in


# --- a real Celery worker ------------------------------------------------------------------


def celery_command(command: str, *options: str) -> list[str]:
    """``celery -A workers <command>`` with INFO logs, as this venv runs it."""
    celery = [sys.executable, "-m", "celery", "-A", "workers"]
    return [*celery, command, "--loglevel", "INFO", *options]


@contextmanager
def celery_process(
    command: str, env: dict[str, str], log_file: Path, ready: str, *options: str
) -> Iterator[None]:
    """``celery -A workers <command>`` as a child process, until its log says ``ready``."""
    with log_file.open("w") as log:
        process = subprocess.Popen(
            celery_command(command, *options),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while ready not in log_file.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery {command} did not start:\n{log_file.read_text()}")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def celery_worker(migrated_postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[None]:
    """A real worker on the run's PostgreSQL and Redis."""
    env = service_env(tmp_path, migrated_postgres_url, redis_url)
    options = ("--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat")
    with celery_process("worker", env, tmp_path / "worker.log", "ready.", *options):
        yield


# --- the outside world: a mail server, an SMS gateway, a Redis of a test's own --------------


class Inbox:
    """A real SMTP server (aiosmtpd) keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def gateway():
    with FakeSmsGateway() as fake:
        yield fake


class OwnRedis:
    """A redis-server of this test's own, on a free port, that the test stops and starts
    (the shared one keeps serving the other tests)."""

    def __init__(self, tmp: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.tmp = tmp
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()
