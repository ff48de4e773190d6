"""End to end: a customer created over HTTP in the customers service blocks a lead for the same
company, phone or email in the leads service, through Kafka alone; once the customer is purged
its keys are free for leads again.

Both services run in-process against the session's Kafka and MongoDB, each with its own database;
neither calls the other. The leads service knows the customer only from the ``crm.customers.v1``
events the customers service's outbox publishes (the snapshot's ``match_phones``/``match_emails``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_leads.main import create_app as create_leads_app
from crm_leads.settings import LeadsSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, eventually, running, service_settings, unique


@pytest.fixture(scope="module")
async def customers(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = create_customers_app(CustomersSettings(**service_settings(backend, "customers")))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://customers.e2e") as c:
            yield c


@pytest.fixture(scope="module")
async def leads_app(backend: Backend) -> AsyncIterator[FastAPI]:
    app = create_leads_app(LeadsSettings(**service_settings(backend, "leads")))
    async with running(app, "http://leads.e2e"):
        yield app


@pytest.fixture(scope="module")
async def leads(leads_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=leads_app), base_url="http://leads.e2e") as c:
        yield c


async def test_a_customer_blocks_a_lead_for_its_company_phone_and_email(
    customers: httpx.AsyncClient, leads: httpx.AsyncClient, leads_app: FastAPI
) -> None:
    dept = f"/{unique('e2e')}/sales"
    owner = unique("rep")
    rep = auth(owner, ["rep"], dept)
    manager = auth(unique("mgr"), ["manager"], dept.rsplit("/", 1)[0])
    name = unique("苏州线索贸易")
    mobile = f"+86137{int(unique('n').split('-')[1], 16) % 10**8:08d}"
    mail = f"{unique('buyer')}@example.com"
    r = await customers.post(
        "/v1/customers",
        json={
            "kind": "company",
            "name": f"{name}有限公司",
            "phones": [mobile],
            "contacts": [{"name": "陈总", "role": "decision_maker", "emails": [mail]}],
        },
        headers=rep,
    )
    assert r.status_code == 201, r.text
    customer = r.json()

    async def lead(**fields: Any) -> httpx.Response:
        return await leads.post("/v1/leads", json={"company_name": unique("别的公司"), **fields}, headers=rep)

    # Wait on the leads service's copy of the customer's keys (a probing POST would enter a lead).
    repo = leads_app.state.repo

    async def copied() -> bool:
        copy = await repo.customer(customer["id"])
        return copy is not None and f"phones:{mobile}" in copy["keys"]

    await eventually(copied, timeout=60, message="the customer's keys reached the leads service")
    r = await lead(phones=[mobile])
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "phones[0]", r.text
    r = await leads.post("/v1/leads", json={"company_name": f"{name}（有限公司）"}, headers=rep)
    assert r.status_code == 409, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "company_name"
    assert error["reason"].startswith(f"already a customer ({customer['id']}) owned by {owner}")
    r = await lead(emails=[mail.upper()])
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "emails[0]"

    # While it is in the recycle bin it still holds its keys (it may come back); purged, it holds none.
    r = await customers.delete(f"/v1/customers/{customer['id']}", headers={**manager, "If-Match": '"1"'})
    assert r.status_code in (200, 204), r.text
    admin = auth(unique("admin"), ["admin"], "/")
    r = await customers.delete(f"/v1/recycle-bin/{customer['id']}", headers=admin)
    assert r.status_code in (200, 204), r.text

    async def released() -> bool:
        copy = await repo.customer(customer["id"])
        return copy is not None and copy["status"] == "purged" and copy["keys"] == []

    await eventually(released, timeout=60, message="the purged customer's keys given up")
    assert (await lead(phones=[mobile])).status_code == 201
    r = await leads.post("/v1/leads", json={"company_name": f"{name}有限公司", "emails": [mail]}, headers=rep)
    assert r.status_code == 201, r.text
