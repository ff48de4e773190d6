"""Pipeline: the kanban of a pipeline (drag and drop or a "move to" menu, stage requirements filled
in place, won/lost reasons) and the forecast against targets (managers and admins set targets)."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.pipeline.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="pipeline",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="pipeline.menu", href="/pipeline", permission=Permission("opportunities:view"), order=20),),
)
