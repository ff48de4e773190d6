"""End to end: a customer created over HTTP in the customers service becomes usable for an
opportunity in the pipeline service through Kafka alone, and a merge in the customers service
moves the opportunity to the survivor.

Both services run in-process against the session's Kafka and MongoDB, each with its own
database; neither calls the other. The pipeline service knows the customer only from the
``crm.customers.v1`` events the customers service's outbox publishes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_pipeline.main import create_app as create_pipeline_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, eventually, service_settings, unique


@pytest.fixture(scope="module")
async def customers(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    app = create_customers_app(CustomersSettings(**service_settings(backend, "customers")))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://customers.e2e") as c:
            yield c


@pytest.fixture(scope="module")
async def pipeline(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    # Its own consumer group: a pipeline app of another suite may be running in this session.
    settings = PipelineSettings(**service_settings(backend, "pipeline"))
    app = create_pipeline_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pipeline.e2e") as c:
            yield c


async def test_a_customer_from_the_customers_service_gets_an_opportunity_that_follows_a_merge(customers, pipeline):
    dept = f"/{unique('e2e')}/sales"
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], dept)
    manager = auth(unique("mgr"), ["manager"], dept.rsplit("/", 1)[0])

    name = unique("杭州云帆科技")
    r = await customers.post(
        "/v1/customers",
        json={"kind": "company", "name": f"{name}有限公司", "contacts": [{"name": "陈总", "role": "decision_maker"}]},
        headers=rep,
    )
    assert r.status_code == 201, r.text
    duplicate = r.json()
    contact_id = duplicate["contacts"][0]["contact_id"]

    async def create_opportunity() -> httpx.Response:
        return await pipeline.post(
            "/v1/opportunities",
            json={
                "customer_id": duplicate["id"],
                "name": "云平台迁移",
                "amount": "360000.00",
                "contact_ids": [contact_id],
            },
            headers=rep,
        )

    # Refused (422) until the customer's created event has reached the pipeline service's read copy.
    created = await eventually(
        lambda: _created(create_opportunity), timeout=60, message="customer usable in the pipeline service"
    )
    opportunity = created.json()
    assert (opportunity["customer_id"], opportunity["contact_ids"], opportunity["owner_id"]) == (
        duplicate["id"],
        [contact_id],
        rep_id,
    )

    r = await customers.post("/v1/customers", json={"kind": "company", "name": f"{unique('云帆')}集团"}, headers=rep)
    assert r.status_code == 201, r.text
    survivor = r.json()
    r = await customers.post(
        f"/v1/customers/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]}, headers=manager
    )
    assert r.status_code == 200, r.text

    async def moved() -> dict[str, Any] | None:
        got = (await pipeline.get(f"/v1/opportunities/{opportunity['id']}", headers=rep)).json()
        return got if got.get("customer_id") == survivor["id"] else None

    after = await eventually(moved, timeout=60, message="opportunity moved to the survivor")
    assert after["contact_ids"] == [contact_id] and after["amount"] == "360000.00"
    history = (await pipeline.get(f"/v1/opportunities/{opportunity['id']}/history", headers=rep)).json()
    assert history[-1]["type"] == "crm.opportunity.customer_changed"
    assert history[-1]["changes"] == [{"field": "customer_id", "old": duplicate["id"], "new": survivor["id"]}]
    # The merged-away customer takes no new opportunities; the survivor does.
    refused = await create_opportunity()
    assert refused.status_code == 422 and survivor["id"] in refused.json()["errors"][0]["reason"]
    r = await pipeline.post("/v1/opportunities", json={"customer_id": survivor["id"], "name": "二期"}, headers=rep)
    assert r.status_code == 201, r.text


async def _created(create: Any) -> httpx.Response | None:
    response: httpx.Response = await create()
    if response.status_code == 201:
        return response
    assert response.status_code == 422, response.text  # not known yet: anything else is a failure
    return None
