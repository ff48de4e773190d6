"""Administration: users (create, roles, department, deactivate), departments as a tree (create,
rename, move), pipelines with their stages and stage requirements, pool rules with a preview of
what they would take back, webhooks with their deliveries and replay."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.admin.routes import ADMINS, router
from crm_console.registry import MenuEntry, PageGroup

GROUP = PageGroup(
    name="admin",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="admin.menu", href="/admin", permission=ADMINS, order=90),),
)
