"""Price lists over HTTP against the real embedded store and broker: creating one (422s naming the
field), entries as decimal strings quantized to the currency (never floats, never negative), a
deactivated product refused, ETag/412/428, the events, the list's filters and pages, and the price
that applies (tier list first, then the default list, valid on the day; 404 when none)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from crm_platform.contracts import sales as sev
from crm_platform.testing.fixtures import auth, collecting

PROBLEM = "application/problem+json"
MANAGER = auth("prices-mgr", ["manager"], "/hq/east")
REP = auth("prices-rep", ["rep"], "/hq/east/t1")


async def new_product(client: httpx.AsyncClient) -> dict[str, Any]:
    body = {"sku": f"pl-{uuid.uuid4().hex[:10]}", "name": f"软件许可 {uuid.uuid4().hex[:6]}", "unit": "年"}
    r = await client.post("/v1/products", json=body, headers=MANAGER)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def new_list(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": f"价目表 {uuid.uuid4().hex[:6]}", "currency": "CNY", **fields}
    r = await client.post("/v1/price-lists", json=body, headers=MANAGER)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/v1/price-lists/{r.json()['id']}"
    data: dict[str, Any] = r.json()
    return data


async def put_price(
    client: httpx.AsyncClient, list_id: str, product_id: str, price: str, **fields: Any
) -> dict[str, Any]:
    url = f"/v1/price-lists/{list_id}/entries/{product_id}"
    r = await client.put(url, json={"unit_price": price, **fields}, headers=MANAGER)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def unique_currency_tier() -> str:
    """A tier no other test uses, so the price look-ups of this test see only its own lists."""
    return f"T{uuid.uuid4().hex[:8]}".upper()


async def test_create_a_list_and_set_prices_with_events(client: httpx.AsyncClient, sales_app: FastAPI) -> None:
    product = await new_product(client)
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        created = await new_list(client, tier=" vip ", valid_from="2026-01-01", valid_to="2026-12-31", currency="cny")
        assert created["tier"] == "VIP" and created["currency"] == "CNY" and created["entries"] == []
        listed = await put_price(client, created["id"], product["id"], "1280.5", min_quantity="10.0")
        assert listed["entries"] == [
            {
                "product_id": product["id"],
                "unit_price": "1280.50",
                "min_quantity": "10",
                "set_at": listed["entries"][0]["set_at"],
                "set_by": "prices-mgr",
            }
        ]
        assert listed["version"] == 2 and listed["entry_count"] == 1
        changed = await put_price(client, created["id"], product["id"], "1200")
        assert changed["entries"][0]["unit_price"] == "1200.00" and changed["version"] == 3
        same = await put_price(client, created["id"], product["id"], "1200.00")
        assert same["version"] == 3  # the same price again: no change, no event
        url = f"/v1/price-lists/{created['id']}/entries/{product['id']}"
        r = await client.delete(url, headers=MANAGER)
        assert r.status_code == 200 and r.json()["entries"] == [] and r.json()["version"] == 4
        assert (await client.delete(url, headers=MANAGER)).status_code == 404
        await events.wait_for(subject=created["id"], type=sev.PRICE_LIST_ENTRY_REMOVED.name)
    got = [e.event for e in events.matching(subject=created["id"])]
    assert [e["type"] for e in got] == [
        sev.PRICE_LIST_CREATED.name,
        sev.PRICE_LIST_ENTRY_SET.name,
        sev.PRICE_LIST_ENTRY_SET.name,
        sev.PRICE_LIST_ENTRY_REMOVED.name,
    ]
    assert [e["aggregateversion"] for e in got] == [1, 2, 3, 4]
    assert got[1]["data"]["entry"]["unit_price"] == "1280.50" and got[1]["data"]["previous"] is None
    assert got[2]["data"]["previous"]["unit_price"] == "1280.50" and got[2]["data"]["entry"]["unit_price"] == "1200.00"
    assert got[2]["data"]["price_list"]["entry_count"] == 1 and got[3]["data"]["price_list"]["entry_count"] == 0


async def test_prices_are_decimal_strings_that_fit_the_currency(client: httpx.AsyncClient) -> None:
    product = await new_product(client)
    cny, jpy = await new_list(client), await new_list(client, currency="JPY")
    bad = {
        "1280.505": "at most 2 decimals",
        "-1": "negative",
        "1,280.00": "thousands separators",
        "abc": "not an amount",
    }
    for price, why in bad.items():
        r = await client.put(
            f"/v1/price-lists/{cny['id']}/entries/{product['id']}", json={"unit_price": price}, headers=MANAGER
        )
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
        assert r.json()["errors"][0]["field"] == "unit_price" and why in r.json()["errors"][0]["reason"], r.text
    r = await client.put(
        f"/v1/price-lists/{cny['id']}/entries/{product['id']}", json={"unit_price": 1280.5}, headers=MANAGER
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "unit_price"  # a JSON number: refused
    r = await client.put(
        f"/v1/price-lists/{jpy['id']}/entries/{product['id']}", json={"unit_price": "1280.5"}, headers=MANAGER
    )
    assert r.status_code == 422 and "no decimals" in r.json()["errors"][0]["reason"]
    assert (await put_price(client, jpy["id"], product["id"], "1280"))["entries"][0]["unit_price"] == "1280"
    r = await client.put(
        f"/v1/price-lists/{cny['id']}/entries/{product['id']}",
        json={"unit_price": "1", "min_quantity": "0"},
        headers=MANAGER,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "min_quantity"
    after = (await client.get(f"/v1/price-lists/{cny['id']}", headers=REP)).json()
    assert after["entries"] == [] and after["version"] == 1  # nothing written by the refusals


async def test_bad_lists_are_422_naming_each_field(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/price-lists",
        json={"name": " ", "currency": "RMB", "valid_from": "2026-12-01", "valid_to": "2026-11-01"},
        headers=MANAGER,
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert {e["field"] for e in r.json()["errors"]} == {"name", "currency", "valid_to"}, r.text
    product = await new_product(client)
    listed = await new_list(client, valid_from="2026-06-01")
    await put_price(client, listed["id"], product["id"], "10")
    url = f"/v1/price-lists/{listed['id']}"
    r = await client.patch(url, json={"currency": "USD"}, headers={**MANAGER, "If-Match": '"2"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency"
    r = await client.patch(url, json={"valid_to": "2026-05-31"}, headers={**MANAGER, "If-Match": '"2"'})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "valid_to"


async def test_patch_needs_if_match_and_refuses_a_stale_one(client: httpx.AsyncClient, sales_app: FastAPI) -> None:
    listed = await new_list(client, tier="B")
    url = f"/v1/price-lists/{listed['id']}"
    assert (await client.patch(url, json={"active": False}, headers=MANAGER)).status_code == 428
    async with collecting(sales_app.state.kit.settings.kafka_bootstrap_servers, [sev.TOPIC]) as events:
        r = await client.patch(url, json={"active": False, "tier": None}, headers={**MANAGER, "If-Match": '"1"'})
        assert r.status_code == 200 and r.json()["tier"] is None and r.headers["etag"] == '"2"', r.text
        (got,) = await events.wait_for(subject=listed["id"], type=sev.PRICE_LIST_UPDATED.name)
    changes = {c["field"]: (c["old"], c["new"]) for c in got.event["data"]["changes"]}
    assert changes == {"active": (True, False), "tier": ("B", None)}
    r = await client.patch(url, json={"name": "x"}, headers={**MANAGER, "If-Match": '"1"'})
    assert r.status_code == 412 and r.headers["etag"] == '"2"'
    product = await new_product(client)
    r = await client.put(
        f"{url}/entries/{product['id']}", json={"unit_price": "5"}, headers={**MANAGER, "If-Match": '"1"'}
    )
    assert r.status_code == 412


async def test_a_deactivated_or_unknown_product_goes_on_no_list(client: httpx.AsyncClient) -> None:
    product = await new_product(client)
    listed = await new_list(client)
    await client.post(f"/v1/products/{product['id']}/deactivate", headers=MANAGER)
    url = f"/v1/price-lists/{listed['id']}/entries/{product['id']}"
    r = await client.put(url, json={"unit_price": "10"}, headers=MANAGER)
    assert r.status_code == 409 and r.json()["type"] == "urn:crm:problem:product-inactive", r.text
    assert product["sku"] in r.json()["detail"]
    r = await client.put(f"/v1/price-lists/{listed['id']}/entries/nope", json={"unit_price": "1"}, headers=MANAGER)
    assert r.status_code == 404
    r = await client.put(f"/v1/price-lists/nope/entries/{product['id']}", json={"unit_price": "1"}, headers=MANAGER)
    assert r.status_code == 409  # the product is checked first: deactivated
    assert (await client.get(f"/v1/price-lists/{listed['id']}", headers=REP)).json()["version"] == 1


async def test_entries_set_at_once_on_one_list_are_all_kept(client: httpx.AsyncClient) -> None:
    listed = await new_list(client)
    products = [await new_product(client) for _ in range(6)]
    answers = await asyncio.gather(
        *(
            client.put(
                f"/v1/price-lists/{listed['id']}/entries/{p['id']}", json={"unit_price": f"{i}.5"}, headers=MANAGER
            )
            for i, p in enumerate(products, start=1)
        )
    )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    after = (await client.get(f"/v1/price-lists/{listed['id']}", headers=REP)).json()
    assert after["version"] == 7 and after["entry_count"] == 6
    assert {e["product_id"]: e["unit_price"] for e in after["entries"]} == {
        p["id"]: f"{i}.50" for i, p in enumerate(products, start=1)
    }


async def test_the_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    tier = unique_currency_tier()
    made = [await new_list(client, tier=tier, name=f"{tier} {n}", valid_from=f"2026-0{n}-01") for n in (3, 1, 2)]
    # Two creates in one millisecond tie on created_at: the id breaks the tie.
    created = sorted(range(3), key=lambda i: (made[i]["created_at"], made[i]["id"]))
    for sort, order in (("name", [1, 2, 0]), ("-valid_from", [0, 2, 1]), ("created_at", created)):
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"tier": tier.lower(), "sort": sort, "limit": 2}
        while True:
            r = await client.get("/v1/price-lists", params=params, headers=REP)
            assert r.status_code == 200, r.text
            seen += r.json()["items"]
            if not r.json()["next_cursor"]:
                break
            params["cursor"] = r.json()["next_cursor"]
        assert [s["id"] for s in seen] == [made[i]["id"] for i in order], sort
        assert all(s["entries"] is None and s["entry_count"] == 0 for s in seen)
    default = await new_list(client, name=f"{tier} default")
    r = await client.get("/v1/price-lists", params={"tier": "default", "sort": "-created_at"}, headers=REP)
    assert r.status_code == 200 and r.json()["items"][0]["id"] == default["id"], r.text
    assert all(item["tier"] is None for item in r.json()["items"])
    r = await client.get("/v1/price-lists", params={"currency": "xyz"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency"
    r = await client.get("/v1/price-lists", params={"tier": "a\x01b"}, headers=REP)
    assert r.status_code == 422, r.text


async def test_the_price_that_applies(client: httpx.AsyncClient) -> None:
    """A currency no other test prices in (KWD), so the default lists seen are this test's own."""
    product, other = await new_product(client), await new_product(client)
    tier = unique_currency_tier()
    default = await new_list(client, currency="KWD", name="默认 2026", valid_from="2026-01-01")
    newer = await new_list(client, currency="KWD", name="默认 Q4", valid_from="2026-10-01", valid_to="2026-12-31")
    tiered = await new_list(client, currency="KWD", tier=tier, valid_from="2026-01-01")
    await put_price(client, default["id"], product["id"], "100")
    await put_price(client, newer["id"], product["id"], "95.5")
    await put_price(client, tiered["id"], product["id"], "80", min_quantity="10")
    await put_price(client, default["id"], other["id"], "7.125")

    async def price(**params: Any) -> httpx.Response:
        return await client.get("/v1/prices", params={"currency": "kwd", **params}, headers=REP)

    r = await price(product_id=product["id"], tier=tier.lower(), on="2026-06-01")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit_price"] == "80.000" and body["price_list_id"] == tiered["id"] and body["price_list_tier"] == tier
    assert body["min_quantity"] == "10" and body["sku"] == product["sku"] and body["unit"] == "年"
    # The tier's price needs 10: for 5 the default list's price applies.
    r = await price(product_id=product["id"], tier=tier, on="2026-06-01", quantity="5")
    assert r.json()["price_list_id"] == default["id"] and r.json()["unit_price"] == "100.000"
    # In Q4 the newer default list supersedes the year's; another tier gets the default.
    r = await price(product_id=product["id"], tier="NOBODY", on="2026-11-11")
    assert r.json()["price_list_id"] == newer["id"] and r.json()["unit_price"] == "95.500"
    assert r.json()["tier"] == "NOBODY" and r.json()["price_list_tier"] is None
    r = await price(product_id=other["id"], tier=tier, on="2026-11-11")
    assert r.json()["price_list_id"] == default["id"] and r.json()["unit_price"] == "7.125"
    # Before every list's validity: none applies.
    r = await price(product_id=product["id"], on="2025-12-31")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["type"] == "urn:crm:problem:no-price" and product["sku"] in r.json()["detail"]
    # A deactivated list gives no price.
    await client.patch(
        f"/v1/price-lists/{tiered['id']}", json={"active": False}, headers={**MANAGER, "If-Match": '"2"'}
    )
    r = await price(product_id=product["id"], tier=tier, on="2026-06-01")
    assert r.json()["price_list_id"] == default["id"]
    assert (await price(product_id="nope")).status_code == 404
    r = await client.get("/v1/prices", params={"product_id": product["id"], "currency": "RMB"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency"
    r = await client.get("/v1/prices", params={"currency": "CNY"}, headers=REP)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "product_id"


async def test_reps_read_price_lists_and_only_managers_change_them(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/price-lists", json={"name": "x", "currency": "CNY"}, headers=REP)
    assert r.status_code == 403 and r.json()["permission"] == "products:manage"
    listed = await new_list(client)
    assert (await client.get(f"/v1/price-lists/{listed['id']}", headers=REP)).status_code == 200
    product = await new_product(client)
    r = await client.put(
        f"/v1/price-lists/{listed['id']}/entries/{product['id']}", json={"unit_price": "1"}, headers=REP
    )
    assert r.status_code == 403
