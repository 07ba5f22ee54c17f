"""Start-up and schema: migrations from empty match the models on both databases, and a
setting that points nowhere stops the service with one clear line."""

import json

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.clock import utcnow
from tests.conftest import TEST_PII_KEYS, People, flask_cli, service_env, sign_in


def test_migrations_from_empty_match_the_models_on_sqlite(tmp_path):
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade = flask_cli("db", "upgrade", env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    check = flask_cli("db", "check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


@pytest.mark.postgres
def test_migrations_from_empty_match_the_models_on_postgres(migrated_postgres_url, tmp_path):
    check = flask_cli("db", "check", env=service_env(tmp_path, migrated_postgres_url))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


@pytest.mark.postgres
def test_migrations_downgrade_to_empty_on_postgres(migrated_postgres_url, tmp_path):
    """Down and up again, on a copy, so a bad downgrade is found before it is needed."""
    url = make_url(migrated_postgres_url)
    copy = f"{url.database}_down"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{copy}"')
    try:
        env = service_env(tmp_path, url.set(database=copy).render_as_string(False))
        for step in (["db", "upgrade"], ["db", "downgrade", "base"], ["db", "upgrade"]):
            result = flask_cli(*step, env=env)
            assert result.returncode == 0, (step, result.stderr)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


def upgrade_with_one_plate_under_two_operators(tmp_path, url: str) -> None:
    """Migrate to the revision before one-plate-in-service, register 渝F12345 in service under
    two operators (and K4016 under both), then migrate to the head."""
    env = service_env(tmp_path, url)
    result = flask_cli("db", "upgrade", "bec85d128fbd", env=env)
    assert result.returncode == 0, result.stderr
    engine = create_engine(url)
    with engine.begin() as connection:
        for name in ("重庆云阳汽车运输公司", "云阳客运二公司"):
            connection.execute(
                text("INSERT INTO operators (name, created_at) VALUES (:name, :now)"),
                {"name": name, "now": utcnow()},
            )
        for operator_id, kind, identifier, template in [
            (1, "coach", "渝F12345", "coach-53"),
            (2, "coach", "渝F12345", "coach-45"),
            (2, "coach", "渝F23456", "coach-45"),
            (1, "train", "K4016", "train-hard-seat-118"),
            (2, "train", "K4016", "train-hard-seat-118"),
        ]:
            connection.execute(
                text(
                    "INSERT INTO vehicles (operator_id, kind, identifier, seatmap_template, "
                    "first_carriage, carriages, blocked_seats, active, created_at) VALUES "
                    "(:operator_id, :kind, :identifier, :template, 1, 1, '[]', :active, :now)"
                ),
                {
                    "operator_id": operator_id,
                    "kind": kind,
                    "identifier": identifier,
                    "template": template,
                    "active": True,
                    "now": utcnow(),
                },
            )
    result = flask_cli("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    assert "vehicle 2 (渝F12345) taken out of service: vehicle 1" in result.stderr
    with engine.connect() as connection:
        active = connection.execute(text("SELECT id, active FROM vehicles ORDER BY id")).all()
        audit = connection.execute(
            text("SELECT action, object_id, details FROM audit_entries")
        ).all()
    engine.dispose()
    # The first registration stays in service; the train's carriages are the service's check.
    assert [(vehicle_id, bool(flag)) for vehicle_id, flag in active] == [
        (1, True),
        (2, False),
        (3, True),
        (4, True),
        (5, True),
    ]
    [(action, object_id, details)] = audit
    assert (action, object_id) == ("vehicle.taken_out_of_service", 2)
    details = json.loads(details) if isinstance(details, str) else details
    assert details == {"reason": "identifier.in_service_elsewhere", "kept_vehicle_id": 1}


def test_upgrade_takes_a_second_registration_of_a_plate_out_of_service_on_sqlite(tmp_path):
    upgrade_with_one_plate_under_two_operators(tmp_path, f"sqlite:///{tmp_path / 'old.db'}")


@pytest.mark.postgres
def test_upgrade_takes_a_second_registration_of_a_plate_out_of_service_on_postgres(
    postgres_url, tmp_path
):
    url = make_url(postgres_url)
    copy = f"{url.database}_plates"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{copy}"')
    try:
        upgrade_with_one_plate_under_two_operators(
            tmp_path, url.set(database=copy).render_as_string(False)
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DATABASE_URL": "postgresql://fangang@127.0.0.1:1/fangang"}, "DATABASE_URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "REDIS_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"FANGANG_ENV": "staging"}, "FANGANG_ENV"),
    ],
)
def test_unreachable_setting_stops_start_up_with_one_clear_line(tmp_path, env, setting):
    result = flask_cli("routes", env={"FANGANG_INSTANCE_PATH": str(tmp_path), **env})
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("fangang: ")
    assert setting in output


@pytest.mark.parametrize("missing", [None, "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PII_KEYS"])
def test_production_refuses_to_start_without_a_required_setting(tmp_path, redis_url, missing):
    """deploy/env.example's required settings: an empty one stops the start with one line
    naming it. Without DATABASE_URL production fell back to a SQLite file of its own on each
    machine; without REDIS_URL it ran with no beat, so no reminder went out on time."""
    env = {
        **TEST_PII_KEYS,
        "FANGANG_ENV": "production",
        "SECRET_KEY": "production-test-secret-key-production-test",
        "FANGANG_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "REDIS_URL": redis_url,
    }
    if missing:
        env[missing] = ""
    result = flask_cli("routes", env=env)
    output = (result.stdout + result.stderr).strip()
    if missing is None:
        assert result.returncode == 0, output
        return
    assert result.returncode != 0
    assert len(output.splitlines()) == 1, output
    assert output.startswith(f"fangang: {missing}"), output


@pytest.mark.postgres
def test_sign_in_and_scoping_on_postgres(pg_app, pg_people):
    client = pg_app.test_client()
    assert sign_in(client, People.EMAILS["employer"]).status_code == 302
    assert client.get(f"/organizations/{pg_people.organization_a_id}").status_code == 200
    assert client.get(f"/organizations/{pg_people.organization_b_id}").status_code == 404


@pytest.mark.postgres
def test_database_refuses_inconsistent_accounts(pg_app, pg_people):
    """The CHECK constraints hold even against code that skips the services."""
    from sqlalchemy.exc import IntegrityError

    from app.accounts.models import User
    from app.extensions import db

    with pg_app.app_context():
        for fields in (
            {"role": "employer"},  # no organization
            {"role": "coordinator"},  # no region
            {"role": "pilot"},
            {"role": "admin", "email": "Upper@Example.cn"},
        ):
            db.session.add(
                User(
                    **{"email": "x@example.cn", "display_name": "x", "password_hash": "x", **fields}
                )
            )
            with pytest.raises(IntegrityError):
                db.session.flush()
            db.session.rollback()


def test_health_check_reports_the_database(app, tmp_path):
    from tests.conftest import make_app

    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}
    broken = make_app(f"sqlite:///{tmp_path}/missing-dir/x.db", STARTUP_CHECKS=False)
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "database unavailable"}
