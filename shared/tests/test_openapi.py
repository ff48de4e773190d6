"""The OpenAPI document the kit serves: every error a route can answer, as problem+json."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from crm_platform.openapi import problems
from crm_platform.service import ServiceKit
from crm_platform.settings import ServiceSettings
from crm_platform.testing.fixtures import TEST_JWT_SECRET

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


class Rename(BaseModel):
    name: str


def _document() -> dict[str, Any]:
    router = APIRouter(prefix="/v1")

    @router.get("/customers")
    async def customers(q: str | None = None) -> list[str]:
        return []

    @router.patch("/customers/{customer_id}", responses=problems(409, 412, 423, 428))
    async def rename(customer_id: str, body: Rename) -> dict[str, str]:
        return {}

    settings = ServiceSettings(service_name="customers", jwt_secret=TEST_JWT_SECRET)  # type: ignore[arg-type]
    app = ServiceKit(settings, title="customers", description="openapi check").build_app([router])
    return app.openapi()


def test_every_route_declares_the_standard_errors_as_problem_json() -> None:
    doc = _document()
    listing = doc["paths"]["/v1/customers"]["get"]["responses"]
    assert set(listing) == {"200", "401", "403", "422", "429", "500", "503"}
    assert all(listing[s]["content"] == PROBLEM for s in listing if s != "200")
    # FastAPI's own 422 shape is gone: the handlers never send it.
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "errors"} <= set(problem["properties"])
    fields = set(doc["components"]["schemas"]["FieldError"]["properties"])
    assert fields == {"field", "reason", "location", "code", "params"}


def test_path_ids_bodies_and_route_extras_add_their_statuses() -> None:
    patch = _document()["paths"]["/v1/customers/{customer_id}"]["patch"]["responses"]
    assert {"400", "404", "409", "412", "423", "428"} <= set(patch)
    assert patch["428"]["content"] == PROBLEM and "If-Match" in patch["428"]["description"]


def test_public_routes_declare_no_authentication_errors() -> None:
    health = _document()["paths"]["/healthz"]["get"]["responses"]
    assert "401" not in health and "403" not in health
    ready = _document()["paths"]["/readyz"]["get"]["responses"]
    assert set(ready["503"]["content"]) == {"application/json"}, "probes read the same JSON when not ready"
