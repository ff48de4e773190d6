"""Webhooks: subscriptions, signed deliveries, retries, the dead-letter list, replay, disabling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from notifications_testkit import Person, Received, Receiver, ScriptedDns, World, customer

from crm_notifications.domain.webhooks import verify
from crm_platform.contracts import customers
from crm_platform.contracts import notifications as ev
from crm_platform.events import EventEnvelope
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, collecting, eventually, unique

PROBLEM = "application/problem+json"


class Hooks:
    """Creates subscriptions for one test and deletes them afterwards, so later tests' events skip them."""

    def __init__(self, client: httpx.AsyncClient, admin: Person) -> None:
        self.client = client
        self.admin = admin
        self.created: list[str] = []

    async def create(self, url: str, event_types: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/webhooks",
            headers=self.admin.headers,
            json={"url": url, "event_types": event_types or ["crm.customer.*"], **extra},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        self.created.append(body["id"])
        return body

    async def delivery(self, hook_id: str, event_id: str, **expected: Any) -> dict[str, Any]:
        """The delivery of ``event_id`` to ``hook_id`` once it matches ``expected`` (with its attempts)."""

        async def probe() -> dict[str, Any] | None:
            listing = await self.client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=self.admin.headers)
            assert listing.status_code == 200, listing.text
            for item in listing.json()["items"]:
                if item["event_id"] == event_id:
                    detail = await self.client.get(
                        f"/v1/webhooks/{hook_id}/deliveries/{item['id']}", headers=self.admin.headers
                    )
                    found: dict[str, Any] = detail.json()
                    if all(found.get(k) == v for k, v in expected.items()):
                        return found
            return None

        result: dict[str, Any] = await eventually(probe, timeout=30, message=f"delivery of {event_id} {expected}")
        return result

    async def cleanup(self) -> None:
        for hook_id in self.created:
            got = await self.client.get(f"/v1/webhooks/{hook_id}", headers=self.admin.headers)
            if got.status_code == 200:
                await self.client.delete(f"/v1/webhooks/{hook_id}", headers=self.admin.match(got.headers["etag"]))


@pytest.fixture
async def admin(world: World) -> Person:
    return await world.person("en", roles=["admin"])


@pytest.fixture
async def hooks(client: httpx.AsyncClient, admin: Person) -> AsyncIterator[Hooks]:
    h = Hooks(client, admin)
    try:
        yield h
    finally:
        await h.cleanup()


async def owner_changed(world: World) -> EventEnvelope:
    c = customer("u-owner")
    return await world.emit(
        customers.OWNER_CHANGED,
        c.customer_id,
        customers.OwnerChanged(customer=c, previous_owner_id=None, owner_id="u-owner"),
        actor="u-manager",
    )


def for_event(receiver: Receiver, event_id: str) -> list[Received]:
    return [r for r in receiver.received if r.headers.get("webhook-id") == event_id]


# --- subscriptions ------------------------------------------------------------------------------


async def test_subscription_lifecycle_secret_shown_once_and_etags(
    client: httpx.AsyncClient, admin: Person, hooks: Hooks, backend: Backend
) -> None:
    async with collecting(backend.kafka_bootstrap, [ev.TOPIC]) as events:
        created = await hooks.create("http://127.0.0.1:9/hook", ["crm.customer.*", "crm.opportunity.won"])
        assert created["secret"].startswith("whsec_") and created["owner_id"] == admin.id
        hook_id = created["id"]
        got = await client.get(f"/v1/webhooks/{hook_id}", headers=admin.headers)
        assert got.status_code == 200 and got.json()["secret"] is None and got.headers["etag"] == '"1"'
        listed = await client.get("/v1/webhooks", headers=admin.headers, params={"limit": 500})
        assert hook_id in {h["id"] for h in listed.json()["items"]}
        assert all(h["secret"] is None for h in listed.json()["items"])

        no_match = await client.patch(f"/v1/webhooks/{hook_id}", headers=admin.headers, json={"enabled": False})
        assert no_match.status_code == 428
        patched = await client.patch(
            f"/v1/webhooks/{hook_id}", headers=admin.match('"1"'), json={"enabled": False, "secret": "s" * 20}
        )
        assert patched.status_code == 200 and patched.headers["etag"] == '"2"'
        assert patched.json()["enabled"] is False and patched.json()["disabled_reason"] == "by_user"
        stale = await client.patch(f"/v1/webhooks/{hook_id}", headers=admin.match('"1"'), json={"enabled": True})
        assert stale.status_code == 412

        history = (await client.get(f"/v1/webhooks/{hook_id}/history", headers=admin.headers)).json()
        assert [h["summary"] for h in history] == ["Subscription created", "Subscription changed"]
        assert {c["field"] for c in history[1]["changes"]} == {"enabled", "secret"}
        assert "s" * 20 not in str(history)

        [changed] = await events.wait_for(1, type="crm.webhook.subscription_changed", subject=hook_id)
        data = changed.event["data"]
        assert {c["field"] for c in data["changes"]} == {"enabled", "secret"}
        assert "s" * 20 not in changed.value.decode()  # the secret never leaves
        assert "secret" not in data["subscription"]
        [created_event] = await events.wait_for(1, type="crm.webhook.subscription_created", subject=hook_id)
        assert created["secret"] not in created_event.value.decode()

        deleted = await client.delete(f"/v1/webhooks/{hook_id}", headers=admin.match('"2"'))
        assert deleted.status_code == 200
        assert (await client.get(f"/v1/webhooks/{hook_id}", headers=admin.headers)).status_code == 404
        await events.wait_for(1, type="crm.webhook.subscription_deleted", subject=hook_id)

    rep = await client.get("/v1/webhooks", headers=auth(unique("rep"), ["rep"]))
    assert rep.status_code == 403 and rep.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.100.100.200/latest/meta-data",
        "http://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1 (these tests allow 127.0.0.0/8)
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "ftp://example.com/hook",
        "http://[::1]/x",
    ],
)
async def test_urls_that_would_reach_inside_are_refused(client: httpx.AsyncClient, admin: Person, url: str) -> None:
    response = await client.post(
        "/v1/webhooks", headers=admin.headers, json={"url": url, "event_types": ["crm.customer.*"]}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert [e["field"] for e in response.json()["errors"]] == ["url"]


async def test_bad_patterns_are_refused(client: httpx.AsyncClient, admin: Person) -> None:
    response = await client.post(
        "/v1/webhooks", headers=admin.headers, json={"url": "http://127.0.0.1:9/x", "event_types": ["CRM Customer"]}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "event_types[0]"


# --- deliveries ---------------------------------------------------------------------------------


async def test_delivery_is_a_signed_cloudevent(world: World, hooks: Hooks) -> None:
    async with Receiver() as receiver:
        hook = await hooks.create(receiver.url, ["crm.customer.owner_*"])
        event = await owner_changed(world)
        delivery = await hooks.delivery(hook["id"], event.id, status="delivered")
        [request] = for_event(receiver, event.id)
    headers = request.headers
    assert headers["content-type"] == "application/cloudevents+json"
    assert verify(hook["secret"], int(headers["webhook-timestamp"]), request.body, headers["webhook-signature"])
    assert not verify("whsec_wrong", int(headers["webhook-timestamp"]), request.body, headers["webhook-signature"])
    body = json.loads(request.body)
    assert body["specversion"] == "1.0" and body["id"] == event.id and body["type"] == "crm.customer.owner_changed"
    assert body["data"]["owner_id"] == "u-owner"
    assert body["data"]["previous_owner_id"] is None  # the data exactly as on Kafka, nulls included
    [attempt] = delivery["attempts"]
    assert attempt["ok"] is True and attempt["status_code"] == 204 and attempt["response_ms"] >= 0
    assert delivery["event"]["id"] == event.id


async def test_delivery_goes_to_the_address_checked_not_to_a_second_lookup(
    world: World, hooks: Hooks, dns: ScriptedDns
) -> None:
    """DNS rebinding: the name answers the receiver's address to the checks, then a refused one.
    The request must reach the checked address, with the name in its Host header."""
    name = f"{unique('rebind')}.example.test"  # resolves nowhere outside this script
    async with Receiver() as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        dns.script(name, [["127.0.0.1"], ["127.0.0.1"], ["100.100.100.200"]])
        hook = await hooks.create(f"http://{name}:{port}/hook", ["crm.customer.owner_*"])
        event = await owner_changed(world)
        delivery = await hooks.delivery(hook["id"], event.id, status="delivered")
        [request] = for_event(receiver, event.id)
    assert request.headers["host"] == f"{name}:{port}"
    assert delivery["attempts"][0]["ok"] is True
    assert dns.lookups[name] == 2  # one check at creation, one per attempt: never a lookup to connect


async def test_a_name_that_rebinds_inside_is_refused_at_delivery(world: World, hooks: Hooks, dns: ScriptedDns) -> None:
    name = f"{unique('rebind')}.example.test"
    async with Receiver() as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        dns.script(name, [["127.0.0.1"], ["2002:6464:64c8::1"]])  # 6to4 of 100.100.100.200 after the creation
        hook = await hooks.create(f"http://{name}:{port}/hook", ["crm.customer.owner_*"])
        event = await owner_changed(world)
        delivery = await hooks.delivery(hook["id"], event.id, status="dead")
        assert for_event(receiver, event.id) == []
    assert all(a["error"].startswith("refused: ") for a in delivery["attempts"])
    assert "100.100.100.200" in delivery["attempts"][0]["error"]


async def test_a_receiver_failing_twice_then_succeeding(world: World, hooks: Hooks) -> None:
    async def flaky(_: Received, n: int) -> int:
        return 500 if n <= 2 else 200

    async with Receiver(flaky) as receiver:
        hook = await hooks.create(receiver.url)
        event = await owner_changed(world)
        delivery = await hooks.delivery(hook["id"], event.id, status="delivered")
        assert len(for_event(receiver, event.id)) == 3
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert [a["ok"] for a in delivery["attempts"]] == [False, False, True]
    assert "HTTP 500" in delivery["attempts"][0]["error"] and delivery["attempts"][2]["error"] is None
    assert delivery["attempt_count"] == 3


async def test_a_dead_receiver_does_not_delay_a_healthy_one(world: World, hooks: Hooks) -> None:
    release = asyncio.Event()

    async def hang(_: Received, n: int) -> int:
        await asyncio.wait_for(release.wait(), 10)
        return 204

    async with Receiver(hang) as slow, Receiver() as healthy:
        slow_hook = await hooks.create(slow.url)
        healthy_hook = await hooks.create(healthy.url)
        # More events than the slow subscription's concurrency (2), so it is saturated.
        events = [await owner_changed(world) for _ in range(4)]
        for event in events:
            await hooks.delivery(healthy_hook["id"], event.id, status="delivered")
        # Every healthy delivery went out while the slow receiver still held its first requests
        # (the per-attempt timeout is 1 s; none of them has even been answered).
        assert not release.is_set()
        try:
            # Its attempts time out after 1 s each, and its retry period (0.6 s) is then spent: dead.
            dead = await hooks.delivery(slow_hook["id"], events[0].id, status="dead")
            assert dead["attempts"][0]["error"] == "timeout after 1s"
        finally:
            release.set()


async def test_dead_deliveries_are_listed_and_replayed(client: httpx.AsyncClient, world: World, hooks: Hooks) -> None:
    healthy = False

    async def down_until_fixed(_: Received, n: int) -> int:
        return 204 if healthy else 503

    async with Receiver(down_until_fixed) as receiver:
        hook = await hooks.create(receiver.url)
        first, second = await owner_changed(world), await owner_changed(world)
        dead = await hooks.delivery(hook["id"], first.id, status="dead")
        await hooks.delivery(hook["id"], second.id, status="dead")
        assert dead["attempt_count"] >= 2 and all(a["status_code"] == 503 for a in dead["attempts"])
        listed = await client.get(
            f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.admin.headers, params={"status": "dead"}
        )
        assert {d["event_id"] for d in listed.json()["items"]} >= {first.id, second.id}

        healthy = True
        # Two deliveries failing fast may have disabled it (8 failures in a row): enable it again first,
        # as an admin would after fixing the receiver.
        current = await client.get(f"/v1/webhooks/{hook['id']}", headers=hooks.admin.headers)
        if not current.json()["enabled"]:
            enabled = await client.patch(
                f"/v1/webhooks/{hook['id']}",
                headers=hooks.admin.match(current.headers["etag"]),
                json={"enabled": True},
            )
            assert enabled.status_code == 200 and enabled.json()["disabled_reason"] is None
        not_dead = await client.post(
            f"/v1/webhooks/{hook['id']}/deliveries/{dead['id']}/replay", headers=hooks.admin.headers
        )
        assert not_dead.status_code == 200 and not_dead.json()["status"] == "pending"
        replayed = await hooks.delivery(hook["id"], first.id, status="delivered")
        assert replayed["attempts"][-1]["ok"] is True
        assert replayed["attempt_count"] == dead["attempt_count"] + 1
        again = await client.post(
            f"/v1/webhooks/{hook['id']}/deliveries/{dead['id']}/replay", headers=hooks.admin.headers
        )
        assert again.status_code == 409

        everything = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/replay-dead", headers=hooks.admin.headers)
        assert everything.json()["replayed"] >= 1
        await hooks.delivery(hook["id"], second.id, status="delivered")


async def test_the_same_event_twice_is_delivered_once(world: World, hooks: Hooks) -> None:
    async with Receiver() as receiver:
        hook = await hooks.create(receiver.url)
        event = await owner_changed(world)
        await world.publish(event, customers.TOPIC)  # Kafka hands it over again
        marker = await world.emit(
            customers.UNLOCKED, event.subject, customers.Unlocked(customer=customer("u-owner")), version=2
        )
        await hooks.delivery(hook["id"], marker.id, status="delivered")
        await hooks.delivery(hook["id"], event.id, status="delivered")
        assert len(for_event(receiver, event.id)) == 1


async def test_a_subscription_that_keeps_failing_is_disabled_and_its_owner_told(
    client: httpx.AsyncClient, world: World, hooks: Hooks, app: FastAPI, smtp_sink: Any
) -> None:
    async with Receiver() as closed:
        url = closed.url  # nothing listens there once the block ends: connection refused
    hook = await hooks.create(url)
    for _ in range(4):
        await owner_changed(world)

    async def disabled() -> bool:
        got = await client.get(f"/v1/webhooks/{hook['id']}", headers=hooks.admin.headers)
        return got.json()["enabled"] is False

    await eventually(disabled, timeout=30, message="subscription disabled")
    got = (await client.get(f"/v1/webhooks/{hook['id']}", headers=hooks.admin.headers)).json()
    assert got["disabled_reason"] == "consecutive_failures"
    [note] = await world.inbox(client, hooks.admin, 1)
    assert note["kind"] == "webhook_disabled" and url in note["title"]
    assert note["link"] == f"/webhooks/{hook['id']}"
    # webhook_disabled is emailed by default.
    mails = await eventually(lambda: smtp_sink.to(hooks.admin.email), timeout=30, message="mail")
    assert mails[0]["Subject"] == f"Webhook disabled: {url}"
    # Nothing waits any more: what was pending is on the dead list, to replay once fixed.
    pending = await client.get(
        f"/v1/webhooks/{hook['id']}/deliveries", headers=hooks.admin.headers, params={"status": "pending"}
    )
    assert pending.json()["items"] == []
    refused = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/replay-dead", headers=hooks.admin.headers)
    assert refused.status_code == 409 and "enable it" in refused.json()["detail"]


async def test_integrators_manage_their_own_subscriptions_only(
    client: httpx.AsyncClient, world: World, admin: Person
) -> None:
    erp = await world.person("en", roles=["integrator"])
    bi = await world.person("en", roles=["integrator"])
    rep = await world.person("en")
    body = {"url": "http://127.0.0.1:9/erp", "event_types": ["crm.customer.*"]}
    assert (await client.post("/v1/webhooks", headers=rep.headers, json=body)).status_code == 403
    created = await client.post("/v1/webhooks", headers=erp.headers, json=body)
    assert created.status_code == 201, created.text
    hook_id = created.json()["id"]
    assert created.json()["owner_id"] == erp.id

    # Another integrator neither sees nor touches it; the admin sees every subscription.
    assert (await client.get(f"/v1/webhooks/{hook_id}", headers=bi.headers)).status_code == 404
    listed = await client.get("/v1/webhooks", headers=bi.headers, params={"limit": 500})
    assert hook_id not in {h["id"] for h in listed.json()["items"]}
    assert (await client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=bi.headers)).status_code == 404
    gone = await client.delete(f"/v1/webhooks/{hook_id}", headers=bi.match('"1"'))
    assert gone.status_code == 404
    assert (await client.get(f"/v1/webhooks/{hook_id}", headers=admin.headers)).status_code == 200
    mine = await client.get("/v1/webhooks", headers=erp.headers, params={"limit": 500})
    assert [h["id"] for h in mine.json()["items"]] == [hook_id]
    assert (await client.delete(f"/v1/webhooks/{hook_id}", headers=erp.match('"1"'))).status_code == 200
