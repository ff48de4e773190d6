"""End to end with real processes: HTTP -> MongoDB -> outbox -> Kafka -> a consumer in another process,
and the outbox's promise under a crash: the broker is down when the write happens, the service is
killed before it could publish, and the event still arrives once everything is back."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from crm_platform.devstack.embedded import start_broker
from crm_platform.devstack.processes import ManagedProcess, free_port
from crm_platform.devstack.services import SERVICES, service_env, start_service
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, eventually, unique

pytestmark = pytest.mark.process
CUSTOMERS = next(s for s in SERVICES if s.name == "customers")


def customers_process(bootstrap: str, mongo_url: str, database: str, port: int, logs: Path) -> ManagedProcess:
    spec = dataclasses.replace(CUSTOMERS, http_port=port, database=database)
    env = service_env(spec, kafka_bootstrap=bootstrap, mongo_url=mongo_url, jwt_secret=TEST_JWT_SECRET)
    env["CRM_OUTBOX_POLL_SECONDS"] = "0.2"
    # A relay killed while holding a lease blocks that aggregate until the lease ends: keep it short here.
    env["CRM_OUTBOX_LEASE_SECONDS"] = "3"
    return start_service(spec, env, logs, timeout=90)


@pytest.fixture
def logs() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="crm-e2e-"))
    yield path


def tail_process(bootstrap: str, count: int, timeout: float) -> subprocess.Popen[str]:
    """`crm events tail`: an independent consumer process, as an integrator would run one."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crm_platform.cli",
            "events",
            "tail",
            "--topic",
            "crm.customers.v1",
            "--bootstrap",
            bootstrap,
            "--from-beginning",
            "--count",
            str(count),
            "--timeout",
            str(timeout),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_http_write_reaches_a_consumer_in_another_process(backend: Backend, logs: Path):
    port = free_port()
    service = customers_process(backend.kafka_bootstrap, backend.mongo_url, f"e2e_{uuid.uuid4().hex[:8]}", port, logs)
    try:
        name = unique("E2E 贸易") + " 有限公司"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            created = await http.post(
                "/v1/customers",
                json={"kind": "company", "name": name, "phones": ["13800138000"]},
                headers=auth("rep-e2e"),
            )
            assert created.status_code == 201, created.text
            customer_id = created.json()["id"]
            refused = await http.post("/v1/customers", json={"kind": "company", "name": ""}, headers=auth("rep-e2e"))
            assert refused.status_code == 422
            assert refused.headers["content-type"] == "application/problem+json"
            readiness = (await http.get("/readyz")).json()
            assert readiness["checks"]["mongo"] == "ok" and readiness["checks"]["kafka"] == "ok"
            group = readiness["checks"]["consumers"]["crm.customers"]
            assert group["assigned"] is True and isinstance(group["lag"], dict)
            catalogue = (await http.get("/asyncapi.json")).json()
            assert any("crm.customer.created" in name for name in catalogue["components"]["messages"])
            metrics = (await http.get("/metrics")).text
            assert "crm_outbox_published_total" in metrics

        tail = tail_process(backend.kafka_bootstrap, count=10_000, timeout=8)
        out, err = tail.communicate(timeout=120)
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        mine = [line for line in lines if line["event"]["subject"] == customer_id]
        assert len(mine) == 1, err
        assert mine[0]["key"] == customer_id
        assert mine[0]["event"]["type"] == "crm.customer.created"
        assert mine[0]["event"]["data"]["customer"]["name"] == name
        assert mine[0]["event"]["data"]["customer"]["owner_id"] == "rep-e2e"
    finally:
        service.stop()


async def test_event_survives_broker_outage_and_service_crash(backend: Backend, logs: Path):
    kafka_port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    database = f"e2e_crash_{uuid.uuid4().hex[:8]}"
    kafka = start_broker(kafka_port, "memory", logs)
    service = customers_process(bootstrap, backend.mongo_url, database, http_port, logs)
    mongo = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    try:
        kafka.stop()  # the broker goes down
        name = unique("Crash Test") + " Co., Ltd."
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            created = await http.post(
                "/v1/customers", json={"kind": "company", "name": name}, headers=auth("rep-crash")
            )
        assert created.status_code == 201, "writes do not depend on the broker"
        customer_id = created.json()["id"]
        stored = await mongo[database]["customers"].find_one({"_id": customer_id})
        assert len(stored["outbox"]) == 1, "the event waits in the same document"

        os.killpg(service.pid, signal.SIGKILL)  # the service dies before it could publish
        await eventually(lambda: service.poll() is not None, message="service killed")

        kafka = start_broker(kafka_port, "memory", logs)  # everything comes back
        service = customers_process(bootstrap, backend.mongo_url, database, http_port, logs)
        # A fresh broker, so ours is the only event; asking for two proves there is no duplicate.
        tail = tail_process(bootstrap, count=2, timeout=15)
        out, err = tail.communicate(timeout=120)
        events = [json.loads(line)["event"] for line in out.splitlines() if line.strip()]
        mine = [e for e in events if e["subject"] == customer_id]
        assert [e["type"] for e in mine] == ["crm.customer.created"], err
        drained = await mongo[database]["customers"].find_one({"_id": customer_id})
        assert drained["outbox"] == []
    finally:
        service.stop()
        kafka.stop()
        await mongo.close()
