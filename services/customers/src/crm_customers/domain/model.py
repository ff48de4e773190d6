"""The customer's fields as the API takes them, with the validation a person can rely on.

Formats are checked here (USCC check character, phone numbers to E.164, emails),
so a bad value is refused with the field and the reason before anything is written.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crm_customers.domain.names import display_name
from crm_customers.domain.uscc import InvalidUSCC, validate_uscc
from crm_platform.contact_points import Email, Phone


class Kind(StrEnum):
    company = "company"
    person = "person"


class Size(StrEnum):
    """Head count bands (人员规模)."""

    s1_20 = "1-20"
    s21_100 = "21-100"
    s101_500 = "101-500"
    s501_1000 = "501-1000"
    s1000_plus = "1000+"


class Source(StrEnum):
    """Source channel (客户来源)."""

    website = "website"
    inbound_call = "inbound_call"
    cold_call = "cold_call"
    referral = "referral"
    campaign = "campaign"
    exhibition = "exhibition"
    social = "social"
    partner = "partner"
    advertising = "advertising"
    lead_conversion = "lead_conversion"
    other = "other"


class Tier(StrEnum):
    """Value tier (客户等级)."""

    A = "A"
    B = "B"
    C = "C"


class LifecycleStage(StrEnum):
    lead = "lead"
    prospect = "prospect"
    customer = "customer"
    repeat_customer = "repeat_customer"
    dormant = "dormant"
    churned = "churned"


class ContactRole(StrEnum):
    decision_maker = "decision_maker"  # 决策人
    handler = "handler"  # 经办人
    influencer = "influencer"
    user = "user"


def _uscc(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return validate_uscc(value)
    except InvalidUSCC as exc:
        raise ValueError(str(exc)) from exc


def _name(value: str) -> str:
    cleaned = display_name(value)
    if not cleaned:
        raise ValueError("must not be empty")
    return cleaned


def _tag(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("a tag must not be empty")
    return cleaned


def _unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_name)]
Tag = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(_tag)]
ShortText = Annotated[str, Field(max_length=200)]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: ShortText | None = "CN"
    province: ShortText | None = None
    city: ShortText | None = None
    district: ShortText | None = None
    street: Annotated[str, Field(max_length=500)] | None = None
    postal_code: Annotated[str, Field(max_length=20)] | None = None


class ContactIn(BaseModel):
    """A contact as the API takes it."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    role: ContactRole | None = None
    title: ShortText | None = None
    phones: Annotated[list[Phone], Field(max_length=10)] = []
    emails: Annotated[list[Email], Field(max_length=10)] = []
    is_primary: bool = False
    notes: Annotated[str, Field(max_length=2000)] | None = None
    custom: dict[str, Any] | None = Field(
        default=None, description="Values of the contacts' custom fields (GET /v1/fields/contacts), by key."
    )

    _dedupe = field_validator("phones", "emails")(_unique)


class ContactPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    role: ContactRole | None = None
    title: ShortText | None = None
    phones: Annotated[list[Phone], Field(max_length=10)] | None = None
    emails: Annotated[list[Email], Field(max_length=10)] | None = None
    is_primary: bool | None = None
    notes: Annotated[str, Field(max_length=2000)] | None = None
    custom: dict[str, Any] | None = Field(
        default=None, description="Custom field values to change, by key (others stay); null clears one."
    )


class ProfileFields(BaseModel):
    """Fields shared by create and patch."""

    model_config = ConfigDict(extra="forbid")

    industry: ShortText | None = None
    size: Size | None = None
    address: Address | None = None
    source: Source | None = None
    tier: Tier | None = None
    lifecycle_stage: LifecycleStage | None = None
    website: Annotated[str, Field(max_length=300)] | None = None
    description: Annotated[str, Field(max_length=5000)] | None = None


class CustomerCreate(ProfileFields):
    kind: Kind
    name: Name
    uscc: Annotated[str | None, AfterValidator(_uscc)] = Field(
        default=None,
        description="Unified social credit code (统一社会信用代码), companies only; checked against GB 32100-2015.",
    )
    tags: Annotated[list[Tag], Field(max_length=50)] = []
    phones: Annotated[list[Phone], Field(max_length=10)] = []
    emails: Annotated[list[Email], Field(max_length=10)] = []
    contacts: Annotated[list[ContactIn], Field(max_length=100)] = []
    lifecycle_stage: LifecycleStage | None = LifecycleStage.prospect
    owner_id: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="Managers and admins may create for someone else; reps own what they create."
    )
    department_id: Annotated[str, Field(max_length=100)] | None = None
    # validate_default: the rule below must also run when department_path is left out.
    department_path: Annotated[str, Field(max_length=500)] | None = Field(default=None, validate_default=True)
    custom: dict[str, Any] | None = Field(
        default=None,
        description="Values of the custom fields administrators defined (GET /v1/fields/customers), by key.",
    )

    _dedupe = field_validator("tags", "phones", "emails")(_unique)

    # Cross-field rules as field validators (they see the fields declared before them), so the
    # error names the field at fault; a model validator would report it against the whole body.
    @field_validator("uscc")
    @classmethod
    def _only_companies(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("kind") == Kind.person:
            raise ValueError("only companies have a unified social credit code")
        return value

    @field_validator("department_path")
    @classmethod
    def _owner_needs_department(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("owner_id") and not value:
            raise ValueError("required when owner_id is given (the owner's department)")
        return value


class CustomerPatch(ProfileFields):
    """Only the fields sent are changed; send null to clear an optional field."""

    name: Name | None = None
    uscc: Annotated[str | None, AfterValidator(_uscc)] = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    phones: Annotated[list[Phone], Field(max_length=10)] | None = None
    emails: Annotated[list[Email], Field(max_length=10)] | None = None
    custom: dict[str, Any] | None = Field(
        default=None, description="Custom field values to change, by key (others stay); null clears one."
    )

    @field_validator("tags", "phones", "emails")
    @classmethod
    def _dedupe(cls, value: list[Any] | None) -> list[Any] | None:
        return None if value is None else _unique(value)

    @field_validator("name")
    @classmethod
    def _name_not_cleared(cls, value: str | None) -> str:
        # Runs only when the client sent the field: null would leave the customer without a name.
        if value is None:
            raise ValueError("a customer must have a name")
        return value


#: Profile fields a patch may touch, in the order history shows them.
PATCHABLE = (
    "name",
    "uscc",
    "industry",
    "size",
    "address",
    "source",
    "tier",
    "lifecycle_stage",
    "website",
    "description",
    "tags",
    "phones",
    "emails",
)
