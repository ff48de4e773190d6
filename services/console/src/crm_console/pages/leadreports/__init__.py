"""Lead reports (线索报表): the lead funnel (lead → qualified → customer → opportunity → won), the
leads per source and per campaign, for a period, over the reporting service."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.leadreports.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="leadreports",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="leadreports.menu", href="/leadreports", permission=Permission("reports:view"), order=61),),
)
