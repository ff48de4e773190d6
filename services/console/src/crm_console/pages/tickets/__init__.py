"""Service tickets (工单) over the sales service's ``/v1/tickets``: the list, opening one from a
customer's page, and one ticket with its SLA targets, replies, assignment, resolution, reopening,
return visit and closing."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.tickets.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="tickets",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="tickets.menu.tickets", href="/tickets", permission=Permission("tickets:view"), order=24),),
)
