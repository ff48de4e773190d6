"""Idempotency-Key on POST /v1/webhooks: a retry gives the first subscription, generated secret included."""

from __future__ import annotations

from typing import Any

from crm_platform.testing.fixtures import unique
from crm_platform.testing.idempotency import assert_create_is_idempotent, assert_declares_key


async def test_create_webhook_with_a_key(client, world, db):
    integrator = await world.person("en", roles=["integrator"])

    def body() -> dict[str, Any]:
        return {"url": "http://127.0.0.1:9/erp", "event_types": ["crm.customer.*"], "description": unique("ERP")}

    async def count(sent: dict[str, Any]) -> int:
        return int(await db["webhooks"].count_documents({"description": sent["description"]}))

    first = await assert_create_is_idempotent(client, "/v1/webhooks", integrator.headers, body, count)
    # The secret generated for the first attempt is in its replays too (the same answer), and it is the stored one.
    stored = await db["webhooks"].find_one({"_id": first.json()["id"]})
    assert first.json()["secret"] == stored["secret"]
    assert "idempotency_fingerprint" not in first.json()
    assert await db["webhook_health"].count_documents({"_id": first.json()["id"]}) == 1
    assert_declares_key((await client.get("/openapi.json")).json(), "/v1/webhooks")
