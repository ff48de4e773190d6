"""The customers service and the pool service's events: release decisions and claim rules.

The pool service only decides; this service applies a ``crm.pool.release_decided`` if nothing
changed since the decision's basis (same owner, no newer follow-up), and enforces the claim
rules it keeps from ``crm.pool.claim_rules_changed`` (cool-down, which pool a rep claims from).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_platform.contracts import interactions, pool
from crm_platform.events import EventEnvelope, to_kafka
from crm_platform.metrics import EVENTS_CONSUMED
from crm_platform.testing.fixtures import EventCollector, auth, eventually, unique

GROUP = "crm.customers"


class User:
    def __init__(self, dept: str, roles: list[str] | None = None) -> None:
        self.id = unique("rep")
        self.dept = dept
        self.headers = auth(self.id, roles or ["rep"], department_path=dept)


@pytest.fixture
async def consumer_ready(customers_app: Any) -> None:
    kit = customers_app.state.kit
    await eventually(lambda: all(c.assigned() for c in kit.consumers), timeout=30, message="consumer assigned")


def handled(event_type: str) -> float:
    return sum(EVENTS_CONSUMED.labels(GROUP, event_type, o)._value.get() for o in ("ok", "dead_lettered"))


async def send(producer: Any, topic: str, *envelopes: EventEnvelope) -> None:
    before = handled(envelopes[0].type)
    for envelope in envelopes:
        key, value, headers = to_kafka(envelope.model_dump(mode="json"))
        await producer.send_and_wait(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
    await eventually(lambda: handled(envelopes[0].type) >= before + len(envelopes), timeout=20, message="handled")


def decision(customer_id: str, owner_id: str, owner_since: datetime, last: datetime | None) -> EventEnvelope:
    return pool.RELEASE_DECIDED.build(
        source="/crm/pool",
        subject=customer_id,
        data=pool.ReleaseDecided(
            customer_id=customer_id,
            owner_id=owner_id,
            basis=pool.RecycleBasis(owner_since=owner_since, last_interaction_at=last),
            reason="no_interaction",
            reason_text="no follow-up by the owner for 30 days (rule east)",
            rule_id="rule-east",
            deadline=owner_since + timedelta(days=30),
        ),
        aggregate_version=1,
        time=datetime.now(UTC),
        actor=pool.SYSTEM_ACTOR,
    )


def claim_rules(rule_id: str, path: str | None, cooldown: int, scope: str, version: int) -> EventEnvelope:
    return pool.CLAIM_RULES_CHANGED.build(
        source="/crm/pool",
        subject=rule_id,
        data=pool.ClaimRulesChanged(
            claim_rules=pool.ClaimRules(
                rule_id=rule_id, department_path=path, cooldown_days=cooldown, claim_scope=scope
            )  # type: ignore[arg-type]
        ),
        aggregate_version=version,
        time=datetime.now(UTC),
        actor="admin-1",
    )


async def create(client: Any, user: User) -> dict[str, Any]:
    r = await client.post("/v1/customers", json={"kind": "company", "name": unique("Pool")}, headers=user.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_a_release_decision_applies_once_when_nothing_changed(
    client: Any, producer: Any, consumer_ready: None, customers_db: Any, customer_events: EventCollector
) -> None:
    rep = User(f"/{unique('d')}")
    c = await create(client, rep)
    stored = await customers_db["customers"].find_one({"_id": c["id"]})
    envelope = decision(c["id"], rep.id, stored["owner_since"], None)
    await send(producer, pool.TOPIC, envelope, envelope)  # redelivered: applied once

    [released] = await customer_events.wait_for(type="crm.customer.released", subject=c["id"])
    assert released.event["actor"] == "system:pool"
    assert released.event["data"]["reason"] == "no follow-up by the owner for 30 days (rule east)"
    assert released.event["data"]["previous_owner_id"] == rep.id
    body = (await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)).json()
    assert (body["in_pool"], body["owner_id"], body["version"]) == (True, None, 2)
    assert len(customer_events.matching(type="crm.customer.released", subject=c["id"])) == 1


async def test_a_decision_is_ignored_after_a_newer_follow_up_or_another_owner(
    client: Any, producer: Any, consumer_ready: None, customers_db: Any
) -> None:
    rep = User(f"/{unique('d')}")
    followed, reassigned = await create(client, rep), await create(client, rep)
    since = (await customers_db["customers"].find_one({"_id": followed["id"]}))["owner_since"]
    interaction_id = str(uuid.uuid4())
    log = interactions.INTERACTION_LOGGED.build(
        source="/crm/interactions",
        subject=interaction_id,
        data=interactions.InteractionLogged(
            interaction_id=interaction_id,
            customer_id=followed["id"],
            author_id=rep.id,
            channel="phone",
            occurred_at=datetime.now(UTC),
        ),
        aggregate_version=1,
        time=datetime.now(UTC),
        actor=rep.id,
    )
    await send(producer, interactions.TOPIC, log)
    since2 = (await customers_db["customers"].find_one({"_id": reassigned["id"]}))["owner_since"]
    await send(
        producer,
        pool.TOPIC,
        decision(followed["id"], rep.id, since, None),  # the pool had not seen the follow-up
        decision(reassigned["id"], "someone-else", since2, None),  # the pool thought another owner had it
        decision(reassigned["id"], rep.id, since2 - timedelta(seconds=5), None),  # an older ownership
    )
    for c in (followed, reassigned):
        body = (await client.get(f"/v1/customers/{c['id']}", headers=rep.headers)).json()
        assert (body["in_pool"], body["owner_id"], body["version"]) == (False, rep.id, 1)


async def test_claim_rules_cool_down_and_department_pool(client: Any, producer: Any, consumer_ready: None) -> None:
    dept = f"/{unique('d')}"
    owner, colleague, outsider = User(dept), User(dept), User(f"/{unique('other')}")
    rule_id = unique("rule")
    await send(producer, pool.TOPIC, claim_rules(rule_id, dept, 5, "department", 1))
    c = await create(client, owner)
    r = await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "不跟了"}, headers=owner.headers)
    assert r.status_code == 200, r.text

    back = await client.post(f"/v1/customers/{c['id']}/claim", headers=owner.headers)
    assert back.status_code == 409
    assert back.headers["content-type"].startswith("application/problem+json")
    assert back.json()["cooldown_days"] == 5 and "cool-down" in back.json()["detail"]

    # The outsider's department has no rule of its own: the global default lets them claim from anywhere,
    # unless a rule for their department says "department".
    outsider_rule = unique("rule")
    await send(producer, pool.TOPIC, claim_rules(outsider_rule, outsider.dept, 0, "department", 1))
    far = await client.post(f"/v1/customers/{c['id']}/claim", headers=outsider.headers)
    assert far.status_code == 403
    assert far.json()["claim_scope"] == "department"

    # A newer version lifts the cool-down; a stale redelivery of the old one changes nothing.
    await send(
        producer,
        pool.TOPIC,
        claim_rules(rule_id, dept, 0, "department", 2),
        claim_rules(rule_id, dept, 5, "department", 1),
    )
    mine = await client.post(f"/v1/customers/{c['id']}/claim", headers=owner.headers)
    assert mine.status_code == 200, mine.text

    # Within the same department, a colleague claims normally.
    await client.post(f"/v1/customers/{c['id']}/release", json={"reason": "给同事"}, headers=owner.headers)
    ok = await client.post(f"/v1/customers/{c['id']}/claim", headers=colleague.headers)
    assert ok.status_code == 200 and ok.json()["owner_id"] == colleague.id
