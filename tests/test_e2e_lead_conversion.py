"""End to end: a lead's conversion across the leads, customers (and pipeline) services through
Kafka alone.

Each service runs in-process against the session's Kafka and MongoDB with its own database; none
calls another. The leads service asks (``crm.lead.conversion_requested``), the customers service
makes or links the customer and answers (``crm.customer.lead_linked`` / ``lead_refused``), the
leads service ends the conversion. A redelivered command (a crash midway) makes nothing twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_customers.domain import rules as customer_rules
from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_leads.main import create_app as create_leads_app
from crm_leads.settings import LeadsSettings
from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, eventually, running, service_settings, unique
from crm_platform.testing.plans import other_copies_paused

Json = dict[str, Any]


def _settings(backend: Backend, service: str) -> Json:
    return {**service_settings(backend, service), "consumer_backoff_initial_seconds": 0.05}


@pytest.fixture(scope="module")
async def customers_app(backend: Backend) -> AsyncIterator[FastAPI]:
    app = create_customers_app(CustomersSettings(**_settings(backend, "customers")))
    async with running(app, "http://customers.e2e"):
        yield app


@pytest.fixture(scope="module")
async def customers(customers_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=customers_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://customers.e2e") as c:
        yield c


@pytest.fixture(autouse=True)
async def alone(customers_app: FastAPI) -> AsyncIterator[None]:
    """Every other customers app of the test session (its own database, its own consumer group)
    would get this module's commands too, and one that refuses (a customer it does not hold, a
    custom field it requires) might answer first: paused, they leave each command to this one, as
    a deployment's single consumer group does."""
    async with other_copies_paused(customers_app):
        yield


@pytest.fixture(scope="module")
async def leads_app(backend: Backend) -> AsyncIterator[FastAPI]:
    app = create_leads_app(LeadsSettings(**_settings(backend, "leads")))
    async with running(app, "http://leads.e2e"):
        yield app


@pytest.fixture(scope="module")
async def leads(leads_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=leads_app), base_url="http://leads.e2e") as c:
        yield c


def _mobile() -> str:
    return f"+86136{uuid.uuid4().int % 10**8:08d}"


def _company() -> str:
    return f"{unique('转化贸易')}有限公司"


async def _qualified(leads: httpx.AsyncClient, headers: Json, **fields: Any) -> Json:
    r = await leads.post("/v1/leads", json={"company_name": _company(), **fields}, headers=headers)
    assert r.status_code == 201, r.text
    lead: Json = r.json()
    r = await leads.patch(
        f"/v1/leads/{lead['id']}", json={"status": "qualified"}, headers={**headers, "If-Match": r.headers["etag"]}
    )
    assert r.status_code == 200, r.text
    qualified: Json = r.json()
    return qualified


async def _ended(leads: httpx.AsyncClient, headers: Json, lead_id: str) -> Json:
    async def ended() -> Json | None:
        lead: Json = (await leads.get(f"/v1/leads/{lead_id}", headers=headers)).json()
        return lead if lead["status"] != "converting" else None

    found: Json = await eventually(ended, timeout=60, message="the conversion ended")
    return found


async def test_a_lead_becomes_a_customer_with_its_contact_once_even_when_the_command_comes_twice(
    customers: httpx.AsyncClient, customers_app: FastAPI, leads: httpx.AsyncClient, leads_app: FastAPI
) -> None:
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], f"/{unique('e2e')}/sales")
    mobile, mail = _mobile(), f"{unique('buyer')}@example.com"
    lead = await _qualified(
        leads, rep, contact_name="赵经理", phones=[mobile], emails=[mail], industry="制造", source="exhibition"
    )
    r = await leads.post(f"/v1/leads/{lead['id']}/convert", json={}, headers=rep)
    assert r.status_code == 202, r.text
    conversion = r.json()["conversion"]
    assert r.json()["status"] == "converting" and conversion["conversion_id"] == f"{lead['id']}:1"
    again = await leads.post(f"/v1/leads/{lead['id']}/convert", json={}, headers=rep)
    assert again.status_code == 202 and again.json()["conversion"]["conversion_id"] == conversion["conversion_id"]

    done = await _ended(leads, rep, lead["id"])
    assert done["status"] == "converted", done
    assert done["customer_id"] == conversion["customer_id"] and done["contact_id"] == conversion["contact_id"]
    assert done["conversion"]["state"] == "converted"
    repo = customers_app.state.customers.repo
    r = await customers.get(f"/v1/customers/{done['customer_id']}", headers=rep)
    assert r.status_code == 200, r.text
    customer = r.json()
    assert customer["name"] == lead["company_name"] and customer["owner_id"] == rep_id
    assert customer["industry"] == "制造" and customer["source"] == "exhibition"
    (contact,) = customer["contacts"]
    assert contact["contact_id"] == done["contact_id"] and contact["name"] == "赵经理"
    assert contact["phones"] == [mobile] and contact["emails"] == [mail]
    stored = await repo.get(done["customer_id"])
    assert stored["lead_ids"] == [lead["id"]] and stored["version"] == 1

    # A crash midway: the command delivered again, through Kafka and straight to the handler.
    lead_doc = await leads_app.state.repo.get(lead["id"])
    command = lev.Conversion.model_validate(lead_doc["conversion"]["command"])
    await customers_app.state.lead_conversions.convert(lead["id"], command)
    producer = AIOKafkaProducer(bootstrap_servers=leads_app.state.kit.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        feed = EventFeed(producer)
        snapshot = lev.LeadSnapshot.model_validate({**lead_doc, "lead_id": lead["id"], "status": "converting"})
        feed.versions[lead["id"]] = int(lead_doc["version"]) - 2
        await feed.send(
            lev.LEAD_CONVERSION_REQUESTED,
            lead["id"],
            lev.LeadConversionRequested(lead=snapshot, conversion=command),
            command.requested_at,
            rep_id,
        )
        # ... and the customers service's answer delivered again to the leads service.
        again_linked = cev.LeadLinked(
            customer=customer_rules.snapshot(stored),
            lead_id=lead["id"],
            conversion_id=command.conversion_id,
            contact_id=done["contact_id"],
            created=True,
        )
        await feed.send(cev.LEAD_LINKED, done["customer_id"], again_linked, command.requested_at)
    finally:
        await producer.stop()
    await asyncio.sleep(3)
    after = await repo.get(done["customer_id"])
    assert after["version"] == 1 and len(after["contacts"]) == 1
    assert await repo.collection.count_documents({"name": lead["company_name"]}) == 1
    assert int((await leads_app.state.repo.get(lead["id"]))["version"]) == int(lead_doc["version"])

    history = (await leads.get(f"/v1/leads/{lead['id']}/history", headers=rep)).json()
    summaries = [h["summary"] for h in history]
    assert summaries[-1] == f"Converted into customer {done['customer_id']}", summaries
    assert summaries[-2].startswith(f"Conversion {conversion['conversion_id']} requested (new customer")

    # Converted is final.
    r = await leads.patch(f"/v1/leads/{lead['id']}", json={"notes": "x"}, headers={**rep, "If-Match": '"4"'})
    assert r.status_code == 409 and done["customer_id"] in r.json()["detail"], r.text
    r = await leads.post(f"/v1/leads/{lead['id']}/convert", json={}, headers=rep)
    assert r.status_code == 409 and f"already converted into customer {done['customer_id']}" in r.json()["detail"]


async def test_a_lead_of_an_existing_customer_links_to_it(
    customers: httpx.AsyncClient, customers_app: FastAPI, leads: httpx.AsyncClient, leads_app: FastAPI
) -> None:
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], f"/{unique('e2e')}/sales")
    name = _company()
    r = await customers.post("/v1/customers", json={"kind": "company", "name": name}, headers=rep)
    assert r.status_code == 201, r.text
    customer = r.json()
    mobile = _mobile()
    lead = await _qualified(leads, rep, contact_name="钱主任", phones=[mobile])

    async def copied() -> bool:
        copy = await leads_app.state.repo.customer(customer["id"])
        return copy is not None and copy["status"] == "active"

    await eventually(copied, timeout=60, message="the customer reached the leads service")
    # A lead whose company is the customer already: 409 naming it (link instead).
    r = await leads.post(f"/v1/leads/{lead['id']}/convert", json={"customer": {"name": name}}, headers=rep)
    assert r.status_code == 409, r.text
    assert r.json()["customer_id"] == customer["id"] and r.json()["owner_id"] == rep_id

    r = await leads.post(f"/v1/leads/{lead['id']}/convert", json={"customer_id": customer["id"]}, headers=rep)
    assert r.status_code == 202, r.text
    done = await _ended(leads, rep, lead["id"])
    assert done["status"] == "converted" and done["customer_id"] == customer["id"], done
    assert done["conversion"]["existing_customer"] is True
    r = await customers.get(f"/v1/customers/{customer['id']}", headers=rep)
    contacts = {c["contact_id"]: c for c in r.json()["contacts"]}
    assert contacts[done["contact_id"]]["name"] == "钱主任" and contacts[done["contact_id"]]["phones"] == [mobile]
    repo = customers_app.state.customers.repo
    assert await repo.collection.count_documents({"name": name}) == 1
    assert set((await repo.get(customer["id"]))["lead_ids"]) == {lead["id"]}


async def test_a_refused_conversion_leaves_the_lead_qualified_with_the_reason(
    customers_app: FastAPI, leads: httpx.AsyncClient
) -> None:
    rep = auth(unique("rep"), ["rep"], f"/{unique('e2e')}/sales")
    # A lead may have 20 phones, a customer 10: without a contact to carry them, the customers
    # service refuses the customer the lead would become (as POST /v1/customers would).
    phones = [_mobile() for _ in range(11)]
    lead = await _qualified(leads, rep, phones=phones)
    r = await leads.post(f"/v1/leads/{lead['id']}/convert", json={"contact": None}, headers=rep)
    assert r.status_code == 202, r.text
    planned = r.json()["conversion"]
    assert planned["contact_id"] is None
    failed = await _ended(leads, rep, lead["id"])
    assert failed["status"] == "qualified" and failed["customer_id"] is None, failed
    conversion = failed["conversion"]
    assert conversion["state"] == "failed" and conversion["step"] == "customer"
    assert "invalid fields" in conversion["reason"]
    assert [e["field"] for e in conversion["errors"]] == ["phones"], conversion
    # Nothing was made; the refusal is a record of its own.
    assert await customers_app.state.customers.repo.get(planned["customer_id"]) is None
    store = customers_app.state.lead_conversions.store
    record = await eventually(lambda: store.get(planned["conversion_id"]), timeout=30, message="the refusal")
    assert record["outcome"] == "refused"
    history = (await leads.get(f"/v1/leads/{lead['id']}/history", headers=rep)).json()
    assert history[-1]["summary"].startswith("Conversion failed at the customer step: ")
    # A new attempt is a new conversion.
    r = await leads.post(f"/v1/leads/{lead['id']}/convert", json={}, headers=rep)
    assert r.status_code == 202 and r.json()["conversion"]["conversion_id"] == f"{lead['id']}:2", r.text


async def test_a_lead_becomes_a_customer_and_an_opportunity(
    backend: Backend, customers: httpx.AsyncClient, leads: httpx.AsyncClient
) -> None:
    from crm_pipeline.main import create_app as create_pipeline_app
    from crm_pipeline.settings import PipelineSettings

    pipeline_app = create_pipeline_app(PipelineSettings(**_settings(backend, "pipeline")))
    # Other pipeline apps of the session paused too (see alone()): this one makes the opportunity.
    async with running(pipeline_app, "http://pipeline.e2e") as pipeline, other_copies_paused(pipeline_app):
        rep = auth(unique("rep"), ["rep"], f"/{unique('e2e')}/sales")
        lead = await _qualified(leads, rep, contact_name="周经理", phones=[_mobile()])
        body = {"opportunity": {"name": "首单", "amount": "125000.00", "currency": "CNY"}}
        r = await leads.post(f"/v1/leads/{lead['id']}/convert", json=body, headers=rep)
        assert r.status_code == 202, r.text
        done = await _ended(leads, rep, lead["id"])
        assert done["status"] == "converted", done
        assert done["opportunity_id"] == r.json()["conversion"]["opportunity_id"]

        r = await pipeline.get(f"/v1/opportunities/{done['opportunity_id']}", headers=rep)
        assert r.status_code == 200 and r.json()["lead_id"] == lead["id"], r.text
        assert (await customers.get(f"/v1/customers/{done['customer_id']}", headers=rep)).status_code == 200


async def test_other_copies_of_the_customers_service_fetch_nothing_while_paused(
    backend: Backend, customers_app: FastAPI
) -> None:
    """What alone() relies on: another in-process copy of the service, started here, has every
    partition paused in the block and resumed after it; this module's copy fetches on."""
    other = create_customers_app(CustomersSettings(**_settings(backend, "customers")))
    async with running(other, "http://customers.other"):
        clients = [c.subscriber.consumer for c in other.state.kit.consumers]
        mine = [c.subscriber.consumer for c in customers_app.state.kit.consumers]
        assert clients and all(c.assignment() for c in clients)
        async with other_copies_paused(customers_app, settle=0):
            assert all(c.paused() == c.assignment() for c in clients)
            assert not any(c.paused() for c in mine)
        assert not any(c.paused() for c in clients)
