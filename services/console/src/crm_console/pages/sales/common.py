"""What the sales pages share: line rows posted by a form (``lines[i].<field>``), products picked by
SKU from the catalogue, and the services' field errors mapped back to the form's rows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api

#: The inputs of one line on the quotation and opportunity forms.
LINE_FIELDS = ("product", "quantity", "unit_price", "discount_percent")
BLANK_ROWS = 3
CATALOGUE_SIZE = 500
_INDEXED = re.compile(r"^lines[\[.](\d+)\]?\.?(.*)$")


def line_rows(form: Any, extra: int = 0) -> list[dict[str, str]]:
    """Every row the form posted (``lines[i].product`` …), in order, blank ones kept (the form
    shows them again as they were)."""
    indexes = sorted({int(m.group(1)) for key in form.keys() if (m := _INDEXED.match(str(key))) is not None})
    rows = [{name: str(form.get(f"lines[{i}].{name}") or "").strip() for name in LINE_FIELDS} for i in indexes]
    return rows + [dict.fromkeys(LINE_FIELDS, "") for _ in range(extra)]


def is_blank(row: dict[str, str]) -> bool:
    return not any(row.values())


async def catalogue(client: Api) -> list[dict[str, Any]]:
    """Active products to pick from (the newest first), for the forms' SKU suggestions."""
    try:
        page = await client.get(
            "sales", "/v1/products", params={"active": "true", "sort": "-created_at", "limit": CATALOGUE_SIZE}
        )
    except UpstreamProblem:
        return []
    return list(page.get("items") or [])


async def product_by_sku(client: Api, typed: str) -> dict[str, Any] | None:
    """The product whose SKU is ``typed`` (any case, spaces around ignored), or None."""
    sku = typed.strip().upper()
    if not sku:
        return None
    page = await client.get("sales", "/v1/products", params={"q": sku, "limit": 20})
    for product in page.get("items") or []:
        if str(product.get("sku") or "").upper() == sku:
            return dict(product)
    return None


@dataclass
class PostedLines:
    """The lines of a form as the API wants them, and where each came from on the form."""

    body: list[dict[str, str]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the form's row of each API line
    errors: dict[str, str] = field(default_factory=dict)  # the console's own refusals (unknown SKU)


async def posted_lines(client: Api, rows: list[dict[str, str]], unknown_sku: str) -> PostedLines:
    """The non-blank rows as API lines: a product by its SKU (or its id, as an existing line
    holds it), the quantity, the unit price only when typed, the discount (0 when blank)."""
    out = PostedLines()
    for index, row in enumerate(rows):
        if is_blank(row):
            continue
        product = await product_by_sku(client, row["product"]) if row["product"] else None
        if product is None and row["product"]:
            out.errors[f"lines[{index}].product"] = unknown_sku
            continue
        line = {
            "product_id": str(product["id"]) if product else "",
            "quantity": row["quantity"],
            "discount_percent": row["discount_percent"] or "0",
        }
        if row["unit_price"]:
            line["unit_price"] = row["unit_price"]
        out.body.append(line)
        out.rows.append(index)
    return out


def form_errors(problem: UpstreamProblem, rows: list[int]) -> dict[str, str]:
    """The service's field errors by the form's input names: ``lines[i].product_id`` of the API's
    i-th line is the form's ``lines[<row>].product``; other fields keep their names."""
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        match = _INDEXED.match(name)
        if match is not None:
            index, rest = int(match.group(1)), match.group(2) or "product"
            row = rows[index] if index < len(rows) else index
            rest = "product" if rest in ("product_id", "sku") else rest
            out.setdefault(f"lines[{row}].{rest}", reason)
        else:
            out.setdefault(name, reason)
    return out
