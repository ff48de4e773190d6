"""Products over HTTP against the real embedded store and broker: adding one and its event, the SKU
rule (normalised, unique: 409 naming the holder, also under concurrency), 422s naming the field,
PATCH with ETag/412/428, deactivate and activate (no event when nothing changes), the list's
filters and keyset pages, and who may do what."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import sales as sev
from crm_platform.testing.fixtures import auth, collecting

PROBLEM = "application/problem+json"
ADMIN = auth("sales-admin", ["admin"], "/hq")
MANAGER = auth("sales-mgr", ["manager"], "/hq/east")
REP = auth("sales-rep", ["rep"], "/hq/east/t1")


def sku() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def product(**fields: Any) -> dict[str, Any]:
    return {"sku": sku(), "name": f"服务器 {uuid.uuid4().hex[:6]}", "unit": "台", **fields}


async def add(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/products", json=product(**fields), headers=MANAGER)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/products/{r.json()['id']}"
    data: dict[str, Any] = r.json()
    return data


async def test_add_a_product_with_a_normalised_sku_and_its_event(client: httpx.AsyncClient, sales_app: FastAPI) -> None:
    raw = f"  ab-{uuid.uuid4().hex[:8]} "
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        created = await add(client, sku=raw, category="硬件", description="  2U 机架式  ")
        (got,) = await events.wait_for(subject=created["id"], type=sev.PRODUCT_CREATED.name)
    assert created["sku"] == raw.strip().upper() and created["unit"] == "台" and created["active"] is True
    assert created["description"] == "2U 机架式" and created["created_by"] == "sales-mgr"
    assert got.event["data"]["product"]["sku"] == created["sku"]
    assert got.event["aggregateversion"] == 1
    r = await client.get(f"/v1/products/{created['id']}", headers=REP)
    assert r.status_code == 200 and r.json() == created and r.headers["etag"] == '"1"'


async def test_a_duplicate_sku_is_a_409_naming_the_existing_product(client: httpx.AsyncClient) -> None:
    first = await add(client)
    r = await client.post("/v1/products", json=product(sku=f" {first['sku'].lower()} "), headers=MANAGER)
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM), r.text
    body = r.json()
    assert body["type"] == "urn:crm:problem:sku-taken" and body["existing_product_id"] == first["id"]
    assert body["errors"][0]["field"] == "sku" and first["name"] in body["errors"][0]["reason"]
    # A change of SKU onto another product's is refused the same way, and changes nothing.
    other = await add(client)
    url = f"/v1/products/{other['id']}"
    r = await client.patch(url, json={"sku": first["sku"]}, headers={**MANAGER, "If-Match": '"1"'})
    assert r.status_code == 409 and r.json()["existing_product_id"] == first["id"], r.text
    after = (await client.get(url, headers=REP)).json()
    assert after["sku"] == other["sku"] and after["version"] == 1


async def test_two_creates_racing_for_one_sku_leave_one_product(client: httpx.AsyncClient) -> None:
    wanted = sku()
    answers = await asyncio.gather(
        *(client.post("/v1/products", json=product(sku=wanted), headers=MANAGER) for _ in range(6))
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409, 409, 409], [r.text for r in answers]
    page = (await client.get("/v1/products", params={"q": wanted}, headers=REP)).json()
    assert [p["sku"] for p in page["items"]] == [wanted.upper()]


async def test_bad_products_are_422_naming_each_field(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/products", json={"sku": "  ", "name": "", "unit": "", "category": "x" * 101, "price": 1}, headers=MANAGER
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert {e["field"] for e in r.json()["errors"]} == {"sku", "name", "unit", "category", "price"}
    r = await client.post("/v1/products", json={"sku": sku(), "name": "无单位"}, headers=MANAGER)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["unit"]
    created = await add(client)
    r = await client.patch(f"/v1/products/{created['id']}", json={"unit": None}, headers={**MANAGER, "If-Match": '"1"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "unit"


async def test_patch_needs_if_match_and_refuses_a_stale_one(client: httpx.AsyncClient, sales_app: FastAPI) -> None:
    created = await add(client)
    url = f"/v1/products/{created['id']}"
    assert (await client.patch(url, json={"name": "新名字"}, headers=MANAGER)).status_code == 428
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await client.patch(url, json={"name": "新名字", "category": "软件"}, headers={**MANAGER, "If-Match": '"1"'})
        assert r.status_code == 200 and r.headers["etag"] == '"2"', r.text
        (got,) = await events.wait_for(subject=created["id"], type=sev.PRODUCT_UPDATED.name)
    changes = {c["field"]: (c["old"], c["new"]) for c in got.event["data"]["changes"]}
    assert changes == {"name": (created["name"], "新名字"), "category": (None, "软件")}
    r = await client.patch(url, json={"name": "再改"}, headers={**MANAGER, "If-Match": '"1"'})
    assert r.status_code == 412 and r.headers["etag"] == '"2"'
    # The same values again: no new version.
    r = await client.patch(url, json={"name": "新名字"}, headers={**MANAGER, "If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["version"] == 2


async def test_deactivate_and_activate_publish_once(client: httpx.AsyncClient, sales_app: FastAPI) -> None:
    created = await add(client)
    url = f"/v1/products/{created['id']}"
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await client.post(f"{url}/deactivate", headers=MANAGER)
        assert r.status_code == 200 and r.json()["active"] is False and r.json()["version"] == 2
        again = await client.post(f"{url}/deactivate", headers=MANAGER)
        assert again.status_code == 200 and again.json()["version"] == 2  # no change, no event
        r = await client.post(f"{url}/activate", headers={**MANAGER, "If-Match": '"2"'})
        assert r.status_code == 200 and r.json()["active"] is True and r.json()["version"] == 3
        await events.wait_for(subject=created["id"], type=sev.PRODUCT_ACTIVATED.name)
    kinds = [e.event["type"] for e in events.matching(subject=created["id"])]
    assert kinds == [sev.PRODUCT_CREATED.name, sev.PRODUCT_DEACTIVATED.name, sev.PRODUCT_ACTIVATED.name]
    assert (await client.post(f"{url}/deactivate", headers={**MANAGER, "If-Match": '"1"'})).status_code == 412
    assert (await client.post("/v1/products/nope/deactivate", headers=MANAGER)).status_code == 404


async def test_the_list_filters_and_pages_by_each_sort(client: httpx.AsyncClient) -> None:
    category = f"cat-{uuid.uuid4().hex[:8]}"
    stem = f"Pg{uuid.uuid4().hex[:6]}"
    made = [await add(client, name=f"{stem} {n}", category=category) for n in ("c", "A", "b", "E", "d")]
    await client.post(f"/v1/products/{made[3]['id']}/deactivate", headers=MANAGER)
    for sort, key in (("name", lambda p: p["name"].casefold()), ("sku", lambda p: p["sku"]), ("-created_at", None)):
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"category": category, "sort": sort, "limit": 2}
        while True:
            r = await client.get("/v1/products", params=params, headers=REP)
            assert r.status_code == 200, r.text
            seen += r.json()["items"]
            if not r.json()["next_cursor"]:
                break
            params["cursor"] = r.json()["next_cursor"]
        assert len(seen) == 5 and len({p["id"] for p in seen}) == 5
        if key is not None:
            assert [key(p) for p in seen] == sorted(key(p) for p in seen)
        else:
            # Two creates in one millisecond tie on created_at: the id breaks the tie (descending too).
            newest = sorted(made, key=lambda p: (p["created_at"], p["id"]), reverse=True)
            assert [p["id"] for p in seen] == [p["id"] for p in newest]
    active = (await client.get("/v1/products", params={"category": category, "active": "false"}, headers=REP)).json()
    assert [p["id"] for p in active["items"]] == [made[3]["id"]]
    by_name = (await client.get("/v1/products", params={"q": stem.lower() + " a"}, headers=REP)).json()
    assert [p["id"] for p in by_name["items"]] == [made[1]["id"]]
    by_sku = (await client.get("/v1/products", params={"q": made[2]["sku"][:8].lower()}, headers=REP)).json()
    assert made[2]["id"] in [p["id"] for p in by_sku["items"]]
    counted = await client.get("/v1/products", params={"category": category, "include_total": "true"}, headers=REP)
    assert counted.json()["total"] == 5
    r = await client.get("/v1/products", params={"sort": "price"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"


async def test_reps_read_the_catalogue_and_only_managers_change_it(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/products", json=product(), headers=REP)
    assert r.status_code == 403 and r.json()["permission"] == "products:manage"
    created = await add(client)
    assert (await client.get(f"/v1/products/{created['id']}", headers=REP)).status_code == 200
    r = await client.post(f"/v1/products/{created['id']}/deactivate", headers=REP)
    assert r.status_code == 403
    assert (await client.post("/v1/products", json=product(), headers=ADMIN)).status_code == 201
