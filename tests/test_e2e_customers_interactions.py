"""End to end: a customer created over HTTP in the customers service becomes usable for an
interaction in the interactions service through Kafka alone, and the ``crm.interaction.logged``
event moves the customer's "last followed up" in the customers service. Deleting and restoring
the customer there hides and shows the interaction here.

Both services run in-process against the session's Kafka and MongoDB, each with its own
database and the same JWT secret; neither calls the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_interactions.main import create_app as create_interactions_app
from crm_interactions.settings import InteractionsSettings
from crm_platform.kafka import ensure_topics
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, eventually, running, service_settings, unique


@pytest.fixture(scope="module")
async def customers(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(backend.kafka_bootstrap, ["crm.customers.v1", "crm.interactions.v1"])
    settings = CustomersSettings(**service_settings(backend, "customers"))
    async with running(create_customers_app(settings), "http://customers.e2e") as client:
        yield client


@pytest.fixture(scope="module")
async def interactions(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    settings = InteractionsSettings(**service_settings(backend, "interactions"))
    async with running(create_interactions_app(settings), "http://interactions.e2e") as client:
        yield client


async def test_a_customer_from_the_customers_service_gets_followed_up_here(customers, interactions):
    dept = f"/{unique('e2e')}/sales"
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], dept)
    manager = auth(unique("mgr"), ["manager"], dept.rsplit("/", 1)[0])

    r = await customers.post(
        "/v1/customers",
        json={"kind": "company", "name": f"{unique('宁波海联贸易')}有限公司", "contacts": [{"name": "林经理"}]},
        headers=rep,
    )
    assert r.status_code == 201, r.text
    customer = r.json()
    assert customer["last_followed_up_at"] is None
    contact_id = customer["contacts"][0]["contact_id"]
    occurred = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    body = {
        "channel": "visit",
        "customer_id": customer["id"],
        "contact_ids": [contact_id],
        "occurred_at": occurred.isoformat(),
        "location": "宁波北仑",
        "minutes": "演示了仓储模块，客户关心上线周期",
    }

    async def logged() -> httpx.Response | None:
        response = await interactions.post("/v1/interactions", json=body, headers=rep)
        if response.status_code == 201:
            return response
        assert response.status_code == 422, response.text  # not known here yet: anything else is a failure
        return None

    interaction = (await eventually(logged, timeout=60, message="customer usable for interactions")).json()
    assert (interaction["customer_id"], interaction["contact_ids"], interaction["author_id"]) == (
        customer["id"],
        [contact_id],
        rep_id,
    )

    async def followed_up() -> dict[str, Any] | None:
        got = (await customers.get(f"/v1/customers/{customer['id']}", headers=rep)).json()
        return got if got["last_followed_up_at"] else None

    fresh = await eventually(followed_up, timeout=60, message="last_followed_up_at moved")
    assert datetime.fromisoformat(fresh["last_followed_up_at"]) == occurred
    assert fresh["last_followed_up_by"] == rep_id and fresh["version"] == customer["version"]

    # The customer goes to the recycle bin there: its interaction is hidden here; restored, shown again.
    r = await customers.delete(f"/v1/customers/{customer['id']}", headers=manager)
    assert r.status_code == 200, r.text
    path = f"/v1/interactions/{interaction['id']}"

    async def status_is(code: int) -> bool:
        return (await interactions.get(path, headers=rep)).status_code == code

    await eventually(lambda: status_is(404), timeout=60, message="interaction hidden")
    r = await customers.post(f"/v1/customers/{customer['id']}/restore", headers=manager)
    assert r.status_code == 200, r.text
    await eventually(lambda: status_is(200), timeout=60, message="interaction shown again")
