"""The pipeline page group's routes: the kanban (board.py), targets and forecast (forecast.py) and an
opportunity's new/edit form (opportunity.py)."""

from __future__ import annotations

from fastapi import APIRouter

from crm_console.pages.pipeline.board import board_router
from crm_console.pages.pipeline.forecast import forecast_router
from crm_console.pages.pipeline.opportunity import opportunity_router

router = APIRouter()
router.include_router(forecast_router)  # /forecast before the board's routes
router.include_router(opportunity_router)  # /opportunities/new, /opportunities/{id}/edit
router.include_router(board_router)
