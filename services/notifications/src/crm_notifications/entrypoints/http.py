"""The HTTP API of the notifications service: the inbox, preferences and webhooks (/v1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from crm_notifications.application.deliveries import Deliveries
from crm_notifications.application.inbox import Inbox
from crm_notifications.application.preferences import Preferences
from crm_notifications.application.subscriptions import Subscriptions
from crm_notifications.entrypoints.schemas import (
    DeliveryOut,
    DeliveryPage,
    DeliveryQuery,
    NotificationOut,
    NotificationPage,
    NotificationQuery,
    PreferencesIn,
    PreferencesOut,
    ReadAllOut,
    ReplayOut,
    UnreadCount,
    WebhookCreate,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
    delivery_out,
    notification_out,
    webhook_out,
)
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import etag, expected_version
from crm_platform.history import HistoryEntry
from crm_platform.idempotency import IdempotencyKeyHeader, mark_replayed
from crm_platform.listing import PageParams
from crm_platform.openapi import problems

router = APIRouter(prefix="/v1")


def _state(name: str) -> Any:
    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return get


InboxDep = Annotated[Inbox, Depends(_state("inbox"))]
PreferencesDep = Annotated[Preferences, Depends(_state("preferences"))]
SubscriptionsDep = Annotated[Subscriptions, Depends(_state("subscriptions"))]
DeliveriesDep = Annotated[Deliveries, Depends(_state("deliveries"))]


# --- inbox ---------------------------------------------------------------------------------------


@router.get(
    "/notifications", response_model=NotificationPage, tags=["inbox"], summary="Your notifications, newest first"
)
async def list_notifications(
    principal: CurrentPrincipal, inbox: InboxDep, query: Annotated[NotificationQuery, Query()]
) -> NotificationPage:
    paging = PageParams(sort=query.sort, cursor=query.cursor, limit=query.limit, include_total=query.include_total)
    page = await inbox.page(principal, paging, unread_only=query.filter == "unread")
    return NotificationPage(
        items=[notification_out(d) for d in page.items], next_cursor=page.next_cursor, total=page.total
    )


@router.get("/notifications/unread-count", response_model=UnreadCount, tags=["inbox"], summary="Unread count")
async def unread_count(principal: CurrentPrincipal, inbox: InboxDep) -> UnreadCount:
    return UnreadCount(unread=await inbox.unread_count(principal))


@router.post("/notifications/read-all", response_model=ReadAllOut, tags=["inbox"], summary="Mark all read")
async def read_all(principal: CurrentPrincipal, inbox: InboxDep) -> ReadAllOut:
    return ReadAllOut(marked_read=await inbox.mark_all_read(principal))


@router.post(
    "/notifications/{notification_id}/read", response_model=NotificationOut, tags=["inbox"], summary="Mark one read"
)
async def read_one(notification_id: str, principal: CurrentPrincipal, inbox: InboxDep) -> NotificationOut:
    return notification_out(await inbox.mark_read(principal, notification_id))


@router.get(
    "/me/notification-preferences", response_model=PreferencesOut, tags=["inbox"], summary="Email on/off per kind"
)
async def get_preferences(principal: CurrentPrincipal, preferences: PreferencesDep) -> JSONResponse:
    email, version = await preferences.get(principal.user_id)
    return JSONResponse({"email": email}, headers={"ETag": etag(version)})


@router.put(
    "/me/notification-preferences",
    response_model=PreferencesOut,
    tags=["inbox"],
    summary="Change email on/off per kind (If-Match optional; kinds left out keep their setting)",
    responses=problems(409, 412),
)
async def put_preferences(
    body: PreferencesIn, request: Request, principal: CurrentPrincipal, preferences: PreferencesDep
) -> JSONResponse:
    email, version = await preferences.put(principal.user_id, body.email, expected_version(request, required=False))
    return JSONResponse({"email": email}, headers={"ETag": etag(version)})


# --- webhooks ------------------------------------------------------------------------------------


def _webhook(doc: dict[str, Any], status: int = 200, secret: str | None = None) -> JSONResponse:
    headers = {"ETag": etag(doc["version"])}
    if status == 201:
        headers["Location"] = f"/v1/webhooks/{doc['_id']}"
    return JSONResponse(webhook_out(doc, secret).model_dump(mode="json"), status_code=status, headers=headers)


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="Subscribe a URL to events",
    responses=problems(409),
)
async def create_webhook(
    body: WebhookCreate, principal: CurrentPrincipal, subs: SubscriptionsDep, key: IdempotencyKeyHeader
) -> JSONResponse:
    doc, generated = await subs.create(
        principal, body.url, body.event_types, body.secret, body.enabled, body.description, key
    )
    return mark_replayed(_webhook(doc, 201, generated), key)


@router.get("/webhooks", response_model=WebhookPage, tags=["webhooks"], summary="Webhook subscriptions")
async def list_webhooks(
    principal: CurrentPrincipal, subs: SubscriptionsDep, paging: Annotated[PageParams, Query()]
) -> WebhookPage:
    page = await subs.page(principal, paging)
    return WebhookPage(items=[webhook_out(d) for d in page.items], next_cursor=page.next_cursor, total=page.total)


@router.get("/webhooks/{subscription_id}", response_model=WebhookOut, tags=["webhooks"], summary="One subscription")
async def get_webhook(subscription_id: str, principal: CurrentPrincipal, subs: SubscriptionsDep) -> JSONResponse:
    return _webhook(await subs.get(principal, subscription_id))


@router.patch(
    "/webhooks/{subscription_id}",
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="Change URL, event types, secret, enabled (If-Match required)",
    responses=problems(409, 412, 428),
)
async def patch_webhook(
    subscription_id: str, body: WebhookPatch, request: Request, principal: CurrentPrincipal, subs: SubscriptionsDep
) -> JSONResponse:
    expected = expected_version(request, required=True)
    assert expected is not None
    patch = body.model_dump(exclude_unset=True)
    for field in ("url", "event_types", "secret", "enabled"):
        if field in patch and patch[field] is None:
            del patch[field]  # null means "leave as is" for the fields that cannot be empty
    return _webhook(await subs.update(principal, subscription_id, patch, expected))


@router.delete(
    "/webhooks/{subscription_id}",
    response_model=WebhookOut,
    tags=["webhooks"],
    summary="Delete (If-Match required)",
    responses=problems(409, 412, 428),
)
async def delete_webhook(
    subscription_id: str, request: Request, principal: CurrentPrincipal, subs: SubscriptionsDep
) -> JSONResponse:
    expected = expected_version(request, required=True)
    assert expected is not None
    return _webhook(await subs.delete(principal, subscription_id, expected))


@router.get(
    "/webhooks/{subscription_id}/history",
    response_model=list[HistoryEntry],
    tags=["webhooks"],
    summary="Every change of the subscription, newest last",
)
async def webhook_history(
    subscription_id: str, principal: CurrentPrincipal, subs: SubscriptionsDep
) -> list[HistoryEntry]:
    return await subs.history(principal, subscription_id)


@router.get(
    "/webhooks/{subscription_id}/deliveries",
    response_model=DeliveryPage,
    tags=["webhooks"],
    summary="Deliveries of a subscription (status=dead: the dead-letter list)",
)
async def list_deliveries(
    subscription_id: str,
    principal: CurrentPrincipal,
    deliveries: DeliveriesDep,
    query: Annotated[DeliveryQuery, Query()],
) -> DeliveryPage:
    paging = PageParams(sort=query.sort, cursor=query.cursor, limit=query.limit, include_total=query.include_total)
    page = await deliveries.page(principal, subscription_id, query.status, paging)
    return DeliveryPage(items=[delivery_out(d) for d in page.items], next_cursor=page.next_cursor, total=page.total)


@router.post(
    "/webhooks/{subscription_id}/deliveries/replay-dead",
    response_model=ReplayOut,
    tags=["webhooks"],
    summary="Replay every dead delivery of the subscription",
    responses=problems(409),
)
async def replay_dead(subscription_id: str, principal: CurrentPrincipal, deliveries: DeliveriesDep) -> ReplayOut:
    return ReplayOut(replayed=await deliveries.replay_dead(principal, subscription_id))


@router.get(
    "/webhooks/{subscription_id}/deliveries/{delivery_id}",
    response_model=DeliveryOut,
    tags=["webhooks"],
    summary="One delivery with every attempt (status code, response time, error)",
)
async def get_delivery(
    subscription_id: str, delivery_id: str, principal: CurrentPrincipal, deliveries: DeliveriesDep
) -> DeliveryOut:
    delivery, attempts = await deliveries.get(principal, subscription_id, delivery_id)
    return delivery_out(delivery, attempts)


@router.post(
    "/webhooks/{subscription_id}/deliveries/{delivery_id}/replay",
    response_model=DeliveryOut,
    tags=["webhooks"],
    summary="Send a dead delivery again",
    responses=problems(409),
)
async def replay_one(
    subscription_id: str, delivery_id: str, principal: CurrentPrincipal, deliveries: DeliveriesDep
) -> DeliveryOut:
    return delivery_out(await deliveries.replay(principal, subscription_id, delivery_id))
