"""A customer merge as each sales record (quotation, contract, ticket) takes it."""

from __future__ import annotations

from typing import Any

from crm_platform.contracts import sales as ev

Document = dict[str, Any]


def name_the_survivor(
    doc: Document, duplicate_id: str, survivor_id: str, survivor: Document | None
) -> list[ev.FieldChange] | None:
    """``doc``, a record of the merged-away customer ``duplicate_id``, now names ``survivor_id``
    (and the survivor's name, when the copy has it and it differs): the changes made. None when
    ``doc`` names another customer already (moved by an earlier delivery of the merge)."""
    if doc["customer_id"] != duplicate_id:
        return None
    changes = [ev.FieldChange(field="customer_id", old=duplicate_id, new=survivor_id)]
    doc["customer_id"] = survivor_id
    name = (survivor or {}).get("name")
    if name and name != doc.get("customer_name"):
        changes.append(ev.FieldChange(field="customer_name", old=doc.get("customer_name"), new=name))
        doc["customer_name"] = name
    return changes
