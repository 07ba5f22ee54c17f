"""Background jobs: in-process after commit (embedded), and through Redis to a real Celery
worker."""

import contextlib
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from app.core import services
from app.core.models import AuditEntry
from app.extensions import db
from tests.conftest import (
    ROOT,
    People,
    celery_process,
    make_app,
    service_env,
    sign_in,
    submit,
)


def actions(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.action.like("system.%"))
            .order_by(AuditEntry.id)
        ).all()


def test_embedded_jobs_run_in_process_right_after_commit(app, client_as):
    client = client_as("admin")
    response = submit(client, "/admin/system")
    assert response.status_code == 302
    assert actions(app) == ["system.test_job.requested", "system.test_job.ran"]
    page = client.get("/admin/system").get_data(as_text=True)
    assert "尚未执行" not in page
    assert "在当前进程中" in page


def test_jobs_of_a_rolled_back_transaction_never_run(app, people):
    from app.accounts.models import User

    with app.app_context():
        admin = db.session.get(User, people.admin_id)
        services.request_test_job(admin)
        db.session.rollback()
        services.record_audit("unrelated.event")
        db.session.commit()
    assert actions(app) == []


def test_a_savepoint_neither_sends_nor_drops_the_jobs_of_its_transaction(app, people):
    """SQLAlchemy signals 'commit' and 'rollback' for savepoints too: a job must still wait
    for the real commit (it must see the data), and survive a savepoint rolled back."""
    from app.accounts.models import User

    with app.app_context():
        admin = db.session.get(User, people.admin_id)
        services.request_test_job(admin)
        with db.session.begin_nested():
            services.record_audit("unrelated.event")
        assert "system.test_job.ran" not in actions(app)  # not before the commit
        with contextlib.suppress(RuntimeError), db.session.begin_nested():
            services.record_audit("unrelated.event")
            raise RuntimeError("undo this part only")
        db.session.commit()
    assert actions(app) == ["system.test_job.requested", "system.test_job.ran"]


def test_the_job_is_idempotent(app, people):
    with app.app_context():
        requested = services.record_audit("system.test_job.requested")
        db.session.commit()
        first = services.record_test_job_ran(requested.id)
        db.session.commit()
        second = services.record_test_job_ran(requested.id)
        db.session.commit()
        assert first.id == second.id
    assert actions(app).count("system.test_job.ran") == 1


def test_audit_refuses_pii(app):
    with app.app_context(), pytest.raises(ValueError, match="PII"):
        services.record_audit("worker.added", phone="13800138000")
    with app.app_context(), pytest.raises(ValueError, match="PII"):
        services.record_audit("worker.added", ids=["11010519491231002X"])


@pytest.fixture
def redis_app(migrated_postgres_url, redis_url, pg_app):
    """Production shape: PostgreSQL, jobs to Celery through Redis, limits kept in Redis."""
    return make_app(migrated_postgres_url, REDIS_URL=redis_url)


@pytest.mark.postgres
@pytest.mark.redis
def test_job_goes_through_redis_to_a_real_celery_worker(redis_app, pg_people, celery_worker):
    client = redis_app.test_client()
    assert sign_in(client, People.EMAILS["admin"]).status_code == 302
    page = client.get("/admin/system").get_data(as_text=True)
    assert "postgresql" in page
    assert "Redis" in page

    assert submit(client, "/admin/system").status_code == 302
    deadline = time.monotonic() + 30
    while "system.test_job.ran" not in actions(redis_app):
        assert time.monotonic() < deadline, "the worker did not run the job within 30 s"
        time.sleep(0.2)
    with redis_app.app_context():
        ran = db.session.scalar(
            select(AuditEntry).where(AuditEntry.action == "system.test_job.ran")
        )
        assert ran.details["worker"]
    assert "尚未执行" not in client.get("/admin/system").get_data(as_text=True)


@pytest.mark.postgres
def test_request_still_succeeds_when_redis_is_down(migrated_postgres_url, pg_people):
    # Nothing listens on port 1: publishing fails fast, the user's transaction stands.
    # Sign-in limits fall back to memory meanwhile.
    app = make_app(migrated_postgres_url, REDIS_URL="redis://127.0.0.1:1/0", STARTUP_CHECKS=False)
    client = app.test_client()
    assert sign_in(client, People.EMAILS["admin"]).status_code == 302
    started = time.monotonic()
    assert submit(client, "/admin/system").status_code == 302
    elapsed = time.monotonic() - started
    assert actions(app) == ["system.test_job.requested"]
    print(f"request with Redis down answered in {elapsed:.2f} s")


@pytest.mark.postgres
@pytest.mark.redis
def test_sign_in_limits_are_shared_through_redis(migrated_postgres_url, redis_url, pg_people):
    # Two app instances stand for two server processes: failures on one count on the other.
    first = make_app(migrated_postgres_url, REDIS_URL=redis_url)
    for _ in range(3):
        assert sign_in(first.test_client(), People.EMAILS["employer"], "guess").status_code == 200
    second = make_app(migrated_postgres_url, reset_limits=False, REDIS_URL=redis_url)
    for _ in range(2):
        assert sign_in(second.test_client(), People.EMAILS["employer"], "guess").status_code == 200
    assert sign_in(second.test_client(), People.EMAILS["employer"]).status_code == 429


def test_worker_refuses_to_start_without_redis(tmp_path):
    env = {**os.environ, "REDIS_URL": "", "FANGANG_INSTANCE_PATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "REDIS_URL is not set" in result.stderr + result.stdout


@pytest.mark.postgres
@pytest.mark.redis
def test_beat_starts(migrated_postgres_url, redis_url, tmp_path):
    env = service_env(tmp_path, migrated_postgres_url, redis_url)
    with celery_process("beat", env, tmp_path / "beat.log", "beat: Starting"):
        # Beat opens its schedule just after that line (it once lost the race with the stop on
        # a busy machine): a wait for it, not a speed test.
        deadline = time.monotonic() + 30
        while not any(tmp_path.glob("celerybeat-schedule*")):  # kept in the instance folder
            assert time.monotonic() < deadline, "beat kept no schedule in the instance folder"
            time.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.redis
def test_prefork_worker_processes_do_not_share_a_database_connection(
    migrated_postgres_url, redis_url, pg_people, tmp_path
):
    """`celery -A workers worker` forks its pool: each child must open its own connections
    (a connection inherited from the parent and used by two children corrupts both)."""
    from app.accounts.models import User

    env = service_env(tmp_path, migrated_postgres_url, redis_url)
    options = (
        "--pool",
        "prefork",
        "--concurrency",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    )
    with celery_process("worker", env, tmp_path / "worker.log", "ready.", *options):
        app = make_app(migrated_postgres_url, REDIS_URL=redis_url)
        with app.app_context():
            admin = db.session.get(User, pg_people.admin_id)
            for _ in range(20):
                services.request_test_job(admin)
            db.session.commit()
        deadline = time.monotonic() + 30
        while actions(app).count("system.test_job.ran") < 20:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
