"""What the API accepts: pydantic models at the edge, checked before any rule runs.

Amounts are decimal strings here; they are parsed into minor units by the domain
rules (which know the currency), so their errors name the field like any other.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

StageKind = Literal["open", "won", "lost"]
#: Opportunity fields a stage may require to be filled before it is entered.
BuiltinRequirableField = Literal[
    "amount", "expected_close_date", "contact_ids", "quotation_amount", "products", "source_campaign", "notes"
]
#: ``custom.<key>``: a custom field of opportunities (GET /v1/fields/opportunities), checked when configured.
CustomRequirement = Annotated[str, Field(pattern=r"^custom\.[a-z][a-z0-9_]{0,39}$")]
RequirableField = BuiltinRequirableField | CustomRequirement


def _stripped(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("lists the same value twice")
    return values


Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_stripped)]
ShortText = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_stripped)]
LongText = Annotated[str, Field(max_length=5000)]
Reason = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_stripped)]
Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="Lower-case letters, digits, '-' and '_'.")]
Id = Annotated[str, Field(min_length=1, max_length=100)]
MoneyText = Annotated[str, Field(min_length=1, max_length=40, description="A decimal string, e.g. '125000.00'.")]
DepartmentPath = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^/")]


# --- pipelines -------------------------------------------------------------------------


class RequirementsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: Annotated[list[RequirableField], Field(max_length=10), AfterValidator(_unique)] = []
    documents: Annotated[list[Slug], Field(max_length=10), AfterValidator(_unique)] = Field(
        default=[],
        description="Kinds of document that must be attached, e.g. requirements, proposal, quotation, contract.",
    )
    approval: bool = Field(default=False, description="A manager of the department must approve entering this stage.")


class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage_id: Slug | None = Field(
        default=None, description="Keep it to keep the stage (renaming, reordering); omit for a new stage."
    )
    name: ShortText
    name_en: ShortText | None = None
    probability: int = Field(ge=0, le=100, description="Default win probability in this stage, in percent.")
    kind: StageKind = "open"
    requirements: RequirementsIn = RequirementsIn()


class PipelineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText
    name_en: ShortText | None = None
    stages: Annotated[list[StageIn], Field(min_length=3, max_length=30)]


# --- opportunities ---------------------------------------------------------------------


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    quantity: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4)] = Decimal(1)
    unit_price: MoneyText


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Slug
    name: Text
    url: AnyHttpUrl

    @field_validator("url")
    @classmethod
    def _length(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > 2000:
            raise ValueError("at most 2000 characters")
        return value


class OpportunityFields(BaseModel):
    """Fields a rep fills in and may change later."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    contact_ids: Annotated[list[Id], Field(max_length=50), AfterValidator(_unique)] | None = None
    amount: MoneyText | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None
    expected_close_date: date | None = None
    probability: int | None = Field(
        default=None, ge=0, le=100, description="Override the stage's default; null resets it."
    )
    source_campaign: ShortText | None = None
    products: Annotated[list[ProductIn], Field(max_length=100)] | None = None
    notes: LongText | None = None
    quotation_amount: MoneyText | None = None
    amount_follows_lines: bool | None = Field(
        default=None, description="True: the amount is the line items' total (PUT .../lines), kept in step."
    )
    custom: dict[str, Any] | None = Field(
        default=None,
        description="Custom field values by key (GET /v1/fields/opportunities); on a change only the keys sent "
        "change, null clears one.",
    )


class OpportunityCreate(OpportunityFields):
    customer_id: Id
    name: Text
    contact_ids: Annotated[list[Id], Field(max_length=50), AfterValidator(_unique)] = []
    products: Annotated[list[ProductIn], Field(max_length=100)] = []
    documents: Annotated[list[DocumentIn], Field(max_length=50)] = []
    pipeline_id: Id | None = Field(default=None, description="Default: the default pipeline.")
    stage_id: Slug | None = Field(default=None, description="Default: the pipeline's first stage.")
    owner_id: Id | None = Field(
        default=None, description="Managers and admins may create for someone in their department."
    )
    department_id: Id | None = None
    department_path: DepartmentPath | None = None


class OpportunityPatch(OpportunityFields):
    """Send only what changes; ``probability: null`` goes back to the stage's default."""


class StageMoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage_id: Slug


class WinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class LoseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    competitor: ShortText | None = None


class ReopenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason
    stage_id: Slug


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: Id
    department_id: Id | None = None
    department_path: DepartmentPath
    reason: Reason | None = None


class ApprovalRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage_id: Slug
    note: Annotated[str, Field(max_length=1000)] | None = None


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage_id: Slug
    decision: Literal["approved", "rejected"] = "approved"
    note: Annotated[str, Field(max_length=1000)] | None = None


# --- targets ---------------------------------------------------------------------------


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: MoneyText
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None
    department_path: DepartmentPath | None = Field(
        default=None,
        description="For a department: its path (ending in its id); for a rep: the rep's department path. "
        "Taken from the directory when omitted (required only for those the directory does not know).",
    )


# --- line items from the catalogue's products (PUT /v1/opportunities/{id}/lines) --------------


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Id
    quantity: Annotated[str, Field(min_length=1, max_length=40, description="Decimal string > 0, e.g. '2.5'.")]
    unit_price: MoneyText | None = Field(
        default=None,
        description="Default: the product's price on the price list in the opportunity's currency, for the "
        "customer's tier (else the default list), valid today.",
    )
    discount_percent: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        default=None, description="Decimal string from 0 to 100; default 0."
    )


class LinesIn(BaseModel):
    """The whole list of line items (it replaces the stored one)."""

    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[LineIn], Field(max_length=200)]
    amount_follows_lines: bool | None = Field(
        default=None, description="Set the flag too (omitted: unchanged). True: the amount becomes the lines' total."
    )
