"""The customers service keeps "last followed up" fresh from ``crm.interaction.logged`` events.

Events are produced on the real broker (topic ``crm.interactions.v1``, keyed by interaction id)
and consumed by the service's own consumer group. To assert that an event changed nothing we
wait until the consumer has handled it (its "consumed" counter moved), then look.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_platform.contracts.interactions import (
    INTERACTION_LOGGED,
    INTERACTION_UPDATED,
    TOPIC,
    FieldChange,
    InteractionLogged,
    InteractionSnapshot,
    InteractionUpdated,
)
from crm_platform.events import to_kafka
from crm_platform.metrics import EVENTS_CONSUMED
from crm_platform.testing.fixtures import auth, eventually, unique

GROUP = "crm.customers"


class User:
    def __init__(self, dept: str | None = None, roles: list[str] | None = None) -> None:
        self.id = unique("rep")
        self.dept = dept or f"/{unique('f')}"
        self.headers = auth(self.id, roles or ["rep"], department_path=self.dept)


def handled() -> float:
    outcomes = ("ok", "dead_lettered")
    return sum(EVENTS_CONSUMED.labels(GROUP, INTERACTION_LOGGED.name, o)._value.get() for o in outcomes)


def dead_lettered() -> float:
    return EVENTS_CONSUMED.labels(GROUP, INTERACTION_LOGGED.name, "dead_lettered")._value.get()


@pytest.fixture
async def consumer_ready(customers_app: Any, client: Any) -> None:
    """The service's consumer group has its partitions (a new group takes a few seconds)."""
    kit = customers_app.state.kit
    await eventually(lambda: all(c.assigned() for c in kit.consumers), timeout=30, message="consumer assigned")


def logged(customer_id: str, occurred_at: datetime, author: str, interaction_id: str | None = None) -> dict[str, Any]:
    interaction_id = interaction_id or str(uuid.uuid4())
    envelope = INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=InteractionLogged(
            interaction_id=interaction_id,
            customer_id=customer_id,
            author_id=author,
            channel="phone",
            occurred_at=occurred_at,
        ),
        aggregate_version=1,
        time=datetime.now(UTC),
        actor=author,
    )
    return envelope.model_dump(mode="json")


async def send(producer: Any, envelope: dict[str, Any]) -> None:
    key, value, headers = to_kafka(envelope)
    assert key == envelope["subject"].encode()
    await producer.send_and_wait(TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])


async def send_and_wait_handled(producer: Any, *envelopes: dict[str, Any]) -> None:
    before = handled()
    for envelope in envelopes:
        await send(producer, envelope)
    await eventually(lambda: handled() >= before + len(envelopes), timeout=20, message="events handled")


async def create(client: Any, user: User, **fields: Any) -> dict[str, Any]:
    r = await client.post(
        "/v1/customers", json={"kind": "company", "name": unique("Follow"), **fields}, headers=user.headers
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_follow_up_updates_freshness_without_a_new_version(
    client, producer, consumer_ready, customer_events, customers_db
):
    rep = User()
    c = await create(client, rep)
    assert c["last_followed_up_at"] is None and c["freshness"]["days_since_follow_up"] is None
    occurred = (datetime.now(UTC) - timedelta(days=3, hours=1)).replace(microsecond=0)
    dead_before = dead_lettered()

    await send_and_wait_handled(producer, logged(c["id"], occurred, rep.id))

    r = await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)
    body = r.json()
    assert datetime.fromisoformat(body["last_followed_up_at"]) == occurred
    assert body["last_followed_up_by"] == rep.id
    assert body["freshness"]["days_since_follow_up"] == 3
    assert r.headers["etag"] == '"1"' and body["version"] == 1  # derived data: the ETag stays valid
    assert body["updated_at"] == c["updated_at"]
    assert dead_lettered() == dead_before

    # The client's ETag still works for a real change.
    patched = await client.patch(
        f"/v1/customers/{c['id']}", json={"tier": "A"}, headers={**rep.headers, "If-Match": '"1"'}
    )
    assert patched.status_code == 200 and patched.json()["last_followed_up_at"] == body["last_followed_up_at"]
    # No customer event for the follow-up itself: the update is the only one after the creation.
    await customer_events.wait_for(type="crm.customer.updated", subject=c["id"])
    assert [x.event["type"] for x in customer_events.matching(subject=c["id"])] == [
        "crm.customer.created",
        "crm.customer.updated",
    ]


async def test_repeated_and_older_events_change_nothing(client, producer, consumer_ready, customers_db):
    rep = User()
    c = await create(client, rep)
    # Microseconds on purpose: the store keeps milliseconds, and a redelivery must still be a no-op.
    latest = datetime.now(UTC) - timedelta(days=1, microseconds=123_457)
    first = logged(c["id"], latest, rep.id)
    await send_and_wait_handled(producer, first)
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["last_followed_up_at"] is not None
    assert abs(stored["last_followed_up_at"] - latest) < timedelta(milliseconds=1)

    other = User()
    await send_and_wait_handled(
        producer,
        first,  # the same event again (a redelivery)
        logged(c["id"], latest - timedelta(days=2), other.id),  # an older interaction arriving late
        logged(c["id"], latest - timedelta(microseconds=100), other.id),  # older, within the same millisecond
    )
    again = await customers_db["customers"].find_one({"_id": c["id"]})
    assert again == stored  # not a single field rewritten

    got = await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)
    assert got.json()["last_followed_up_by"] == rep.id and got.headers["etag"] == '"1"'

    # A newer one moves it forward.
    newer = latest + timedelta(hours=5)
    await send_and_wait_handled(producer, logged(c["id"], newer, other.id))
    got = await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)
    assert abs(datetime.fromisoformat(got.json()["last_followed_up_at"]) - newer) < timedelta(milliseconds=1)
    assert got.json()["last_followed_up_by"] == other.id and got.headers["etag"] == '"1"'


async def test_event_for_an_unknown_customer_is_ignored(client, producer, consumer_ready, customers_db):
    missing = str(uuid.uuid4())
    dead_before = dead_lettered()
    await send_and_wait_handled(producer, logged(missing, datetime.now(UTC), unique("rep")))
    assert await customers_db["customers"].find_one({"_id": missing}) is None
    assert dead_lettered() == dead_before  # ignored, not a failure


async def test_follow_up_of_a_customer_being_edited_keeps_both_changes(client, producer, consumer_ready, customers_db):
    rep = User()
    c = await create(client, rep)
    occurred = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    await send_and_wait_handled(producer, logged(c["id"], occurred, rep.id))
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"industry": "retail"}, headers={**rep.headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["industry"] == "retail" and stored["last_followed_up_at"] == occurred and stored["version"] == 2


async def test_list_never_followed_up_and_sort_by_last_follow_up(client, producer, consumer_ready):
    rep = User()
    tag = unique("fu")
    customers = [await create(client, rep, tags=[tag]) for _ in range(4)]
    now = datetime.now(UTC).replace(microsecond=0)
    # customers[0] three days ago, [1] one day ago, [2] two days ago, [3] never.
    when = {
        customers[0]["id"]: now - timedelta(days=3),
        customers[1]["id"]: now - timedelta(days=1),
        customers[2]["id"]: now - timedelta(days=2),
    }
    await send_and_wait_handled(producer, *(logged(cid, at, rep.id) for cid, at in when.items()))

    async def listed(**params: Any) -> list[dict[str, Any]]:
        r = await client.get("/v1/customers", params={"tags_all": tag, **params}, headers=rep.headers)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    assert [c["id"] for c in await listed(never_followed_up="true")] == [customers[3]["id"]]
    assert {c["id"] for c in await listed(never_followed_up="false")} == set(when)
    order = [c["id"] for c in await listed(sort="-last_followed_up_at")]
    assert order == [customers[1]["id"], customers[2]["id"], customers[0]["id"], customers[3]["id"]]
    order = [c["id"] for c in await listed(sort="last_followed_up_at")]
    assert order == [customers[3]["id"], customers[0]["id"], customers[2]["id"], customers[1]["id"]]
    ranged = await listed(followed_up_from=(now - timedelta(days=2, hours=1)).astimezone().isoformat())
    assert {c["id"] for c in ranged} == {customers[1]["id"], customers[2]["id"]}
    # Paging through the follow-up order with a cursor gives the same order.
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"sort": "-last_followed_up_at", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/customers", params={"tags_all": tag, **params}, headers=rep.headers)
        seen += [c["id"] for c in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert seen == [customers[1]["id"], customers[2]["id"], customers[0]["id"], customers[3]["id"]]
    freshness = {c["id"]: c["freshness"]["days_since_follow_up"] for c in await listed()}
    assert freshness == {customers[0]["id"]: 3, customers[1]["id"]: 1, customers[2]["id"]: 2, customers[3]["id"]: None}


def _handled_updates() -> float:
    outcomes = ("ok", "dead_lettered")
    return sum(EVENTS_CONSUMED.labels(GROUP, INTERACTION_UPDATED.name, o)._value.get() for o in outcomes)


async def test_a_follow_up_on_a_lead_counts_once_its_conversion_moves_it(
    client, producer, consumer_ready, customers_db
):
    """A lead's follow-up has no customer (``customer_id`` null, ``lead_id`` set): ignored, never a
    dead letter. When the lead's conversion moves it to the customer (``crm.interaction.updated``,
    customer_id None -> id) it follows that customer up."""
    rep = User()
    c = await create(client, rep)
    occurred = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    interaction_id, lead_id = str(uuid.uuid4()), f"lead-{uuid.uuid4().hex[:8]}"
    dead_before = dead_lettered()
    on_lead = INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=InteractionLogged(
            interaction_id=interaction_id,
            customer_id=None,
            lead_id=lead_id,
            author_id=rep.id,
            channel="phone",
            occurred_at=occurred,
        ),
        aggregate_version=1,
        time=datetime.now(UTC),
        actor=rep.id,
    )
    await send_and_wait_handled(producer, on_lead.model_dump(mode="json"))
    assert dead_lettered() == dead_before
    assert (await customers_db["customers"].find_one({"_id": c["id"]}))["last_followed_up_at"] is None

    now = datetime.now(UTC)
    snapshot = InteractionSnapshot(
        interaction_id=interaction_id,
        channel="phone",
        customer_id=c["id"],
        lead_id=lead_id,
        author_id=rep.id,
        occurred_at=occurred,
        recorded_at=occurred,
        recorded_late=False,
        updated_at=now,
    )
    moved = INTERACTION_UPDATED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=InteractionUpdated(
            interaction=snapshot,
            changes=[FieldChange(field="customer_id", old=None, new=c["id"])],
            reason="lead converted",
        ),
        aggregate_version=2,
        time=now,
        actor="system:interactions",
    )
    before = _handled_updates()
    await send(producer, moved.model_dump(mode="json"))
    await eventually(lambda: _handled_updates() >= before + 1, timeout=20, message="update handled")
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    assert stored["last_followed_up_at"] == occurred and stored["last_followed_up_by"] == rep.id
