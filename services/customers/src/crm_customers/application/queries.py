"""List views: filters on any profile field, tags all-of/any-of, multi-key sort, keyset cursors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from crm_customers.adapters.repository import LIST_PROJECTION, CustomerRepository
from crm_customers.adapters.tag_index import COPIED, in_flight, is_current
from crm_customers.domain import rules
from crm_customers.domain.model import Kind, LifecycleStage, Size, Source, Tier
from crm_customers.domain.names import normalise_name
from crm_customers.domain.rules import SORT_FIELDS, epoch_ms
from crm_platform.auth import Principal
from crm_platform.customfields import FieldSet, query_filters
from crm_platform.listing import (
    Page,
    PageParams,
    SortKey,
    all_of,
    fetch_page,
    find_sorted,
    keyset_filter,
    parse_sort,
    values_of,
)

Document = dict[str, Any]
DEFAULT_SORT = "-updated_at"
CUSTOM_PREFIX = "custom."


def list_order(sort: str | None, sort_fields: dict[str, str] = SORT_FIELDS) -> list[SortKey]:
    """A list's sort keys as the store is asked for them (ties broken by ``s.id`` the last key's way,
    a mixed order on the reversed copies): the list, its neighbours and its export agree.
    ``sort_fields``: :attr:`CustomerFilter.sort_fields` when the sort names custom fields."""
    return parse_sort(
        sort,
        sort_fields,
        DEFAULT_SORT,
        rules.TIEBREAK,
        tie_follows_last=True,
        descending_copies=rules.DESCENDING_COPIES,
    )


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


class CustomerFilter(BaseModel):
    """Query parameters of a customer list; every one is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(
        default=None,
        max_length=100,
        description="Name contains (normalised: case, width and company suffixes ignored).",
    )
    kind: Kind | None = None
    industry: str | None = None
    size: Size | None = None
    source: Source | None = None
    tier: Tier | None = None
    lifecycle_stage: LifecycleStage | None = None
    province: str | None = None
    city: str | None = None
    district: str | None = None
    owner_id: str | None = None
    department_id: str | None = None
    in_pool: bool | None = None
    locked: bool | None = None
    uscc: str | None = None
    phone: str | None = Field(default=None, description="E.164, matches customer and contact phones.")
    email: str | None = None
    tags_all: str | None = Field(default=None, description="Comma-separated: customers with every one of these tags.")
    tags_any: str | None = Field(
        default=None, description="Comma-separated: customers with at least one of these tags."
    )
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    followed_up_from: datetime | None = None
    followed_up_to: datetime | None = None
    never_followed_up: bool | None = None
    #: ``custom.<key>=<value>`` filters, as the stored values to match (see :meth:`with_custom`).
    _custom: dict[str, Any] = PrivateAttr(default_factory=dict)
    #: The same as store conditions, on where each looks (the value, or a date's or money's copy).
    _conditions: dict[str, Any] = PrivateAttr(default_factory=dict)
    #: The same filters as the query gave them (``custom.<key>``, text): what a record of the list
    #: keeps, so that a held export's download filters again exactly as asked.
    _custom_query: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    #: ``sort=custom.<key>`` keys, as their stored sort copies (see :meth:`with_sorts`).
    _sorts: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _custom_apart(cls, data: Any) -> Any:
        # custom.<key> filters name fields administrators define: checked against the definitions
        # by with_custom, so they are left out here rather than refused as unknown.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not str(k).startswith(CUSTOM_PREFIX)}
        return data

    def with_custom(self, fields: FieldSet, query: Iterable[tuple[str, str]]) -> CustomerFilter:
        """This filter with the query's ``custom.<key>=<value>`` filters, read against the
        definitions (422 naming ``custom.<key>`` for a field that is unknown, archived or not
        filterable, a value it cannot hold, or a key given twice), and the query's own
        ``(custom.<key>, text)`` pairs they were read from."""
        self._custom_query = [(name, text) for name, text in query if name.startswith(CUSTOM_PREFIX)]
        self._custom = query_filters(fields, self._custom_query)
        self._conditions = fields.conditions(self._custom)
        return self

    def described(self) -> dict[str, Any]:
        """The filter as a record keeps it (an export request): the built-in filters and the query's
        ``custom.<key>`` texts, which :meth:`with_custom` reads again."""
        return {**self.model_dump(mode="json", exclude_none=True), **dict(self._custom_query)}

    @property
    def custom(self) -> dict[str, Any]:
        return dict(self._custom)

    def with_sorts(self, fields: FieldSet, sort: str | None) -> CustomerFilter:
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

    @field_validator("created_from", "created_to", "updated_from", "updated_to", "followed_up_from", "followed_up_to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-01-31T00:00:00+08:00")
        return value

    def tag_lists(self) -> tuple[list[str], list[str]]:
        """The tags asked for: (all of, any of)."""
        return _split(self.tags_all), _split(self.tags_any)

    def to_mongo(
        self, principal: Principal, status: Literal["active", "deleted"] = "active", *, memberships: bool = False
    ) -> Document:
        """The query on customers; with ``memberships``, the same on their tag memberships
        (``customer_tags``, one document per customer and tag with the same fields): each tag
        is the scalar ``tag`` there, one ``$or`` branch (an indexed query) per tag of ``tags_any``.
        ``tags_all`` pages one of its tags' memberships and tests the others on the rows walked."""
        clauses: list[Document] = [{"status": status}]
        visibility = principal.mongo_visibility(module="customers")
        if status == "active" and visibility:
            clauses.append(
                {"$or": [visibility, {"in_pool": True}]}
                if "$or" not in visibility
                else {"$or": [*visibility["$or"], {"in_pool": True}]}
            )
        elif visibility:
            clauses.append(visibility)
        for name in (
            "kind",
            "industry",
            "size",
            "source",
            "tier",
            "lifecycle_stage",
            "owner_id",
            "department_id",
            "uscc",
        ):
            value = getattr(self, name)
            if value is not None:
                clauses.append({name: str(value)})
        for name in ("province", "city", "district"):
            value = getattr(self, name)
            if value is not None:
                clauses.append({f"address.{name}": value})
        if self.tier is not None:
            # Its sort key too (the same value when a tier is set): fixed by equality, it drops out
            # of the ORDER BY, and -tier,name walks the (prefix, s.tier, s.name, s.id) indexes in order.
            clauses.append({"s.tier": str(self.tier)})
        if self.in_pool is not None:
            clauses.append({"in_pool": self.in_pool})
        if self.locked is not None:
            clauses.append({"s.locked": self.locked})
        # $in, not equality: the embedded store's equality on an indexed array field misses elements.
        if self.phone:
            clauses.append({"match_phones": {"$in": [self.phone]}})
        if self.email:
            clauses.append({"match_emails": {"$in": [self.email.lower()]}})
        every, some = self.tag_lists()
        if memberships and every:
            clauses.append({"tag": every[0]})
            if every[1:]:
                clauses.append({"tags": {"$all": every[1:]}})
        elif every:
            clauses.append({"tags": {"$all": every}})
        if memberships and some and not every:
            clauses.append({"$or": [{"tag": tag} for tag in some]} if len(some) > 1 else {"tag": some[0]})
        elif some:
            clauses.append({"tags": {"$in": some}})
        if self.q:
            needle = normalise_name(self.q)
            if needle:
                clauses.append({"name_normalised": {"$regex": re.escape(needle)}})
        for field, low, high in (
            ("s.created_at", self.created_from, self.created_to),
            ("s.updated_at", self.updated_from, self.updated_to),
            ("s.last_followed_up_at", self.followed_up_from, self.followed_up_to),
        ):
            bounds: Document = {}
            if low is not None:
                bounds["$gte"] = epoch_ms(low)
            if high is not None:
                bounds["$lt"] = epoch_ms(high)
            if bounds:
                clauses.append({field: bounds})
        for path, value in self._conditions.items():
            # Served by the field's own indexes (custom_field_indexes, on customers and on the tag
            # memberships, which copy ``custom`` and ``s``), kept while it is filterable.
            clauses.append({path: value})
        if self.never_followed_up is not None:
            # The never-null sort key (0 when never followed up): indexed, and no null test at all.
            never = {"s.last_followed_up_at": 0}
            clauses.append(never if self.never_followed_up else {"s.last_followed_up_at": {"$gt": 0}})
        return all_of(*clauses)


async def list_customers(
    repo: CustomerRepository,
    principal: Principal,
    filters: CustomerFilter,
    paging: PageParams,
    status: Literal["active", "deleted"] = "active",
) -> Page:
    every, some = filters.tag_lists()
    if every or some:
        return await _tagged_page(repo, principal, filters, paging, status)
    return await fetch_page(
        repo.collection,
        filters.to_mongo(principal, status),
        paging,
        sort_fields=filters.sort_fields,
        default_sort=DEFAULT_SORT,
        projection=LIST_PROJECTION,
        tiebreak=rules.TIEBREAK,
        tie_follows_last=True,
        descending_copies=rules.DESCENDING_COPIES,
    )


async def neighbours(
    repo: CustomerRepository, principal: Principal, filters: CustomerFilter, sort: str | None, doc: Document
) -> tuple[Document | None, Document | None]:
    """The records just before and just after ``doc`` in a list view (its filters and sort).

    The detail view's "previous / next record": the same keyset as the list's cursor, one row in
    each direction (the reverse order for "previous"), so it costs two indexed queries.
    """
    keys = list_order(sort, filters.sort_fields)
    values = values_of(doc, keys)
    reverse = [SortKey(k.field, -k.direction) for k in keys]
    every, some = filters.tag_lists()
    if not (every or some):
        base = filters.to_mongo(principal, "active")
        after = await find_sorted(repo.collection, all_of(base, keyset_filter(keys, values)), keys, 1, LIST_PROJECTION)
        before = await find_sorted(
            repo.collection, all_of(base, keyset_filter(reverse, values)), reverse, 1, LIST_PROJECTION
        )
        return (before[0] if before else None), (after[0] if after else None)
    # Tag-filtered: the same keyset on the memberships, then the neighbour loaded by id.
    base = filters.to_mongo(principal, "active", memberships=True)
    found: list[Document | None] = []
    for order in (reverse, keys):
        rows = await find_sorted(
            repo.tags.collection,
            all_of(base, keyset_filter(order, values)),
            order,
            1,
            {"cid": 1, "s": 1},
            identity="cid",
        )
        found.append(await repo.collection.find_one({"_id": rows[0]["cid"]}, LIST_PROJECTION) if rows else None)
    return found[0], found[1]


async def _tagged_page(
    repo: CustomerRepository,
    principal: Principal,
    filters: CustomerFilter,
    paging: PageParams,
    status: Literal["active", "deleted"],
) -> Page:
    """A tag-filtered page: paged on the tag memberships' indexes, then the page's customers
    loaded by id and each checked against the membership that listed it (see
    :mod:`crm_customers.adapters.tag_index`); a stale membership is resynced and the page asked
    again, so what is shown is what the customers say."""
    every, some = filters.tag_lists()
    query = filters.to_mongo(principal, status, memberships=True)
    alternatives = 3 * (1 if every else len(some))  # visibility (own, department, pool) by tag
    for attempt in range(3):
        page = await fetch_page(
            repo.tags.collection,
            query,
            paging,
            sort_fields=filters.sort_fields,  # custom sorts too: memberships copy ``s`` whole
            default_sort=DEFAULT_SORT,
            projection={"_id": 1, "tag": 1, "cid": 1, **dict.fromkeys(COPIED, 1)},
            tiebreak=rules.TIEBREAK,
            tie_follows_last=True,
            descending_copies=rules.DESCENDING_COPIES,
            max_alternatives=alternatives,
            identity="cid",
        )
        ids = [m["cid"] for m in page.items]
        # No ids, no query: the embedded store reads every customer for an empty $in on _id.
        found = repo.collection.find({"_id": {"$in": ids}}, projection=LIST_PROJECTION) if ids else None
        loaded = {d["_id"]: d async for d in found} if found is not None else {}
        now = epoch_ms(repo.clock.now())
        # A membership whose customer is still being created is skipped, neither stale nor shown.
        stale = [
            m["cid"]
            for m in page.items
            if not is_current(m, loaded.get(m["cid"])) and not in_flight(m, loaded.get(m["cid"]), now)
        ]
        if not stale or attempt == 2:
            items = [loaded[m["cid"]] for m in page.items if m["cid"] in loaded and m["cid"] not in stale]
            return Page(items=items, next_cursor=page.next_cursor, total=page.total)
        await repo.tags.resync(repo.collection, stale)
    raise AssertionError("unreachable")


async def list_deleted_by(repo: CustomerRepository, principal: Principal, cursor: str | None, limit: int) -> Page:
    """The customers ``principal`` moved to the recycle bin themselves, last deleted first, among
    those they may still see: their own recycle bin, on the ``deleted.by`` index (a rep's deletions
    are never walked past someone else's)."""
    page = await fetch_page(
        repo.collection,
        {"deleted.by": principal.user_id, "status": "deleted"},
        PageParams(cursor=cursor, limit=limit),
        sort_fields=SORT_FIELDS,
        default_sort=DEFAULT_SORT,
        projection=LIST_PROJECTION,
        tiebreak=rules.TIEBREAK,
        tie_follows_last=True,
        descending_copies=rules.DESCENDING_COPIES,
    )
    # Deleted customers keep their owner and department, so this drops only what the caller no
    # longer sees because they moved (a shorter page; the cursor goes on past it).
    return Page(items=[d for d in page.items if rules.can_view(principal, d)], next_cursor=page.next_cursor, total=None)
