"""Records as the pages render them, whatever the caller's roles leave out.

A role may hide fields of customers and contacts (field-level permissions): the customers service
then leaves them out of what it sends rather than sending them empty. The templates render with
``StrictUndefined``, so a missing field is filled here with the value of an empty one (the page
shows nothing for it, as for a field never filled in).
"""

from __future__ import annotations

from typing import Any

CUSTOMER_FIELDS: dict[str, Any] = {
    "uscc": None,
    "industry": None,
    "size": None,
    "address": None,
    "source": None,
    "tier": None,
    "lifecycle_stage": None,
    "website": None,
    "description": None,
}
CUSTOMER_LISTS = ("tags", "phones", "emails")
CONTACT_FIELDS: dict[str, Any] = {"role": None, "title": None, "notes": None}
CONTACT_LISTS = ("phones", "emails")


def complete_customer(customer: dict[str, Any]) -> dict[str, Any]:
    """``customer`` with every field a role may hide present (empty where it was left out)."""
    for name, empty in CUSTOMER_FIELDS.items():
        customer.setdefault(name, empty)
    for name in CUSTOMER_LISTS:
        customer.setdefault(name, [])
    for contact in customer.get("contacts") or []:
        for name, empty in CONTACT_FIELDS.items():
            contact.setdefault(name, empty)
        for name in CONTACT_LISTS:
            contact.setdefault(name, [])
    return customer


def complete_page(page: dict[str, Any]) -> dict[str, Any]:
    for item in page.get("items") or []:
        complete_customer(item)
    return page


OPPORTUNITY_FIELDS: dict[str, Any] = {
    "amount": None,
    "weighted_amount": None,
    "quotation_amount": None,
    "probability": None,
    "probability_overridden": False,
    "expected_close_date": None,
    "source_campaign": None,
    "notes": None,
}


def complete_opportunity(opportunity: dict[str, Any]) -> dict[str, Any]:
    """``opportunity`` with every field a role may hide present (empty where it was left out)."""
    for name, empty in OPPORTUNITY_FIELDS.items():
        opportunity.setdefault(name, empty)
    opportunity.setdefault("products", [])
    return opportunity


def complete_opportunities(page: dict[str, Any]) -> dict[str, Any]:
    for item in page.get("items") or []:
        complete_opportunity(item)
    return page
