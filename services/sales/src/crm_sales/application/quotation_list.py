"""The quotation list (``GET /v1/quotations``): filters, sorts, keyset pages, and the visibility of
``GET /v1/quotations/{id}`` (the owner, and those whose customers scope reaches the quotation's
department) as a store condition.

Every page is index walks: one query per ``$or`` branch (the department scope's two branches, the
four open statuses of ``expired``, the cursor's tie branch), each served by a ``(<filter>, s.<sort>,
s.id)`` index (adapters.quotations.quotation_indexes), pinned by
tests/integration/test_quotation_list_plans.py.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field

from crm_platform.auth import Principal
from crm_platform.errors import ValidationFailed
from crm_platform.listing import Page, PageParams, all_of, fetch_page
from crm_platform.sortkeys import TIEBREAK
from crm_sales.adapters.quotations import QuotationRepository
from crm_sales.domain import money
from crm_sales.domain import quotation_list as rules

Document = dict[str, Any]
MODULE = "customers"  # as GET /v1/quotations/{id}: quotations follow their customers' data scope
LIST_PROJECTION = {"outbox": 0, "outbox_rev": 0, "outbox_pending_since": 0, "previous": 0}
Status = Literal["draft", "pending_approval", "approved", "rejected", "sent", "accepted", "declined", "expired"]


def visibility(principal: Principal, owner_id: str | None) -> Document:
    """The caller's visibility, for a list already limited to ``owner_id`` (None: not limited).

    With an owner asked, the branch "owned by me" either holds for every row (I am that owner) or
    for none, and is left out: two equalities on ``owner_id`` do not merge into one condition, and
    the embedded store then filtered every quotation in Python."""
    seen = principal.mongo_visibility(module=MODULE)
    if owner_id is None or not seen:
        return seen
    if owner_id == principal.user_id and principal.scope(MODULE) is not None:
        return {}
    branches = [b for b in seen.get("$or", [seen]) if "owner_id" not in b]
    if not branches:
        return {"_id": None}  # matches nothing, through the _id index
    return branches[0] if len(branches) == 1 else {"$or": branches}


class QuotationFilter(PageParams):
    customer_id: str | None = Field(default=None, max_length=100)
    opportunity_id: str | None = Field(default=None, max_length=100)
    owner_id: str | None = Field(default=None, max_length=100)
    status: Status | None = Field(
        default=None, description="As shown: expired is an open quotation (draft … sent) past valid_until."
    )
    currency: str | None = Field(
        default=None, max_length=10, description="Only this currency (required by sort=total)."
    )
    q: str | None = Field(default=None, min_length=1, max_length=40, description="The number starts with this.")
    sort: str | None = Field(
        default=None,
        description="created_at (default: -created_at), number, valid_until, or total (with currency); '-' descending.",
    )

    def paging(self) -> PageParams:
        return PageParams(**self.model_dump(include={"sort", "cursor", "limit", "include_total"}))

    def conditions(self, principal: Principal, today: date) -> Document:
        out: Document = {}
        for name in ("customer_id", "opportunity_id", "owner_id"):
            value = getattr(self, name)
            if value is not None and value.strip():
                out[name] = value.strip()
        if self.currency is not None:
            try:
                out["currency"] = money.currency_code(self.currency)
            except money.InvalidMoney as exc:
                raise ValidationFailed.for_field("currency", str(exc), "query") from exc
        keys = [p.strip().lstrip("+-") for p in (self.sort or "").split(",") if p.strip()]
        if len(keys) > 1:  # each sort has its own index (with the id after it); two keys would sort every match
            raise ValidationFailed.for_field("sort", "one sort key (created_at, number, valid_until or total)", "query")
        sorts_on_total = keys == ["total"]
        if sorts_on_total and "currency" not in out:
            raise ValidationFailed.for_field(
                "sort", "total compares amounts within one currency: give currency too", "query"
            )
        if self.q is not None and self.q.strip():
            out["number"] = rules.number_prefix(self.q)
        clauses = [out, visibility(principal, out.get("owner_id"))]
        if self.status is not None:
            clauses.append(rules.status_conditions(self.status, today))
        return all_of(*clauses)


async def page(repo: QuotationRepository, principal: Principal, filters: QuotationFilter, today: date) -> Page:
    return await fetch_page(
        repo.quotations,
        filters.conditions(principal, today),
        filters.paging(),
        sort_fields=rules.SORT_FIELDS,
        default_sort=rules.DEFAULT_SORT,
        projection=LIST_PROJECTION,
        tiebreak=TIEBREAK,
        tie_follows_last=True,
    )
