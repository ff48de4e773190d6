"""Lead assignment rules (线索分配规则): the rules that give pool leads to people, listed in the order
they are tried, created, changed (If-Match) and deleted, for ``leads:rules`` holders."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.leadrules.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="leadrules",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="leadrules.menu", href="/leadrules", permission=Permission("leads:rules"), order=63),),
)
