"""Campaigns (市场活动): the list, planning and changing one, its cost entries with the running total,
and its target segment (customer tags and list filters) with a link to the customers it lists."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.campaigns import webform  # noqa: F401  (its routes join the group's router)
from crm_console.pages.campaigns.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="campaigns",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="campaigns.menu", href="/campaigns", permission=Permission("campaigns:view"), order=17),),
)
