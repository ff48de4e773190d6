"""Use cases of price lists: create, read, change, set and remove a product's price, list, and
resolve the price that applies to a product for a currency, a customer tier and a day.

Price lists are the company's, like the catalogue (``products:view`` to read, ``products:manage`` to
change). Each change, an entry's included, is one guarded write of the list with its event.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator

from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, NotFound
from crm_platform.events import EventFactory
from crm_platform.listing import Page, PageParams, fetch_page
from crm_platform.sortkeys import TIEBREAK
from crm_platform.store import Change
from crm_sales.adapters.repository import SalesRepository
from crm_sales.domain import price_lists as rules
from crm_sales.domain.money import InvalidMoney, currency_code

Document = dict[str, Any]
LIST_PROJECTION = {"outbox": 0, "outbox_rev": 0, "outbox_pending_since": 0, "entries": 0}


class PriceListFilter(PageParams):
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    tier: str | None = Field(default=None, max_length=64, description="A tier code; 'default': the default lists.")
    active: bool | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return currency_code(value)
        except InvalidMoney as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("tier")
    @classmethod
    def _tier(cls, value: str | None) -> str | None:
        """As stored: a tier code upper-cased, or "" for the default lists ("default" or blank)."""
        if value is None:
            return None
        return rules.DEFAULT_TIER if value.strip().lower() == "default" else (rules.normalise_tier(value) or "")

    def conditions(self) -> Document:
        out: Document = {"live": True}
        if self.currency is not None:
            out["currency"] = self.currency
        if self.tier is not None:
            out["tier"] = self.tier
        if self.active is not None:
            out["active"] = self.active
        return out


class ProductInactive(Conflict):
    code, title = "product-inactive", "The product is deactivated"


class NoPrice(NotFound):
    code, title = "no-price", "No price applies"


class PriceLists:
    def __init__(self, repo: SalesRepository, clock: Clock, source: str) -> None:
        self.repo = repo
        self.clock = clock
        self.event = EventFactory(source, clock)

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(price_list=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    async def create(self, principal: Principal, data: rules.PriceListIn) -> Document:
        doc = rules.new_price_list(str(uuid.uuid4()), data, principal, self.clock.now())
        return await self.repo.price_list_store.insert(
            doc, [self._event(ev.PRICE_LIST_CREATED, doc, 1, principal.user_id)]
        )

    async def get(self, list_id: str) -> Document:
        doc = await self.repo.price_list_store.get(list_id)
        if doc is None:
            raise NotFound(f"No price list with id {list_id}.")
        return doc

    async def update(
        self, principal: Principal, list_id: str, patch: rules.PriceListPatch, expected_version: int | None
    ) -> Document:
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            changes = rules.apply_patch(doc, patch)
            if not changes:
                return Change(None)
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            doc["s"] = rules.sort_keys(doc)
            return Change(doc, [self._event(ev.PRICE_LIST_UPDATED, doc, version, principal.user_id, changes=changes)])

        return await self.repo.price_list_store.mutate(list_id, decide, expected_version=expected_version)

    async def set_entry(
        self,
        principal: Principal,
        list_id: str,
        product_id: str,
        data: rules.EntryIn,
        expected_version: int | None,
    ) -> Document:
        """Put a product's price on the list: 404 for an unknown product, 409 for a deactivated one.

        The product is read just before the write: a deactivation landing in between is not seen
        by this write (the product's own events say when it was deactivated)."""
        product = await self.repo.product_store.get(product_id)
        if product is None:
            raise NotFound(f"No product with id {product_id}.")
        if not product.get("active"):
            raise ProductInactive(
                f"The product {product['sku']} ({product['name']}) is deactivated: it goes on no price list.",
                extra={"product_id": product_id},
            )
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            entry, previous = rules.set_entry(doc, product_id, data, principal, now)
            doc["entry_count"] = len(doc["entries"])
            if previous is not None and all(previous.get(k) == entry.get(k) for k in ("unit_price", "min_quantity")):
                return Change(None)  # the same price again: nothing changes
            doc["updated_at"] = now
            event = self._event(
                ev.PRICE_LIST_ENTRY_SET,
                doc,
                version,
                principal.user_id,
                entry=rules.entry_data(entry),
                previous=rules.entry_data(previous) if previous else None,
            )
            return Change(doc, [event])

        return await self.repo.price_list_store.mutate(list_id, decide, expected_version=expected_version)

    async def remove_entry(
        self, principal: Principal, list_id: str, product_id: str, expected_version: int | None
    ) -> Document:
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            entry = doc["entries"].pop(product_id, None)
            if entry is None:
                raise NotFound(f"The price list {list_id} has no price for the product {product_id}.")
            doc["entry_count"] = len(doc["entries"])
            doc["updated_at"] = now
            event = self._event(
                ev.PRICE_LIST_ENTRY_REMOVED, doc, version, principal.user_id, entry=rules.entry_data(entry)
            )
            return Change(doc, [event])

        return await self.repo.price_list_store.mutate(list_id, decide, expected_version=expected_version)

    async def page(self, filters: PriceListFilter) -> Page:
        return await fetch_page(
            self.repo.price_lists,
            filters.conditions(),
            PageParams(**filters.model_dump(include={"sort", "cursor", "limit", "include_total"})),
            sort_fields=rules.SORT_FIELDS,
            default_sort=rules.DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            tie_follows_last=True,
        )

    async def price(
        self, product_id: str, currency: str, tier: str | None, day: date | None, quantity: Decimal | None
    ) -> tuple[Document, rules.Resolved, date]:
        """The product and the price that applies; 404 (``no-price``) naming what was looked for."""
        product = await self.repo.product_store.get(product_id)
        if product is None:
            raise NotFound(f"No product with id {product_id}.")
        on = day or self.clock.now().date()
        candidates: list[Document] = []
        if tier:
            candidates += await self.repo.price_lists_for(currency, tier, product_id)
        candidates += await self.repo.price_lists_for(currency, rules.DEFAULT_TIER, product_id)
        found = rules.resolve(candidates, product_id, tier, on, quantity)
        if found is None:
            lists = f"tier {tier} or the default list" if tier else "the default list"
            at = f" for a quantity of {quantity}" if quantity is not None else ""
            raise NoPrice(
                f"No price for {product['sku']} ({product['name']}) in {currency} on {on.isoformat()}{at}: "
                f"no active price list of {lists} valid that day holds it.",
                extra={"product_id": product_id, "currency": currency, "tier": tier, "on": on.isoformat()},
            )
        return product, found, on
