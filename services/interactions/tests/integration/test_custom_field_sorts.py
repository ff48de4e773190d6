"""Sortable custom fields of interactions, tasks and feedback: the sort copies ``s.cf_<key>`` every
write keeps (creates, changes, completions and transitions, a customer merge's moves, the sort-keys
upgrade) and a backfill writes when the flag is set, ``sort=custom.<key>`` in the three lists and a
customer's history (both ways, paged by cursor, with another key), the indexes made and dropped
with the flag, a replica that learns of the flag late, the cap and the refusals (422 naming
``sort``).

Every field flagged here has its flag cleared (or is archived) before the test ends: the session's
service is shared, and the cap counts a module's sortable fields.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from crm_platform.customfields import MAX_SORTABLE
from crm_platform.testing.fixtures import eventually
from crm_platform.testing.plans import keys_before_epoch_ms

MODULES = ["interactions", "tasks", "feedback"]
#: How many sort indexes a sortable field gets: behind each list prefix, and the copy alone.
SORT_INDEXES = {"interactions": 6, "tasks": 5, "feedback": 8}


def key() -> str:
    return f"f{uuid.uuid4().hex[:8]}"


def labels(text: str) -> dict[str, str]:
    return {"zh-CN": text, "en": text}


async def define(client: httpx.AsyncClient, admin: Any, module: str, **body: Any) -> httpx.Response:
    return await client.post(
        f"/v1/fields/{module}", json={"labels": labels(body["key"]), **body}, headers=admin.headers
    )


async def flag(client: httpx.AsyncClient, admin: Any, module: str, field: str, sortable: bool) -> httpx.Response:
    current = await client.get(f"/v1/fields/{module}/{field}", headers=admin.headers)
    return await client.patch(
        f"/v1/fields/{module}/{field}",
        json={"sortable": sortable},
        headers={**admin.headers, "If-Match": current.headers["ETag"]},
    )


def body(module: str, customer: Any, clock: Any, custom: dict[str, Any]) -> dict[str, Any]:
    now = clock.now()
    base: dict[str, Any] = {
        "interactions": {
            "channel": "note",
            "customer_id": customer.id,
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "content": "客户来电",
        },
        "tasks": {"title": "回访", "due_at": (now + timedelta(days=1)).isoformat(), "customer_id": customer.id},
        "feedback": {"kind": "request", "title": "需要发票", "description": "请开专票", "customer_id": customer.id},
    }[module]
    return {**base, "custom": custom}


async def create(client: httpx.AsyncClient, module: str, user: Any, customer: Any, clock: Any, **custom: Any) -> str:
    r = await client.post(f"/v1/{module}", json=body(module, customer, clock, custom), headers=user.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def list_params(module: str, customer: Any, sort: str, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"customer_id": customer.id, "sort": sort, "limit": limit}
    if module == "tasks":
        params["status"] = "all"  # done ones too
    return params


async def listed(
    client: httpx.AsyncClient, module: str, user: Any, customer: Any, sort: str, limit: int = 2, url: str | None = None
) -> list[list[str]]:
    """Every page of the customer's records in ``sort``, followed by cursor."""
    pages: list[list[str]] = []
    params = list_params(module, customer, sort, limit)
    if url is not None:
        params.pop("customer_id")
    while True:
        r = await client.get(url or f"/v1/{module}", params=params, headers=user.headers)
        assert r.status_code == 200, r.text
        pages.append([i["id"] for i in r.json()["items"]])
        if not r.json()["next_cursor"]:
            return pages
        params["cursor"] = r.json()["next_cursor"]


def flat(pages: list[list[str]]) -> list[str]:
    return [i for page in pages for i in page]


async def sort_indexes(collection: Any, field: str) -> list[list[str]]:
    return [list(ix["key"]) async for ix in await collection.list_indexes() if f"s.cf_{field}" in ix["key"]]


@pytest.mark.parametrize("module", MODULES)
async def test_sorting_on_a_sortable_field_pages_both_ways_after_a_backfill(
    client: httpx.AsyncClient, interactions_app: Any, world: Any, team: Any, clock: Any, module: str
) -> None:
    score = key()
    assert (await define(client, team.admin, module, key=score, type="number")).status_code == 201
    customer = await world.customer(team.rep)
    ids = {n: await create(client, module, team.rep, customer, clock, **{score: n}) for n in (30, 10, 20)}
    none = await create(client, module, team.rep, customer, clock)  # no value: first ascending, last descending

    # Not sortable yet (or unknown): 422 naming sort.
    for sort, reason in ((f"-custom.{score}", "not sortable"), ("custom.nope", "no custom field")):
        r = await client.get(f"/v1/{module}", params={"sort": sort}, headers=team.rep.headers)
        assert r.status_code == 422, r.text
        error = r.json()["errors"][0]
        assert error["field"] == "sort" and reason in error["reason"], error

    # Flag on: the indexes made, the records stored before backfilled.
    r = await flag(client, team.admin, module, score, True)
    assert r.status_code == 200 and r.json()["sortable"] is True, r.text
    repo = interactions_app.state.services.interactions.repo
    collection = getattr(repo, module)
    assert len(await sort_indexes(collection, score)) == SORT_INDEXES[module]
    assert await listed(client, module, team.rep, customer, f"custom.{score}") == [[none, ids[10]], [ids[20], ids[30]]]
    assert await listed(client, module, team.rep, customer, f"-custom.{score}") == [
        [ids[30], ids[20]],
        [ids[10], none],
    ]
    if module == "interactions":  # the customer's history sorts the same way
        history = f"/v1/customers/{customer.id}/interactions"
        got = await listed(client, module, team.rep, customer, f"-custom.{score}", url=history)
        assert got == [[ids[30], ids[20]], [ids[10], none]]

    # Every later write keeps the copy: a new record, a changed value, a cleared one, and the
    # module's own moves (a task completed and rescheduled, feedback moved on).
    ids[15] = await create(client, module, team.rep, customer, clock, **{score: 15})
    for record, value in ((ids[30], 5), (ids[10], None)):
        current = await client.get(f"/v1/{module}/{record}", headers=team.rep.headers)
        r = await client.patch(
            f"/v1/{module}/{record}",
            json={"custom": {score: value}},
            headers={**team.rep.headers, "If-Match": current.headers["ETag"]},
        )
        assert r.status_code == 200, r.text
    if module == "tasks":
        due = (clock.now() + timedelta(days=5)).isoformat()
        r = await client.post(f"/v1/tasks/{ids[15]}/reschedule", json={"due_at": due}, headers=team.rep.headers)
        assert r.status_code == 200, r.text
        r = await client.post(f"/v1/tasks/{ids[15]}/complete", json={"note": "已回访"}, headers=team.rep.headers)
        assert r.status_code == 200, r.text
    if module == "feedback":
        r = await client.post(
            f"/v1/feedback/{ids[15]}/transitions", json={"status": "in_progress"}, headers=team.manager.headers
        )
        assert r.status_code == 200, r.text
    stored = await collection.find_one({"_id": ids[15]})
    assert stored["s"][f"cf_{score}"] == 15, stored["s"]
    order = flat(await listed(client, module, team.rep, customer, f"custom.{score}", limit=3))
    assert order[2:] == [ids[30], ids[15], ids[20]]  # 5, 15, 20
    assert sorted(order[:2]) == sorted([none, ids[10]])  # the value-less, by id
    assert flat(await listed(client, module, team.rep, customer, f"-custom.{score}", limit=3)) == order[::-1]

    # A second key is allowed, either way.
    builtin = {"interactions": "-occurred_at", "tasks": "due_at", "feedback": "-opened_at"}[module]
    r = await client.get(
        f"/v1/{module}",
        params=list_params(module, customer, f"-custom.{score},{builtin}", 10),
        headers=team.rep.headers,
    )
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]][:3] == [ids[20], ids[15], ids[30]]

    # Flag off: the indexes dropped, the sort refused again.
    assert (await flag(client, team.admin, module, score, False)).status_code == 200
    assert not await sort_indexes(collection, score)
    r = await client.get(f"/v1/{module}", params={"sort": f"custom.{score}"}, headers=team.rep.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort", r.text


async def test_text_date_and_boolean_fields_sort_too(
    client: httpx.AsyncClient, world: Any, team: Any, clock: Any
) -> None:
    city, day, vip = key(), key(), key()
    for field, type_ in ((city, "text"), (day, "date"), (vip, "boolean")):
        assert (await define(client, team.admin, "tasks", key=field, type=type_, sortable=True)).status_code == 201
    customer = await world.customer(team.rep)
    b = await create(client, "tasks", team.rep, customer, clock, **{city: "b", day: "2026-02-01", vip: True})
    a = await create(client, "tasks", team.rep, customer, clock, **{city: "a", day: "2026-10-01", vip: False})
    empty = await create(client, "tasks", team.rep, customer, clock)
    assert await listed(client, "tasks", team.rep, customer, f"custom.{city}", limit=5) == [[empty, a, b]]
    assert await listed(client, "tasks", team.rep, customer, f"-custom.{day}", limit=5) == [[a, b, empty]]
    assert await listed(client, "tasks", team.rep, customer, f"-custom.{vip}", limit=1) == [[b], [a], [empty]]
    for field in (city, day, vip):
        assert (await flag(client, team.admin, "tasks", field, False)).status_code == 200


async def test_a_merge_and_the_sort_keys_upgrade_keep_the_copies(
    client: httpx.AsyncClient, interactions_app: Any, world: Any, team: Any, clock: Any, db: Any
) -> None:
    """Writes that do not come from a request keep the copies too: a customer merge moves the
    duplicate's records (each rewritten, a task's sort keys recomputed), and the start-up upgrade
    of sort keys stored in an old shape rewrites ``s`` whole."""
    fields = {module: key() for module in MODULES}
    for module, field in fields.items():
        assert (await define(client, team.admin, module, key=field, type="number", sortable=True)).status_code == 201
    survivor = await world.customer(team.rep)
    duplicate = await world.customer(team.rep)
    made = {
        module: await create(client, module, team.rep, duplicate, clock, **{field: 7})
        for module, field in fields.items()
    }
    await world.feed.merged(survivor, duplicate)

    async def moved() -> bool:
        docs = [await db[module].find_one({"_id": made[module]}) for module in MODULES]
        return all(d["customer_id"] == survivor.id for d in docs)

    await eventually(moved, timeout=30, message="records moved to the survivor")
    for module, field in fields.items():
        doc = await db[module].find_one({"_id": made[module]})
        assert doc["version"] == 2 and doc["s"][f"cf_{field}"] == 7, (module, doc["s"])
        assert await listed(client, module, team.rep, survivor, f"-custom.{field}") == [[made[module]]]

    # A record stored with the old sort keys (no s.v): the upgrade at start-up keeps its copy.
    old = await db["interactions"].find_one({"_id": made["interactions"]})
    await db["interactions"].update_one({"_id": old["_id"]}, {"$set": {"s": keys_before_epoch_ms(old["s"])}})
    await db["migrations"].delete_one({"_id": "sort_keys_v1:interactions"})
    await interactions_app.state.repo.ensure_indexes()
    upgraded = await db["interactions"].find_one({"_id": old["_id"]})
    assert upgraded["s"]["v"] == 1 and upgraded["s"][f"cf_{fields['interactions']}"] == 7, upgraded["s"]
    for module, field in fields.items():
        assert (await flag(client, team.admin, module, field, False)).status_code == 200


async def test_a_replica_that_learns_of_the_flag_late_backfills_its_own_writes(
    client: httpx.AsyncClient, interactions_app: Any, world: Any, team: Any, clock: Any
) -> None:
    """Another replica set the flag and backfilled; this one, still holding the definitions from
    before (up to CRM_CUSTOM_FIELDS_RELOAD_SECONDS), wrote a record without the copy. Its next
    reload sees the field newly sortable and backfills again, so the record is listed in order."""
    fields = interactions_app.state.custom_fields
    rank = key()
    assert (await define(client, team.admin, "feedback", key=rank, type="number")).status_code == 201
    before = fields._cache["feedback"]  # the definitions as a replica that has not reloaded holds them
    assert (await flag(client, team.admin, "feedback", rank, True)).status_code == 200
    fields._cache["feedback"] = before
    customer = await world.customer(team.rep)
    late = await create(client, "feedback", team.rep, customer, clock, **{rank: 2})
    stored = await interactions_app.state.repo.feedback.find_one({"_id": late})
    assert f"cf_{rank}" not in stored["s"]  # written as the stale replica would
    await fields.reload()
    first = await create(client, "feedback", team.rep, customer, clock, **{rank: 1})
    assert await listed(client, "feedback", team.rep, customer, f"-custom.{rank}") == [[late, first]]
    assert (await flag(client, team.admin, "feedback", rank, False)).status_code == 200


async def test_the_flag_is_validated_and_capped(client: httpx.AsyncClient, team: Any) -> None:
    r = await define(client, team.admin, "interactions", key=key(), type="money", sortable=True)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sortable", r.text
    current = [
        f["key"]
        for f in (await client.get("/v1/fields/interactions", headers=team.admin.headers)).json()
        if f["sortable"]
    ]
    made = []
    try:
        for _ in range(MAX_SORTABLE - len(current)):
            made.append(key())
            r = await define(client, team.admin, "interactions", key=made[-1], type="date", sortable=True)
            assert r.status_code == 201, r.text
        r = await define(client, team.admin, "interactions", key=key(), type="date", sortable=True)
        assert r.status_code == 409, r.text
        plain = key()
        assert (await define(client, team.admin, "interactions", key=plain, type="date")).status_code == 201
        made.append(plain)
        assert (await flag(client, team.admin, "interactions", plain, True)).status_code == 409
        # Another module has its own cap.
        other = key()
        assert (await define(client, team.admin, "tasks", key=other, type="date", sortable=True)).status_code == 201
        assert (await client.delete(f"/v1/fields/tasks/{other}", headers=team.admin.headers)).status_code == 200
    finally:
        for field in made:
            await client.delete(f"/v1/fields/interactions/{field}", headers=team.admin.headers)
