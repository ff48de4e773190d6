"""Dashboards for managers and administrators: funnel, forecast against target, activity per rep
and channel, customers by a profile field and data quality, filtered by period and department,
each with its CSV."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.dashboards.routes import MANAGERS, router
from crm_console.registry import MenuEntry, PageGroup

GROUP = PageGroup(
    name="dashboards",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="dashboards.menu", href="/dashboards", permission=MANAGERS, order=60),),
)
