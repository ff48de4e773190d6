"""The sales page group's routes: products and price lists (catalogue.py), quotations
(quotations.py) and an opportunity's line items (lines.py)."""

from __future__ import annotations

from fastapi import APIRouter

from crm_console.pages.sales.catalogue import catalogue_router
from crm_console.pages.sales.lines import lines_router
from crm_console.pages.sales.quotations import quotations_router

router = APIRouter()
router.include_router(catalogue_router)  # /products, /price-lists
router.include_router(quotations_router)  # /quotations
router.include_router(lines_router)  # /pipeline/opportunities/{id}/lines
