"""The HTTP list of quotations (GET /v1/quotations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from crm_platform.auth import CurrentPrincipal
from crm_platform.openapi import problems
from crm_sales.application import quotation_list
from crm_sales.application.quotation_list import QuotationFilter
from crm_sales.entrypoints.quotations import App, QuotationOut, quotation_out


class QuotationPage(BaseModel):
    items: list[QuotationOut]
    next_cursor: str | None = None
    total: int | None = None


router = APIRouter(prefix="/v1/quotations", tags=["quotations"])


@router.get("", response_model=QuotationPage, summary="Quotations, filtered and paged", responses=problems(422))
async def list_quotations(
    params: Annotated[QuotationFilter, Query()], principal: CurrentPrincipal, app: App
) -> QuotationPage:
    """The quotations the caller sees (as ``GET /v1/quotations/{id}``: their own, and those of the
    departments their customers scope reaches), filtered by ``customer_id``, ``opportunity_id``,
    ``owner_id``, ``status`` (as shown: ``expired`` is an open one past ``valid_until``), ``currency``
    and ``q`` (the number starts with it); one sort key: ``-created_at`` (default), ``number``,
    ``valid_until`` or ``total`` (only with ``currency``); keyset pages (``cursor``, ``limit``,
    ``next_cursor``). Items are the current revisions (``/versions`` has the earlier ones)."""
    today = app.today()
    page = await quotation_list.page(app.repo, principal, params, today)
    return QuotationPage(
        items=[quotation_out(doc, today) for doc in page.items], next_cursor=page.next_cursor, total=page.total
    )
