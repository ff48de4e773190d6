"""Contracts (合同) and their receivables (回款) over the sales service's ``/v1/contracts``: the
list, drafting from a won opportunity, an accepted quotation or a customer, editing a draft, and
one contract with its approval levels, status moves, payment plan, payments, refunds and invoices."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from crm_console.pages.contracts import edit, routes
from crm_console.registry import MenuEntry, PageGroup
from crm_platform.permissions import Permission

# The draft's edit route before the moves' ``/{id}/{action}``, which would take ``edit`` for a move.
router = APIRouter()
router.include_router(edit.router)
router.include_router(routes.router)

GROUP = PageGroup(
    name="contracts",
    router=router,
    directory=Path(__file__).parent,
    menu=(
        MenuEntry(
            label="contracts.menu.contracts", href="/contracts", permission=Permission("contracts:view"), order=23
        ),
    ),
)
