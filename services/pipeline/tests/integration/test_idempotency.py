"""Idempotency-Key on POST /v1/opportunities: a retry gives the first outcome and never a second opportunity."""

from __future__ import annotations

from typing import Any

from crm_platform.testing.fixtures import unique
from crm_platform.testing.idempotency import assert_create_is_idempotent, assert_declares_key


async def test_create_opportunity_with_a_key(client, team, customer_of, pipeline_db):
    customer = await customer_of(team.rep)

    def body() -> dict[str, Any]:
        return {"customer_id": customer.id, "name": unique("Idem deal"), "amount": "1000.00"}

    async def count(sent: dict[str, Any]) -> int:
        return int(await pipeline_db["opportunities"].count_documents({"name": sent["name"]}))

    first = await assert_create_is_idempotent(client, "/v1/opportunities", team.rep.headers, body, count)
    assert first.headers["Location"] == f"/v1/opportunities/{first.json()['id']}"
    assert "idempotency_fingerprint" not in first.json()
    assert_declares_key((await client.get("/openapi.json")).json(), "/v1/opportunities")
