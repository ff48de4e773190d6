"""Tasks: my follow-ups due today, overdue or this week; complete or reschedule them in the list."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.tasks.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="tasks",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="tasks.menu", href="/tasks", permission=Permission("tasks:view"), order=30),),
)
