"""Use cases of the product catalogue: add, read, change, deactivate and activate, list.

The catalogue is the company's: whoever holds ``products:view`` sees every product, ``products:manage``
changes them. Every change is one guarded write of the product with its event (the outbox). The SKU's
uniqueness is the store's unique index: a create or a SKU change that collides is refused with 409
naming the product that holds the SKU, and nothing is written.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field
from pymongo.errors import DuplicateKeyError

from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import sales as ev
from crm_platform.errors import Duplicate, FieldError, NotFound
from crm_platform.events import EventFactory
from crm_platform.listing import Page, PageParams, fetch_page
from crm_platform.sortkeys import TIEBREAK
from crm_platform.store import Change
from crm_sales.adapters.repository import SalesRepository
from crm_sales.domain import products as rules

Document = dict[str, Any]
LIST_PROJECTION = {"outbox": 0, "outbox_rev": 0, "outbox_pending_since": 0}


class ProductFilter(PageParams):
    q: str | None = Field(
        default=None, min_length=1, max_length=100, description="Name or SKU starting with this (any case)."
    )
    category: str | None = Field(default=None, max_length=100)
    active: bool | None = None

    def conditions(self) -> Document:
        out: Document = {"live": True}
        if self.category is not None:
            out["category"] = self.category.strip()
        if self.active is not None:
            out["active"] = self.active
        if self.q is not None and self.q.strip():
            text = self.q.strip()
            # Two ranges, each served by its own index: listing runs one query per ``$or`` branch.
            out["$or"] = [
                {"s.name": rules.prefix_range(text.casefold())},
                {"s.sku": rules.prefix_range(text.upper())},
            ]
        return out


class SkuTaken(Duplicate):
    code, title = "sku-taken", "This SKU is already in the catalogue"


class Products:
    def __init__(self, repo: SalesRepository, clock: Clock, source: str) -> None:
        self.repo = repo
        self.clock = clock
        self.event = EventFactory(source, clock)

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(product=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    async def _taken(self, sku: str) -> SkuTaken:
        holder = await self.repo.product_by_sku(sku)
        if holder is None:  # the holder changed its SKU meanwhile: a retry may pass
            reason = f"{sku} was just taken by another product; try again"
            return SkuTaken(f"sku: {reason}", errors=[FieldError(field="sku", reason=reason, code="duplicate")])
        reason = f"{sku} is already the SKU of {holder['name']} ({holder['_id']})"
        return SkuTaken(
            f"The SKU {sku} is already the product {holder['name']} ({holder['_id']}).",
            errors=[FieldError(field="sku", reason=reason, code="duplicate")],
            extra={"existing_product_id": holder["_id"], "existing_product_name": holder["name"]},
        )

    async def add(self, principal: Principal, data: rules.ProductIn) -> Document:
        doc = rules.new_product(str(uuid.uuid4()), data, principal, self.clock.now())
        try:
            return await self.repo.product_store.insert(
                doc, [self._event(ev.PRODUCT_CREATED, doc, 1, principal.user_id)]
            )
        except DuplicateKeyError as exc:
            raise await self._taken(doc["sku"]) from exc

    async def get(self, product_id: str) -> Document:
        doc = await self.repo.product_store.get(product_id)
        if doc is None:
            raise NotFound(f"No product with id {product_id}.")
        return doc

    async def update(
        self, principal: Principal, product_id: str, patch: rules.ProductPatch, expected_version: int | None
    ) -> Document:
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            changes = rules.apply_patch(doc, patch)
            if not changes:
                return Change(None)
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            doc["s"] = rules.sort_keys(doc)
            return Change(doc, [self._event(ev.PRODUCT_UPDATED, doc, version, principal.user_id, changes=changes)])

        try:
            return await self.repo.product_store.mutate(product_id, decide, expected_version=expected_version)
        except DuplicateKeyError as exc:
            raise await self._taken(str(patch.sku)) from exc

    async def set_active(
        self, principal: Principal, product_id: str, active: bool, expected_version: int | None
    ) -> Document:
        """Deactivate or activate; one already so is answered as it is (no new version, no event)."""
        now = self.clock.now()
        event_type = ev.PRODUCT_ACTIVATED if active else ev.PRODUCT_DEACTIVATED

        def decide(doc: Document, version: int) -> Change:
            if bool(doc["active"]) == active:
                return Change(None)
            doc["active"] = active
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            return Change(doc, [self._event(event_type, doc, version, principal.user_id)])

        return await self.repo.product_store.mutate(product_id, decide, expected_version=expected_version)

    async def page(self, filters: ProductFilter) -> Page:
        return await fetch_page(
            self.repo.products,
            filters.conditions(),
            PageParams(**filters.model_dump(include={"sort", "cursor", "limit", "include_total"})),
            sort_fields=rules.SORT_FIELDS,
            default_sort=rules.DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            tie_follows_last=True,
        )
