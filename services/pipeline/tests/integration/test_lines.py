"""Opportunity line items from the sales catalogue (issue 18).

Products and price lists reach the pipeline only as ``crm.sales.v1`` events, produced here on the
test broker as the sales service would; PUT /v1/opportunities/{id}/lines prices each line from
that copy (or takes the price given), and the amount follows the lines' total when asked.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from crm_platform.contracts import sales as sev
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import auth, eventually, unique
from crm_platform.testing.roles import role_event

NOW = datetime.now(UTC)


class Sales:
    """The sales service's events, as it would publish them (versions per product / price list)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.feed = EventFeed(producer)
        self.products: dict[str, sev.ProductSnapshot] = {}

    async def product(self, name: str, unit: str = "台") -> sev.ProductSnapshot:
        product = sev.ProductSnapshot(
            product_id=str(uuid.uuid4()),
            sku=unique("SKU").upper(),
            name=name,
            unit=unit,
            active=True,
            created_at=NOW,
            updated_at=NOW,
        )
        self.products[product.product_id] = product
        await self.feed.send(sev.PRODUCT_CREATED, product.product_id, sev.ProductCreated(product=product), NOW)
        return product

    async def deactivate(self, product: sev.ProductSnapshot) -> None:
        product.active = False
        await self.feed.send(sev.PRODUCT_DEACTIVATED, product.product_id, sev.ProductDeactivated(product=product), NOW)

    async def price_list(self, currency: str = "CNY", tier: str | None = None, **fields: Any) -> sev.PriceListSnapshot:
        header = sev.PriceListSnapshot(
            price_list_id=str(uuid.uuid4()),
            name=unique("价目表"),
            currency=currency,
            tier=tier,
            active=True,
            created_at=NOW,
            updated_at=NOW,
            **fields,
        )
        await self.feed.send(sev.PRICE_LIST_CREATED, header.price_list_id, sev.PriceListCreated(price_list=header), NOW)
        return header

    async def price(
        self,
        header: sev.PriceListSnapshot,
        product: sev.ProductSnapshot,
        unit_price: str,
        min_quantity: str | None = None,
    ) -> None:
        header.entry_count += 1
        entry = sev.PriceEntry(
            product_id=product.product_id, unit_price=unit_price, min_quantity=min_quantity, set_at=NOW
        )
        data = sev.PriceListEntrySet(price_list=header, entry=entry)
        await self.feed.send(sev.PRICE_LIST_ENTRY_SET, header.price_list_id, data, NOW)


async def product_arrives(db: Any, product: sev.ProductSnapshot, version: int, **expected: Any) -> None:
    query = {"_id": product.product_id, "source_version": version, **expected}
    await eventually(lambda: db["sales_products"].find_one(query), timeout=30, message=f"product {product.sku}")


async def price_list_arrives(db: Any, header: sev.PriceListSnapshot, version: int) -> None:
    query = {"_id": header.price_list_id, "source_version": version}
    await eventually(lambda: db["sales_price_lists"].find_one(query), timeout=30, message=f"price list {header.name}")


async def test_lines_priced_from_the_catalogue_and_the_amount_following_them(
    client: Any,
    producer: Any,
    pipeline_db: Any,
    pipeline_events: Any,
    team: Any,
    customer_of: Any,
    feed: Any,
    arrives: Any,
    new_opportunity: Any,
    expect_problem: Any,
) -> None:
    sales = Sales(producer)
    server = await sales.product("云服务器 标准版")
    disk = await sales.product("云硬盘", unit="块")
    unpriced = await sales.product("未定价")
    default = await sales.price_list()
    vip = await sales.price_list(tier="VIP")
    expired = await sales.price_list(tier="VIP", valid_to=date.today() - timedelta(days=2))
    await sales.price(default, server, "1280.00")
    await sales.price(default, disk, "0.35")
    await sales.price(vip, server, "1000.00")
    await sales.price(expired, disk, "0.01")
    await product_arrives(pipeline_db, unpriced, 1)
    await price_list_arrives(pipeline_db, default, 3)
    await price_list_arrives(pipeline_db, vip, 2)
    await price_list_arrives(pipeline_db, expired, 2)

    customer = await customer_of(team.rep)
    await feed.updated(customer, tier="VIP")
    await arrives(customer, tier="VIP")
    opp = await new_opportunity(team.rep, customer, amount="5000.00")
    url = f"/v1/opportunities/{opp['id']}/lines"
    body = {
        "lines": [
            {"product_id": server.product_id, "quantity": "3", "discount_percent": "10"},
            {"product_id": disk.product_id, "quantity": "0.5", "discount_percent": "10"},
            {"product_id": unpriced.product_id, "quantity": "1", "unit_price": "99.99"},
        ]
    }
    # If-Match is required, and must be current.
    expect_problem(await client.put(url, json=body, headers=team.rep.headers), 428)
    expect_problem(await client.put(url, json=body, headers=team.rep.match('"9"')), 412)

    r = await client.put(url, json=body, headers=team.rep.match(f'"{opp["version"]}"'))
    assert r.status_code == 200, r.text
    out = r.json()
    assert r.headers["ETag"] == f'"{opp["version"] + 1}"'
    server_line, disk_line, typed = out["lines"]
    # The VIP list prices the server; the disk is only on the default list (the VIP one that had it expired).
    assert server_line == {
        "product_id": server.product_id,
        "sku": server.sku,
        "name": "云服务器 标准版",
        "unit": "台",
        "quantity": "3",
        "unit_price": "1000.00",
        "discount_percent": "10",
        "line_total": "2700.00",
        "price_list_id": vip.price_list_id,
    }
    assert (disk_line["unit_price"], disk_line["line_total"], disk_line["unit"]) == ("0.35", "0.16", "块")  # 0.1575
    assert disk_line["price_list_id"] == default.price_list_id
    assert (typed["unit_price"], typed["line_total"], typed["price_list_id"]) == ("99.99", "99.99", None)
    assert out["lines_total"] == "2800.15"
    assert out["amount"] == "5000.00" and out["amount_follows_lines"] is False  # typed amount stays

    # The amount follows the lines from now on, in the same write and the same event.
    r = await client.put(url, json={**body, "amount_follows_lines": True}, headers=team.rep.match(r.headers["ETag"]))
    assert r.status_code == 200, r.text
    assert r.json()["amount"] == "2800.15" and r.json()["amount_follows_lines"] is True
    r = await client.put(url, json={"lines": body["lines"][:1]}, headers=team.rep.match(r.headers["ETag"]))
    assert r.json()["amount"] == "2700.00" and r.json()["weighted_amount"] is not None
    # While it follows, an amount typed in is refused, naming the field.
    patch = await client.patch(
        f"/v1/opportunities/{opp['id']}", json={"amount": "1.00"}, headers=team.rep.match(r.headers["ETag"])
    )
    assert [e["field"] for e in expect_problem(patch, 422)["errors"]] == ["amount"]

    shown = await client.get(f"/v1/opportunities/{opp['id']}", headers=team.rep.headers)
    assert shown.json()["lines"] == r.json()["lines"] and shown.json()["lines_total"] == "2700.00"

    events = await pipeline_events.wait_for(3, type="crm.opportunity.updated", subject=opp["id"])
    last = events[-1].event["data"]
    assert last["opportunity"]["lines_total"] == "2700.00" and last["opportunity"]["amount"] == "2700.00"
    assert last["opportunity"]["lines"][0]["sku"] == server.sku
    assert {c["field"] for c in last["changes"]} == {"lines", "lines_total", "amount"}
    following = events[1].event["data"]
    assert {c["field"] for c in following["changes"]} == {"amount_follows_lines", "amount"}

    history = await client.get(f"/v1/opportunities/{opp['id']}/history", headers=team.rep.headers)
    assert history.status_code == 200, history.text


async def test_unknown_inactive_and_unpriced_products_are_refused_naming_the_line(
    client: Any, producer: Any, pipeline_db: Any, team: Any, new_opportunity: Any, expect_problem: Any
) -> None:
    sales = Sales(producer)
    retired = await sales.product("下架产品")
    await sales.deactivate(retired)
    unpriced = await sales.product("无价产品")
    await product_arrives(pipeline_db, retired, 2, active=False)
    await product_arrives(pipeline_db, unpriced, 1)
    opp = await new_opportunity(team.rep, currency="USD")
    url = f"/v1/opportunities/{opp['id']}/lines"
    body = {
        "lines": [
            {"product_id": str(uuid.uuid4()), "quantity": "1", "unit_price": "1.00"},
            {"product_id": retired.product_id, "quantity": "1", "unit_price": "1.00"},
            {"product_id": unpriced.product_id, "quantity": "1"},
            {"product_id": unpriced.product_id, "quantity": "0", "unit_price": "1.00"},
            {"product_id": unpriced.product_id, "quantity": "1", "unit_price": "1.00", "discount_percent": "101"},
            {"product_id": unpriced.product_id, "quantity": "1", "unit_price": "1.001"},
        ]
    }
    r = await client.put(url, json=body, headers=team.rep.match(f'"{opp["version"]}"'))
    fields = [e["field"] for e in expect_problem(r, 422)["errors"]]
    assert fields == [
        "lines[0].product_id",
        "lines[1].product_id",
        "lines[2].unit_price",
        "lines[3].quantity",
        "lines[4].discount_percent",
        "lines[5].unit_price",
    ]
    # Nothing was written: the version is unchanged.
    same = await client.get(f"/v1/opportunities/{opp['id']}", headers=team.rep.headers)
    assert same.json()["version"] == opp["version"] and same.json()["lines"] == []
    r = await client.put(
        url, json={"lines": [{"product_id": "x", "quantity": "1"}] * 201}, headers=team.rep.match('"1"')
    )
    expect_problem(r, 422)


async def test_a_stale_catalogue_event_changes_nothing(producer: Any, pipeline_db: Any) -> None:
    sales = Sales(producer)
    product = await sales.product("旧名")
    first = sales.feed.sent[-1]
    product.name = "新名"
    await sales.feed.send(sev.PRODUCT_UPDATED, product.product_id, sev.ProductUpdated(product=product, changes=[]), NOW)
    await product_arrives(pipeline_db, product, 2, name="新名")
    await sales.feed.resend(first)  # a redelivery of version 1
    marker = await sales.product("之后")  # same consumer group: once this is in, the resend was handled
    await product_arrives(pipeline_db, marker, 1)
    copy = await pipeline_db["sales_products"].find_one({"_id": product.product_id})
    assert copy["name"] == "新名" and copy["source_version"] == 2


ROLE = f"lines-staff-{uuid.uuid4().hex[:6]}"


class Staff:
    """A member of the rep's department holding only the role that hides the amount."""

    def __init__(self, dept: str) -> None:
        self.id = unique("staff")
        self.dept = dept
        self.headers = auth(self.id, [ROLE], department_path=dept)


async def test_a_role_that_hides_the_amount_sees_no_line_prices(
    client: Any, producer: Any, pipeline_db: Any, pipeline_app: FastAPI, team: Any, customer_of: Any
) -> None:
    permissions = ["account:self", "opportunities:view", "opportunities:create", "opportunities:edit"]
    fields = {"opportunities": {"amount": "hidden"}}
    await pipeline_app.state.kit.roles.apply(role_event(ROLE, 1, permissions=permissions, fields=fields))
    staff = Staff(team.rep.dept)
    customer = await customer_of(staff)
    sales = Sales(producer)
    product = await sales.product("机柜")
    await product_arrives(pipeline_db, product, 1)
    r = await client.post(
        "/v1/opportunities",
        json={"customer_id": customer.id, "name": unique("商机"), "owner_id": staff.id, "department_path": staff.dept},
        headers=team.manager.headers,
    )
    assert r.status_code == 201, r.text
    opp = r.json()
    line = {"product_id": product.product_id, "quantity": "2", "unit_price": "4321.00"}
    r = await client.put(
        f"/v1/opportunities/{opp['id']}/lines",
        json={"lines": [line], "amount_follows_lines": True},
        headers=team.manager.match(f'"{opp["version"]}"'),
    )
    assert r.status_code == 200, r.text
    assert r.json()["amount"] == "8642.00"
    shown = await client.get(f"/v1/opportunities/{opp['id']}", headers=staff.headers)
    assert shown.status_code == 200, shown.text
    assert "lines_total" not in shown.json() and "4321" not in shown.text and "8642" not in shown.text
    assert shown.json()["lines"][0]["quantity"] == "2" and shown.json()["lines"][0]["sku"] == product.sku
    # Nor in the history (the lines go whole there, as in webhooks: events carry the prices).
    history = await client.get(f"/v1/opportunities/{opp['id']}/history", headers=staff.headers)
    assert history.status_code == 200, history.text
    assert "4321" not in history.text and "8642" not in history.text
    # The flag sets the amount: a role that may not write the amount may not turn it on.
    r = await client.put(
        f"/v1/opportunities/{opp['id']}/lines",
        json={"lines": [], "amount_follows_lines": True},
        headers={**staff.headers, "If-Match": shown.headers["ETag"]},
    )
    assert r.status_code == 403, r.text


async def test_a_price_lists_min_quantity_is_enforced_naming_the_lines_quantity(
    client: Any, producer: Any, pipeline_db: Any, team: Any, new_opportunity: Any, expect_problem: Any
) -> None:
    """A line priced from the lists takes a list whose entry's ``min_quantity`` its quantity
    reaches (a volume list gives way to the next, as the sales service resolves prices); below every
    list's minimum it is 422 at ``lines[i].quantity``. A price given with the line is the caller's."""
    sales = Sales(producer)
    server = await sales.product("最小量产品")
    bulk_only = await sales.product("批量产品", unit="箱")
    regular = await sales.price_list(valid_from=date.today() - timedelta(days=30))
    volume = await sales.price_list(valid_from=date.today() - timedelta(days=1))  # newer: tried first
    await sales.price(regular, server, "100.00")
    await sales.price(volume, server, "90.00", min_quantity="10")
    await sales.price(volume, bulk_only, "5.00", min_quantity="12.5")
    await price_list_arrives(pipeline_db, regular, 2)
    await price_list_arrives(pipeline_db, volume, 3)
    await product_arrives(pipeline_db, bulk_only, 1)
    opp = await new_opportunity(team.rep)
    url = f"/v1/opportunities/{opp['id']}/lines"

    lines = [
        {"product_id": server.product_id, "quantity": "5"},
        {"product_id": server.product_id, "quantity": "10"},
        {"product_id": bulk_only.product_id, "quantity": "12"},
    ]
    r = await client.put(url, json={"lines": lines}, headers=team.rep.match(f'"{opp["version"]}"'))
    [error] = expect_problem(r, 422)["errors"]
    assert error["field"] == "lines[2].quantity" and "12.5" in error["reason"] and "箱" in error["reason"], error
    same = await client.get(f"/v1/opportunities/{opp['id']}", headers=team.rep.headers)
    assert same.json()["version"] == opp["version"] and same.json()["lines"] == []

    lines[2] = {"product_id": bulk_only.product_id, "quantity": "12.5"}
    lines.append({"product_id": bulk_only.product_id, "quantity": "1", "unit_price": "6.00"})  # negotiated
    r = await client.put(url, json={"lines": lines}, headers=team.rep.match(f'"{opp["version"]}"'))
    assert r.status_code == 200, r.text
    got = [(line["unit_price"], line["price_list_id"]) for line in r.json()["lines"]]
    assert got == [
        ("100.00", regular.price_list_id),
        ("90.00", volume.price_list_id),
        ("5.00", volume.price_list_id),
        ("6.00", None),
    ]
