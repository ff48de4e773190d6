"""The pool service is up, ready, and documents its events."""

from __future__ import annotations

from typing import Any


async def test_health_readiness_and_event_catalogue(pool_client: Any) -> None:
    assert (await pool_client.get("/healthz")).json() == {"status": "ok", "service": "pool"}
    ready = await pool_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    catalogue = (await pool_client.get("/asyncapi.json")).json()
    titles = str(catalogue["channels"])
    for name in ("rules_changed", "claim_rules_changed", "recycle_warning", "release_decided"):
        assert f"crm.pool.v1:crm.pool.{name}" in titles
    unauthenticated = await pool_client.get("/v1/pool/my-customers")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"].startswith("application/problem+json")
