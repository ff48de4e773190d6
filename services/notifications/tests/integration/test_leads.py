"""Lead notifications (the new owner of a lead; who asked for a conversion that failed) and webhook
deliveries of lead events, with phones and emails redacted by the customers' field rules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from notifications_testkit import Receiver, World

from crm_platform.contracts import leads
from crm_platform.testing.fixtures import eventually, unique
from crm_platform.testing.roles import role_event


def lead(owner_id: str | None, status: str = "new") -> leads.LeadSnapshot:
    now = datetime.now(UTC)
    return leads.LeadSnapshot(
        lead_id=unique("lead"),
        company_name=f"杭州云帆 {uuid.uuid4().hex[:6]}",
        phones=[f"+86139{uuid.uuid4().int % 10**8:08d}"],
        emails=[f"{uuid.uuid4().hex[:8]}@yunfan.cn"],
        owner_id=owner_id,
        status=status,  # type: ignore[arg-type]
        created_at=now,
        updated_at=now,
    )


async def test_assignee_is_told_and_nobody_for_their_own_claim(client: httpx.AsyncClient, world: World) -> None:
    rep = await world.person("en")
    other = await world.person("zh-CN")
    mine = lead(None)
    v = 1
    await world.emit(leads.LEAD_CREATED, mine.lead_id, leads.LeadCreated(lead=mine), actor=rep.id, version=v)
    for how, actor in (("claimed", rep.id), ("assigned", rep.id)):  # their own doing: nobody is told
        v += 1
        owned = mine.model_copy(update={"owner_id": rep.id})
        changed = leads.LeadOwnerChanged(lead=owned, previous_owner_id=None, owner_id=rep.id, how=how)  # type: ignore[arg-type]
        await world.emit(leads.LEAD_OWNER_CHANGED, mine.lead_id, changed, actor=actor, version=v)
    # Then a manager assigns it to the other rep (same lead: same partition, after the ones above).
    v += 1
    given = mine.model_copy(update={"owner_id": other.id})
    changed = leads.LeadOwnerChanged(lead=given, previous_owner_id=rep.id, owner_id=other.id, how="assigned")
    await world.emit(leads.LEAD_OWNER_CHANGED, mine.lead_id, changed, actor="u-manager", version=v)
    [item] = await world.inbox(client, other)
    assert item["kind"] == "lead_assigned" and item["link"] == f"/leads/{mine.lead_id}"
    assert item["title"] == f"新线索分配给您：{mine.company_name}"
    # A lead created for someone else (an import, a manager) tells its owner too, in their language.
    made = lead(rep.id)
    await world.emit(leads.LEAD_CREATED, made.lead_id, leads.LeadCreated(lead=made), actor="u-importer")
    [told] = await world.inbox(client, rep)
    assert told["title"] == f"New lead for you: {made.company_name}" and told["link"] == f"/leads/{made.lead_id}"


async def test_conversion_failure_tells_who_asked(client: httpx.AsyncClient, world: World) -> None:
    owner, converter = await world.person("en"), await world.person("en")
    q = lead(owner.id, "qualified")
    conversion = leads.Conversion(
        conversion_id=f"{q.lead_id}:1",
        customer_id=unique("c"),
        existing_customer=False,
        customer_name=q.company_name,
        owner_id=owner.id,
        requested_by=converter.id,
        requested_at=datetime.now(UTC),
    )
    asked = leads.LeadConversionRequested(lead=q.model_copy(update={"status": "converting"}), conversion=conversion)
    await world.emit(leads.LEAD_CONVERSION_REQUESTED, q.lead_id, asked, actor=converter.id, version=2)
    failed = leads.LeadConversionFailed(
        lead=q, conversion_id=conversion.conversion_id, step="customer", reason="duplicate customer"
    )
    await world.emit(leads.LEAD_CONVERSION_FAILED, q.lead_id, failed, version=3)
    [item] = await world.inbox(client, converter)
    assert item["kind"] == "lead_conversion_failed" and "duplicate customer" in item["body"]
    # A failure whose request was not seen: the lead's owner is told.
    other = lead(owner.id, "qualified")
    lost = leads.LeadConversionFailed(lead=other, conversion_id=f"{other.lead_id}:1", step="opportunity", reason="x")
    await world.emit(leads.LEAD_CONVERSION_FAILED, other.lead_id, lost, version=3)
    [told] = await world.inbox(client, owner)
    assert told["kind"] == "lead_conversion_failed" and told["link"] == f"/leads/{other.lead_id}"


#: A role of this test's own (other tests edit the built-in integrator role by version).
ROLE = "lead-integrator"
PERMISSIONS = ["account:self", "webhooks:manage"]


async def test_webhook_receives_lead_events_redacted(client: httpx.AsyncClient, app: FastAPI, world: World) -> None:
    fields = {"customers": {"phones": "hidden"}, "contacts": {"emails": "hidden"}}
    await app.state.kit.roles.apply(role_event(ROLE, 1, permissions=PERMISSIONS, fields=fields))
    await _lead_deliveries(client, world)


async def _lead_deliveries(client: httpx.AsyncClient, world: World) -> None:
    limited = await world.person("en", roles=[ROLE])
    admin = await world.person("en", roles=["admin"])
    async with Receiver() as erp, Receiver() as full:
        hooks = []
        for person, receiver, types in (
            (limited, erp, ["crm.lead.created", "crm.lead.conversion_requested", "crm.campaign.*"]),
            (admin, full, ["crm.lead.*"]),
        ):
            r = await client.post(
                "/v1/webhooks", headers=person.headers, json={"url": receiver.url, "event_types": types}
            )
            assert r.status_code == 201, r.text
            hooks.append((person, r.json()["id"]))
        new = lead(limited.id)
        created = await world.emit(leads.LEAD_CREATED, new.lead_id, leads.LeadCreated(lead=new))
        contact = leads.ConversionContact(contact_id=unique("k"), name="李四", phones=new.phones, emails=new.emails)
        conversion = leads.Conversion(
            conversion_id=f"{new.lead_id}:1", customer_id=unique("c"), existing_customer=False,
            customer_name=new.company_name, phones=new.phones, emails=new.emails, owner_id=limited.id,
            contact=contact, requested_by=limited.id, requested_at=datetime.now(UTC),
        )  # fmt: skip
        asked = await world.emit(
            leads.LEAD_CONVERSION_REQUESTED,
            new.lead_id,
            leads.LeadConversionRequested(lead=new, conversion=conversion),
            version=2,
        )
        ids = {created.id, asked.id}

        def arrived(receiver: Receiver) -> dict[str, Any] | None:
            got = {r.headers.get("webhook-id"): json.loads(r.body) for r in receiver.received}
            return got if ids <= set(got) else None

        to_erp: dict[str, Any] = await eventually(lambda: arrived(erp), timeout=30, message="erp deliveries")
        to_full: dict[str, Any] = await eventually(lambda: arrived(full), timeout=30, message="admin deliveries")
        for person, hook_id in hooks:
            await client.delete(f"/v1/webhooks/{hook_id}", headers=person.match('"1"'))

    erp_lead = to_erp[created.id]["data"]["lead"]
    assert to_erp[created.id]["type"] == "crm.lead.created"
    assert "phones" not in erp_lead and erp_lead["emails"] == new.emails
    erp_conv = to_erp[asked.id]["data"]["conversion"]
    assert "phones" not in erp_conv and erp_conv["emails"] == new.emails
    assert "emails" not in erp_conv["contact"] and erp_conv["contact"]["phones"] == new.phones
    assert new.phones[0] not in json.dumps(to_erp[created.id])
    assert to_full[created.id]["data"]["lead"]["phones"] == new.phones
    assert to_full[asked.id]["data"]["conversion"]["contact"]["emails"] == new.emails
