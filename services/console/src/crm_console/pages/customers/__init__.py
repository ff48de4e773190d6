"""Customers: the list (every filter, four sort keys, cursor paging, tag chips), saved views, CSV
export and import (dry run row by row, then for real), and "new customer" with a duplicate warning
while typing. The customer page itself (/customers/{id}) is the customers_detail group's."""

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
