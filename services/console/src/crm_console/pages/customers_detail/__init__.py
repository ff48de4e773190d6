"""One customer's page (客户 360): profile, contacts, opportunities, follow-ups, tasks, feedback,
history and timeline; editing with If-Match; lock, copy, delete/restore, merge; previous/next
within the list it was opened from; logging a follow-up or creating a task from the page.

No menu entry: it is reached from the customers list (``/customers/{id}?from=<list query>``).
"""

from __future__ import annotations

from pathlib import Path

from crm_console.pages.customers_detail.routes import router
from crm_console.registry import PageGroup

GROUP = PageGroup(name="customers_detail", router=router, directory=Path(__file__).parent)
