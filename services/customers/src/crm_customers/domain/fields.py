"""Which protectable field (field-level permissions, :mod:`crm_platform.fieldaccess`) each list
filter, sort key, CSV column and history change touches.

A role may hide a customer's or contact's field or make it read-only; the API then leaves it
out of what it sends, refuses filtering or sorting on it, and refuses setting it. This module
names the field behind each way of reaching one (an address part is the field ``address``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crm_platform.auth import Principal
from crm_platform.fieldaccess import FieldPolicy

_ADDRESS_PARTS = ("province", "city", "district", "street", "postal_code")

#: List filter (query parameter) -> the customer field it reads.
FILTER_FIELD: Mapping[str, str] = {
    "industry": "industry",
    "size": "size",
    "source": "source",
    "tier": "tier",
    "lifecycle_stage": "lifecycle_stage",
    "province": "address",
    "city": "address",
    "district": "address",
    "uscc": "uscc",
    "phone": "phones",
    "email": "emails",
    "tags_all": "tags",
    "tags_any": "tags",
}
#: A phone or email filter also matches contacts' phones and emails.
FILTER_CONTACT_FIELD: Mapping[str, str] = {"phone": "phones", "email": "emails"}

#: Sort key -> the customer field it orders by.
SORT_FIELD: Mapping[str, str] = {
    "industry": "industry",
    "tier": "tier",
    "lifecycle_stage": "lifecycle_stage",
    "size": "size",
    "source": "source",
    "province": "address",
    "city": "address",
}

#: CSV column (import and export) -> (module, field).
COLUMN_FIELD: Mapping[str, tuple[str, str]] = {
    **{c: ("customers", c) for c in ("uscc", "industry", "size", "source", "tier", "lifecycle_stage", "tags")},
    **{c: ("customers", c) for c in ("phones", "emails", "website", "description")},
    **{part: ("customers", "address") for part in _ADDRESS_PARTS},
    "contact_role": ("contacts", "role"),
    "contact_title": ("contacts", "title"),
    "contact_phone": ("contacts", "phones"),
    "contact_email": ("contacts", "emails"),
}


def sort_keys(sort: str | None) -> list[str]:
    """The key names of a ``sort`` parameter ("-tier,name" -> ["tier", "name"])."""
    return [part.strip().lstrip("+-") for part in (sort or "").split(",") if part.strip()]


def ensure_query_visible(
    principal: Principal, filters: Mapping[str, Any], sort: str | None, custom: Iterable[str] = ()
) -> None:
    """Refuse (403 ``field-hidden``) a filter or sort on a field the caller's roles hide
    (``custom``: the keys of the query's ``custom.<key>`` filters)."""
    customers, contacts = principal.fields("customers"), principal.fields("contacts")
    given = [name for name, value in filters.items() if value is not None]
    customers.ensure_visible([FILTER_FIELD[n] for n in given if n in FILTER_FIELD], "filter")
    customers.ensure_visible([f"custom.{key}" for key in custom], "filter")
    contacts.ensure_visible([FILTER_CONTACT_FIELD[n] for n in given if n in FILTER_CONTACT_FIELD], "filter")
    customers.ensure_visible([SORT_FIELD[k] for k in sort_keys(sort) if k in SORT_FIELD], "sort")
    # A custom field's sort key is the field itself (custom.<key>).
    customers.ensure_visible([k for k in sort_keys(sort) if k.startswith("custom.")], "sort")


def ensure_columns_writable(principal: Principal, columns: Iterable[str]) -> None:
    """Refuse (403 ``field-read-only``) an import whose columns set fields the caller may not set."""
    by_module: dict[str, list[str]] = {}
    for column in columns:
        if column.startswith("contact.custom."):  # a contact custom field's column: the contact's field
            by_module.setdefault("contacts", []).append(column.removeprefix("contact."))
        elif column.startswith("custom."):  # a custom field's column is the field itself
            by_module.setdefault("customers", []).append(column)
        elif column in COLUMN_FIELD:
            module, name = COLUMN_FIELD[column]
            by_module.setdefault(module, []).append(name)
    for module, names in by_module.items():
        principal.fields(module).ensure_writable(names)


def visible_columns(principal: Principal, columns: Iterable[str]) -> list[str]:
    """The export's columns without those whose field the caller's roles hide."""
    out = []
    for column in columns:
        module, name = COLUMN_FIELD.get(column, ("customers", column))
        if not principal.fields(module).hides(name):
            out.append(column)
    return out


def redact_customer(body: Mapping[str, Any], principal: Principal) -> dict[str, Any]:
    """A customer as the API shows it, without the fields (its own and its contacts') the caller may not see."""
    out = principal.fields("customers").redact(body)
    contacts: FieldPolicy = principal.fields("contacts")
    if contacts.hidden and isinstance(out.get("contacts"), list):
        out["contacts"] = [contacts.redact(c) if isinstance(c, Mapping) else c for c in out["contacts"]]
    return out


def redact_changes(changes: Iterable[Mapping[str, Any]], principal: Principal) -> list[dict[str, Any]]:
    """History changes without those of hidden fields (``contacts[<id>].<field>`` for contacts)."""
    customers, contacts = principal.fields("customers"), principal.fields("contacts")
    out: list[dict[str, Any]] = []
    for change in changes:
        name = str(change.get("field", ""))
        if name.startswith("contacts[") and "]." in name:
            if contacts.hides(name.split("].", 1)[1]):
                continue
        elif customers.hides(name):
            continue
        entry = dict(change)
        if name == "contacts" and contacts.hidden:
            entry = {k: contacts.redact(v) if isinstance(v, Mapping) else v for k, v in entry.items()}
        out.append(entry)
    return out
