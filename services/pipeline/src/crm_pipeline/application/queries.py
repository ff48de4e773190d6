"""List views of opportunities: filters, multi-key sort, keyset cursors."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from crm_pipeline.adapters.repository import LIST_PROJECTION, Repository
from crm_pipeline.domain import money
from crm_pipeline.domain.opportunities import OPPORTUNITIES, SORT_FIELDS
from crm_platform.auth import Principal
from crm_platform.customfields import FieldSet, day_number, field_name
from crm_platform.errors import ValidationFailed
from crm_platform.listing import PageParams, all_of, fetch_page
from crm_platform.sortkeys import TIEBREAK

Document = dict[str, Any]
DEFAULT_SORT = "-updated_at"
CUSTOM_PREFIX = field_name("")


def day_range(start: date | None, end: date | None, *, end_exclusive: bool = False) -> Document:
    """A range of days on their integer copies (``YYYYMMDD``, see domain.opportunities.sort_keys):
    from ``start`` (or the first day) to ``end``; day 0 (no date) is never in it."""
    bounds: Document = {"$gte": day_number(start.isoformat()) if start else 1}
    if end:
        bounds["$lt" if end_exclusive else "$lte"] = day_number(end.isoformat())
    return bounds


def visibility_within(principal: Principal, department: str | None) -> Document:
    """The caller's visibility condition on opportunities, for a query already limited to the
    subtree of ``department`` (None: not limited): nothing when that subtree lies wholly in the
    caller's subtree scope. Both are anchored regexes on ``department_path``, which do not merge
    into one condition: the embedded store then filtered every opportunity in Python."""
    if department and principal.scope(OPPORTUNITIES) == "subtree" and principal.reaches_path(department, OPPORTUNITIES):
        return {}
    return principal.mongo_visibility(module=OPPORTUNITIES)


def subtree(path: str) -> Document:
    """A department and everything below it (an anchored regex uses the index)."""
    return {"$regex": f"^{re.escape(path.rstrip('/'))}(/|$)"}


class OpportunityFilter(BaseModel):
    """Query parameters of an opportunity list; every one is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid")

    pipeline_id: str | None = None
    stage_id: str | None = None
    status: Literal["open", "won", "lost"] | None = None
    owner_id: str | None = None
    department: str | None = Field(default=None, pattern=r"^/", description="A department path: it and its subtree.")
    customer_id: str | None = None
    currency: str | None = Field(
        default=None, description="Only this currency (amount_min/max compare within it; default CNY)."
    )
    expected_close_from: date | None = Field(default=None, description="Expected close date on or after.")
    expected_close_to: date | None = Field(default=None, description="Expected close date on or before (inclusive).")
    amount_min: str | None = Field(default=None, description="Decimal string, e.g. '100000.00' (inclusive).")
    amount_max: str | None = Field(default=None, description="Decimal string (inclusive).")
    q: str | None = Field(default=None, max_length=100, description="Name contains (case-insensitive).")
    pending_approval: bool | None = Field(default=None, description="Waiting for a manager's approval.")
    source_campaign: str | None = None
    #: ``custom.<key>=<value>`` filters, as the stored values to match (see :meth:`with_custom`).
    _custom: dict[str, Any] = PrivateAttr(default_factory=dict)
    #: The same as store conditions: ``custom.<key>``, or a date's or money's copy ``s.cfq_<key>``.
    _conditions: dict[str, Any] = PrivateAttr(default_factory=dict)
    #: ``sort=custom.<key>`` keys, as their stored sort copies (see :meth:`with_sorts`).
    _sorts: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _custom_apart(cls, data: Any) -> Any:
        # custom.<key> filters name fields administrators define: checked against the definitions
        # by the caller (crm_platform.customfields.query_filters), so left out here, not refused.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not str(k).startswith(CUSTOM_PREFIX)}
        return data

    def with_custom(self, fields: FieldSet, values: dict[str, Any]) -> OpportunityFilter:
        """This filter with ``custom.<key>`` equalities or ranges (as :func:`query_filters` read
        them against ``fields``), matched where each field's filter looks (a date or money on its
        copy: :meth:`FieldSet.conditions`)."""
        self._custom = dict(values)
        self._conditions = fields.conditions(self._custom)
        return self

    def with_sorts(self, fields: FieldSet, sort: str | None) -> OpportunityFilter:
        """This filter with the ``custom.<key>`` keys of ``sort`` it may sort on: 422 naming
        ``sort`` for a custom field that is unknown, archived or not sortable."""
        self._sorts = {
            name: fields.sort_field(name.removeprefix(CUSTOM_PREFIX))
            for name in (part.strip().lstrip("+-") for part in (sort or "").split(","))
            if name.startswith(CUSTOM_PREFIX)
        }
        return self

    @property
    def sort_fields(self) -> dict[str, str]:
        """The sort keys this list accepts: the built-in ones and its sortable custom fields'."""
        return {**SORT_FIELDS, **self._sorts}

    @property
    def sorts_on_custom(self) -> bool:
        return bool(self._sorts)

    @property
    def custom(self) -> dict[str, Any]:
        return dict(self._custom)

    def to_mongo(self, principal: Principal, default_currency: str) -> Document:
        clauses: list[Document] = [{"hidden": False}]
        visibility = visibility_within(principal, self.department)
        if visibility:
            clauses.append(visibility)
        for name in ("pipeline_id", "stage_id", "status", "owner_id", "customer_id", "source_campaign"):
            value = getattr(self, name)
            if value is not None:
                clauses.append({name: value})
        if self.department:
            clauses.append({"department_path": subtree(self.department)})
        if self.pending_approval is not None:
            clauses.append({"pending_approval": self.pending_approval})
        if self.q:
            clauses.append({"name": {"$regex": re.escape(self.q.strip()), "$options": "i"}})
        if self.expected_close_from or self.expected_close_to:
            # On the day's integer copy, served by the expected-close sort index behind each scope
            # (an ISO date string's range scans on the embedded store); an opportunity without a
            # date has day 0 and matches no range.
            days = day_range(self.expected_close_from, self.expected_close_to)
            clauses.append({SORT_FIELDS["expected_close_date"]: days})
        currency = None
        if self.currency:
            currency = self._currency(self.currency)
            clauses.append({"currency": currency})
        amounts: Document = {}
        for field, op in (("amount_min", "$gte"), ("amount_max", "$lte")):
            text = getattr(self, field)
            if text is None:
                continue
            currency = currency or default_currency
            try:
                amounts[op] = money.to_minor(text, currency)
            except money.InvalidMoney as exc:
                raise ValidationFailed.for_field(field, str(exc), "query") from exc
        if amounts:
            if not self.currency:
                clauses.append({"currency": currency})
            clauses.append({"amount_minor": amounts})
        for path, value in self._conditions.items():
            # Served by the field's indexes behind each visibility prefix (repository
            # custom_field_indexes), kept while the field is active and filterable.
            clauses.append({path: value})
        # One flat document: the embedded store indexes top-level fields only, never a literal $and;
        # visibility stays an $or that fetch_page runs as one indexed query per alternative.
        return all_of(*clauses)

    @staticmethod
    def _currency(raw: str) -> str:
        try:
            return money.currency_code(raw)
        except money.InvalidMoney as exc:
            raise ValidationFailed.for_field("currency", str(exc), "query") from exc


class Page(BaseModel):
    items: list[Document]
    next_cursor: str | None
    total: int | None = None


async def list_opportunities(
    repo: Repository,
    principal: Principal,
    filters: OpportunityFilter,
    *,
    sort: str | None,
    cursor: str | None,
    limit: int,
    with_total: bool,
    default_currency: str,
) -> Page:
    paging = PageParams(sort=sort, cursor=cursor, limit=limit, include_total=with_total)
    page = await fetch_page(
        repo.opportunities,
        filters.to_mongo(principal, default_currency),
        paging,
        sort_fields=filters.sort_fields,
        default_sort=DEFAULT_SORT,
        projection=LIST_PROJECTION,
        tiebreak=TIEBREAK,
        # A custom field's sort index carries the id last (its ties are most opportunities, those
        # without a value): the tie-breaker runs the last key's way, so a descending sort walks
        # the index backwards instead of sorting the tie group. Built-in sorts keep theirs.
        tie_follows_last=filters.sorts_on_custom,
    )
    return Page(items=page.items, next_cursor=page.next_cursor, total=page.total)
