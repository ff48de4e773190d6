"""Use cases of quotations (报价单): draft, read, change a draft, revise, the approval of discounts,
send, and the customer's answer.

Who sees a quotation: its owner (who drafted it) and those whose customers scope reaches its
department, like opportunities; one not visible is reported as missing (404). The customer must be
in the read copy, active, out of the pool and visible to the caller (422 ``customer_id``).

**Numbering**: every check passes first (customer, products, prices, dates), then the number is
taken from the year's counter (one atomic ``$inc``), then the quotation is inserted with it. The
insert is the only write left after the number is taken and it is idempotent (the quotation's id is
chosen before the number): a failed attempt is retried with the same id and the same number, and a
duplicate id on a retry means an earlier attempt did store it. So a taken number ends up on a
quotation unless the process itself dies between the two writes.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.store import Change
from crm_sales.adapters.quotations import QuotationRepository
from crm_sales.adapters.repository import SalesRepository
from crm_sales.application.customer_events import refuse_if_customer_closed
from crm_sales.application.numbering import insert_numbered
from crm_sales.domain import price_lists as price_rules
from crm_sales.domain import quotation_list as listing
from crm_sales.domain import quotations as rules
from crm_sales.domain.merges import name_the_survivor

Document = dict[str, Any]
SYSTEM_ACTOR = "system:sales"
MODULE = "customers"  # quotations follow their customers' data scope


class CustomerClosed(Conflict):
    code, title = "customer-deleted", "The quotation's customer is in the recycle bin"


class Quotations:
    def __init__(
        self,
        repo: QuotationRepository,
        sales: SalesRepository,
        customers: CustomerReadModel,
        clock: Clock,
        source: str,
        threshold: Decimal,
    ) -> None:
        self.repo = repo
        self.sales = sales
        self.customers = customers
        self.clock = clock
        self.threshold = threshold
        self.event = EventFactory(source, clock)

    def today(self) -> date:
        return self.clock.now().date()

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(quotation=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    # --- checks --------------------------------------------------------------------------------

    async def _customer(self, principal: Principal, customer_id: str) -> Document:
        copy = await self.customers.arrived(customer_id)
        if copy is None or not CustomerReadModel.visible_to(principal, copy):
            raise ValidationFailed.for_field(
                "customer_id",
                f"no customer {customer_id} that you can see "
                "(a customer created a moment ago may take a second to arrive)",
            )
        status = copy.get("status")
        if status == "deleted":
            raise ValidationFailed.for_field("customer_id", "the customer is in the recycle bin")
        if status == "merged":
            raise ValidationFailed.for_field(
                "customer_id", f"the customer was merged into {copy.get('merged_into')}; use that one"
            )
        if status != "active":
            raise ValidationFailed.for_field("customer_id", f"no customer {customer_id} that you can see")
        if copy.get("in_pool"):
            raise ValidationFailed.for_field("customer_id", "the customer is in the public pool (公海); claim it first")
        return copy

    async def _lines(
        self, lines: list[rules.LineIn], currency: str, tier: str | None, field: str = "lines"
    ) -> list[rules.PricedLine]:
        """Each line's product (known, active) and unit price (given, or the price lists' today)."""
        today = self.today()
        products: dict[str, Document | None] = {}
        priced: list[rules.PricedLine] = []
        for i, line in enumerate(lines):
            if line.product_id not in products:
                products[line.product_id] = await self.sales.product_store.get(line.product_id)
            product = products[line.product_id]
            if product is None:
                raise ValidationFailed.for_field(f"{field}[{i}].product_id", f"no product {line.product_id}")
            if not product.get("active"):
                raise ValidationFailed.for_field(
                    f"{field}[{i}].product_id",
                    f"{product['sku']} ({product['name']}) is deactivated: it goes on no new line item",
                )
            if line.unit_price is not None:
                price = rules.unit_price(line.unit_price, currency, i)
            else:
                candidates: list[Document] = []
                if tier:
                    candidates += await self.sales.price_lists_for(currency, tier, line.product_id)
                candidates += await self.sales.price_lists_for(currency, price_rules.DEFAULT_TIER, line.product_id)
                found = price_rules.resolve(candidates, line.product_id, tier, today, Decimal(line.quantity))
                if found is None:
                    where = f"tier {tier} or the default list" if tier else "the default list"
                    raise ValidationFailed.for_field(
                        f"{field}[{i}].unit_price",
                        f"no price for {product['sku']} in {currency} today ({today.isoformat()}) on {where}"
                        f" for a quantity of {line.quantity}; give the unit_price",
                    )
                price = str(found.entry["unit_price"])
            priced.append(rules.PricedLine(product, line.quantity, price, line.discount_percent))
        return priced

    async def _customer_open(self, doc: Document, action: str) -> None:
        """A quotation whose customer is in the recycle bin (or purged) stays readable but changes
        no more until the customer is restored: 409 naming the customer."""
        await refuse_if_customer_closed(self.customers, doc["customer_id"], action, "quotation", CustomerClosed)

    async def _visible(self, principal: Principal, quotation_id: str) -> Document:
        doc = await self.repo.get(quotation_id)
        if doc is None or not self.sees(principal, doc):
            raise NotFound(f"No quotation with id {quotation_id}.")
        return doc

    @staticmethod
    def sees(principal: Principal, doc: Document) -> bool:
        return principal.can_see_owned(doc.get("owner_id"), doc.get("department_path"), module=MODULE)

    # --- use cases -----------------------------------------------------------------------------

    async def create(self, principal: Principal, data: rules.QuotationIn) -> Document:
        currency = rules.currency(data.currency)
        tier = rules.tier(data.tier)
        rules.check_valid_until(data.valid_until, self.today())
        customer = await self._customer(principal, data.customer_id)
        lines = await self._lines(data.lines, currency, tier)
        now = self.clock.now()
        draft = rules.new_quotation(
            str(uuid.uuid4()), data, currency, tier, customer, lines, self.threshold, principal, now
        )
        # Every check has passed: only now take the number, then store it (see the module's doc).
        year = now.year
        doc = rules.numbered(draft, year, await self.repo.next_number(rules.counter_id(year)))
        doc["s"] = listing.sort_keys(doc)
        events = [self._event(ev.QUOTATION_CREATED, doc, 1, principal.user_id)]
        return await insert_numbered(self.repo.store, doc, events, self.repo.get)

    async def get(self, principal: Principal, quotation_id: str) -> Document:
        return await self._visible(principal, quotation_id)

    async def update(
        self, principal: Principal, quotation_id: str, patch: rules.QuotationPatch, expected_version: int | None
    ) -> Document:
        current = await self._visible(principal, quotation_id)
        rules.check_editable(current, self.today())
        await self._customer_open(current, "update")
        fields = patch.model_fields_set
        if "valid_until" in fields:
            if patch.valid_until is None:
                raise ValidationFailed.for_field("valid_until", "cannot be cleared")
            rules.check_valid_until(patch.valid_until, self.today())
        tier = rules.tier(patch.tier) if "tier" in fields else current.get("tier")
        lines = None
        if "lines" in fields:
            if patch.lines is None:
                raise ValidationFailed.for_field("lines", "cannot be cleared")
            lines = await self._lines(patch.lines, current["currency"], tier)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not self.sees(principal, doc):
                raise NotFound(f"No quotation with id {quotation_id}.")
            rules.check_editable(doc, self.today())
            changes: list[ev.FieldChange] = []
            values: Document = {
                "opportunity_id": patch.opportunity_id,
                "tier": tier,
                "valid_until": patch.valid_until.isoformat() if patch.valid_until else None,
                "notes": patch.notes,
            }
            for name in ("opportunity_id", "tier", "valid_until", "notes"):
                if name in fields and doc.get(name) != values[name]:
                    changes.append(ev.FieldChange(field=name, old=doc.get(name), new=values[name]))
                    doc[name] = values[name]
            if lines is not None:
                before = (doc["lines"], doc["total"])
                rules.set_lines(doc, lines, self.threshold)
                if (doc["lines"], doc["total"]) != before:
                    changes.append(ev.FieldChange(field="lines", old=before[1], new=doc["total"]))
            if not changes:
                return Change(None)
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            doc["s"] = listing.sort_keys(doc)
            return Change(doc, [self._event(ev.QUOTATION_UPDATED, doc, version, principal.user_id, changes=changes)])

        return await self.repo.store.mutate(quotation_id, decide, expected_version=expected_version)

    async def revise(
        self, principal: Principal, quotation_id: str, patch: rules.QuotationPatch, expected_version: int | None
    ) -> Document:
        """Keep the current revision and start the next as a draft (with ``patch`` applied)."""
        current = await self._visible(principal, quotation_id)
        rules.check_revisable(current, self.today())
        await self._customer_open(current, "revise")
        fields = patch.model_fields_set
        valid_until = patch.valid_until if "valid_until" in fields else None
        if valid_until is not None:
            rules.check_valid_until(valid_until, self.today())
        elif date.fromisoformat(current["valid_until"]) < self.today():
            raise ValidationFailed.for_field(
                "valid_until", f"the quotation expired on {current['valid_until']}: give a new valid_until"
            )
        tier = rules.tier(patch.tier) if "tier" in fields else current.get("tier")
        lines = None
        if patch.lines is not None:
            lines = await self._lines(patch.lines, current["currency"], tier)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not self.sees(principal, doc):
                raise NotFound(f"No quotation with id {quotation_id}.")
            rules.check_revisable(doc, self.today())
            rules.start_revision(doc, now, principal.user_id)
            changes = [ev.FieldChange(field="revision", old=doc["revision"] - 1, new=doc["revision"])]
            if valid_until is not None:
                doc["valid_until"] = valid_until.isoformat()
            if "opportunity_id" in fields:
                doc["opportunity_id"] = patch.opportunity_id
            if "notes" in fields:
                doc["notes"] = patch.notes
            doc["tier"] = tier
            if lines is not None:
                rules.set_lines(doc, lines, self.threshold)
            else:  # the threshold may have changed since
                doc["needs_approval"] = rules.needs_approval(doc["lines"], self.threshold)
            doc["s"] = listing.sort_keys(doc)
            return Change(doc, [self._event(ev.QUOTATION_REVISED, doc, version, principal.user_id, changes=changes)])

        return await self.repo.store.mutate(quotation_id, decide, expected_version=expected_version)

    async def move(
        self,
        principal: Principal,
        quotation_id: str,
        action: str,
        comment: str | None,
        expected_version: int | None,
    ) -> Document:
        """submit, approve, reject, send, accept or decline (see rules.MOVES)."""
        event_type = {
            "submit": ev.QUOTATION_SUBMITTED,
            "approve": ev.QUOTATION_APPROVED,
            "reject": ev.QUOTATION_REJECTED,
            "send": ev.QUOTATION_SENT,
            "accept": ev.QUOTATION_ACCEPTED,
            "decline": ev.QUOTATION_DECLINED,
        }[action]
        text = (comment or "").strip() or None
        if action == "reject" and text is None:
            raise ValidationFailed.for_field("comment", "say why the quotation is rejected")
        current = await self._visible(principal, quotation_id)
        if action in ("approve", "reject") and rules.is_owner(principal, current):
            raise Forbidden(f"You cannot {action} your own quotation: another manager decides on its discounts.")
        rules.check_move(current, action, self.today())
        await self._customer_open(current, action)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if not self.sees(principal, doc):
                raise NotFound(f"No quotation with id {quotation_id}.")
            if action in ("approve", "reject") and rules.is_owner(principal, doc):
                raise Forbidden(f"You cannot {action} your own quotation.")
            doc["status"] = rules.check_move(doc, action, self.today())
            if action in ("approve", "reject"):
                doc["approval"] = {"decision": action, "by": principal.user_id, "at": now, "comment": text}
            elif action == "send":
                doc["sent_at"] = now
            elif action in ("accept", "decline"):
                doc["answer"] = {"decision": action, "by": principal.user_id, "at": now, "comment": text}
            doc["updated_at"] = now
            doc["updated_by"] = principal.user_id
            return Change(doc, [self._event(event_type, doc, version, principal.user_id, comment=text)])

        return await self.repo.store.mutate(quotation_id, decide, expected_version=expected_version)

    # --- following the customers (application/customer_events.py) ------------------------------

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        return await self.repo.ids_of_customer(customer_id)

    async def move_to_survivor(
        self, record_id: str, duplicate_id: str, survivor_id: str, survivor: Document | None, cause: EventEnvelope
    ) -> bool:
        """One quotation of a merged-away customer now names the survivor (its current revision; the
        kept ones stay as they were offered): a new version and ``crm.quotation.updated`` with the
        change. One already moved is left alone (a redelivered merge writes nothing)."""
        actor = cause.actor or SYSTEM_ACTOR
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            changes = name_the_survivor(doc, duplicate_id, survivor_id, survivor)
            if changes is None:
                return Change(None)
            doc["updated_at"] = now
            doc["updated_by"] = actor
            data = ev.QUOTATION_UPDATED.data_model(quotation=rules.snapshot(doc), changes=changes)
            return Change(doc, [self.event(ev.QUOTATION_UPDATED, doc["_id"], data, version, actor, cause.traceparent)])

        before = await self.repo.get(record_id)
        if before is None:
            return False
        after = await self.repo.store.mutate(record_id, decide)
        return after.get("version") != before.get("version")
