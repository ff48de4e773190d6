"""A bounded fuzz run of every service's OpenAPI document with schemathesis.

Schemathesis generates a few requests per operation from the document each app serves; they go
to the app in-process (httpx over ASGI, on the event loop the app's store and broker clients
live on) with an admin token, and each answer must pass schemathesis's own checks: no 5xx, a
status the operation documents, a content type it documents for that status.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import NonInteractiveExampleWarning, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from crm_platform.testing.fixtures import auth

SERVICES = [
    "customers",
    "directory",
    "pipeline",
    "interactions",
    "pool",
    "notifications",
    "reporting",
    "audit",
    "leads",
    "sales",
]
# A few per operation keeps the run for all ten services near a minute; raise it locally
# (CRM_FUZZ_EXAMPLES=50) for a deeper search, and CRM_FUZZ_MODE=negative for invalid input.
EXAMPLES_PER_OPERATION = int(os.environ.get("CRM_FUZZ_EXAMPLES", "4"))
MODE = GenerationMode(os.environ.get("CRM_FUZZ_MODE", "positive"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
# Operations that start long background work (a rebuild from the topics) are called once, as
# the permission matrix does, not fuzzed: their input is nothing but the token.
NOT_FUZZED = {("pool", "POST /v1/pool/rebuilds"), ("reporting", "POST /v1/admin/rebuild")}


def generate(operation: Any, count: int) -> list[Any]:
    """``count`` cases for one operation, the same on every run (derandomized)."""
    cases: list[Any] = []

    @given(operation.as_strategy(generation_mode=MODE))
    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def collect(case: Any) -> None:
        cases.append(case)

    try:
        collect()
    except Unsatisfiable:
        # Negative mode only: an operation without parameters or body has no invalid input.
        assert MODE is GenerationMode.NEGATIVE
    return cases[:count]


def httpx_arguments(case: Any) -> dict[str, Any]:
    """Schemathesis serialises a case for `requests`; httpx takes the same with `content` for bytes."""
    kwargs = case.as_transport_kwargs(base_url="http://fuzz.test")
    out: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "params": kwargs.get("params"),
        "headers": {**(kwargs.get("headers") or {}), **auth("fuzz-admin", ["admin"])},
    }
    if kwargs.get("cookies"):
        out["headers"]["Cookie"] = "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items())
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    elif "data" in kwargs:
        data = kwargs["data"]
        if isinstance(data, dict):  # a form (application/x-www-form-urlencoded): httpx encodes it
            out["data"] = data
        else:
            out["content"] = data.encode() if isinstance(data, str) else data
    return out


@pytest.mark.parametrize("service", SERVICES)
async def test_fuzz_every_operation(service: str, service_apps: dict[str, FastAPI]) -> None:
    app = service_apps[service]
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        operations = [result.ok() for result in schema.get_all_operations()]
    # An exception in the app is answered 500 by its handlers: let the check see that answer.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://fuzz.test") as client:
        for operation in operations:
            name = f"{operation.method.upper()} {operation.path}"
            count = 1 if (service, name) in NOT_FUZZED else EXAMPLES_PER_OPERATION
            for case in generate(operation, count):
                arguments = httpx_arguments(case)
                response = await client.request(**arguments)
                try:
                    case.validate_response(response, checks=CHECKS, headers=arguments["headers"])
                except FailureGroup as group:
                    titles = "; ".join(failure.title for failure in group.exceptions)
                    failures.append(
                        f"{name} {arguments['url']} {arguments.get('params')} -> {response.status_code} "
                        f"{response.headers.get('content-type')}: {titles}: {response.text[:300]}"
                    )
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
