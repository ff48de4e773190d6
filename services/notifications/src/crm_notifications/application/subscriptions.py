"""Webhook subscriptions: create, read, change, delete, and disable when they keep failing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from crm_notifications.adapters.repository import NEVER, Repository
from crm_notifications.domain.webhooks import AddressPolicy, new_secret, url_shape, valid_patterns
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import notifications as ev
from crm_platform.errors import NotFound, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.history import HistoryEntry, history
from crm_platform.idempotency import IdempotencyKey, create_once
from crm_platform.listing import Page, PageParams, fetch_page
from crm_platform.permissions import Permission
from crm_platform.store import Change

Document = dict[str, Any]
Resolver = Callable[[str, int], Awaitable[list[str]]]
SNAPSHOT_FIELDS = ("url", "event_types", "enabled", "description", "owner_id", "status", "disabled_reason")


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # getaddrinfo's order is the system's preference (RFC 6724): keep it, drop repeats.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_url(url: str, policy: AddressPolicy, resolver: Resolver = resolve) -> list[str]:
    """The addresses ``url``'s host resolves to, every one of them allowed by ``policy``;
    else a 422 naming ``url``. A delivery connects to these and nothing else (see
    :mod:`crm_notifications.adapters.pinned_http`)."""
    host, port = url_shape(url)
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise ValidationFailed.for_field("url", f"the host {host} does not resolve: {exc}") from exc
    if not addresses:
        raise ValidationFailed.for_field("url", f"the host {host} does not resolve")
    for address in addresses:
        reason = policy.refusal(address)
        if reason:
            raise ValidationFailed.for_field("url", f"{host} {reason}")
    return addresses


def snapshot(doc: Document) -> ev.WebhookSubscriptionSnapshot:
    return ev.WebhookSubscriptionSnapshot(
        subscription_id=doc["_id"],
        url=doc["url"],
        event_types=list(doc["event_types"]),
        enabled=doc["enabled"],
        description=doc.get("description"),
        owner_id=doc["owner_id"],
        status=doc["status"],
        disabled_reason=doc.get("disabled_reason"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def summarise(event: EventEnvelope) -> tuple[str, list[dict[str, Any]]]:
    """One line and the field changes of a subscription event, for its history."""
    if event.type == ev.SUBSCRIPTION_CHANGED.name:
        changes = ev.SUBSCRIPTION_CHANGED.parse(event).changes
        return "Subscription changed", [c.model_dump(mode="json") for c in changes]
    if event.type == ev.SUBSCRIPTION_DISABLED.name:
        failures = ev.SUBSCRIPTION_DISABLED.parse(event).consecutive_failures
        return f"Disabled after {failures} failed deliveries in a row", []
    summaries = {
        ev.SUBSCRIPTION_CREATED.name: "Subscription created",
        ev.SUBSCRIPTION_DELETED.name: "Subscription deleted",
    }
    return summaries.get(event.type, event.type), []


#: The data-scope module webhooks honour. A subscription belongs to the account that made it and
#: carries no department, so a scope of "all" reaches every subscription and any other scope the
#: caller's own (see the root README, "Who may do what").
WEBHOOKS = "webhooks"


def may_manage(principal: Principal) -> None:
    """The permission webhooks:manage (the built-in admin and integrator hold it)."""
    principal.require(Permission.webhooks_manage)


class Subscriptions:
    def __init__(
        self,
        repo: Repository,
        clock: Clock,
        events: EventFactory,
        policy: AddressPolicy,
        event_log: AsyncCollection[Document],
        resolver: Resolver = resolve,
    ) -> None:
        self._event_log = event_log
        self._repo = repo
        self._clock = clock
        self._events = events
        self.policy = policy
        self._resolver = resolver

    async def create(
        self,
        principal: Principal,
        url: str,
        event_types: list[str],
        secret: str | None,
        enabled: bool,
        description: str | None,
        key: IdempotencyKey | None = None,
    ) -> tuple[Document, str | None]:
        """The new subscription and, when the secret was generated here, that secret (shown this once).

        With a key the subscription's id comes from it, so a retry answers with the first one,
        generated secret included: the client that lost the first answer has no other way to learn it.
        """
        may_manage(principal)

        async def insert() -> Document:
            return await self._create(principal, url, event_types, secret, enabled, description, key)

        doc = await create_once(key, lambda _: self._repo.webhook_store.get(_subscription_id(key)), insert)
        # A first attempt killed between its two inserts left no health record: its retry adds it.
        with contextlib.suppress(DuplicateKeyError):
            await self._repo.webhook_health.insert_one({"_id": doc["_id"], "consecutive_failures": 0})
        return doc, (None if secret else doc["secret"])

    async def _create(
        self,
        principal: Principal,
        url: str,
        event_types: list[str],
        secret: str | None,
        enabled: bool,
        description: str | None,
        key: IdempotencyKey | None,
    ) -> Document:
        await check_url(url, self.policy, self._resolver)
        patterns = valid_patterns(event_types)
        generated = None if secret else new_secret()  # shown once, in the answer to this request
        now = self._clock.now()
        doc: Document = {
            "_id": _subscription_id(key),
            "url": url,
            "event_types": patterns,
            "enabled": enabled,
            "description": description,
            "owner_id": principal.user_id,
            # The owner's roles when they subscribed: what their deliveries may carry (field-level
            # permissions) when the directory's copy does not know the owner.
            "owner_roles": sorted(principal.roles),
            "status": "active",
            "disabled_reason": None,
            "secret": secret or generated,
            "created_at": now,
            "created_ms": int(now.timestamp() * 1000),
            "updated_at": now,
        }
        event = self._events(
            ev.SUBSCRIPTION_CREATED,
            doc["_id"],
            ev.SubscriptionCreated(subscription=snapshot(doc)),
            1,
            principal.user_id,
        )
        return await self._repo.webhook_store.insert(doc if key is None else key.stamp(doc), [event])

    async def get(self, principal: Principal, subscription_id: str) -> Document:
        may_manage(principal)
        doc = await self._repo.webhook_store.get(subscription_id)
        hidden = doc is not None and not principal.reaches_all(WEBHOOKS) and doc.get("owner_id") != principal.user_id
        if doc is None or doc["status"] == "deleted" or hidden:
            raise NotFound(f"No webhook subscription with id {subscription_id}.")
        return doc

    async def page(self, principal: Principal, paging: PageParams) -> Page:
        may_manage(principal)
        query: Document = {"status": "active"}
        if not principal.reaches_all(WEBHOOKS):
            query["owner_id"] = principal.user_id
        return await fetch_page(
            self._repo.webhooks,
            query,
            paging,
            sort_fields={"created_at": "created_ms", "url": "url"},
            default_sort="-created_at",
            projection={"outbox": 0, "secret": 0},
        )

    async def history(self, principal: Principal, subscription_id: str) -> list[HistoryEntry]:
        """Every change of the subscription, from its own events (the secret's value never appears)."""
        doc = await self.get(principal, subscription_id)
        return await history(self._event_log, doc, summarise)

    async def update(self, principal: Principal, subscription_id: str, patch: Document, expected: int) -> Document:
        await self.get(principal, subscription_id)
        if "url" in patch:
            await check_url(patch["url"], self.policy, self._resolver)
        if "event_types" in patch:
            patch["event_types"] = valid_patterns(patch["event_types"])
        reenabled = False

        def decide(doc: Document, version: int) -> Change:
            nonlocal reenabled
            changes = []
            for field, value in patch.items():
                if doc.get(field) != value:
                    shown = (None, None) if field == "secret" else (doc.get(field), value)
                    changes.append(ev.FieldChange(field=field, old=shown[0], new=shown[1]))
                    doc[field] = value
            if not changes:
                return Change(None)
            if any(c.field == "enabled" and c.new for c in changes):
                doc["disabled_reason"] = None
                reenabled = True
            elif any(c.field == "enabled" and not c.new for c in changes):
                doc["disabled_reason"] = "by_user"
            doc["updated_at"] = self._clock.now()
            data = ev.SubscriptionChanged(subscription=snapshot(doc), changes=changes)
            return Change(doc, [self._events(ev.SUBSCRIPTION_CHANGED, doc["_id"], data, version, principal.user_id)])

        doc = await self._repo.webhook_store.mutate(subscription_id, decide, expected_version=expected)
        if reenabled:
            await self._repo.webhook_health.update_one({"_id": subscription_id}, {"$set": {"consecutive_failures": 0}})
        return doc

    async def delete(self, principal: Principal, subscription_id: str, expected: int) -> Document:
        await self.get(principal, subscription_id)

        def decide(doc: Document, version: int) -> Change:
            doc.update(status="deleted", enabled=False, updated_at=self._clock.now())
            data = ev.SubscriptionDeleted(subscription=snapshot(doc))
            return Change(doc, [self._events(ev.SUBSCRIPTION_DELETED, doc["_id"], data, version, principal.user_id)])

        doc = await self._repo.webhook_store.mutate(subscription_id, decide, expected_version=expected)
        await self._park_pending(subscription_id, "subscription deleted")
        return doc

    async def disable_for_failures(self, subscription_id: str, failures: int) -> Document | None:
        """Disable a subscription that keeps failing; the document if this call disabled it, else None."""
        disabled_now = False

        def decide(doc: Document, version: int) -> Change:
            nonlocal disabled_now
            if not doc["enabled"] or doc["status"] != "active":
                return Change(None)
            disabled_now = True
            doc.update(enabled=False, disabled_reason="consecutive_failures", updated_at=self._clock.now())
            data = ev.SubscriptionDisabled(
                subscription=snapshot(doc), reason="consecutive_failures", consecutive_failures=failures
            )
            return Change(doc, [self._events(ev.SUBSCRIPTION_DISABLED, doc["_id"], data, version, ev.SYSTEM_ACTOR)])

        doc = await self._repo.webhook_store.mutate(subscription_id, decide)
        if not disabled_now:
            return None
        await self._park_pending(subscription_id, "subscription disabled after repeated failures")
        return doc

    async def _park_pending(self, subscription_id: str, reason: str) -> None:
        """Waiting deliveries of a stopped subscription go to the dead list, from where they can be replayed."""
        await self._repo.deliveries.update_many(
            {"subscription_id": subscription_id, "status": "pending"},
            {"$set": {"status": "dead", "due_ts": NEVER, "last_error": reason}},
        )


def _subscription_id(key: IdempotencyKey | None) -> str:
    """``wh-`` and 12 hex digits: random, or derived from the client's Idempotency-Key."""
    return f"wh-{(key.uuid() if key else uuid.uuid4()).hex[:12]}"
