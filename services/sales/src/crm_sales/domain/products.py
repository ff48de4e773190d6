"""Products: what the API takes, the SKU rule, the stored shape and its sort keys (no I/O).

A SKU is trimmed and upper-cased before anything else sees it (" ab-100 " is "AB-100"), and is
unique in the organisation: the store's unique index on ``sku`` decides between two writers, so a
duplicate is refused even under concurrency. Products are never deleted: a deactivated one stays
readable (for the quotations and contracts that name it) but goes on no new price list.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crm_platform.auth import Principal
from crm_platform.contracts import sales as ev
from crm_platform.errors import ValidationFailed
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]

SORT_FIELDS = {"name": "s.name", "sku": "s.sku", "created_at": "s.created_at"}
DEFAULT_SORT = "name"
SKU_MAX = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalise_sku(raw: str) -> str:
    """The SKU as stored and compared: trimmed, upper-cased; empty, too long or with control
    characters is refused (ValueError, so pydantic names the field)."""
    sku = raw.strip().upper()
    if not sku:
        raise ValueError("must not be empty")
    if len(sku) > SKU_MAX:
        raise ValueError(f"at most {SKU_MAX} characters")
    if _CONTROL.search(sku):
        raise ValueError("must not hold control characters (tabs, line breaks)")
    return sku


def _text(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be blank")
    if _CONTROL.search(text):
        raise ValueError("must not hold control characters (tabs, line breaks)")
    return text


def _optional_text(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None


Sku = Annotated[str, Field(min_length=1, max_length=100, examples=["HX-200"]), AfterValidator(normalise_sku)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_text)]
Unit = Annotated[
    str, Field(min_length=1, max_length=20, description="个, 台, 套, 年 ... (free text)."), AfterValidator(_text)
]
Category = Annotated[str, Field(max_length=100), AfterValidator(_optional_text)]
Description = Annotated[str, Field(max_length=4000), AfterValidator(_optional_text)]


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: Name
    unit: Unit
    category: Category | None = None
    description: Description | None = None
    active: bool = Field(default=True, description="false: entered out of sale (no price lists).")


class ProductPatch(BaseModel):
    """Fields to change (only those sent). ``active`` changes through deactivate/activate."""

    model_config = ConfigDict(extra="forbid")

    sku: Sku | None = None
    name: Name | None = None
    unit: Unit | None = None
    category: Category | None = Field(default=None, description="null (or blank) removes it.")
    description: Description | None = Field(default=None, description="null (or blank) removes it.")


REQUIRED = ("sku", "name", "unit")


def sort_keys(doc: Document) -> Document:
    # The name case-folded, so "apple" and "Apple" sort together and a prefix search is one range.
    return {
        "name": str(doc["name"]).casefold(),
        "sku": doc["sku"],
        "created_at": epoch_ms(doc["created_at"]),
        "id": doc["_id"],
    }


def prefix_range(prefix: str) -> Document:
    """Every string starting with ``prefix``, as a range an ascending index serves."""
    return {"$gte": prefix, "$lt": prefix + "\U0010ffff"}


def new_product(product_id: str, data: ProductIn, principal: Principal, now: datetime) -> Document:
    doc: Document = {
        "_id": product_id,
        "sku": data.sku,
        "name": data.name,
        "unit": data.unit,
        "category": data.category,
        "description": data.description,
        "active": data.active,
        "live": True,  # always true: the prefix every list index starts with (an unfiltered page walks one)
        "created_at": now,
        "created_by": principal.user_id,
        "updated_at": now,
        "updated_by": principal.user_id,
    }
    doc["s"] = sort_keys(doc)
    return doc


def apply_patch(doc: Document, patch: ProductPatch) -> list[ev.FieldChange]:
    """Apply ``patch`` to ``doc``; the changes (old and new). 422 for a required field sent as null."""
    values = patch.model_dump(include=patch.model_fields_set)
    for name in REQUIRED:
        if name in values and values[name] is None:
            raise ValidationFailed.for_field(name, "cannot be cleared")
    changes: list[ev.FieldChange] = []
    for name, new in values.items():
        old = doc.get(name)
        if old != new:
            changes.append(ev.FieldChange(field=name, old=old, new=new))
            doc[name] = new
    return changes


def snapshot(doc: Document) -> ev.ProductSnapshot:
    return ev.ProductSnapshot(
        product_id=doc["_id"],
        sku=doc["sku"],
        name=doc["name"],
        unit=doc["unit"],
        category=doc.get("category"),
        description=doc.get("description"),
        active=bool(doc["active"]),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
    )
