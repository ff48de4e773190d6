"""The audit log for holders of ``audit:view`` (administrators): search by who, what, when and from
where, newest first in keyset pages, and the search as a CSV file."""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.audit.routes import router
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

GROUP = PageGroup(
    name="audit",
    router=router,
    directory=Path(__file__).parent,
    menu=(MenuEntry(label="audit.menu", href="/audit", permission=Permission.audit_view, order=95),),
)
