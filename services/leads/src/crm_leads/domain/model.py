"""What the leads API takes: pydantic models that validate and normalise each field (no I/O).

Phones go to E.164 and emails to lower case with the same helpers as customers
(:mod:`crm_platform.contact_points`), the company name to its tidy display form
(:mod:`crm_platform.company_names`), so a duplicate check compares like with like and
each error names the field at fault (``phones[1]``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from crm_platform.company_names import display_name
from crm_platform.contact_points import Email, Phone


class LeadStatus(StrEnum):
    new = "new"
    contacted = "contacted"
    qualified = "qualified"
    disqualified = "disqualified"
    #: Set by POST /v1/leads/{id}/convert only (never by a PATCH): see crm_leads.domain.conversion.
    converting = "converting"
    converted = "converted"


class LeadSource(StrEnum):
    web = "web"
    campaign = "campaign"
    referral = "referral"
    exhibition = "exhibition"
    cold_call = "cold_call"
    purchased_list = "purchased_list"
    partner = "partner"
    other = "other"
    web_form = "web_form"  # the public web-to-lead form of a campaign


def _company(value: str) -> str:
    cleaned = display_name(value)
    if not cleaned:
        raise ValueError("must not be blank")
    return cleaned


def _text(value: str) -> str:
    return value.strip()


def _unique(values: list[Any] | None) -> list[Any] | None:
    """The same phone or email twice is one (after normalisation: "138 0013 8000" and "+8613800138000")."""
    if values is None:
        return None
    return list(dict.fromkeys(values))


CompanyName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_company)]
ShortText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_text)]
Notes = Annotated[str, Field(max_length=5000)]


class LeadIn(BaseModel):
    """A new lead. Without ``owner_id`` it is the caller's own; ``in_pool: true`` puts it in the lead pool."""

    model_config = ConfigDict(extra="forbid")

    company_name: CompanyName
    contact_name: ShortText | None = None
    phones: list[Phone] = Field(default_factory=list, max_length=20)
    emails: list[Email] = Field(default_factory=list, max_length=20)
    source: LeadSource | None = None
    campaign_id: ShortText | None = None
    region: ShortText | None = None
    industry: ShortText | None = None
    notes: Notes | None = None
    in_pool: bool = Field(default=False, description="Enter the lead straight into the lead pool (no owner).")

    _dedupe = field_validator("phones", "emails")(_unique)


class LeadPatch(BaseModel):
    """Fields to change (only those sent); ``status`` moves the lead on (``disqualified`` needs a ``reason``)."""

    model_config = ConfigDict(extra="forbid")

    company_name: CompanyName | None = None
    contact_name: ShortText | None = None
    phones: list[Phone] | None = Field(default=None, max_length=20)
    emails: list[Email] | None = Field(default=None, max_length=20)
    source: LeadSource | None = None
    campaign_id: ShortText | None = None
    region: ShortText | None = None
    industry: ShortText | None = None
    notes: Notes | None = None
    status: LeadStatus | None = None
    reason: ShortText | None = Field(default=None, description="Why the lead is disqualified (required then).")

    _dedupe = field_validator("phones", "emails")(_unique)


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ShortText
    department_id: ShortText | None = Field(
        default=None, description="Send the lead to this department's pool (default: the lead's own department's)."
    )


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: ShortText
    reason: ShortText | None = None
