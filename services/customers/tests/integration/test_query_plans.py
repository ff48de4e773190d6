"""The customers service's store commands are index lookups on the embedded store (SQLite plans).

The service runs in-process against a store that records and plans every SQL statement
(:mod:`crm_platform.testing.query_plans`), filled with enough customers that SQLite prefers
an index when one serves; each test drives a real path through the API and fails, printing
the statement and its plan, if anything it ran reads a whole collection.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, running, unique
from crm_platform.testing.query_plans import Capture, TracedStore

FILL = 400  # customers created before measuring, spread over reps and departments


def assert_indexed(capture: Capture, *, sorted_results: bool = False) -> None:
    assert capture.statements, "nothing was recorded"
    assert not capture.scans(sorted_results=sorted_results), "statements that scan:\n" + capture.report(
        sorted_results=sorted_results
    )


@pytest.fixture(scope="module")
async def plans_client(backend: Backend, traced_store: TracedStore) -> AsyncIterator[httpx.AsyncClient]:
    settings = CustomersSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_customers_plans_{uuid.uuid4().hex[:8]}",
        consumer_group_suffix=f".plans-{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        max_customers_per_rep=1000,
    )
    app = create_app(settings)
    async with running(app, "http://customers.test") as client:
        for i in range(FILL):
            body = {
                "kind": "company",
                "name": f"填充{i:05d}{uuid.uuid4().hex[:6]}有限公司",
                "phones": [f"137{i:08d}"],
                "emails": [f"fill{i}-{uuid.uuid4().hex[:4]}@example.com"],
                "tags": ["华东", f"t{i % 7}"],
            }
            r = await client.post(
                "/v1/customers", json=body, headers=auth(f"fill-rep-{i % 10}", department_path=f"/hq/d{i % 3}")
            )
            assert r.status_code == 201, r.text
        yield client


async def test_create_is_index_lookups(plans_client: httpx.AsyncClient, traced_store: TracedStore) -> None:
    headers = auth(unique("rep"), department_path="/hq/d1")
    body = {
        "kind": "company",
        "name": f"上海{uuid.uuid4().hex[:8]}科技有限公司",
        "phones": ["13912345678"],
        "emails": [f"{uuid.uuid4().hex[:8]}@example.com"],
        "uscc": None,
    }
    with traced_store.capture() as capture:
        r = await plans_client.post("/v1/customers", json=body, headers=headers)
        assert r.status_code == 201, r.text
    assert_indexed(capture)
