"""A follow-up on a lead (``customer_id`` null, ``lead_id`` set) is no customer's follow-up: the pool
ignores it (no clock, no dead letter) until the lead's conversion moves it to the customer
(``crm.interaction.updated``, customer_id None -> id); from then on it counts like one logged there."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from crm_platform.contracts import interactions
from crm_platform.events import EventEnvelope, to_kafka
from crm_platform.metrics import EVENTS_CONSUMED
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.fixtures import auth, eventually, unique

ADMIN = auth("admin-1", ["admin"], "/hq")


def handled(app: FastAPI, event_type: str) -> float:
    groups = [c.group_id for c in app.state.kit.consumers if event_type in c.handlers]
    return sum(EVENTS_CONSUMED.labels(g, event_type, o)._value.get() for g in groups for o in ("ok", "dead_lettered"))


def dead_lettered(app: FastAPI, event_type: str) -> float:
    groups = [c.group_id for c in app.state.kit.consumers if event_type in c.handlers]
    return sum(EVENTS_CONSUMED.labels(g, event_type, "dead_lettered")._value.get() for g in groups)


async def publish(app: FastAPI, producer: Any, envelope: EventEnvelope) -> None:
    before = handled(app, envelope.type)
    key, value, headers = to_kafka(envelope.model_dump(mode="json"))
    await producer.send_and_wait(
        interactions.TOPIC, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
    )
    await eventually(lambda: handled(app, envelope.type) > before, timeout=20, message=f"{envelope.type} handled")


async def test_a_lead_follow_up_counts_only_once_moved_to_the_customer(
    pool_app: FastAPI, pool_client: Any, producer: Any
) -> None:
    dept = f"/{unique('d')}"
    r = await pool_client.post(
        "/v1/pool/rules",
        json={"name": f"rule {dept}", "department_path": dept, "no_interaction_days": 10, "warn_days": 3},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    rep = unique("rep")
    customer = await CustomerFeed(producer).created(owner_id=rep, department_path=dept)

    async def clock(**expected: Any) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            found = await pool_app.state.repo.get_clock(customer.id)
            return found if found and all(found.get(k) == v for k, v in expected.items()) else None

        result: dict[str, Any] = await eventually(probe, timeout=20, message=f"clock with {expected}")
        return result

    before = await clock(owner_id=rep)
    since = before["owner_since"]
    occurred = since + timedelta(days=4)
    interaction_id, lead_id = str(uuid.uuid4()), f"lead-{uuid.uuid4().hex[:8]}"
    dead = dead_lettered(pool_app, interactions.INTERACTION_LOGGED.name)
    await publish(
        pool_app,
        producer,
        interactions.INTERACTION_LOGGED.build(
            source="/crm/interactions",
            subject=interaction_id,
            data=interactions.InteractionLogged(
                interaction_id=interaction_id,
                customer_id=None,
                lead_id=lead_id,
                author_id=rep,
                channel="phone",
                occurred_at=occurred,
            ),
            aggregate_version=1,
            time=datetime.now(UTC),
            actor=rep,
        ),
    )
    assert dead_lettered(pool_app, interactions.INTERACTION_LOGGED.name) == dead
    unchanged = await pool_app.state.repo.get_clock(customer.id)
    assert unchanged["deadline"] == before["deadline"] and unchanged.get("last_owner_interaction_at") is None

    now = datetime.now(UTC)
    moved = interactions.INTERACTION_UPDATED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=interactions.InteractionUpdated(
            interaction=interactions.InteractionSnapshot(
                interaction_id=interaction_id,
                channel="phone",
                customer_id=customer.id,
                lead_id=lead_id,
                author_id=rep,
                occurred_at=occurred,
                recorded_at=occurred,
                recorded_late=False,
                updated_at=now,
            ),
            changes=[interactions.FieldChange(field="customer_id", old=None, new=customer.id)],
            reason="lead converted",
        ),
        aggregate_version=2,
        time=now,
        actor="system:interactions",
    )
    await publish(pool_app, producer, moved)
    after = await clock(last_owner_interaction_at=occurred)
    assert after["deadline"] == occurred + timedelta(days=10)
    # Redelivered: applied once (the clock records the event id), nothing moves.
    await publish(pool_app, producer, moved)
    assert (await pool_app.state.repo.get_clock(customer.id))["deadline"] == after["deadline"]
