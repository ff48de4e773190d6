"""Leads (线索): my leads and those I reach, the lead pool with its claim, a new lead, one lead with
its edit form, status moves, release, assignment, history and conversion."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.leads.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="leads",
    router=router,
    directory=Path(__file__).parent,
    menu=(
        MenuEntry(label="leads.menu", href="/leads", permission=Permission("leads:view"), order=15),
        MenuEntry(label="leads.pool.menu", href="/leads/pool", permission=Permission("leads:claim"), order=16),
    ),
)
