"""The public pool (公海): claim a customer (and hear who won a race), and my customers with the
days left before each returns to the pool."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.pool.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="pool",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="pool.menu", href="/pool", permission=Permission("pool:claim"), order=40),),
)
