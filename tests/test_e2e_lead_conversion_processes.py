"""A lead's conversion across real processes (leads, customers, pipeline: ``python -m crm_<name>``,
each with its own database and consumer groups) through Kafka alone, with a crash midway.

1. The customers service is killed (SIGKILL) before the conversion is asked for: the lead says
   ``converting``, the command waits on ``crm.leads.v1``; once the customers process is back it makes
   customer and contact from the command, the pipeline makes the opportunity, the lead links all three.
2. The leads service is killed right after answering 202: what it had written (the lead and the
   command in its outbox) is published when it is back, or was already; either way the conversion ends
   once, with one customer, one contact and one opportunity.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_platform.devstack.processes import ManagedProcess, free_port
from crm_platform.devstack.services import SERVICES, ServiceSpec, service_env, start_service
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, eventually, unique

pytestmark = pytest.mark.process
Json = dict[str, Any]


@dataclasses.dataclass
class Service:
    spec: ServiceSpec
    env: dict[str, str]
    logs: Path
    process: ManagedProcess | None = None

    def start(self) -> None:
        self.process = start_service(self.spec, self.env, self.logs, timeout=120)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop()  # reaps it

    @property
    def url(self) -> str:
        return self.spec.url()


@pytest.fixture
def services(backend: Backend) -> Iterator[dict[str, Service]]:
    logs = Path(tempfile.mkdtemp(prefix="crm-e2e-convert-"))
    made: dict[str, Service] = {}
    for spec in SERVICES:
        if spec.name not in ("leads", "customers", "pipeline"):
            continue
        suffix = uuid.uuid4().hex[:8]
        spec = dataclasses.replace(spec, http_port=free_port(), database=f"e2e_{spec.name}_{suffix}")
        env = service_env(
            spec,
            kafka_bootstrap=backend.kafka_bootstrap,
            mongo_url=backend.mongo_url,
            jwt_secret=TEST_JWT_SECRET,
            kafka_enable_idempotence=backend.kafka_enable_idempotence,
        )
        # Consumer groups of their own (a restart resumes from what this copy committed), a relay
        # that polls often and whose lease a killed holder gives up soon.
        env |= {
            "CRM_CONSUMER_GROUP_SUFFIX": f".e2e-{suffix}",
            "CRM_OUTBOX_POLL_SECONDS": "0.2",
            "CRM_OUTBOX_LEASE_SECONDS": "3",
            "CRM_LOG_LEVEL": "WARNING",
        }
        made[spec.name] = Service(spec, env, logs)
    try:
        for service in made.values():
            service.start()
        yield made
    finally:
        for service in made.values():
            if service.process is not None:
                service.process.stop()


async def qualified(leads: httpx.AsyncClient, headers: Json) -> Json:
    phone = f"+86137{uuid.uuid4().int % 10**8:08d}"
    body = {"company_name": f"{unique('进程转化')}有限公司", "contact_name": "钱经理", "phones": [phone]}
    r = await leads.post("/v1/leads", json=body, headers=headers)
    assert r.status_code == 201, r.text
    r = await leads.patch(
        f"/v1/leads/{r.json()['id']}", json={"status": "qualified"}, headers={**headers, "If-Match": r.headers["etag"]}
    )
    assert r.status_code == 200, r.text
    lead: Json = r.json()
    return lead


async def converted(leads: httpx.AsyncClient, headers: Json, lead_id: str) -> Json:
    async def done() -> Json | None:
        try:
            lead: Json = (await leads.get(f"/v1/leads/{lead_id}", headers=headers)).json()
        except httpx.TransportError:
            return None  # the leads process is coming back
        return lead if lead["status"] == "converted" else None

    found: Json = await eventually(done, timeout=120, interval=0.25, message="the lead reads converted")
    return found


async def own_copy(client: httpx.AsyncClient, path: str, headers: Json, what: str) -> Json:
    """The record as this test's own process has it. The topics are shared with every other service
    the suite runs on the broker, so another customers or pipeline copy may answer the command first
    and the lead may read converted before this test's process has made its record: wait for it."""

    async def found() -> Json | None:
        r = await client.get(path, headers=headers)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        record: Json = r.json()
        return record

    record: Json = await eventually(found, timeout=120, interval=0.25, message=f"this test's {what} has it")
    return record


async def made_once(services: dict[str, Service], headers: Json, lead: Json) -> None:
    """The customer with the lead's contact, and the opportunity naming the lead: each exactly once."""
    async with httpx.AsyncClient(base_url=services["customers"].url) as customers:
        customer = await own_copy(customers, f"/v1/customers/{lead['customer_id']}", headers, "customers service")
        assert customer["name"] == lead["company_name"] and customer["lead_ids"] == [lead["id"]]
        assert [c["contact_id"] for c in customer["contacts"]] == [lead["contact_id"]]
        r = await customers.get("/v1/customers", params={"q": lead["company_name"]}, headers=headers)
        assert [c["id"] for c in r.json()["items"]] == [lead["customer_id"]], r.text
    async with httpx.AsyncClient(base_url=services["pipeline"].url) as pipeline:
        opportunity = await own_copy(
            pipeline, f"/v1/opportunities/{lead['opportunity_id']}", headers, "pipeline service"
        )
        assert opportunity["customer_id"] == lead["customer_id"] and opportunity["lead_id"] == lead["id"]
        r = await pipeline.get("/v1/opportunities", params={"customer_id": lead["customer_id"]}, headers=headers)
        assert [o["id"] for o in r.json()["items"]] == [lead["opportunity_id"]], r.text


async def test_a_conversion_survives_the_customers_and_the_leads_process_being_killed(
    services: dict[str, Service],
) -> None:
    rep = auth(unique("rep"), ["rep"], f"/{unique('e2e')}/sales")
    body = {"opportunity": {"name": "进程首单", "amount": "88000.00", "currency": "CNY"}}
    async with httpx.AsyncClient(base_url=services["leads"].url) as leads:
        # 1. The customers process is down when the conversion is asked for.
        first = await qualified(leads, rep)
        services["customers"].kill()
        r = await leads.post(f"/v1/leads/{first['id']}/convert", json=body, headers=rep)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "converting"
        services["customers"].start()
        done = await converted(leads, rep, first["id"])
        assert done["conversion"]["state"] == "converted"
        assert done["customer_id"] and done["contact_id"] and done["opportunity_id"]
        await made_once(services, rep, done)

        # 2. The leads process dies right after its 202.
        second = await qualified(leads, rep)
        r = await leads.post(f"/v1/leads/{second['id']}/convert", json=body, headers=rep)
        assert r.status_code == 202, r.text
        asked = r.json()["conversion"]
        services["leads"].kill()
        services["leads"].start()
        done = await converted(leads, rep, second["id"])
        assert (done["customer_id"], done["opportunity_id"]) == (asked["customer_id"], asked["opportunity_id"])
        await made_once(services, rep, done)
