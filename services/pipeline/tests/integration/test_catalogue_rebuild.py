"""``crm rebuild-copies pipeline`` rebuilds the pipeline's copy of the sales catalogue too: products
and price lists (with their entries and min_quantity) are dropped and refilled from crm.sales.v1 up
to what the service's consumer group committed, as its copies of customers and users are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from crm_pipeline.main import create_app
from crm_pipeline.settings import PipelineSettings
from crm_platform.contracts import sales as sev
from crm_platform.readmodels.rebuild import rebuild_read_copies
from crm_platform.replay import caught_up
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import database, eventually, running, service_settings, unique

NOW = datetime.now(UTC)


def product(name: str) -> sev.ProductSnapshot:
    return sev.ProductSnapshot(
        product_id=str(uuid.uuid4()),
        sku=unique("RB").upper(),
        name=name,
        unit="台",
        active=True,
        created_at=NOW,
        updated_at=NOW,
    )


async def stored(db: Any, name: str, ids: list[str]) -> list[Any]:
    return [d async for d in db[name].find({"_id": {"$in": ids}}).sort("_id")]


async def test_the_catalogue_copy_is_rebuilt_up_to_what_the_group_consumed(
    backend: Backend, producer: AIOKafkaProducer
) -> None:
    settings = PipelineSettings(**service_settings(backend, "pipeline"))
    feed = EventFeed(producer)
    kept, lost, later = product("保留"), product("丢失"), product("未消费")
    header = sev.PriceListSnapshot(
        price_list_id=str(uuid.uuid4()),
        name=unique("价目表"),
        currency="CNY",
        active=True,
        created_at=NOW,
        updated_at=NOW,
    )
    app = create_app(settings)
    async with database(backend.mongo_url, settings.mongo_database) as db:
        async with running(app, "http://pipeline.test"):
            for p in (kept, lost):
                await feed.send(sev.PRODUCT_CREATED, p.product_id, sev.ProductCreated(product=p), NOW)
            await feed.send(sev.PRICE_LIST_CREATED, header.price_list_id, sev.PriceListCreated(price_list=header), NOW)
            header.entry_count = 1
            entry = sev.PriceEntry(product_id=kept.product_id, unit_price="88.00", min_quantity="3", set_at=NOW)
            data = sev.PriceListEntrySet(price_list=header, entry=entry)
            await feed.send(sev.PRICE_LIST_ENTRY_SET, header.price_list_id, data, NOW)
            await eventually(
                lambda: db["sales_price_lists"].find_one({"_id": header.price_list_id, "source_version": 2}),
                timeout=30,
                message="the price list's entry in the copy",
            )
            await eventually(lambda: db["sales_products"].find_one({"_id": lost.product_id}), message="products")
            await caught_up(app.state.kit.consumers, timeout=60)  # committed, not only applied
        ids = [kept.product_id, lost.product_id]
        products, lists = (
            await stored(db, "sales_products", ids),
            await stored(db, "sales_price_lists", [header.price_list_id]),
        )
        assert lists[0]["entries"][kept.product_id] == {"unit_price": "88.00", "min_quantity": "3"}
        await feed.send(sev.PRODUCT_CREATED, later.product_id, sev.ProductCreated(product=later), NOW)  # after the stop
        await db["sales_products"].delete_one({"_id": lost.product_id})
        await db["sales_price_lists"].update_one({"_id": header.price_list_id}, {"$unset": {"entries": ""}})

        kit = create_app(settings).state.kit  # as `crm rebuild-copies` builds it: never started
        try:
            applied = await rebuild_read_copies(backend.kafka_bootstrap, kit.read_copies, kit.consumers)
        finally:
            await kit.mongo.close()

        assert applied["sales_products+sales_price_lists"] >= 4
        assert await stored(db, "sales_products", ids) == products
        assert await stored(db, "sales_price_lists", [header.price_list_id]) == lists
        assert await db["sales_products"].find_one({"_id": later.product_id}) is None  # consumed once started
