"""Opportunity lists served by indexed queries: cursor walks across visibility alternatives,
equal sort keys across pages, filters combined with visibility, and the index set itself."""

from __future__ import annotations

import uuid
from typing import Any

from pymongo import ASCENDING

from crm_pipeline.adapters.repository import OPPORTUNITY_INDEXES, Repository
from crm_platform.clock import SystemClock
from crm_platform.testing.fixtures import database, unique


def fields(key: Any) -> tuple[str, ...]:
    """The indexed fields in order (a SON or a list of pairs)."""
    return tuple(name for name, _ in (key.items() if hasattr(key, "items") else key))


async def walk(client: Any, headers: dict[str, str], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of a list, page by page, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        page = await client.get(
            "/v1/opportunities", params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("the cursor never ended")


async def test_a_managers_pages_merge_own_and_subtree_with_equal_sort_keys(client, team, customer_of, new_opportunity):
    tag = unique("V")
    mine = await customer_of(team.rep)
    created: dict[str, float] = {}
    reps: list[str] = []
    for user, amount in ((team.rep, 100), (team.rep, 200), (team.rep, 200), (team.rep2, 200), (team.rep2, 300)):
        customer = mine if user is team.rep else await customer_of(user)
        opp = await new_opportunity(user, customer, name=f"{tag}-{amount}", amount=f"{amount}.00")
        created[opp["id"]] = amount
        if user is team.rep:
            reps.append(opp["id"])
    # The manager's own opportunity, filed under a department outside the manager's subtree:
    # only the "owner is me" alternative of the visibility rule finds it.
    elsewhere = f"/{unique('x')}"
    r = await client.post(
        "/v1/opportunities",
        json={
            "customer_id": mine.id,
            "name": f"{tag}-200",
            "amount": "200.00",
            "owner_id": team.manager.id,
            "department_path": elsewhere,
        },
        headers=team.admin.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["department_path"] == elsewhere
    created[r.json()["id"]] = 200
    hidden_from_manager = await new_opportunity(team.outsider, name=f"{tag}-200", amount="200.00")

    expected = sorted(created, key=lambda i: (created[i], i))  # amount, then id: the tie-breaker
    for limit in (1, 2, 4):
        items = await walk(client, team.manager.headers, {"q": tag, "sort": "amount", "limit": limit})
        assert [o["id"] for o in items] == expected
    descending = sorted(created, key=lambda i: (-created[i], i))
    items = await walk(client, team.manager.headers, {"q": tag, "sort": "-amount", "limit": 2})
    assert [o["id"] for o in items] == descending

    first = await client.get(
        "/v1/opportunities", params={"q": tag, "limit": 2, "include_total": True}, headers=team.manager.headers
    )
    assert first.json()["total"] == 6 and len(first.json()["items"]) == 2

    # A filter combined with the visibility alternatives, over several pages.
    items = await walk(client, team.manager.headers, {"q": tag, "amount_min": "200", "sort": "amount", "limit": 1})
    assert [o["id"] for o in items] == [i for i in expected if created[i] >= 200]
    items = await walk(client, team.manager.headers, {"q": tag, "owner_id": team.manager.id, "limit": 1})
    assert [o["id"] for o in items] == [r.json()["id"]]

    # A rep sees only their own; an admin everything, the outsider's too.
    items = await walk(client, team.rep.headers, {"q": tag, "sort": "amount", "limit": 1})
    assert [o["id"] for o in items] == [i for i in expected if i in reps]
    items = await walk(client, team.admin.headers, {"q": tag, "limit": 3})
    assert {o["id"] for o in items} == {*created, hidden_from_manager["id"]}


async def test_the_default_sort_pages_through_equal_update_times(
    client, team, customer_of, new_opportunity, pipeline_db
):
    tag = unique("T")
    customer = await customer_of(team.rep)
    ids = [(await new_opportunity(team.rep, customer, name=f"{tag}-{i}"))["id"] for i in range(5)]
    # The same update time on every one: only the id orders them, across pages.
    collection = pipeline_db["opportunities"]
    same = (await collection.find_one({"_id": ids[0]}))["s"]["updated_at"]
    for doc in await collection.find({"_id": {"$in": ids}}).to_list():
        doc["s"]["updated_at"] = same  # whole-document replace: the embedded store's $set turns a datetime to text
        await collection.replace_one({"_id": doc["_id"]}, doc)
    stored = await collection.find({"_id": {"$in": ids}}).to_list()
    assert {d["s"]["updated_at"] for d in stored} == {same}
    for user in (team.rep, team.manager):
        items = await walk(client, user.headers, {"q": tag, "limit": 2})
        assert [o["id"] for o in items] == sorted(ids)


async def test_renamed_indexes_replace_their_earlier_names(backend):
    async with database(backend.mongo_url, f"crm_pipeline_idx_{uuid.uuid4().hex[:8]}") as db:
        # An existing database from before the rename: MongoDB refuses the same keys under a new name.
        await db["opportunities"].create_index([("customer_id", ASCENDING)], name="customer")
        await db["opportunities"].create_index([("s.name", ASCENDING)], name="sort_name")
        await Repository(db, SystemClock(), lambda: None).ensure_indexes()
        present = await db["opportunities"].index_information()
        assert {"customer", "sort_name"}.isdisjoint(present)
        # By keys: the embedded store names every index after its keys, whatever name it is given.
        assert {fields(i.document["key"]) for i in OPPORTUNITY_INDEXES} <= {fields(i["key"]) for i in present.values()}
        await Repository(db, SystemClock(), lambda: None).ensure_indexes()  # and again: nothing to do
