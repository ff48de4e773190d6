"""Idempotency-Key across a crash: the customers service, a real process, dies right after storing a
create and before answering it (the case where a client cannot know what happened); after a restart
every request is retried with its key, twice and at once, and each key has exactly one customer and
one crm.customer.created event on Kafka (by event id: a relay killed after publishing may publish
the same event again, which consumers dedupe)."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from crm_platform.devstack.processes import ManagedProcess, free_port
from crm_platform.devstack.services import SERVICES, service_env, start_service
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, collecting, eventually, unique

pytestmark = pytest.mark.process
CUSTOMERS = next(s for s in SERVICES if s.name == "customers")
KILLED_AT = 3  # the third keyed create is stored, then the process is killed before it answers


def customers_process(
    backend: Backend, database: str, port: int, logs: Path, *, kill_after_stores: int = 0
) -> ManagedProcess:
    spec = dataclasses.replace(CUSTOMERS, http_port=port, database=database)
    env = service_env(
        spec, kafka_bootstrap=backend.kafka_bootstrap, mongo_url=backend.mongo_url, jwt_secret=TEST_JWT_SECRET
    )
    env["CRM_OUTBOX_POLL_SECONDS"] = "0.2"
    env["CRM_OUTBOX_LEASE_SECONDS"] = "3"  # a relay killed holding a lease blocks its aggregate that long
    # A consumer group of its own: a SIGKILLed member left in the shared group made the next test's
    # service wait for the group at start-up on the session's broker.
    env["CRM_CONSUMER_GROUP_SUFFIX"] = f".{database}"
    env.pop("CRM_TEST_KILL_AFTER_STORES", None)
    if kill_after_stores:
        env["CRM_TEST_KILL_AFTER_STORES"] = str(kill_after_stores)
    return start_service(spec, env, logs, timeout=90)


async def test_a_create_killed_between_store_and_response_is_retried_into_one_record(backend: Backend):
    logs = Path(tempfile.mkdtemp(prefix="crm-e2e-idem-"))
    port, database = free_port(), f"e2e_idem_{uuid.uuid4().hex[:8]}"
    headers = auth(unique("rep-idem"), department_path=f"/{unique('d')}")
    requests = [(unique("key"), unique("幂等测试") + " 有限公司") for _ in range(6)]
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    customers = mongo[database]["customers"]

    async def create(http: httpx.AsyncClient, key: str, name: str) -> httpx.Response:
        return await http.post(
            "/v1/customers", json={"kind": "company", "name": name}, headers={**headers, "Idempotency-Key": key}
        )

    service = customers_process(backend, database, port, logs, kill_after_stores=KILLED_AT)
    try:
        async with collecting(backend.kafka_bootstrap, ["crm.customers.v1"]) as events:
            first: dict[str, httpx.Response] = {}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for key, name in requests[:KILLED_AT]:
                    try:
                        first[key] = await create(http, key, name)
                    except httpx.TransportError:
                        break  # no answer: the client cannot tell whether it was stored
            assert [r.status_code for r in first.values()] == [201] * (KILLED_AT - 1)
            await eventually(lambda: service.poll() is not None, message="service killed itself after the store")
            unanswered = requests[KILLED_AT - 1][1]
            assert await customers.count_documents({"name": unanswered}) == 1, "stored, never answered"

            service = customers_process(backend, database, port, logs)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                # Every request again, each twice at once: the client retries everything it is unsure of.
                retries = await asyncio.gather(*(create(http, k, n) for k, n in requests for _ in range(2)))
            assert [r.status_code for r in retries] == [201] * 12, [r.text for r in retries]
            by_key: dict[str, set[str]] = {}
            for (key, _), response in zip((r for r in requests for _ in range(2)), retries, strict=True):
                by_key.setdefault(key, set()).add(response.json()["id"])
            assert all(len(ids) == 1 for ids in by_key.values()), by_key
            for key, answered in first.items():
                assert by_key[key] == {answered.json()["id"]}, "a retry answers with the first record"
            for answer in retries[: 2 * KILLED_AT]:
                assert answer.headers["Idempotent-Replayed"] == "true"
            for _, name in requests:
                assert await customers.count_documents({"name": name}) == 1, name

            names = {name for _, name in requests}

            def created() -> list[str]:
                return [
                    r.event["data"]["customer"]["name"]
                    for r in events.matching(type="crm.customer.created")
                    if r.event["data"]["customer"]["name"] in names
                ]

            await eventually(lambda: set(created()) == names, timeout=60, message="one created event per key")

            # Every pending outbox drained, so a second event for any of them would be on the topic by now.
            async def drained() -> bool:
                stored = [d async for d in customers.find({"name": {"$in": sorted(names)}})]
                return len(stored) == len(names) and not any(d.get("outbox") for d in stored)

            await eventually(drained, timeout=30, message="outboxes drained")
            await asyncio.sleep(1)
            # One event per customer: the same event may be on the topic twice (the relay of the killed
            # process published it and died before clearing it from the outbox: at-least-once, and
            # consumers dedupe by event id), but never two different creations of one customer.
            ids_by_name: dict[str, set[str]] = {}
            for record in events.matching(type="crm.customer.created"):
                name = record.event["data"]["customer"]["name"]
                if name in names:
                    ids_by_name.setdefault(name, set()).add(record.event["id"])
            assert {name: len(ids) for name, ids in ids_by_name.items()} == dict.fromkeys(names, 1), ids_by_name
    finally:
        service.stop()
        await mongo.close()
