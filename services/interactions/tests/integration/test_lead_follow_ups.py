"""Follow-ups on leads: interactions and tasks logged with ``lead_id``, seen as the lead is, moved
to the customer (keeping ``lead_id``) when ``crm.lead.converted`` arrives, once.

Lead events are real envelopes (the contracts' ``build``) handed to the handlers the service's
consumer registers, against the real store; what the service publishes is read from the broker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_interactions.application.lead_events import LeadConversions
from crm_platform.contracts import leads as lev
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.testing.fixtures import eventually
from crm_platform.testing.plans import deliver


class Lead:
    """A lead as the leads service publishes it: per-event versions, the full snapshot each time."""

    def __init__(self, owner: Any | None) -> None:
        now = datetime.now(UTC)
        self.version = 0
        self.snapshot = lev.LeadSnapshot(
            lead_id=f"lead-{uuid.uuid4().hex[:12]}",
            company_name=f"线索公司 {uuid.uuid4().hex[:8]}",
            owner_id=owner.id if owner else None,
            department_path=owner.dept if owner else None,
            status="new",
            created_at=now,
            updated_at=now,
        )

    @property
    def id(self) -> str:
        return self.snapshot.lead_id

    def envelope(self, event_type: Any, data: Any) -> EventEnvelope:
        self.version += 1
        return event_type.build(  # type: ignore[no-any-return]
            source="/crm/leads",
            subject=self.id,
            data=data,
            aggregate_version=self.version,
            time=datetime.now(UTC),
            actor="leads-test",
        )

    def created(self) -> EventEnvelope:
        return self.envelope(lev.LEAD_CREATED, lev.LeadCreated(lead=self.snapshot))

    def deleted(self) -> EventEnvelope:
        self.snapshot = self.snapshot.model_copy(update={"deleted": True})
        return self.envelope(lev.LEAD_DELETED, lev.LeadDeleted(lead=self.snapshot))

    def converted(self, customer_id: str) -> EventEnvelope:
        self.snapshot = self.snapshot.model_copy(update={"status": "converted", "customer_id": customer_id})
        return self.envelope(
            lev.LEAD_CONVERTED,
            lev.LeadConverted(
                lead=self.snapshot,
                conversion_id=f"{self.id}:1",
                customer_id=customer_id,
                existing_customer=False,
            ),
        )


async def known_lead(app: Any, owner: Any | None) -> Lead:
    lead = Lead(owner)
    assert await deliver(app, lead.created()) == 1
    return lead


def phone_on(lead_id: str, clock: Any, **fields: Any) -> dict[str, Any]:
    return {
        "channel": "phone",
        "lead_id": lead_id,
        "occurred_at": (clock.now() - timedelta(hours=1)).isoformat(),
        "direction": "out",
        **fields,
    }


async def test_a_follow_up_on_a_lead_is_seen_as_the_lead_is(interactions_app, client, team, clock, events):
    lead = await known_lead(interactions_app, team.rep)
    r = await client.post("/v1/interactions", json=phone_on(lead.id, clock), headers=team.rep.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["lead_id"] == lead.id and created["customer_id"] is None

    # The owner, the manager whose leads scope reaches the lead's department, an admin: by path and filter.
    for user in (team.rep, team.manager, team.admin):
        for url, params in ((f"/v1/leads/{lead.id}/interactions", {}), ("/v1/interactions", {"lead_id": lead.id})):
            page = await client.get(url, params=params, headers=user.headers)
            assert page.status_code == 200, page.text
            assert [i["id"] for i in page.json()["items"]] == [created["id"]]
        assert (await client.get(f"/v1/interactions/{created['id']}", headers=user.headers)).status_code == 200
    # Someone whose scope does not reach the lead sees neither the lead's history nor the record.
    assert (await client.get(f"/v1/leads/{lead.id}/interactions", headers=team.stranger.headers)).status_code == 404
    assert (await client.get(f"/v1/interactions/{created['id']}", headers=team.stranger.headers)).status_code == 404
    assert (await client.get("/v1/leads/no-such-lead/interactions", headers=team.admin.headers)).status_code == 404

    # A lead has no contacts yet: a change that names one is refused, naming the field.
    etag = (await client.get(f"/v1/interactions/{created['id']}", headers=team.rep.headers)).headers["etag"]
    r = await client.patch(
        f"/v1/interactions/{created['id']}", json={"contact_ids": ["c-1"]}, headers=team.rep.match(etag)
    )
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["contact_ids"], r.text
    r = await client.patch(
        f"/v1/interactions/{created['id']}", json={"summary": "已联系"}, headers=team.rep.match(etag)
    )
    assert r.status_code == 200 and r.json()["lead_id"] == lead.id, r.text

    [logged] = await events.wait_for(type="crm.interaction.logged", subject=created["id"])
    data = logged.event["data"]
    assert data["lead_id"] == lead.id and data["customer_id"] is None
    assert data["interaction"]["lead_id"] == lead.id


async def test_a_lead_in_the_pool_is_seen_by_anyone_with_a_leads_scope(interactions_app, client, team, clock):
    lead = await known_lead(interactions_app, None)
    r = await client.post("/v1/interactions", json=phone_on(lead.id, clock), headers=team.rep.headers)
    assert r.status_code == 201, r.text
    page = await client.get(f"/v1/leads/{lead.id}/interactions", headers=team.stranger.headers)
    assert [i["id"] for i in page.json()["items"]] == [r.json()["id"]]


async def test_what_a_follow_up_on_a_lead_may_not_be(interactions_app, client, world, team, clock, expect_problem):
    lead = await known_lead(interactions_app, team.rep)
    customer = await world.customer(team.rep)
    gone = await known_lead(interactions_app, team.rep)
    assert await deliver(interactions_app, gone.deleted()) == 1
    converted = await known_lead(interactions_app, team.rep)
    assert await deliver(interactions_app, converted.converted(customer.id)) == 1

    cases = [
        ({**phone_on(lead.id, clock), "customer_id": customer.id}, "lead_id"),
        ({k: v for k, v in phone_on(lead.id, clock).items() if k != "lead_id"}, "customer_id"),
        (phone_on("lead-unknown", clock), "lead_id"),
        (phone_on(gone.id, clock), "lead_id"),
        (phone_on(converted.id, clock), "lead_id"),
        (phone_on(lead.id, clock, contact_ids=customer.contact_ids[:1]), "contact_ids"),
    ]
    for body, field in cases:
        r = await client.post("/v1/interactions", json=body, headers=team.rep.headers)
        problem = expect_problem(r, 422)
        assert [e["field"] for e in problem["errors"]] == [field], (body, problem)
    # A lead another rep's scope does not reach is refused the same way as an unknown one.
    r = await client.post("/v1/interactions", json=phone_on(lead.id, clock), headers=team.stranger.headers)
    assert [e["field"] for e in expect_problem(r, 422)["errors"]] == ["lead_id"]

    due = (clock.now() + timedelta(days=1)).isoformat()
    for body, field in (
        ({"title": "回访", "due_at": due, "lead_id": lead.id, "customer_id": customer.id}, "lead_id"),
        ({"title": "回访", "due_at": due, "lead_id": "lead-unknown"}, "lead_id"),
        ({"title": "回访", "due_at": due, "lead_id": converted.id}, "lead_id"),
    ):
        r = await client.post("/v1/tasks", json=body, headers=team.rep.headers)
        assert [e["field"] for e in expect_problem(r, 422)["errors"]] == [field], body


async def test_a_task_on_a_lead_and_the_lead_filter(interactions_app, client, team, clock, events):
    lead = await known_lead(interactions_app, team.rep)
    logged = await client.post("/v1/interactions", json=phone_on(lead.id, clock), headers=team.rep.headers)
    due = (clock.now() + timedelta(days=1)).isoformat()
    direct = await client.post(
        "/v1/tasks", json={"title": "发资料", "due_at": due, "lead_id": lead.id}, headers=team.rep.headers
    )
    assert direct.status_code == 201, direct.text
    # From a follow-up on the lead: the task is the lead's too.
    derived = await client.post(
        "/v1/tasks",
        json={"title": "再打一次", "due_at": due, "interaction_id": logged.json()["id"]},
        headers=team.rep.headers,
    )
    assert derived.status_code == 201, derived.text
    assert derived.json()["lead_id"] == lead.id and derived.json()["customer_id"] is None
    page = await client.get("/v1/tasks", params={"lead_id": lead.id}, headers=team.rep.headers)
    assert {t["id"] for t in page.json()["items"]} == {direct.json()["id"], derived.json()["id"]}
    [created] = await events.wait_for(type="crm.task.created", subject=direct.json()["id"])
    assert created.event["data"]["task"]["lead_id"] == lead.id


async def test_conversion_moves_a_leads_follow_ups_to_the_customer_in_batches_once(
    interactions_app, client, world, team, clock, events
):
    lead = await known_lead(interactions_app, team.rep)
    customer = await world.customer(team.rep)
    interaction_ids = []
    for _ in range(5):
        r = await client.post("/v1/interactions", json=phone_on(lead.id, clock), headers=team.rep.headers)
        assert r.status_code == 201, r.text
        interaction_ids.append(r.json()["id"])
    due = (clock.now() + timedelta(days=1)).isoformat()
    task_ids = []
    for _ in range(3):
        r = await client.post(
            "/v1/tasks", json={"title": "跟进", "due_at": due, "lead_id": lead.id}, headers=team.rep.headers
        )
        task_ids.append(r.json()["id"])

    kit = interactions_app.state.kit
    # Batches of two: eight records are four reads and eight small writes, never one big one.
    conversions = LeadConversions(
        interactions_app.state.repo, interactions_app.state.lead_copy, EventFactory(kit.source, kit.clock), 2
    )
    converted = lead.converted(customer.id)
    await conversions.leads.store(converted)
    moved = [await conversions.move(kind, lead.id, customer.id, converted) for kind in conversions.kinds]
    assert moved == [5, 3]
    # Redelivered (through the service's own handler): nothing left to move, no new event.
    assert await deliver(interactions_app, converted) == 1
    assert [await conversions.move(kind, lead.id, customer.id, converted) for kind in conversions.kinds] == [0, 0]
    # The moved follow-ups took the customer's owner: they are "records of my customers" for its owner.
    stored = interactions_app.state.repo.interactions.find({"_id": {"$in": interaction_ids}})
    assert {d["customer_owner_id"] async for d in stored} == {team.rep.id}

    history = await client.get(f"/v1/customers/{customer.id}/interactions", headers=team.rep.headers)
    assert {i["id"] for i in history.json()["items"]} == set(interaction_ids)
    assert all(i["lead_id"] == lead.id for i in history.json()["items"])
    page = await client.get("/v1/tasks", params={"customer_id": customer.id}, headers=team.rep.headers)
    assert {t["id"] for t in page.json()["items"]} == set(task_ids)
    # The lead's history still lists them (lead_id stays).
    by_lead = await client.get(f"/v1/leads/{lead.id}/interactions", headers=team.rep.headers)
    assert {i["id"] for i in by_lead.json()["items"]} == set(interaction_ids)

    for subject in interaction_ids:
        [updated] = await events.wait_for(type="crm.interaction.updated", subject=subject)
        data = updated.event["data"]
        assert data["reason"] == "lead converted"
        assert data["changes"] == [{"field": "customer_id", "old": None, "new": customer.id}]
        assert data["interaction"]["customer_id"] == customer.id and data["interaction"]["lead_id"] == lead.id
    for subject in task_ids:
        [updated] = await events.wait_for(type="crm.task.updated", subject=subject)
        assert updated.event["data"]["reason"] == "lead converted"

    async def settled() -> bool:
        return len(events.matching(type="crm.interaction.updated", subject=interaction_ids[0])) == 1

    await eventually(settled, message="one update event per record, redelivery or not")
