"""Saved list views (/v1/customer-views): each person's own, one name once per person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pymongo.errors import DuplicateKeyError

from crm_customers.adapters.repository import CustomerRepository
from crm_platform.clock import SystemClock
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, database, unique


async def test_a_view_name_is_taken_once_per_person_and_views_are_private(client: httpx.AsyncClient) -> None:
    me = auth(unique("u"), ["rep"], department_path="/hq")
    other = auth(unique("u"), ["rep"], department_path="/hq")
    body = {"name": "我的A类客户", "query": {"tier": "A", "sort": "-tier,name"}}

    first = await client.post("/v1/customer-views", json=body, headers=me)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/customer-views", json=body, headers=me)
    assert again.status_code == 409, again.text
    assert (await client.post("/v1/customer-views", json=body, headers=other)).status_code == 201

    mine = (await client.get("/v1/customer-views", headers=me)).json()
    assert [(v["name"], v["query"]) for v in mine] == [(body["name"], body["query"])]
    assert (await client.delete(f"/v1/customer-views/{first.json()['id']}", headers=other)).status_code == 404
    assert (await client.delete(f"/v1/customer-views/{first.json()['id']}", headers=me)).status_code == 204
    assert (await client.post("/v1/customer-views", json=body, headers=me)).status_code == 201


async def test_views_saved_with_the_same_name_before_the_rule_are_numbered_at_start_up(backend: Backend) -> None:
    # A database from before names were unique per person: the unique index could not be built,
    # and the service would not start. The later views get " (2)", " (3)"; other people's stay.
    async with database(backend.mongo_url, unique("crm_customers_views")) as db:
        at = datetime(2026, 11, 1, tzinfo=UTC)
        await db["saved_views"].insert_many(
            [
                {"_id": "v1", "owner_id": "u1", "name": "A类", "query": {}, "created_at": at},
                {"_id": "v2", "owner_id": "u1", "name": "A类", "query": {}, "created_at": at + timedelta(days=1)},
                {"_id": "v3", "owner_id": "u1", "name": "A类", "query": {}, "created_at": at + timedelta(days=2)},
                {"_id": "v4", "owner_id": "u2", "name": "A类", "query": {}, "created_at": at},
            ]
        )
        repo = CustomerRepository(db, SystemClock(), wake_relay=lambda: None)
        await repo.ensure_indexes()
        names = {v["_id"]: v["name"] async for v in db["saved_views"].find({})}
        assert names == {"v1": "A类", "v2": "A类 (2)", "v3": "A类 (3)", "v4": "A类"}
        with pytest.raises(DuplicateKeyError):
            await db["saved_views"].insert_one({"_id": "v5", "owner_id": "u1", "name": "A类 (2)", "query": {}})
