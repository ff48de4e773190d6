"""Sortable custom fields of customers: the ``sortable`` flag (validated, capped, in history and
events), the sort copies ``s.cf_<key>`` every write keeps and a backfill writes when the flag is
set, ``sort=custom.<key>`` in lists (both ways, paged by cursor), the export and the neighbours,
tag-filtered lists sorted on a custom field (on the tag memberships, which carry the copies), and
the refusals: not sortable (422 naming ``sort``), hidden (403).

The service runs in its own database: the cap on sortable fields counts a module's fields.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crm_customers.main import create_app
from crm_platform.customfields import MAX_SORTABLE
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import EventCollector, auth, collecting, running, unique
from crm_platform.testing.roles import role_event

from ..conftest import isolated_settings

ADMIN = auth("admin-sorts", ["admin"], department_path="/hq")


@pytest.fixture(scope="module")
async def events(backend: Backend) -> AsyncIterator[EventCollector]:
    async with collecting(backend.kafka_bootstrap, ["crm.customers.v1"]) as collector:
        yield collector


@pytest.fixture(scope="module")
async def app_and_client(backend: Backend, events: EventCollector) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = isolated_settings(backend, "sorts")
    app = create_app(settings)
    async with running(app, "http://customers.test") as client:
        yield app, client


def labels(en: str) -> dict[str, str]:
    return {"zh-CN": f"{en}（中文）", "en": en}


def key() -> str:
    return f"f{uuid.uuid4().hex[:8]}"


async def define(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/fields/customers", json={"labels": labels(body["key"]), **body}, headers=ADMIN)


async def create(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> str:
    body = {"kind": "company", "name": f"杭州{uuid.uuid4().hex[:8]}科技有限公司", **extra}
    r = await client.post("/v1/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], sort: str, limit: int = 2, **filters: str
) -> list[list[str]]:
    """Every page of the list in ``sort`` (with ``filters``), followed by cursor."""
    pages: list[list[str]] = []
    params: dict[str, Any] = {"sort": sort, "limit": limit, **filters}
    while True:
        r = await client.get("/v1/customers", params=params, headers=headers)
        assert r.status_code == 200, r.text
        pages.append([c["id"] for c in r.json()["items"]])
        if not r.json()["next_cursor"]:
            return pages
        params["cursor"] = r.json()["next_cursor"]


async def flag(client: httpx.AsyncClient, field: str, sortable: bool) -> httpx.Response:
    current = await client.get(f"/v1/fields/customers/{field}", headers=ADMIN)
    return await client.patch(
        f"/v1/fields/customers/{field}",
        json={"sortable": sortable},
        headers={**ADMIN, "If-Match": current.headers["ETag"]},
    )


def sort_indexes(indexed: list[list[str]], field: str) -> list[list[str]]:
    return [fields for fields in indexed if f"s.cf_{field}" in fields]


async def test_sorting_on_a_sortable_field_pages_both_ways_after_a_backfill(
    app_and_client: tuple[Any, httpx.AsyncClient], events: EventCollector
) -> None:
    app, client = app_and_client
    score = key()
    assert (await define(client, key=score, type="number")).status_code == 201
    rep = auth(unique("rep"))
    ids = {n: await create(client, rep, custom={score: n}) for n in (30, 10, 20)}
    none = await create(client, rep)  # no value: first ascending, last descending

    # Not sortable yet: 422 naming sort, in the list, the export and the neighbours.
    for path in ("/v1/customers", "/v1/customers/export.csv", f"/v1/customers/{none}/neighbours"):
        r = await client.get(path, params={"sort": f"-custom.{score}"}, headers=rep)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["errors"][0]["field"] == "sort" and "not sortable" in r.json()["errors"][0]["reason"]
    r = await client.get("/v1/customers", params={"sort": "custom.nope"}, headers=rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"

    # Flag on: the indexes made, the existing customers backfilled, the flag in the event and history.
    r = await flag(client, score, True)
    assert r.status_code == 200 and r.json()["sortable"] is True, r.text
    collection = app.state.customers.repo.collection
    indexed = [list(ix["key"]) async for ix in await collection.list_indexes()]
    assert len(sort_indexes(indexed, score)) == 5, indexed  # behind each of the 4 scopes, and alone
    found = await events.wait_for(type="crm.custom_field.changed", subject=f"customers.{score}")
    event = found[0].event
    assert event["data"]["field"]["sortable"] is True
    assert event["data"]["changes"] == [{"field": "sortable", "old": False, "new": True}]
    history = (await client.get(f"/v1/fields/customers/{score}/history", headers=ADMIN)).json()
    assert any(c["field"] == "sortable" for entry in history for c in entry["changes"]), history

    assert await listed(client, rep, f"custom.{score}") == [[none, ids[10]], [ids[20], ids[30]]]
    assert await listed(client, rep, f"-custom.{score}") == [[ids[30], ids[20]], [ids[10], none]]

    # Every later write keeps the copy: a new customer, a changed value, a cleared one.
    ids[15] = await create(client, rep, custom={score: 15})
    got = await client.get(f"/v1/customers/{ids[30]}", headers=rep)
    r = await client.patch(
        f"/v1/customers/{ids[30]}", json={"custom": {score: 5}}, headers={**rep, "If-Match": got.headers["ETag"]}
    )
    assert r.status_code == 200, r.text
    got = await client.get(f"/v1/customers/{ids[10]}", headers=rep)
    r = await client.patch(
        f"/v1/customers/{ids[10]}", json={"custom": {score: None}}, headers={**rep, "If-Match": got.headers["ETag"]}
    )
    assert r.status_code == 200, r.text
    order = [i for page in await listed(client, rep, f"custom.{score}", limit=3) for i in page]
    assert order[2:] == [ids[30], ids[15], ids[20]]  # 5, 15, 20
    assert sorted(order[:2]) == sorted([none, ids[10]])  # the value-less, by id
    assert [i for page in await listed(client, rep, f"-custom.{score}", limit=3) for i in page] == order[::-1]

    # The neighbours and the export follow the same order; a second key is allowed.
    r = await client.get(f"/v1/customers/{ids[15]}/neighbours", params={"sort": f"custom.{score}"}, headers=rep)
    assert r.status_code == 200, r.text
    assert (r.json()["previous"]["id"], r.json()["next"]["id"]) == (ids[30], ids[20])
    r = await client.get("/v1/customers/export.csv", params={"sort": f"-custom.{score}"}, headers=rep)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row[f"custom.{score}"] for row in rows][:3] == ["20", "15", "5"]
    r = await client.get("/v1/customers", params={"sort": f"custom.{score},-name"}, headers=rep)
    assert r.status_code == 200, r.text

    # Flag off: the indexes dropped, the sort refused again.
    assert (await flag(client, score, False)).status_code == 200
    indexed = [list(ix["key"]) async for ix in await collection.list_indexes()]
    assert not sort_indexes(indexed, score), indexed
    r = await client.get("/v1/customers", params={"sort": f"custom.{score}"}, headers=rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"


async def test_text_choice_and_boolean_fields_sort_too(app_and_client: tuple[Any, httpx.AsyncClient]) -> None:
    _, client = app_and_client
    city, vip = key(), key()
    assert (await define(client, key=city, type="text", sortable=True)).status_code == 201
    assert (await define(client, key=vip, type="boolean", sortable=True)).status_code == 201
    rep = auth(unique("rep"))
    b = await create(client, rep, custom={city: "b", vip: True})
    a = await create(client, rep, custom={city: "a", vip: False})
    empty = await create(client, rep)
    assert await listed(client, rep, f"custom.{city}", limit=5) == [[empty, a, b]]
    assert await listed(client, rep, f"-custom.{vip}", limit=1) == [[b], [a], [empty]]
    for field in (city, vip):
        assert (await flag(client, field, False)).status_code == 200  # room for the cap test


async def test_the_flag_is_validated_and_capped(app_and_client: tuple[Any, httpx.AsyncClient]) -> None:
    _, client = app_and_client
    r = await define(client, key=key(), type="money", sortable=True)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sortable", r.text
    r = await define(
        client, key=key(), type="multi_choice", options=[{"key": "x", "labels": labels("x")}], sortable=True
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sortable", r.text
    r = await client.post(
        "/v1/fields/contacts",
        json={"key": key(), "type": "text", "labels": labels("c"), "sortable": True},
        headers=ADMIN,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sortable", r.text
    current = [f["key"] for f in (await client.get("/v1/fields/customers", headers=ADMIN)).json() if f["sortable"]]
    made = []
    for _ in range(MAX_SORTABLE - len(current)):
        made.append(key())
        assert (await define(client, key=made[-1], type="date", sortable=True)).status_code == 201
    r = await define(client, key=key(), type="date", sortable=True)
    assert r.status_code == 409, r.text
    plain = key()
    assert (await define(client, key=plain, type="date")).status_code == 201
    assert (await flag(client, plain, True)).status_code == 409
    # Archiving one makes room (and drops its indexes).
    r = await client.delete(f"/v1/fields/customers/{made[0]}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert (await flag(client, plain, True)).status_code == 200
    for field in (*made[1:], plain):
        assert (await flag(client, field, False)).status_code == 200


async def test_a_hidden_field_cannot_be_sorted_on(app_and_client: tuple[Any, httpx.AsyncClient]) -> None:
    app, client = app_and_client
    secret = key()
    assert (await define(client, key=secret, type="number", sortable=True)).status_code == 201
    role = f"staff-{uuid.uuid4().hex[:6]}"
    permissions = ["customers:view", "customers:create", "customers:export"]
    rules = {"customers": {f"custom.{secret}": "hidden"}}
    await app.state.kit.roles.apply(role_event(role, 1, permissions=permissions, fields=rules))
    staff_id, dept = unique("staff"), f"/hq/{unique('d')}"
    staff = auth(staff_id, [role], department_path=dept)
    made = await create(client, ADMIN, owner_id=staff_id, department_path=dept, custom={secret: 1})
    for path in ("/v1/customers", "/v1/customers/export.csv", f"/v1/customers/{made}/neighbours"):
        for tags in ({}, {"tags_any": "vip"}, {"tags_all": "vip"}):  # tag lists sort on it too
            r = await client.get(path, params={"sort": f"-custom.{secret}", **tags}, headers=staff)
            assert r.status_code == 403, (path, tags, r.text)
            assert [e["field"] for e in r.json()["errors"]] == [f"custom.{secret}"]
    assert (await flag(client, secret, False)).status_code == 200


async def test_a_replica_that_learns_of_the_flag_late_backfills_its_own_writes(
    app_and_client: tuple[Any, httpx.AsyncClient],
) -> None:
    """Another replica set the flag and backfilled; this one, still holding the definitions from
    before (up to CRM_CUSTOM_FIELDS_RELOAD_SECONDS), wrote a customer without the copy. Its next
    reload sees the field newly sortable and backfills again, so the customer is listed in order."""
    app, client = app_and_client
    fields = app.state.custom_fields
    rank = key()
    assert (await define(client, key=rank, type="number")).status_code == 201
    before = fields._cache["customers"]  # the definitions as a replica that has not reloaded holds them
    assert (await flag(client, rank, True)).status_code == 200
    fields._cache["customers"] = before
    rep = auth(unique("rep"))
    late = await create(client, rep, custom={rank: 2})
    stored = await app.state.customers.repo.get(late)
    assert f"cf_{rank}" not in stored["s"]  # written as the stale replica would
    await fields.reload()
    first = await create(client, rep, custom={rank: 1})
    assert await listed(client, rep, f"-custom.{rank}") == [[late, first]]
    assert (await flag(client, rank, False)).status_code == 200


async def test_an_approved_export_downloads_in_the_custom_order(app_and_client: tuple[Any, httpx.AsyncClient]) -> None:
    """An export held for approval keeps its custom sort; the download checks it again."""
    _, client = app_and_client
    rank = key()
    assert (await define(client, key=rank, type="number", sortable=True)).status_code == 201
    rep = auth(unique("rep"), ["rep"], "/hq/east")
    made = {n: await create(client, rep, custom={rank: n}) for n in (2, 3, 1)}
    r = await client.put("/v1/customers/export-policy", json={"approval_above_rows": 1}, headers=ADMIN)
    assert r.status_code == 200, r.text
    try:
        r = await client.get("/v1/customers/export.csv", params={"sort": f"-custom.{rank}"}, headers=rep)
        assert r.status_code == 202, r.text
        request_id = r.json()["id"]
        r = await client.post(f"/v1/customers/export-requests/{request_id}/approve", json={}, headers=ADMIN)
        assert r.status_code == 200, r.text
        r = await client.get(f"/v1/customers/export-requests/{request_id}/download", headers=rep)
        assert r.status_code == 200, r.text
        rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert [row["id"] for row in rows] == [made[3], made[2], made[1]]
        # No longer sortable: the download is refused before any row leaves.
        assert (await flag(client, rank, False)).status_code == 200
        r = await client.get(f"/v1/customers/export-requests/{request_id}/download", headers=rep)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort", r.text
    finally:
        current = await client.get("/v1/customers/export-policy", headers=ADMIN)
        await client.put(
            "/v1/customers/export-policy",
            json={"approval_above_rows": None},
            headers={**ADMIN, "If-Match": current.headers["ETag"]},
        )


def tag_sort_indexes(indexed: list[list[str]], field: str) -> list[list[str]]:
    return [fields for fields in indexed if f"s.cf_{field}" in fields]


async def test_tag_lists_sort_on_a_sortable_field_after_its_backfill(
    app_and_client: tuple[Any, httpx.AsyncClient],
) -> None:
    """A tag-filtered list (``tags_any``, ``tags_all``) sorted on a custom field pages on the tag
    memberships: the flag indexes them, the backfill writes the copies on the memberships of the
    customers stored before it, and a later change of the value moves the customer in the list."""
    app, client = app_and_client
    score = key()
    assert (await define(client, key=score, type="number")).status_code == 201
    rep = auth(unique("rep"))
    tag, other = unique("tag"), unique("other")
    ids = {n: await create(client, rep, tags=[tag, other], custom={score: n}) for n in (30, 10, 20)}
    none = await create(client, rep, tags=[tag])  # no value: first ascending, last descending
    untagged = await create(client, rep, tags=[other], custom={score: 15})  # not under the tag

    # Flag on: the memberships are indexed, and the backfill wrote their copies (not a page's resync).
    assert (await flag(client, score, True)).status_code == 200
    memberships = app.state.customers.repo.tags.collection
    indexed = [list(ix["key"]) async for ix in await memberships.list_indexes()]
    assert len(tag_sort_indexes(indexed, score)) == 4, indexed  # behind each of the 3 prefixes, and alone
    stored = await memberships.find_one({"_id": f"{ids[30]}:{tag}"})
    assert stored is not None and stored["s"][f"cf_{score}"] == 30, stored

    for tags in ({"tags_any": tag}, {"tags_all": f"{tag},{other}"}, {"tags_any": f"{tag},{unique('x')}"}):
        with_none = "tags_all" not in tags  # the customer without a value lacks the other tag
        up = [[none, ids[10]], [ids[20], ids[30]]] if with_none else [[ids[10], ids[20]], [ids[30]]]
        assert await listed(client, rep, f"custom.{score}", **tags) == up, tags
        down = [i for page in up for i in page][::-1]
        assert [i for page in await listed(client, rep, f"-custom.{score}", **tags) for i in page] == down, tags

    # A changed value moves the customer; its neighbours in the tag list follow the same order.
    got = await client.get(f"/v1/customers/{ids[30]}", headers=rep)
    r = await client.patch(
        f"/v1/customers/{ids[30]}", json={"custom": {score: 5}}, headers={**rep, "If-Match": got.headers["ETag"]}
    )
    assert r.status_code == 200, r.text
    order = [i for page in await listed(client, rep, f"custom.{score}", limit=3, tags_any=tag) for i in page]
    assert order == [none, ids[30], ids[10], ids[20]] and untagged not in order
    # A membership whose sort copy is stale is dropped from the page and resynced, the page asked again.
    await memberships.update_one({"_id": f"{ids[20]}:{tag}"}, {"$set": {f"s.cf_{score}": 1}})
    assert await listed(client, rep, f"custom.{score}", limit=3, tags_any=tag) == [[none, ids[30], ids[10]], [ids[20]]]
    fixed = await memberships.find_one({"_id": f"{ids[20]}:{tag}"})
    assert fixed is not None and fixed["s"][f"cf_{score}"] == 20, fixed
    r = await client.get(
        f"/v1/customers/{ids[10]}/neighbours", params={"sort": f"-custom.{score}", "tags_any": tag}, headers=rep
    )
    assert r.status_code == 200, r.text
    assert (r.json()["previous"]["id"], r.json()["next"]["id"]) == (ids[20], ids[30])
    r = await client.get("/v1/customers/export.csv", params={"sort": f"-custom.{score}", "tags_any": tag}, headers=rep)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row["id"] for row in rows] == [ids[20], ids[10], ids[30], none]

    # Flag off: the memberships' indexes dropped, the sort refused again.
    assert (await flag(client, score, False)).status_code == 200
    indexed = [list(ix["key"]) async for ix in await memberships.list_indexes()]
    assert not tag_sort_indexes(indexed, score), indexed
    r = await client.get("/v1/customers", params={"sort": f"custom.{score}", "tags_any": tag}, headers=rep)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort", r.text
