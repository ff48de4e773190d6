"""Customers: the list (filters, sort, cursor paging) and the detail page (a placeholder for now)."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.customers.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="customers",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="customers.menu", href="/customers", permission=Permission("customers:view"), order=10),),
)
