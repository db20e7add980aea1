"""Schemathesis against the gateway's own OpenAPI, over HTTP, on a real `gateway serve` process.

Bounded and seeded (a few hundred cases, well under two minutes): no input gives a 5xx, every status is one the
document lists, every error body has the contract's shape. The server runs without workers, so nothing it
accepts (mail, webhook callbacks to any URL the fuzzer invents) ever leaves the machine.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from tests.conftest import free_port
from tests.processes import clean_env, gateway_process

EXAMPLES_PER_OPERATION = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    env = clean_env(
        GATEWAY_DATABASE_URL=f"sqlite:///{root}/fuzz.sqlite3",
        GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}",
        GATEWAY_SECRET_KEYS="schemathesis-secret-0123456789",
        GATEWAY_FROM_ADDRESS="gateway@example.test",
        GATEWAY_SMTP_HOST="127.0.0.1",
        GATEWAY_SMTP_PORT=str(free_port()),  # nothing listens, and no sender runs anyway
        GATEWAY_WEBHOOK_SECRET="whsec_" + "A" * 40,  # callback_url is accepted (and never called: no workers)
    )
    created = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "create", "fuzzer"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-workers"]
    with gateway_process(Path(root), args, port, env, "serve.log") as (base, _):
        yield base, created.stdout.strip()


def error_shape(response: Any, case: Any) -> None:
    """Every 4xx of the JSON API is {"error": {"code": str, "message": str}} (the contract)."""
    if 400 <= response.status_code < 500 and case.path.startswith("/v1/"):
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict), f"error body without an error object: {body!r}"
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), body
        assert set(body) == {"error"}, body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_keeps_its_document(server: tuple[str, str], mode: GenerationMode) -> None:
    """Each operation, with data that fits its schema (positive) and data that does not (negative)."""
    base, key = server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    seen: dict[tuple[str, str], set[int]] = {}

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def one(case: Any) -> None:
            if case.method == "GET" and case.path.endswith("/{request_id}") and isinstance(case.query, dict):
                case.query["wait"] = 0  # a long-poll of a request the fuzzer made would only wait, not test more
            if case.path.endswith("/messages/stream") and isinstance(case.query, dict):
                case.query["timeout"] = 0.5  # a stream of an agent the fuzzer made would stay open
            # Schemathesis' default checks: no 5xx, documented statuses, content types and bodies, negative
            # data refused, Allow headers on 405. Not "every schema-valid input accepted": the document gives
            # types and bounds, while some rules (a callback URL's host, a key's own requests) only the server
            # can check, and it answers those with a documented 422.
            response = case.call_and_validate(
                base_url=base,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
                # Nor "every schema-violating input refused": unknown query parameters are ignored, as most
                # APIs do; bodies do refuse unknown fields (422).
                excluded_checks=[positive_data_acceptance, negative_data_rejection],
            )
            error_shape(response, case)
            seen.setdefault((case.method, case.path), set()).add(response.status_code)

        try:
            one()
        except Unsatisfiable:  # no parameters or body to get wrong (GET /healthz): nothing negative to send
            assert mode == GenerationMode.NEGATIVE
    assert all(status < 500 for statuses in seen.values() for status in statuses)
    if mode == GenerationMode.POSITIVE:
        assert len(seen) == len(operations)  # every operation was called
        assert any(201 in statuses for statuses in seen.values())  # and some inputs were accepted
    else:  # every operation with parameters or a body to get wrong (the inbound webhooks read their own bodies)
        assert {path for _, path in seen} >= {op.path for op in operations if op.path.startswith("/v1/")}
