"""Schemathesis against the live app: generated requests for every documented operation, as an
employer and as a coordinator; no 500s, and no answer that contradicts the document."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from app.extensions import db
from tests.conftest import create_people, make_app
from tests.test_api import token_for


@pytest.fixture
def api_app(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'api.db'}", API_RATE_LIMIT="100000/minute")
    with app.app_context():
        db.create_all()
    people = create_people(app)
    app.config["TEST_TOKENS"] = {
        "employer": token_for(app, people.employer_a_id),
        "coordinator": token_for(app, people.coordinator_id),
    }
    return app


def run_schemathesis(app, token: str) -> list[str]:
    """Every documented operation, with generated cases; returns the failures."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"},
                # The document states the form rules (types, lengths, patterns, choices), not
                # the domain's (an ID number's check character, a date not in the past, a
                # pass signed by a trusted issuer): a 422 for schema-valid data is expected.
                excluded_checks=[positive_data_acceptance],
            )

        try:
            check()
        except Exception as error:  # collect all, report together
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    return failures


@pytest.mark.parametrize("role", ["employer", "coordinator"])
def test_the_api_keeps_to_its_document(api_app, role):
    failures = run_schemathesis(api_app, api_app.config["TEST_TOKENS"][role])
    assert not failures, "\n\n".join(failures)
