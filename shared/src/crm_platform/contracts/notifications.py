"""Events of the notifications service, on ``crm.notifications.v1`` (key: the subscription id).

Webhook subscriptions are the service's only aggregate that other parties care about:
integrators' tooling and audits follow them. Every event carries the full
:class:`WebhookSubscriptionSnapshot` as it stands after the change (never the secret),
so a consumer keeps a read copy from any single event, applied by ``aggregateversion``.
Inbox notifications are per-user and private: they are not published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_platform.events import define

TOPIC = "crm.notifications.v1"
SYSTEM_ACTOR = "system:notifications"

SubscriptionStatus = Literal["active", "deleted"]
DisabledReason = Literal["consecutive_failures", "by_user"]

_EXAMPLE_SUBSCRIPTION: dict[str, Any] = {
    "subscription_id": "wh-3f2a9c1e",
    "url": "https://hooks.example.com/crm",
    "event_types": ["crm.customer.*", "crm.opportunity.won"],
    "enabled": True,
    "description": "ERP sync",
    "owner_id": "u-admin-1",
    "status": "active",
    "disabled_reason": None,
    "created_at": "2026-11-25T08:00:00Z",
    "updated_at": "2026-11-25T08:00:00Z",
}


class WebhookSubscriptionSnapshot(BaseModel):
    """A webhook subscription after the change (the signing secret is never published)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_SUBSCRIPTION]})

    subscription_id: str
    url: str = Field(description="Where deliveries are POSTed (http or https).")
    event_types: list[str] = Field(description="fnmatch-style patterns of event types, e.g. crm.customer.*.")
    enabled: bool
    description: str | None = None
    owner_id: str = Field(description="The user who created it; told when it is disabled.")
    status: SubscriptionStatus = "active"
    disabled_reason: DisabledReason | None = None
    created_at: datetime
    updated_at: datetime


class FieldChange(BaseModel):
    field: str
    old: object = None
    new: object = None


class SubscriptionCreated(BaseModel):
    subscription: WebhookSubscriptionSnapshot


class SubscriptionChanged(BaseModel):
    subscription: WebhookSubscriptionSnapshot
    changes: list[FieldChange] = Field(description="Field, old and new; a rotated secret shows as 'secret' only.")


class SubscriptionDisabled(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subscription": {
                        **_EXAMPLE_SUBSCRIPTION,
                        "enabled": False,
                        "disabled_reason": "consecutive_failures",
                        "updated_at": "2026-11-26T02:14:09Z",
                    },
                    "reason": "consecutive_failures",
                    "consecutive_failures": 20,
                }
            ]
        }
    )

    subscription: WebhookSubscriptionSnapshot
    reason: DisabledReason
    consecutive_failures: int = Field(default=0, description="Failed attempts in a row when it was disabled.")


class SubscriptionDeleted(BaseModel):
    subscription: WebhookSubscriptionSnapshot


SUBSCRIPTION_CREATED = define(
    "crm.webhook.subscription_created",
    SubscriptionCreated,
    TOPIC,
    description="An integrator subscribed a webhook URL to event types (subject: subscription id).",
)
SUBSCRIPTION_CHANGED = define(
    "crm.webhook.subscription_changed",
    SubscriptionChanged,
    TOPIC,
    description="A webhook subscription's URL, event types, secret or enabled flag changed (subject: subscription id).",
)
SUBSCRIPTION_DISABLED = define(
    "crm.webhook.subscription_disabled",
    SubscriptionDisabled,
    TOPIC,
    description="A webhook subscription was disabled after too many failed deliveries in a row (subject: "
    "subscription id); its owner is told in the inbox.",
)
SUBSCRIPTION_DELETED = define(
    "crm.webhook.subscription_deleted",
    SubscriptionDeleted,
    TOPIC,
    description="A webhook subscription was deleted: nothing more is delivered to it (subject: subscription id).",
)

SUBSCRIPTION_EVENTS = (SUBSCRIPTION_CREATED, SUBSCRIPTION_CHANGED, SUBSCRIPTION_DISABLED, SUBSCRIPTION_DELETED)
