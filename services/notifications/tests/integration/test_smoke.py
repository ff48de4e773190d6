"""The notifications service is up, ready, and documents its events."""

from __future__ import annotations

import httpx


async def test_health_readiness_and_event_catalogue(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "notifications"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    # the inbox group, the webhook group and the role definitions' group (every service has one)
    assert len(ready.json()["checks"]["consumers"]) == 3
    titles = str((await client.get("/asyncapi.json")).json()["channels"])
    for name in ("subscription_created", "subscription_changed", "subscription_disabled", "subscription_deleted"):
        assert f"crm.notifications.v1:crm.webhook.{name}" in titles
    unauthenticated = await client.get("/v1/notifications")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"].startswith("application/problem+json")
    metrics = (await client.get("/metrics")).text
    assert "crm_notifications_emails_total" in metrics or "crm_notifications_created_total" in metrics
