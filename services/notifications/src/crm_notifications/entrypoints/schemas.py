"""Request and response models of the notifications HTTP API."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_notifications.domain.kinds import Kind
from crm_platform.listing import PageParams

Document = dict[str, Any]


class NotificationQuery(PageParams):
    filter: Literal["unread", "all"] = Field(default="all", description="unread: only what you have not read.")


class NotificationOut(BaseModel):
    id: str
    kind: Kind
    title: str
    body: str
    language: str
    link: str = Field(description="Path of the record in the web app, e.g. /customers/c-1.")
    event_id: str = Field(description="The event that caused it.")
    event_type: str
    created_at: datetime
    read_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None
    total: int | None = None


class UnreadCount(BaseModel):
    unread: int


class ReadAllOut(BaseModel):
    marked_read: int


class PreferencesOut(BaseModel):
    email: dict[Kind, bool] = Field(description="Per kind: also send it by email.")


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: dict[Kind, bool] = Field(description="Kinds to change; the others keep their setting.")


def notification_out(doc: Document) -> NotificationOut:
    return NotificationOut(
        id=doc["_id"],
        kind=doc["kind"],
        title=doc["title"],
        body=doc["body"],
        language=doc["language"],
        link=doc["link"],
        event_id=doc["event_id"],
        event_type=doc["event_type"],
        created_at=doc["created_at"],
        read_at=doc.get("read_at"),
    )


# --- webhooks ----------------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http or https; private and loopback addresses are refused.")
    event_types: list[str] = Field(max_length=100, description="Event types or fnmatch patterns: crm.customer.*")
    secret: str | None = Field(
        default=None, min_length=16, max_length=200, description="Signing secret; generated (and shown once) if absent."
    )
    enabled: bool = True
    description: str | None = Field(default=None, max_length=500)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    event_types: list[str] | None = Field(default=None, max_length=100)
    secret: str | None = Field(default=None, min_length=16, max_length=200, description="A new signing secret.")
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    enabled: bool
    description: str | None
    owner_id: str
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    secret: str | None = Field(default=None, description="Only in the response that generated it; never again.")


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None
    total: int | None = None


def webhook_out(doc: Document, secret: str | None = None) -> WebhookOut:
    return WebhookOut(
        id=doc["_id"],
        url=doc["url"],
        event_types=doc["event_types"],
        enabled=doc["enabled"],
        description=doc.get("description"),
        owner_id=doc["owner_id"],
        disabled_reason=doc.get("disabled_reason"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=doc["version"],
        secret=secret,
    )


class DeliveryQuery(PageParams):
    status: Literal["pending", "delivered", "dead"] | None = None


class AttemptOut(BaseModel):
    number: int
    at: datetime
    status_code: int | None
    response_ms: int
    error: str | None
    ok: bool


class DeliveryOut(BaseModel):
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    subject: str
    status: Literal["pending", "delivered", "dead"]
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    attempts: list[AttemptOut] | None = Field(default=None, description="Every attempt, oldest first (detail only).")
    event: dict[str, Any] | None = Field(default=None, description="The CloudEvent as delivered (detail only).")


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
    total: int | None = None


class ReplayOut(BaseModel):
    replayed: int


def delivery_out(doc: Document, attempts: list[Document] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=doc["_id"],
        subscription_id=doc["subscription_id"],
        event_id=doc["event_id"],
        event_type=doc["event_type"],
        subject=doc["subject"],
        status=doc["status"],
        attempt_count=doc["attempt_count"],
        last_status_code=doc.get("last_status_code") or None,
        last_error=doc.get("last_error") or None,
        created_at=doc["created_at"],
        attempts=None if attempts is None else [AttemptOut.model_validate(a) for a in attempts],
        event=json.loads(doc["body"]) if "body" in doc and attempts is not None else None,
    )
