"""Export approval: my export requests (waiting, answered, the download once approved), and for
approvers the pending requests they may answer, approved or rejected with a comment."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.exports.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="exports",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="exports.menu", href="/export-requests", permission=Permission.customers_export, order=25),),
)
