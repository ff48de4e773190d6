"""My recycle bin: the customers I moved to the recycle bin myself, each restorable (the customers
service's ``/v1/my-recycle-bin``). Managers and admins also have the whole bin in the customers list."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.recycle_bin.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="recycle_bin",
    router=router,
    directory=Path(__file__).parent,
    menu=(
        MenuEntry(label="recycle_bin.menu", href="/my-recycle-bin", permission=Permission.customers_delete, order=70),
    ),
)
