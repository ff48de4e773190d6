"""Idempotency-Key on the interactions service's creates: follow-ups, tasks and feedback.

A retry gives the first outcome and never a second record; the key with another body is refused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crm_platform.testing.fixtures import unique
from crm_platform.testing.idempotency import (
    assert_create_is_idempotent,
    assert_declares_key,
    assert_same_outcome,
    with_key,
)


def counter(collection: Any, field: str) -> Any:
    async def count(sent: dict[str, Any]) -> int:
        return int(await collection.count_documents({field: sent[field]}))

    return count


async def test_log_interaction_with_a_key(client, world, team, db, clock, bodies):
    customer = await world.customer(team.rep)

    def body() -> dict[str, Any]:
        return {**bodies("note", customer.id, clock.now() - timedelta(hours=1)), "content": unique("note")}

    first = await assert_create_is_idempotent(
        client, "/v1/interactions", team.rep.headers, body, counter(db["interactions"], "content")
    )
    assert "idempotency_fingerprint" not in first.json()


async def test_a_keyed_email_retry_is_its_first_outcome_not_a_resync(client, world, team, db, clock, bodies):
    """An email's retry answers 201 like its first attempt, not 200 "synced before" for its own record."""
    customer = await world.customer(team.rep)
    body = {**bodies("email", customer.id, clock.now() - timedelta(minutes=5)), "message_id": unique("m") + "@x.cn"}
    headers = with_key(team.rep.headers, unique("key"))
    first = await client.post("/v1/interactions", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert_same_outcome(first, await client.post("/v1/interactions", json=body, headers=headers))
    # Without the key (or with another) the same email is what it always was: synced again, 200.
    resync = await client.post("/v1/interactions", json=body, headers=with_key(team.rep.headers, unique("key")))
    assert resync.status_code == 200 and resync.json()["id"] == first.json()["id"]
    assert await db["interactions"].count_documents({"customer_id": customer.id}) == 1


async def test_create_task_with_a_key(client, team, db, clock):
    def body() -> dict[str, Any]:
        return {"title": unique("Call back"), "due_at": (clock.now() + timedelta(days=1)).isoformat()}

    first = await assert_create_is_idempotent(
        client, "/v1/tasks", team.rep.headers, body, counter(db["tasks"], "title")
    )
    assert "idempotency_fingerprint" not in first.json()


async def test_open_feedback_with_a_key(client, world, team, db):
    customer = await world.customer(team.rep)

    def body() -> dict[str, Any]:
        return {"customer_id": customer.id, "kind": "complaint", "title": unique("Late"), "description": "两周"}

    first = await assert_create_is_idempotent(
        client, "/v1/feedback", team.rep.headers, body, counter(db["feedback"], "title")
    )
    assert "idempotency_fingerprint" not in first.json()


async def test_every_creating_post_declares_the_header(client):
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/interactions", "/v1/tasks", "/v1/feedback"):
        assert_declares_key(spec, path)
