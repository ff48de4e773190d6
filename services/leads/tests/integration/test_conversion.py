"""Converting a lead, the leads service's side, over HTTP against the real store and broker: the
request's checks (422, 403, 409), the 202 and its conversion, and the answers of the customers and
pipeline services, published here through the broker as those services would publish them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as pev
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, collecting, eventually
from crm_platform.testing.roles import define_role

REP_ID = "conv-rep-1"
REP = auth(REP_ID, ["rep"], "/hq/conv/t1")
MANAGER = auth("conv-mgr", ["manager"], "/hq/conv")
NOW = datetime.now(UTC)


def company() -> str:
    return f"转化测试{uuid.uuid4().hex[:10]}有限公司"


def phone() -> str:
    return f"+86135{uuid.uuid4().int % 10**8:08d}"


async def qualified(client: httpx.AsyncClient, headers: dict[str, str] = REP, **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/leads", json={"company_name": company(), **fields}, headers=headers)
    assert r.status_code == 201, r.text
    r = await client.patch(
        f"/v1/leads/{r.json()['id']}", json={"status": "qualified"}, headers={**headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200, r.text
    lead: dict[str, Any] = r.json()
    return lead


def snapshot(customer_id: str, name: str, status: str = "active") -> cev.CustomerSnapshot:
    return cev.CustomerSnapshot(
        customer_id=customer_id,
        kind="company",
        name=name,
        owner_id="cust-owner-7",
        status=status,  # type: ignore[arg-type]
        created_at=NOW,
        updated_at=NOW,
        match_phones=[phone()],
        match_emails=[],
    )


async def customer(feed: EventFeed, leads_app: FastAPI, status: str = "active") -> tuple[str, str]:
    """A customer the leads service knows (from its event), by id and name."""
    customer_id, name = str(uuid.uuid4()), company()
    await feed.send(cev.CUSTOMER_CREATED, customer_id, cev.CustomerCreated(customer=snapshot(customer_id, name)), NOW)
    if status != "active":
        data = cev.Deleted(customer=snapshot(customer_id, name, status))
        await feed.send(cev.DELETED, customer_id, data, NOW)

    async def copied() -> bool:
        copy = await leads_app.state.repo.customer(customer_id)
        return copy is not None and copy["status"] == status

    await eventually(copied, timeout=30, message="customer copied")
    return customer_id, name


async def lead_in(client: httpx.AsyncClient, lead_id: str, **expected: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        lead: dict[str, Any] = (await client.get(f"/v1/leads/{lead_id}", headers=REP)).json()
        return lead if all(lead.get(k) == v for k, v in expected.items()) else None

    found: dict[str, Any] = await eventually(probe, timeout=30, message=f"lead {expected}")
    return found


async def test_the_request_is_checked_before_anything_is_asked(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    r = await client.post("/v1/leads", json={"company_name": company()}, headers=REP)
    new = r.json()
    r = await client.post(f"/v1/leads/{new['id']}/convert", json={}, headers=REP)
    assert r.status_code == 409 and "qualified" in r.json()["detail"], r.text
    lead = await qualified(client, contact_name="吴经理", phones=[phone()])
    url = f"/v1/leads/{lead['id']}/convert"
    r = await client.post(url, json={"colour": "red"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "colour"
    r = await client.post(url, json={"opportunity": {"name": "x", "amount": 12.5}}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "opportunity.amount", r.text
    r = await client.post(url, json={"contact": {"name": "x", "phones": ["12"]}}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "contact.phones[0]", r.text
    r = await client.post(url, json={"customer_id": "no-such-customer"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_id"
    deleted_id, _ = await customer(feed, leads_app, "deleted")
    r = await client.post(url, json={"customer_id": deleted_id}, headers=REP)
    assert r.status_code == 422 and "deleted" in r.json()["errors"][0]["reason"]
    r = await client.post(url, json={"owner_id": "nobody-here"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "owner_id"
    # The company is a customer already: 409 naming it and its owner (link instead).
    customer_id, name = await customer(feed, leads_app)
    r = await client.post(url, json={"customer": {"name": name}}, headers=REP)
    assert r.status_code == 409, r.text
    assert r.json()["customer_id"] == customer_id and r.json()["owner_id"] == "cust-owner-7"
    # Permissions: leads:convert, and customers:create / opportunities:create for what is made.
    await define_role(leads_app, "conv-no-customers", ["leads:view", "leads:edit", "leads:convert"], {"leads": "own"})
    await define_role(leads_app, "conv-no-convert", ["leads:view", "leads:edit"], {"leads": "own"})
    limited = auth(REP_ID, ["conv-no-customers"], "/hq/conv/t1")
    r = await client.post(url, json={}, headers=limited)
    assert r.status_code == 403 and "customers:create" in r.json()["detail"], r.text
    r = await client.post(url, json={"customer_id": customer_id, "opportunity": {"name": "单"}}, headers=limited)
    assert r.status_code == 403 and "opportunities:create" in r.json()["detail"], r.text
    r = await client.post(url, json={}, headers=auth(REP_ID, ["conv-no-convert"], "/hq/conv/t1"))
    assert r.status_code == 403
    # Nothing was asked, nothing changed.
    assert (await client.get(f"/v1/leads/{lead['id']}", headers=REP)).json()["version"] == lead["version"]


async def test_a_conversion_with_an_opportunity_follows_each_answer(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    bootstrap = leads_app.state.kit.settings.kafka_bootstrap_servers
    lead = await qualified(client, contact_name="郑经理", phones=[phone()], source="web")
    body = {
        "customer": {"industry": "零售"},
        "opportunity": {"name": "首单", "amount": "125000", "expected_close_date": "2027-03-31"},
    }
    async with collecting(bootstrap, [lev.TOPIC]) as events:
        r = await client.post(f"/v1/leads/{lead['id']}/convert", json=body, headers={**REP, "If-Match": '"2"'})
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/v1/leads/{lead['id']}" and r.headers["etag"] == '"3"'
        started = r.json()
        conversion = started["conversion"]
        assert started["status"] == "converting" and conversion["state"] == "requested"
        assert conversion["conversion_id"] == f"{lead['id']}:1" and conversion["requested_by"] == REP_ID
        # Again while it converts: the same conversion, nothing asked twice.
        again = await client.post(f"/v1/leads/{lead['id']}/convert", json={}, headers=REP)
        assert again.status_code == 202 and again.json()["conversion"] == conversion
        (requested,) = await events.wait_for(subject=lead["id"], type=lev.LEAD_CONVERSION_REQUESTED.name, timeout=30)
    command = lev.LeadConversionRequested.model_validate(requested.event["data"]).conversion
    assert command.customer_id == conversion["customer_id"] and not command.existing_customer
    assert command.contact is not None and command.contact.contact_id == conversion["contact_id"]
    assert command.contact.name == "郑经理" and command.phones == []  # the phones are the contact's
    assert command.opportunity is not None and command.opportunity.amount == "125000.00"
    assert command.industry == "零售" and command.owner_id == REP_ID
    assert len(events.matching(subject=lead["id"], type=lev.LEAD_CONVERSION_REQUESTED.name)) == 1
    r = await client.patch(f"/v1/leads/{lead['id']}", json={"notes": "x"}, headers={**REP, "If-Match": '"3"'})
    assert r.status_code == 409 and "being converted" in r.json()["detail"]

    customer_snapshot = snapshot(command.customer_id, command.customer_name)
    linked = cev.LeadLinked(
        customer=customer_snapshot,
        lead_id=lead["id"],
        conversion_id=command.conversion_id,
        contact_id=command.contact.contact_id,
        created=True,
    )
    # An answer for another attempt changes nothing.
    stale = linked.model_copy(update={"conversion_id": f"{lead['id']}:7"})
    await feed.send(cev.LEAD_LINKED, command.customer_id, stale, NOW)
    await feed.send(cev.LEAD_LINKED, command.customer_id, linked, NOW)
    progressed = await lead_in(client, lead["id"], version=4)
    assert progressed["status"] == "converting" and progressed["conversion"]["state"] == "customer_done"
    opportunity = pev.OpportunitySnapshot(
        opportunity_id=command.opportunity.opportunity_id,
        name="首单",
        customer_id=command.customer_id,
        currency="CNY",
        probability=10,
        pipeline_id="default",
        stage_id="s1",
        stage_name="初步接洽",
        stage_kind="open",
        stage_entered_at=NOW,
        status="open",
        owner_id=REP_ID,
        created_at=NOW,
        updated_at=NOW,
        lead_id=lead["id"],
    )
    created = pev.OpportunityCreated(opportunity=opportunity)
    envelope = await feed.send(pev.OPPORTUNITY_CREATED, opportunity.opportunity_id, created, NOW)
    done = await lead_in(client, lead["id"], status="converted")
    assert done["customer_id"] == command.customer_id and done["contact_id"] == command.contact.contact_id
    assert done["opportunity_id"] == opportunity.opportunity_id and done["version"] == 5
    # Redelivered: nothing more.
    await feed.resend(envelope)
    await feed.send(cev.LEAD_LINKED, command.customer_id, linked, NOW)
    history = (await client.get(f"/v1/leads/{lead['id']}/history", headers=REP)).json()
    assert [h["summary"] for h in history[-3:]] == [
        f"Conversion {command.conversion_id} requested (new customer {command.customer_id})",
        f"Conversion: customer {command.customer_id} done, opportunity asked for",
        f"Converted into customer {command.customer_id}",
    ]
    await feed.user("conv-rep-2", "钱七", "/hq/conv/t2")
    await eventually(
        lambda: leads_app.state.repo.directory_users.find_one({"_id": "conv-rep-2"}), timeout=30, message="user"
    )
    for action, payload in (("release", {"reason": "x"}), ("claim", {}), ("assign", {"owner_id": "conv-rep-2"})):
        r = await client.post(f"/v1/leads/{lead['id']}/{action}", json=payload, headers=MANAGER)
        assert r.status_code == 409 and command.customer_id in r.json()["detail"], (action, r.text)
    r = await client.delete(f"/v1/leads/{lead['id']}", headers=MANAGER)
    assert r.status_code == 409
    r = await client.patch(
        f"/v1/leads/{lead['id']}", json={"status": "qualified"}, headers={**REP, "If-Match": f'"{done["version"]}"'}
    )
    assert r.status_code == 409
    assert (await client.get(f"/v1/leads/{lead['id']}", headers=REP)).json()["version"] == 5


async def test_a_refused_step_makes_the_lead_qualified_again_and_a_new_convert_a_new_attempt(
    client: httpx.AsyncClient, feed: EventFeed, leads_app: FastAPI
) -> None:
    customer_id, _ = await customer(feed, leads_app)
    lead = await qualified(client)
    r = await client.post(f"/v1/leads/{lead['id']}/convert", json={"customer_id": customer_id}, headers=REP)
    assert r.status_code == 202, r.text
    first = r.json()["conversion"]
    assert first["existing_customer"] and first["customer_id"] == customer_id and first["contact_id"] is None
    r = await client.patch(f"/v1/leads/{lead['id']}", json={"status": "converted"}, headers={**REP, "If-Match": '"3"'})
    assert r.status_code == 409
    refused = cev.LeadRefused(
        customer_id=customer_id,
        lead_id=lead["id"],
        conversion_id=first["conversion_id"],
        reason="The customer is merged.",
        errors=[{"field": "customer_id", "reason": "the customer is merged"}],
    )
    await feed.send(cev.LEAD_REFUSED, customer_id, refused, NOW)
    failed = await lead_in(client, lead["id"], status="qualified")
    assert failed["conversion"]["state"] == "failed" and failed["conversion"]["step"] == "customer"
    assert failed["conversion"]["reason"] == "The customer is merged."
    assert failed["conversion"]["errors"] == [{"field": "customer_id", "reason": "the customer is merged"}]
    history = (await client.get(f"/v1/leads/{lead['id']}/history", headers=REP)).json()
    assert history[-1]["summary"] == "Conversion failed at the customer step: The customer is merged."
    # A new attempt; the old attempt's answers are ignored.
    r = await client.post(f"/v1/leads/{lead['id']}/convert", json={"customer_id": customer_id}, headers=REP)
    assert r.status_code == 202 and r.json()["conversion"]["conversion_id"] == f"{lead['id']}:2"
    version = r.json()["version"]
    old = cev.LeadLinked(
        customer=snapshot(customer_id, "x"), lead_id=lead["id"], conversion_id=first["conversion_id"], created=False
    )
    await feed.send(cev.LEAD_LINKED, customer_id, old, NOW)
    new = old.model_copy(update={"conversion_id": f"{lead['id']}:2"})
    await feed.send(cev.LEAD_LINKED, customer_id, new, NOW)
    done = await lead_in(client, lead["id"], status="converted")
    assert done["version"] == version + 1 and done["customer_id"] == customer_id and done["contact_id"] is None
