"""Sortable custom fields of opportunities: the ``sortable`` flag (validated, capped), the sort
copies ``s.cf_<key>`` every write keeps (create, patch, stage moves, assignment, the customer
consumers, the start-up upgrade) and a backfill writes when the flag is set, ``sort=custom.<key>``
on ``GET /v1/opportunities`` (both ways, with other keys, paged by cursor), and the refusals: not
sortable (422 naming ``sort``), hidden from the caller (403 naming ``custom.<key>``).

The service runs in its own database (the cap on sortable fields counts a module's fields);
customers reach its read copy by handing their events to its handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crm_pipeline.main import create_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.clock import SystemClock
from crm_platform.customfields import MAX_SORTABLE, NO_SORT_VALUE
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_platform.testing.fixtures import auth, unique
from crm_platform.testing.plans import KeepingProducer, deliver
from crm_platform.testing.roles import role_event

DEPT = "/hq/sorts"
ADMIN = auth("admin-psorts", ["admin"], department_path="/hq")
MANAGER = auth("mgr-psorts", ["manager"], department_path="/hq")


@pytest.fixture(scope="module")
async def app(pipeline_settings: PipelineSettings) -> AsyncIterator[FastAPI]:
    settings = pipeline_settings.model_copy(
        update={
            "mongo_database": f"crm_pipeline_sorts_{uuid.uuid4().hex[:8]}",
            "consumer_group_suffix": f".sorts-{uuid.uuid4().hex[:6]}",
        }
    )
    application = create_app(settings, SystemClock())
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pipeline.test") as c:
        yield c


@pytest.fixture(scope="module")
def feed() -> CustomerFeed:
    return CustomerFeed(KeepingProducer())  # type: ignore[arg-type]


def key() -> str:
    return f"f{uuid.uuid4().hex[:8]}"


def labels(en: str) -> dict[str, str]:
    return {"zh-CN": f"{en}（中文）", "en": en}


async def define(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/fields/opportunities", json={"labels": labels(body["key"]), **body}, headers=ADMIN)


async def flag(client: httpx.AsyncClient, field: str, sortable: bool) -> httpx.Response:
    current = await client.get(f"/v1/fields/opportunities/{field}", headers=ADMIN)
    return await client.patch(
        f"/v1/fields/opportunities/{field}",
        json={"sortable": sortable},
        headers={**ADMIN, "If-Match": current.headers["ETag"]},
    )


async def customer(app: FastAPI, feed: CustomerFeed, owner_id: str) -> FedCustomer:
    made = await feed.created(owner_id=owner_id, department_path=DEPT, contacts=["张三"])
    await deliver(app, feed.published[-1])
    return made


async def create(client: httpx.AsyncClient, headers: dict[str, str], of: FedCustomer, **extra: Any) -> str:
    body = {"customer_id": of.id, "name": unique("商机"), "amount": "1000", **extra}
    r = await client.post("/v1/opportunities", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], sort: str, limit: int = 2, **filters: str
) -> list[list[str]]:
    """Every page of the list in ``sort``, followed by cursor."""
    pages: list[list[str]] = []
    params: dict[str, Any] = {"sort": sort, "limit": limit, **filters}
    while True:
        r = await client.get("/v1/opportunities", params=params, headers=headers)
        assert r.status_code == 200, r.text
        pages.append([o["id"] for o in r.json()["items"]])
        if not r.json()["next_cursor"]:
            return pages
        params["cursor"] = r.json()["next_cursor"]


async def sort_indexes(app: FastAPI, field: str) -> list[list[str]]:
    collection = app.state.pipeline.opportunities.repo.opportunities
    return [list(ix["key"]) async for ix in await collection.list_indexes() if f"s.cf_{field}" in ix["key"]]


async def stored_copy(app: FastAPI, opportunity_id: str, field: str) -> Any:
    doc = await app.state.pipeline.opportunities.repo.opportunity(opportunity_id)
    return doc["s"].get(f"cf_{field}", "missing")


async def patch(client: httpx.AsyncClient, headers: dict[str, str], opportunity_id: str, body: Any) -> None:
    got = await client.get(f"/v1/opportunities/{opportunity_id}", headers=headers)
    r = await client.patch(
        f"/v1/opportunities/{opportunity_id}", json=body, headers={**headers, "If-Match": got.headers["ETag"]}
    )
    assert r.status_code == 200, r.text


async def test_sorting_on_a_sortable_field_pages_both_ways_after_a_backfill(
    app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    score = key()
    assert (await define(client, key=score, type="number")).status_code == 201
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], department_path=DEPT)
    of = await customer(app, feed, rep_id)
    ids = {n: await create(client, rep, of, custom={score: n}) for n in (30, 10, 20)}
    none = await create(client, rep, of)  # no value: first ascending, last descending
    mine = {"customer_id": of.id}

    # Not sortable yet: 422 naming sort; an unknown field too.
    for sort in (f"-custom.{score}", "custom.nope"):
        r = await client.get("/v1/opportunities", params={"sort": sort}, headers=rep)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort", r.text
    r = await client.get("/v1/opportunities", params={"sort": f"custom.{score}"}, headers=rep)
    assert "not sortable" in r.json()["errors"][0]["reason"]

    # Flag on: the indexes made (behind each of the 3 visibility prefixes, and alone), the existing
    # opportunities backfilled before the PATCH answers, the flag in the history.
    r = await flag(client, score, True)
    assert r.status_code == 200 and r.json()["sortable"] is True, r.text
    assert len(await sort_indexes(app, score)) == 4
    assert await stored_copy(app, ids[30], score) == 30
    assert await stored_copy(app, none, score) == NO_SORT_VALUE["number"]  # never null
    history = (await client.get(f"/v1/fields/opportunities/{score}/history", headers=ADMIN)).json()
    assert any(c["field"] == "sortable" for entry in history for c in entry["changes"]), history

    assert await listed(client, rep, f"custom.{score}", **mine) == [[none, ids[10]], [ids[20], ids[30]]]
    assert await listed(client, rep, f"-custom.{score}", **mine) == [[ids[30], ids[20]], [ids[10], none]]
    # A manager of the department sees the same order.
    assert await listed(client, MANAGER, f"-custom.{score}", **mine) == [[ids[30], ids[20]], [ids[10], none]]

    # Every later write keeps the copy: a new opportunity, a changed value, a cleared one, a stage
    # move, an assignment, and the consumer that moves opportunities to a merge's survivor.
    ids[15] = await create(client, rep, of, custom={score: 15})
    await patch(client, rep, ids[30], {"custom": {score: 5}})
    await patch(client, rep, ids[10], {"custom": {score: None}})
    r = await client.post(f"/v1/opportunities/{ids[20]}/stage", json={"stage_id": "needs_confirmed"}, headers=rep)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/opportunities/{ids[15]}/assign",
        json={"owner_id": rep_id, "department_path": DEPT, "reason": "same owner, new write"},
        headers=MANAGER,
    )
    assert r.status_code == 200, r.text
    survivor = await customer(app, feed, rep_id)
    for envelope in await feed.merged(survivor, of):
        await deliver(app, envelope)
    assert (await client.get(f"/v1/opportunities/{ids[20]}", headers=rep)).json()["customer_id"] == survivor.id
    assert await stored_copy(app, ids[20], score) == 20
    mine = {"customer_id": survivor.id}
    order = [i for page in await listed(client, rep, f"custom.{score}", limit=3, **mine) for i in page]
    assert order[2:] == [ids[30], ids[15], ids[20]]  # 5, 15, 20
    assert sorted(order[:2]) == sorted([none, ids[10]])  # the value-less, by id
    assert [i for page in await listed(client, rep, f"-custom.{score}", limit=3, **mine) for i in page] == order[::-1]

    # With other keys, either way, paged.
    r = await client.get("/v1/opportunities", params={"sort": f"custom.{score},-amount", **mine}, headers=rep)
    assert r.status_code == 200 and [o["id"] for o in r.json()["items"]][2:] == order[2:], r.text
    both = await listed(client, rep, f"-amount,custom.{score}", limit=2, **mine)
    assert [i for page in both for i in page][-3:] == order[2:]  # one amount: the custom key decides

    # Flag off: the indexes dropped, the sort refused again.
    assert (await flag(client, score, False)).status_code == 200
    assert not await sort_indexes(app, score)
    r = await client.get("/v1/opportunities", params={"sort": f"custom.{score}"}, headers=rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"


async def test_date_text_and_boolean_fields_sort_too(
    app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    due, city, vip = key(), key(), key()
    for field, type_ in ((due, "date"), (city, "text"), (vip, "boolean")):
        assert (await define(client, key=field, type=type_, sortable=True)).status_code == 201
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], department_path=DEPT)
    of = await customer(app, feed, rep_id)
    b = await create(client, rep, of, custom={due: "2026-12-01", city: "b", vip: True})
    a = await create(client, rep, of, custom={due: "2026-02-01", city: "a", vip: False})
    empty = await create(client, rep, of)
    assert await stored_copy(app, b, due) == 20261201  # a date's sort copy is the integer day
    mine = {"customer_id": of.id}
    assert await listed(client, rep, f"custom.{due}", limit=1, **mine) == [[empty], [a], [b]]
    assert await listed(client, rep, f"-custom.{due}", limit=1, **mine) == [[b], [a], [empty]]
    assert await listed(client, rep, f"custom.{city}", limit=5, **mine) == [[empty, a, b]]
    assert await listed(client, rep, f"-custom.{vip}", limit=1, **mine) == [[b], [a], [empty]]
    for field in (due, city, vip):
        assert (await flag(client, field, False)).status_code == 200  # room for the cap test


async def test_the_flag_is_validated_and_capped(client: httpx.AsyncClient) -> None:
    r = await define(client, key=key(), type="money", sortable=True)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sortable", r.text
    r = await define(
        client, key=key(), type="multi_choice", options=[{"key": "x", "labels": labels("x")}], sortable=True
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sortable", r.text
    fields = (await client.get("/v1/fields/opportunities", headers=ADMIN)).json()
    current = [f["key"] for f in fields if f["sortable"]]
    made = []
    for _ in range(MAX_SORTABLE - len(current)):
        made.append(key())
        assert (await define(client, key=made[-1], type="number", sortable=True)).status_code == 201
    r = await define(client, key=key(), type="number", sortable=True)
    assert r.status_code == 409, r.text
    plain = key()
    assert (await define(client, key=plain, type="number")).status_code == 201
    assert (await flag(client, plain, True)).status_code == 409
    # Archiving one makes room (and drops its indexes).
    r = await client.delete(f"/v1/fields/opportunities/{made[0]}", headers=ADMIN)
    assert r.status_code in (200, 204), r.text
    assert (await flag(client, plain, True)).status_code == 200
    for field in (*made[1:], plain):
        assert (await flag(client, field, False)).status_code == 200


async def test_a_hidden_field_cannot_be_sorted_on(app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed) -> None:
    secret = key()
    assert (await define(client, key=secret, type="number", sortable=True)).status_code == 201
    role = f"staff-{uuid.uuid4().hex[:6]}"
    rules = {"opportunities": {f"custom.{secret}": "hidden"}}
    await app.state.kit.roles.apply(role_event(role, 1, permissions=["opportunities:view"], fields=rules))
    staff = auth(unique("staff"), [role], department_path=DEPT)
    for sort in (f"-custom.{secret}", f"name,custom.{secret}"):
        r = await client.get("/v1/opportunities", params={"sort": sort}, headers=staff)
        assert r.status_code == 403, r.text
        assert [e["field"] for e in r.json()["errors"]] == [f"custom.{secret}"]
    assert (await flag(client, secret, False)).status_code == 200


async def test_a_replica_that_learns_of_the_flag_late_backfills_its_own_writes(
    app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    """Another replica set the flag and backfilled; this one, still holding the definitions from
    before (up to CRM_CUSTOM_FIELDS_RELOAD_SECONDS), wrote an opportunity without the copy. Its
    next reload sees the field newly sortable and backfills again, so it is listed in order."""
    fields = app.state.custom_fields
    rank = key()
    assert (await define(client, key=rank, type="number")).status_code == 201
    before = fields._cache["opportunities"]  # the definitions as a replica that has not reloaded holds them
    assert (await flag(client, rank, True)).status_code == 200
    fields._cache["opportunities"] = before
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], department_path=DEPT)
    of = await customer(app, feed, rep_id)
    late = await create(client, rep, of, custom={rank: 2})
    assert await stored_copy(app, late, rank) == "missing"  # written as the stale replica would
    await fields.reload()
    assert await stored_copy(app, late, rank) == 2
    first = await create(client, rep, of, custom={rank: 1})
    assert await listed(client, rep, f"-custom.{rank}", customer_id=of.id) == [[late, first]]
    assert (await flag(client, rank, False)).status_code == 200


async def test_the_start_up_upgrade_writes_the_copies_with_the_sort_keys(
    app: FastAPI, client: httpx.AsyncClient, feed: CustomerFeed
) -> None:
    """An opportunity whose sort keys are of an older version is rewritten at start-up with the
    current keys and the custom fields' copies (the upgrade replaces ``s`` whole)."""
    rank = key()
    assert (await define(client, key=rank, type="number", sortable=True)).status_code == 201
    rep_id = unique("rep")
    rep = auth(rep_id, ["rep"], department_path=DEPT)
    of = await customer(app, feed, rep_id)
    made = await create(client, rep, of, custom={rank: 7})
    repo = app.state.pipeline.opportunities.repo
    stored = await repo.opportunity(made)
    old = {k: v for k, v in stored["s"].items() if not k.startswith("cf_") and not k.endswith("_day")}
    await repo.opportunities.update_one({"_id": made}, {"$set": {"s": {**old, "v": 2}}})
    await repo.migrations.delete_many({"_id": {"$regex": "^sort_keys_"}})
    await repo.ensure_indexes()
    assert await stored_copy(app, made, rank) == 7
    assert (await repo.opportunity(made))["s"]["v"] == 3
    assert (await flag(client, rank, False)).status_code == 200
