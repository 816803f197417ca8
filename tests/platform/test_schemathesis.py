"""schemathesis against /api/v1/schema/: zero 500s, and every response conforms to the schema.

Every operation of the OpenAPI schema is exercised in-process (the Django WSGI app, inside the
test's transaction) with a few generated examples, twice: authenticated as the owner of a
signed-up organization (a Bearer token from ``POST /api/v1/signup``) and unauthenticated.
A tenant-owned cluster, API key and token exist beforehand so that object endpoints reach their
views with real ids too (generated ids are mostly 404s). Brokers are not started: endpoints that
talk to a cluster's broker answer 409 (cluster not running), which the schema documents.

Checks: ``not_a_server_error`` and ``response_schema_conformance`` (plus the status code being
documented). Examples per operation are kept small to stay within the CI budget; raise
``KASTLE_SCHEMATHESIS_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

EXAMPLES = int(os.environ.get("KASTLE_SCHEMATHESIS_EXAMPLES", "6"))
BUDGET_S = float(os.environ.get("KASTLE_SCHEMATHESIS_BUDGET", "50"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]

pytestmark = pytest.mark.django_db(transaction=False)


@contextlib.contextmanager
def keep_test_connection():
    """As Django's test client does: requests to the WSGI app must not close the test's database
    connection (it holds the test transaction). Django's Client reconnects the receivers after each
    of its own requests, so this wraps only the schemathesis calls."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _fixtures(app) -> dict[str, str]:
    """Sign up an owner; create a cluster and an API key: ids to substitute into paths."""
    from django.test import Client

    client = Client()
    resp = client.post(
        "/api/v1/signup",
        {"email": "owner@schemathesis.example", "password": "a-long-enough-password-1", "organization": "st"},
        content_type="application/json",
    )
    assert resp.status_code == 201, resp.content
    token = resp.json()["token"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    from clusters.models import Cluster

    ids: dict[str, str] = {"token": token}
    from clusters.plans import PLANS

    body = {"name": "st-cluster", "plan": next(iter(PLANS))}
    resp = client.post("/api/v1/clusters", body, content_type="application/json", **auth)
    if resp.status_code in (201, 202):
        ids["cluster"] = resp.json()["id"]
    else:  # a plan name we do not know: take the first cluster the tenant can create
        cluster = Cluster.objects.filter(organization__name="st").first()
        if cluster is not None:
            ids["cluster"] = str(cluster.pk)
    return ids


def _operation_label(op) -> str:
    return f"{op.method.upper()} {op.path}"


def test_schemathesis_api_v1(db, django_capture_on_commit_callbacks) -> None:
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    ids = _fixtures(app)
    with keep_test_connection():
        schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", app)
    auth_headers = {"Authorization": f"Bearer {ids['token']}"}
    failures: list[str] = []
    ran = 0
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20, [_operation_label(op) for op in operations]
    per_op_budget = BUDGET_S / (2 * len(operations))

    def make_runner(op, headers: dict[str, str]):
        op_started = time.monotonic()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(case=op.as_strategy(), use_real_id=st.booleans())
        def run(case, use_real_id: bool) -> None:
            nonlocal ran
            if time.monotonic() - op_started > max(per_op_budget, 0.5):
                return
            if use_real_id and case.path_parameters and "cluster" in ids:
                for name in list(case.path_parameters):
                    if "cluster" in name or (name in ("id", "pk") and op.path.startswith("/clusters/{")):
                        case.path_parameters[name] = ids["cluster"]
            ran += 1
            with django_capture_on_commit_callbacks(execute=False), keep_test_connection():
                response = case.call(headers=headers)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a group of failures
                who = "owner" if headers else "anonymous"
                failures.append(
                    f"{_operation_label(op)} as {who} -> {response.status_code}: "
                    f"{str(exc)[:1500]}\n    body: {response.content[:400]!r}"
                )

        return run

    for op in operations:
        for headers in (auth_headers, {}):
            make_runner(op, headers)()
    elapsed = time.monotonic() - started
    assert ran > len(operations), ran
    unique: dict[str, str] = {}
    for f in failures:
        unique.setdefault(f.split(" ->")[0], f)
    summary = f"{len(unique)} operation(s) failed ({elapsed:.0f} s):\n\n"
    assert not unique, summary + "\n\n".join(unique.values())
