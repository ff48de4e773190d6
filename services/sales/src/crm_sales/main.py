"""The sales service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from crm_platform.clock import Clock
from crm_platform.contracts import sales as _sales_events  # noqa: F401  (registers the event types)
from crm_platform.service import ServiceKit
from crm_sales.adapters.repository import SalesRepository
from crm_sales.application.price_lists import PriceLists
from crm_sales.application.products import Products
from crm_sales.entrypoints import price_lists as price_lists_http
from crm_sales.entrypoints import products as products_http
from crm_sales.settings import SalesSettings

DESCRIPTION = """Sales (after the deal): the product catalogue (SKU unique in the organisation, unit,
category, active flag) and price lists per currency and customer tier, valid over a period, with prices
as decimal strings quantized to the currency's minor unit; the price that applies to a product for a
currency, a tier and a day. Every change is published on `crm.sales.v1`: see /asyncapi. Quotations,
contracts, payment plans, payments and service tickets are not built yet."""


def create_app(settings: SalesSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or SalesSettings()
    kit = ServiceKit(settings, title="CRM sales", description=DESCRIPTION, clock=clock)
    repo = SalesRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(repo.products)
    kit.outbox(repo.price_lists)
    products = Products(repo, kit.clock, kit.source)
    price_lists = PriceLists(repo, kit.clock, kit.source)

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()

    kit.on_startup(setup)
    # No consumers of its own yet: the catalogue needs nothing from other services (the kit still
    # keeps its read copy of the role definitions, in the group crm.sales.roles).
    app = kit.build_app([products_http.router, price_lists_http.router])
    app.state.products = products
    app.state.price_lists = price_lists
    app.state.repo = repo
    return app
