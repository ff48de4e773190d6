"""Lead scoring (线索评分) for administrators: the scoring rules (edited with If-Match) and the model
trained on the organisation's history (its AUC and samples; too little history said clearly)."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.leadscoring.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="leadscoring",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="leadscoring.menu", href="/leadscoring", permission=Permission("leads:scoring"), order=62),),
)
