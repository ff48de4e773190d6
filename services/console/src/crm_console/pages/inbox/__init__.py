"""Inbox: my notifications (mark one or all read), the unread badge in the header (polled), and
which kinds also come by email."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.inbox.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="inbox",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="inbox.menu", href="/inbox", permission=Permission.inbox_use, order=50),),
)
