"""Use case: replace an opportunity's line items (PUT /v1/opportunities/{id}/lines).

Products and prices come from the read copy of ``crm.sales.v1`` (application/catalogue.py),
read before the write; the lines, their total, the flag and (when the amount follows the
lines) the amount are stored with one ``crm.opportunity.updated`` in one guarded write.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from crm_pipeline.application.catalogue import Catalogue
from crm_pipeline.application.opportunities import Opportunities
from crm_pipeline.domain import lines as item_lines
from crm_pipeline.domain import money
from crm_pipeline.domain import opportunities as rules
from crm_pipeline.domain.model import LinesIn
from crm_pipeline.domain.opportunities import FieldErrors, local_day
from crm_platform.auth import Principal
from crm_platform.store import Change

Document = dict[str, Any]


class LineItems:
    def __init__(self, opportunities: Opportunities, catalogue: Catalogue) -> None:
        self.opportunities = opportunities
        self.catalogue = catalogue

    async def replace(
        self, principal: Principal, opportunity_id: str, data: LinesIn, expected_version: int | None
    ) -> Document:
        ops = self.opportunities
        current = await ops._visible(principal, opportunity_id)
        currency = current["currency"]
        products = await self.catalogue.products_by_id({line.product_id for line in data.lines})
        needs_price = any(line.unit_price is None for line in data.lines)
        price_lists: list[Document] = []
        if needs_price:
            customer = await ops.customers.get(current["customer_id"])
            tier = (customer or {}).get("tier")
            today = date.fromisoformat(local_day(ops.clock.now(), ops.zone))
            price_lists = item_lines.pick_price_list(
                await self.catalogue.price_lists_in(currency), currency, tier, today
            )
        errors = FieldErrors()
        lines: list[Document] = []
        for i, line in enumerate(data.lines):
            product = products.get(line.product_id)
            if product is None:
                errors.add(f"lines[{i}].product_id", f"no product {line.product_id} (a new one may take a second)")
                continue
            if not product.get("active"):
                errors.add(f"lines[{i}].product_id", f"{product['sku']} is deactivated: it goes on no new line item")
                continue
            try:
                quantity = item_lines.parse_quantity(line.quantity)
                discount = item_lines.parse_discount(line.discount_percent)
            except item_lines.InvalidLine as exc:
                errors.add(f"lines[{i}].{exc.field}", exc.reason)
                continue
            price_list_id: str | None = None
            if line.unit_price is not None:
                try:
                    unit_minor = money.parse_money(line.unit_price, currency)
                except money.InvalidMoney as exc:
                    errors.add(f"lines[{i}].unit_price", str(exc))
                    continue
            else:
                price = item_lines.price_from(price_lists, line.product_id, currency, quantity)
                least = item_lines.least_quantity(price_lists, line.product_id)
                if price is None and least is not None and quantity < least:
                    errors.add(
                        f"lines[{i}].quantity",
                        f"{product['sku']} is sold from {item_lines.plain(least)} {product['unit']} "
                        f"(the price lists' min_quantity); {item_lines.plain(quantity)} is below it",
                    )
                    continue
                if price is None:
                    errors.add(
                        f"lines[{i}].unit_price",
                        f"no price list in {currency} valid today prices {product['sku']}; give the unit price",
                    )
                    continue
                unit_minor, price_list_id = price.unit_price_minor, price.price_list_id
            lines.append(
                {
                    "product_id": product["_id"],
                    "sku": product["sku"],
                    "name": product["name"],
                    "unit": product["unit"],
                    "quantity": item_lines.plain(quantity),
                    "unit_price_minor": unit_minor,
                    "discount_percent": item_lines.plain(discount),
                    "line_total_minor": item_lines.line_total(quantity, unit_minor, discount),
                    "price_list_id": price_list_id,
                }
            )
        errors.raise_any()

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            rules.ensure_open(doc)
            if doc["currency"] != currency:
                # Changed since we priced the lines: ask the caller to look again.
                errors.add("lines", f"the opportunity's currency changed to {doc['currency']}; send the lines again")
                errors.raise_any()
            changes = item_lines.set_lines(doc, lines, data.amount_follows_lines)
            if not changes:
                return Change(None)
            rules.touch(doc, principal.user_id, ops.clock.now())
            rules.refresh(doc)
            return Change(doc, [ops._updated(doc, version, principal.user_id, changes)])

        return await ops.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)
