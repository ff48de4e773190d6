"""Converting a lead (no I/O): what the API takes, and the lead's side of the conversion's states.

A conversion is one attempt, ``<lead id>:<attempt>``, kept on the lead as ``conversion``:

* ``requested``: the lead is ``converting``; the customers service is asked (``conversion_requested``)
  to make or link the customer (+ contact) under the ids chosen here;
* ``customer_done``: the customer is there and an opportunity was asked for: the pipeline service is
  asked (``conversion_progressed``);
* ``converted``: everything is made; the lead is ``converted`` and links to it (final);
* ``failed``: a step was refused; the lead is ``qualified`` again, the reason and field errors shown.

Every id (customer, contact, opportunity) is chosen when the conversion is requested and kept in
its ``command`` (the :class:`crm_platform.contracts.leads.Conversion` sent), so a redelivered
command makes nothing twice, and an answer for another attempt is ignored.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_leads.domain.campaigns import Amount, Currency
from crm_leads.domain.leads import Document, refresh
from crm_leads.domain.model import CompanyName, LeadStatus, ShortText
from crm_platform.contact_points import Email, Phone
from crm_platform.contracts import leads as ev
from crm_platform.errors import Conflict


class ConversionState(StrEnum):
    requested = "requested"
    customer_done = "customer_done"
    converted = "converted"
    failed = "failed"


class CustomerOverrides(BaseModel):
    """What the new customer takes instead of the lead's values."""

    model_config = ConfigDict(extra="forbid")

    name: CompanyName | None = None
    kind: Literal["company", "person"] | None = None
    industry: ShortText | None = None
    region: ShortText | None = None


class ContactSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText
    title: ShortText | None = None
    phones: list[Phone] = Field(default_factory=list, max_length=10)
    emails: list[Email] = Field(default_factory=list, max_length=10)


class OpportunitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText
    amount: Amount | None = None
    currency: Currency = "CNY"
    expected_close_date: date | None = None
    pipeline_id: ShortText | None = None


class ConvertIn(BaseModel):
    """What to make of the lead. ``contact`` left out: built from the lead (when it has a
    ``contact_name``); ``null``: no contact."""

    model_config = ConfigDict(extra="forbid")

    customer_id: ShortText | None = Field(default=None, description="Link to this existing customer instead.")
    customer: CustomerOverrides | None = None
    contact: ContactSpec | None = None
    opportunity: OpportunitySpec | None = None
    owner_id: ShortText | None = Field(default=None, description="Who owns what is made (default: the lead's owner).")


def conversion_id(lead_id: str, attempt: int) -> str:
    return f"{lead_id}:{attempt}"


def default_contact(doc: Document) -> ContactSpec | None:
    """The contact a lead brings: its contact name with its phones and emails (none without a name)."""
    if not doc.get("contact_name"):
        return None
    return ContactSpec(
        name=doc["contact_name"], phones=list(doc.get("phones") or [])[:10], emails=list(doc.get("emails") or [])[:10]
    )


def ensure_convertible(doc: Document) -> None:
    """409 unless the lead is qualified (a converted lead names the customer it became)."""
    status = doc.get("status")
    if status == LeadStatus.converted.value:
        raise Conflict(f"The lead is already converted into customer {doc.get('customer_id')}.")
    if status != LeadStatus.qualified.value:
        raise Conflict(f"Only a qualified lead converts; this one is {status}.")


def start(doc: Document, command: ev.Conversion, attempt: int, now: datetime) -> None:
    """The lead becomes ``converting`` with ``command`` as its current conversion."""
    ensure_convertible(doc)
    doc["status"] = LeadStatus.converting.value
    doc["conversion_attempts"] = attempt
    doc["conversion"] = {
        "conversion_id": command.conversion_id,
        "state": ConversionState.requested.value,
        "step": "customer",
        "reason": None,
        "errors": [],
        "customer_id": command.customer_id,
        "existing_customer": command.existing_customer,
        "contact_id": command.contact.contact_id if command.contact else None,
        "opportunity_id": command.opportunity.opportunity_id if command.opportunity else None,
        "requested_by": command.requested_by,
        "requested_at": now,
        "command": command.model_dump(mode="json"),
    }
    doc["updated_at"] = now
    refresh(doc)


def current(doc: Document, conversion_id_: str, *states: ConversionState) -> dict[str, Any] | None:
    """The lead's conversion if it is ``conversion_id_`` and in one of ``states`` (else None: an
    answer for an old attempt, or one already applied)."""
    conversion = doc.get("conversion")
    if doc.get("status") != LeadStatus.converting.value or not conversion:
        return None
    if conversion.get("conversion_id") != conversion_id_ or conversion.get("state") not in states:
        return None
    return dict(conversion)


def command_of(doc: Document) -> ev.Conversion:
    return ev.Conversion.model_validate(doc["conversion"]["command"])


def customer_done(doc: Document, customer_id: str, contact_id: str | None, now: datetime) -> None:
    doc["conversion"] = {
        **doc["conversion"],
        "state": ConversionState.customer_done.value,
        "step": "opportunity",
        "customer_id": customer_id,
        "contact_id": contact_id,
    }
    doc["updated_at"] = now
    refresh(doc)


def finish(doc: Document, now: datetime) -> None:
    """The lead is converted and links to what it became."""
    conversion = doc["conversion"]
    doc["status"] = LeadStatus.converted.value
    doc["customer_id"] = conversion["customer_id"]
    doc["contact_id"] = conversion.get("contact_id")
    doc["opportunity_id"] = conversion.get("opportunity_id")
    doc["conversion"] = {**conversion, "state": ConversionState.converted.value, "step": None}
    doc["updated_at"] = now
    refresh(doc)


def fail(
    doc: Document, step: Literal["customer", "opportunity"], reason: str, errors: list[Any], now: datetime
) -> None:
    """The step was refused: the lead is qualified again, the failure shown on it."""
    doc["status"] = LeadStatus.qualified.value
    doc["conversion"] = {
        **doc["conversion"],
        "state": ConversionState.failed.value,
        "step": step,
        "reason": reason,
        "errors": list(errors),
    }
    doc["updated_at"] = now
    refresh(doc)
