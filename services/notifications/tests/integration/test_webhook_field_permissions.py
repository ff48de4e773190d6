"""Field-level permissions in webhook payloads (issue 16): a subscription delivers what its owner
may see. An integration whose role hides customers' industry, contacts' phones, opportunities'
amounts, interactions' minutes, tasks' notes and feedback's resolution receives the events without
them; an administrator's subscription receives them whole."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI
from notifications_testkit import Receiver, World, customer, feedback, move, now, opportunity, task

from crm_platform.contracts import customers, interactions, pipeline
from crm_platform.testing.fixtures import eventually, unique
from crm_platform.testing.roles import role_event

#: The built-in integrator role, edited by an administrator to hide fields (and restored after).
ROLE = "integrator"
PERMISSIONS = ["account:self", "webhooks:manage"]
FIELDS = {
    "customers": {"industry": "hidden"},
    "contacts": {"phones": "hidden"},
    "opportunities": {"amount": "hidden"},
    "interactions": {"minutes": "hidden"},
    "tasks": {"notes": "hidden"},
    "feedback": {"resolution": "hidden"},
}


async def test_each_subscription_receives_what_its_owner_may_see(
    client: httpx.AsyncClient, app: FastAPI, world: World
) -> None:
    # Versions above any the directory could have published in this session.
    await app.state.kit.roles.apply(role_event(ROLE, 10_000, permissions=PERMISSIONS, fields=FIELDS))
    try:
        await _deliveries_follow_the_owner(client, world)
    finally:
        await app.state.kit.roles.apply(role_event(ROLE, 10_001, permissions=PERMISSIONS, fields={}))


async def _deliveries_follow_the_owner(client: httpx.AsyncClient, world: World) -> None:
    limited = await world.person("en", roles=[ROLE])
    admin = await world.person("en", roles=["admin"])
    types = ["crm.customer.created", "crm.customer.updated", "crm.opportunity.won", "crm.interaction.*"]
    types += ["crm.task.*", "crm.feedback.*"]
    async with Receiver() as erp, Receiver() as full:
        hooks = []
        for person, receiver in ((limited, erp), (admin, full)):
            r = await client.post(
                "/v1/webhooks", headers=person.headers, json={"url": receiver.url, "event_types": types}
            )
            assert r.status_code == 201, r.text
            hooks.append((person, r.json()["id"]))

        c = customer(limited.id).model_copy(update={"industry": "制造业", "tier": "A"})
        contact = customers.ContactData(contact_id="k1", name="王经理", phones=["+8613800138000"], emails=["w@x.cn"])
        created = await world.emit(
            customers.CUSTOMER_CREATED, c.customer_id, customers.CustomerCreated(customer=c, contacts=[contact])
        )
        changes = [
            customers.FieldChange(field="industry", old="制造业", new="零售"),
            customers.FieldChange(field="tier", old="A", new="B"),
        ]
        updated = await world.emit(
            customers.CUSTOMER_UPDATED,
            c.customer_id,
            customers.CustomerUpdated(customer=c.model_copy(update={"industry": "零售", "tier": "B"}), changes=changes),
            version=2,
        )
        won = opportunity(limited.id, "880000.00")
        won_event = await world.emit(
            pipeline.OPPORTUNITY_WON,
            won.opportunity_id,
            pipeline.OpportunityWon(opportunity=won, move=move(limited.id), reason="signed"),
        )
        visit = interactions.InteractionSnapshot(
            interaction_id=unique("i"), channel="visit", customer_id=c.customer_id, author_id=limited.id,
            occurred_at=now(), recorded_at=now(), recorded_late=False, minutes="底价 80 万", location="杭州",
            updated_at=now(),
        )  # fmt: skip
        changes_i = [
            interactions.FieldChange(field="minutes", old=None, new="底价 80 万"),
            interactions.FieldChange(field="location", old=None, new="杭州"),
        ]
        visit_event = await world.emit(
            interactions.INTERACTION_UPDATED,
            visit.interaction_id,
            interactions.InteractionUpdated(interaction=visit, changes=changes_i),
        )
        todo = task(limited.id).model_copy(update={"notes": "底价 80 万"})
        task_event = await world.emit(interactions.TASK_CREATED, todo.task_id, interactions.TaskCreated(task=todo))
        fb = feedback(limited.id).model_copy(update={"status": "resolved", "resolution": "退款 5000 元"})
        fb_event = await world.emit(
            interactions.FEEDBACK_RESOLVED,
            fb.feedback_id,
            interactions.FeedbackResolved(
                feedback=fb, from_status="in_progress", resolution="退款 5000 元", satisfaction=4
            ),
        )
        ids = {created.id, updated.id, won_event.id, visit_event.id, task_event.id, fb_event.id}

        def arrived(receiver: Receiver) -> dict[str, Any] | None:
            got = {r.headers.get("webhook-id"): json.loads(r.body) for r in receiver.received}
            return got if ids <= set(got) else None

        to_erp: dict[str, Any] = await eventually(lambda: arrived(erp), timeout=30, message="erp deliveries")
        to_full: dict[str, Any] = await eventually(lambda: arrived(full), timeout=30, message="admin deliveries")
        for person, hook_id in hooks:
            await client.delete(f"/v1/webhooks/{hook_id}", headers=person.match('"1"'))

    erp_created = to_erp[created.id]["data"]
    assert "industry" not in erp_created["customer"] and erp_created["customer"]["tier"] == "A"
    assert "phones" not in erp_created["contacts"][0] and erp_created["contacts"][0]["emails"] == ["w@x.cn"]
    assert [c["field"] for c in to_erp[updated.id]["data"]["changes"]] == ["tier"]
    erp_won = to_erp[won_event.id]["data"]["opportunity"]
    assert "amount" not in erp_won and "weighted_amount" not in erp_won and erp_won["probability"] == 100
    assert "880000.00" not in json.dumps(to_erp[won_event.id]) and "+8613800138000" not in json.dumps(to_erp)
    erp_visit = to_erp[visit_event.id]["data"]
    assert "minutes" not in erp_visit["interaction"] and erp_visit["interaction"]["location"] == "杭州"
    assert [c["field"] for c in erp_visit["changes"]] == ["location"]
    assert "notes" not in to_erp[task_event.id]["data"]["task"]
    erp_fb = to_erp[fb_event.id]["data"]
    assert "resolution" not in erp_fb and "resolution" not in erp_fb["feedback"] and erp_fb["satisfaction"] == 4
    assert "底价" not in json.dumps(to_erp) and "退款" not in json.dumps(to_erp)

    assert to_full[created.id]["data"]["customer"]["industry"] == "制造业"
    assert to_full[created.id]["data"]["contacts"][0]["phones"] == ["+8613800138000"]
    assert len(to_full[updated.id]["data"]["changes"]) == 2
    assert to_full[won_event.id]["data"]["opportunity"]["amount"] == "880000.00"
    assert to_full[visit_event.id]["data"]["interaction"]["minutes"] == "底价 80 万"
    assert len(to_full[visit_event.id]["data"]["changes"]) == 2
    assert to_full[task_event.id]["data"]["task"]["notes"] == "底价 80 万"
    assert to_full[fb_event.id]["data"]["resolution"] == "退款 5000 元"
    assert to_full[fb_event.id]["data"]["feedback"]["resolution"] == "退款 5000 元"
