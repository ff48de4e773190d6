"""What the API accepts: pydantic models at the edge, checked before any rule runs.

An interaction is one of six channels, told apart by ``channel`` (a tagged union),
each with its own fields next to the common ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crm_platform.contact_points import InvalidEmail, normalise_email
from crm_platform.contracts.interactions import Direction, FeedbackKind, FeedbackPriority, FeedbackStatus


def _stripped(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("lists the same value twice")
    return values


def _email(value: str) -> str:
    try:
        return normalise_email(value)
    except InvalidEmail as exc:
        raise ValueError(str(exc)) from exc


def _message_id(value: str) -> str:
    # "<abc@mail.example>" and "abc@mail.example" are the same message: keep the bare id.
    value = value.strip().removeprefix("<").removesuffix(">").strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("not an email Message-ID")
    return value


#: Social channels people name in many ways; a known one is stored with one spelling.
KNOWN_PLATFORMS = {
    p.lower(): p for p in ("WeChat", "WeCom", "DingTalk", "Feishu", "QQ", "WhatsApp", "LINE", "Telegram", "LinkedIn")
}
KNOWN_PLATFORMS.update({"微信": "WeChat", "企业微信": "WeCom", "钉钉": "DingTalk", "飞书": "Feishu", "lark": "Feishu"})


def _platform(value: str) -> str:
    value = _stripped(value)
    return KNOWN_PLATFORMS.get(value.lower(), value)


Id = Annotated[str, Field(min_length=1, max_length=100)]
Title = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_stripped)]
ShortText = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_stripped)]
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_stripped)]
LongText = Annotated[str, Field(max_length=20_000)]
RequiredText = Annotated[str, Field(min_length=1, max_length=20_000), AfterValidator(_stripped)]
Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email)]
MessageId = Annotated[str, Field(min_length=1, max_length=998), AfterValidator(_message_id)]
Platform = Annotated[
    str,
    Field(min_length=1, max_length=50, description="WeChat, WeCom, DingTalk, Feishu, ..."),
    AfterValidator(_platform),
]
ContactIds = Annotated[list[Id], Field(max_length=50), AfterValidator(_unique)]
Participants = Annotated[list[Email], Field(min_length=1, max_length=100), AfterValidator(_unique)]
Attendees = Annotated[list[Name], Field(max_length=100)]


# --- interactions ---------------------------------------------------------------------------


class _InteractionBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom: dict[str, Any] | None = Field(
        default=None,
        description="Custom field values by key (GET /v1/fields/interactions); on a change null clears one.",
    )

    customer_id: Id | None = Field(default=None, description="The customer; or give lead_id (exactly one of them).")
    lead_id: Id | None = Field(default=None, description="A lead (线索) followed up before it is a customer.")
    contact_ids: ContactIds = Field(default=[], description="Contacts of that customer who took part.")
    opportunity_id: Id | None = Field(default=None, description="The opportunity (商机) it moved forward.")
    occurred_at: AwareDatetime = Field(description="When it happened, with a time zone.")
    summary: ShortText | None = None


class PhoneIn(_InteractionBase):
    channel: Literal["phone"]
    direction: Direction
    duration_seconds: int | None = Field(default=None, ge=0, le=86_400)
    key_points: LongText | None = None
    objections: LongText | None = None


class EmailIn(_InteractionBase):
    channel: Literal["email"]
    subject: ShortText
    participants: Participants
    direction: Direction | None = None
    body_excerpt: LongText | None = None
    message_id: MessageId | None = Field(
        default=None, description="The email's Message-ID: the same email synced twice is one interaction."
    )


class MeetingIn(_InteractionBase):
    channel: Literal["meeting"]
    attendees: Attendees = []
    location: ShortText | None = None
    minutes: LongText | None = Field(default=None, description="Minutes (会议纪要), due within 24 hours.")


class VisitIn(_InteractionBase):
    channel: Literal["visit"]
    attendees: Attendees = []
    location: ShortText | None = None
    minutes: LongText | None = None


class SocialIn(_InteractionBase):
    channel: Literal["social"]
    platform: Platform
    direction: Direction | None = None
    content: LongText | None = None


class NoteIn(_InteractionBase):
    channel: Literal["note"]
    content: RequiredText


InteractionIn = Annotated[PhoneIn | EmailIn | MeetingIn | VisitIn | SocialIn | NoteIn, Field(discriminator="channel")]

#: The fields each channel has beyond the common ones (what PATCH may change).
CHANNEL_FIELDS: dict[str, frozenset[str]] = {
    "phone": frozenset({"direction", "duration_seconds", "key_points", "objections"}),
    "email": frozenset({"subject", "participants", "direction", "body_excerpt"}),
    "meeting": frozenset({"attendees", "location", "minutes"}),
    "visit": frozenset({"attendees", "location", "minutes"}),
    "social": frozenset({"platform", "direction", "content"}),
    "note": frozenset({"content"}),
}
#: Channel fields that may not be cleared.
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    "phone": frozenset({"direction"}),
    "email": frozenset({"subject", "participants"}),
    "social": frozenset({"platform"}),
    "note": frozenset({"content"}),
}
COMMON_FIELDS = frozenset({"contact_ids", "opportunity_id", "occurred_at", "summary"})
REQUIRED_COMMON = frozenset({"occurred_at", "contact_ids"})


class InteractionPatch(BaseModel):
    """Fields to change; the ones a channel does not have are refused. Channel and customer stay."""

    model_config = ConfigDict(extra="forbid")

    custom: dict[str, Any] | None = Field(
        default=None,
        description="Custom field values by key (GET /v1/fields/interactions); on a change null clears one.",
    )

    contact_ids: ContactIds | None = None
    opportunity_id: Id | None = None
    occurred_at: AwareDatetime | None = None
    summary: ShortText | None = None
    direction: Direction | None = None
    duration_seconds: int | None = Field(default=None, ge=0, le=86_400)
    key_points: LongText | None = None
    objections: LongText | None = None
    subject: ShortText | None = None
    participants: Participants | None = None
    body_excerpt: LongText | None = None
    attendees: Attendees | None = None
    location: ShortText | None = None
    minutes: LongText | None = None
    platform: Platform | None = None
    content: LongText | None = None


# --- tasks ----------------------------------------------------------------------------------


def _not_after_due(remind_at: datetime | None, info: ValidationInfo) -> datetime | None:
    # A field validator (not a model one), so that the error names remind_at.
    due_at = info.data.get("due_at")
    if remind_at is not None and due_at is not None and remind_at > due_at:
        raise ValueError("must not be after due_at")
    return remind_at


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom: dict[str, Any] | None = Field(
        default=None, description="Custom field values by key (GET /v1/fields/tasks); on a change null clears one."
    )

    title: Title
    notes: LongText | None = None
    due_at: AwareDatetime
    remind_at: AwareDatetime | None = Field(default=None, description="When to remind the assignee; not after due_at.")
    assignee_id: Id | None = Field(default=None, description="Default: you.")
    customer_id: Id | None = None
    lead_id: Id | None = Field(default=None, description="A lead (线索) instead of a customer (not both).")
    opportunity_id: Id | None = None
    interaction_id: Id | None = Field(default=None, description="The interaction this follow-up comes from.")

    @field_validator("remind_at")
    @classmethod
    def _remind_before_due(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return _not_after_due(value, info)


class TaskPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom: dict[str, Any] | None = Field(
        default=None, description="Custom field values by key (GET /v1/fields/tasks); on a change null clears one."
    )

    title: Title | None = None
    notes: LongText | None = None
    assignee_id: Id | None = None


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_at: AwareDatetime
    remind_at: AwareDatetime | None = Field(
        default=None,
        description="Omit to keep the reminder's lead time before the due time; null for no reminder.",
    )
    reason: ShortText | None = None

    @field_validator("remind_at")
    @classmethod
    def _remind_before_due(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        return _not_after_due(value, info)


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: ShortText | None = None


# --- feedback -------------------------------------------------------------------------------


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom: dict[str, Any] | None = Field(
        default=None, description="Custom field values by key (GET /v1/fields/feedback); on a change null clears one."
    )

    kind: FeedbackKind
    title: Title
    description: RequiredText
    customer_id: Id
    contact_id: Id | None = None
    priority: FeedbackPriority = "normal"
    handler_id: Id | None = Field(default=None, description="Who handles it; can be set later.")


class FeedbackPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom: dict[str, Any] | None = Field(
        default=None, description="Custom field values by key (GET /v1/fields/feedback); on a change null clears one."
    )

    kind: FeedbackKind | None = None
    title: Title | None = None
    description: RequiredText | None = None
    contact_id: Id | None = None
    priority: FeedbackPriority | None = None
    handler_id: Id | None = None


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: FeedbackStatus = Field(description="The status to move to.")
    note: ShortText | None = None
    handler_id: Id | None = Field(default=None, description="in_progress: who takes it (default: the handler, or you).")
    resolution: RequiredText | None = Field(default=None, description="resolved: required.")
    satisfaction: int | None = Field(default=None, ge=1, le=5, description="resolved/closed: the customer's rating.")
