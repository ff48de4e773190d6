"""Sales (销售): the product catalogue and its price lists, quotations (报价单) with their revisions,
approval, sending and PDF, and an opportunity's line items, over the sales and pipeline services."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.sales.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="sales",
    router=router,
    directory=Path(__file__).parent,
    menu=(
        MenuEntry(
            label="sales.menu.quotations", href="/quotations", permission=Permission("quotations:view"), order=21
        ),
        MenuEntry(label="sales.menu.products", href="/products", permission=Permission("products:view"), order=22),
    ),
)
