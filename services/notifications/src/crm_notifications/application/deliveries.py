"""Webhook deliveries: stored by the consumer, sent by a worker, retried, dead-lettered, replayed.

The Kafka consumer only writes delivery jobs (:class:`Fanout`); HTTP happens in
:class:`DeliveryWorker`, one task per attempt, at most ``concurrency`` in flight per
subscription, each with its own timeout. A dead receiver therefore holds at most its own
few slots, never the consumer, the inbox or another subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import structlog
from pymongo.errors import DuplicateKeyError

from crm_notifications.adapters.pinned_http import pinned, pinned_client
from crm_notifications.adapters.repository import NEVER, Repository
from crm_notifications.application.inbox import Inbox
from crm_notifications.application.subscriptions import Resolver, Subscriptions, check_url, resolve
from crm_notifications.domain import planning
from crm_notifications.domain.webhooks import matches, next_delay, sign
from crm_notifications.metrics import WEBHOOK_DELIVERIES, WEBHOOK_LATENCY
from crm_notifications.settings import NotificationSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.errors import Conflict, NotFound, ValidationFailed
from crm_platform.events import CLOUDEVENTS_CONTENT_TYPE, EventEnvelope, registry
from crm_platform.fieldaccess import PROTECTED_FIELDS, UNRESTRICTED, redact_event_data
from crm_platform.listing import Page, PageParams, fetch_page
from crm_platform.roles import RoleBook

log = structlog.get_logger(__name__)
Document = dict[str, Any]
USER_AGENT = "crm-webhooks/1.0"


def delivery_id(subscription_id: str, event_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"crm-webhook:{subscription_id}:{event_id}"))


class Fanout:
    """The consumer side: one stored job per matching enabled subscription and event.

    A job's body is the event as it travelled, except where the subscription's owner may not see
    a field (field-level permissions): then the customer, contact and opportunity snapshots in
    it leave those fields out, as the API does for the owner. Their roles are the directory's
    copy of them, or the roles they held when they subscribed.
    """

    def __init__(self, repo: Repository, clock: Clock, wake: Any = None, roles: RoleBook | None = None) -> None:
        self._repo = repo
        self._clock = clock
        self._wake = wake
        self._roles = roles

    async def on_event(self, envelope: EventEnvelope) -> None:
        subscriptions = await self._repo.webhooks.find(
            {"status": "active", "enabled": True}, projection={"event_types": 1, "owner_id": 1, "owner_roles": 1}
        ).to_list(None)
        declared = registry.get(envelope.type)
        exact_only = declared is not None and declared.exact_only
        wanted = [s for s in subscriptions if matches(envelope.type, s["event_types"], exact_only=exact_only)]
        if not wanted:
            return
        # The CloudEvent as it travelled on Kafka: unset top-level attributes left out, data untouched.
        attributes = {k: v for k, v in envelope.model_dump(mode="json").items() if v is not None}
        body = json.dumps(attributes, ensure_ascii=False, separators=(",", ":"))
        bodies: dict[tuple[str, ...], str] = {}
        now = self._clock.now()
        restricted = self._roles is not None and self._roles.restricts_fields
        for subscription in wanted:
            subscription_id = subscription["_id"]
            # Only when some role restricts a field is the owner looked up (one read by id).
            roles = await self._owner_roles(subscription) if restricted else ()
            if roles not in bodies:
                bodies[roles] = self._body_for(roles, envelope, attributes, body)
            job = {
                "_id": delivery_id(subscription_id, envelope.id),
                "dedupe_key": f"{subscription_id}:{envelope.id}",
                "subscription_id": subscription_id,
                "event_id": envelope.id,
                "event_type": envelope.type,
                "subject": envelope.subject,
                "body": bodies[roles],
                "status": "pending",
                "attempt_count": 0,
                "first_attempt_ts": 0.0,
                "due_ts": now.timestamp(),
                "last_status_code": 0,
                "last_error": "",
                "created_at": now,
                "created_ms": int(now.timestamp() * 1000),
                "delivered_ts": 0.0,
            }
            with contextlib.suppress(DuplicateKeyError):  # the same event again: already queued
                await self._repo.deliveries.insert_one(job)
        if self._wake is not None:
            self._wake()

    async def _owner_roles(self, subscription: Document) -> tuple[str, ...]:
        user = await self._repo.users.find_one({"_id": subscription.get("owner_id")}, projection={"roles": 1})
        roles = user.get("roles") if user is not None else subscription.get("owner_roles")
        return tuple(sorted(roles or []))

    def _body_for(self, roles: tuple[str, ...], envelope: EventEnvelope, attributes: Document, body: str) -> str:
        if self._roles is None or not isinstance(envelope.data, dict):
            return body
        book = self._roles
        policies = {m: book.field_policy(roles, m) for m in PROTECTED_FIELDS}
        if all(p.unrestricted for p in policies.values()):
            return body
        data = redact_event_data(envelope.type, attributes.get("data") or {}, lambda m: policies.get(m) or UNRESTRICTED)
        return json.dumps({**attributes, "data": data}, ensure_ascii=False, separators=(",", ":"))


class DeliveryWorker:
    """A background loop: claims due deliveries and runs each attempt as its own task."""

    def __init__(
        self,
        repo: Repository,
        subscriptions: Subscriptions,
        inbox: Inbox,
        clock: Clock,
        settings: NotificationSettings,
        resolver: Resolver = resolve,
    ) -> None:
        self._repo = repo
        self._subscriptions = subscriptions
        self._inbox = inbox
        self._clock = clock
        self._s = settings
        self._resolver = resolver
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # --- Background protocol ---------------------------------------------------------------------

    def start(self) -> None:
        if self._loop_task is None:
            self._client = pinned_client(self._s.webhook_timeout_seconds, {"user-agent": USER_AGENT})
            self._loop_task = asyncio.create_task(self._loop(), name="webhook-deliveries")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop_task = None
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        self._wakeup.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run()
            except Exception as exc:
                log.error("webhook round failed; retrying", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._s.webhook_poll_seconds)
            self._wakeup.clear()

    # --- one round ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Claim due deliveries of subscriptions with a free slot and start their attempts."""
        now = self._clock.now().timestamp()
        limit = self._s.webhook_concurrency_per_subscription
        full = [sid for sid, n in self._in_flight.items() if n >= limit]
        query: Document = {"due_ts": {"$lte": now}}
        if full:
            query["subscription_id"] = {"$nin": full}  # a saturated subscription cannot crowd out the others
        due = (
            await self._repo.deliveries.find(query, projection={"body": 0})
            .sort("due_ts", 1)
            .to_list(self._s.webhook_batch_size)
        )
        if not due:  # an idle round: no subscription to read (an empty $in read every webhook)
            return 0
        subscriptions = {
            s["_id"]: s
            async for s in self._repo.webhooks.find(
                {"_id": {"$in": sorted({d["subscription_id"] for d in due})}}, projection={"outbox": 0}
            )
        }
        started = 0
        for delivery in due:
            sub_id = delivery["subscription_id"]
            if self._in_flight[sub_id] >= limit:
                continue
            claimed = await self._repo.deliveries.update_one(
                {"_id": delivery["_id"], "due_ts": delivery["due_ts"]},
                {"$set": {"due_ts": now + self._s.webhook_lease_seconds}},
            )
            if not claimed.modified_count:
                continue  # another replica took it
            sub = subscriptions.get(sub_id)
            if sub is None or sub["status"] != "active" or not sub["enabled"]:
                await self._park(delivery["_id"], "subscription disabled or deleted")
                continue
            self._in_flight[sub_id] += 1
            task = asyncio.create_task(self._attempt(delivery["_id"], sub))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, subscription_id=sub_id))
            started += 1
        return started

    def _done(self, task: asyncio.Task[None], *, subscription_id: str) -> None:
        self._tasks.discard(task)
        self._in_flight[subscription_id] -= 1
        if self._in_flight[subscription_id] <= 0:
            del self._in_flight[subscription_id]
        self._wakeup.set()  # a slot is free: its subscription may have more waiting

    async def settle(self) -> None:
        """Wait for the attempts in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _park(self, delivery_id_: str, reason: str) -> None:
        await self._repo.deliveries.update_one(
            {"_id": delivery_id_}, {"$set": {"status": "dead", "due_ts": NEVER, "last_error": reason}}
        )

    async def _attempt(self, delivery_id_: str, sub: Document) -> None:
        delivery = await self._repo.deliveries.find_one({"_id": delivery_id_})
        if delivery is None or delivery["status"] != "pending":
            return
        number = int(delivery["attempt_count"]) + 1
        started_at = self._clock.now()
        status_code, error, elapsed_ms = await self._post(sub, delivery)
        ok = error is None
        now = self._clock.now().timestamp()
        first = float(delivery["first_attempt_ts"]) or started_at.timestamp()
        await self._repo.attempts.insert_one(
            {
                "_id": f"{delivery_id_}:{number}",
                "delivery_id": delivery_id_,
                "subscription_id": sub["_id"],
                "number": number,
                "at": started_at,
                "status_code": status_code,
                "response_ms": elapsed_ms,
                "error": error,
                "ok": ok,
            }
        )
        update: Document = {"attempt_count": number, "first_attempt_ts": first, "last_status_code": status_code or 0}
        if ok:
            update.update(status="delivered", due_ts=NEVER, last_error="", delivered_ts=now)
            outcome = "delivered"
        else:
            delay = next_delay(number, self._s.webhook_retry_initial_seconds, self._s.webhook_retry_max_seconds)
            if now + delay - first > self._s.webhook_retry_period_seconds:
                update.update(status="dead", due_ts=NEVER, last_error=error or "")
                outcome = "dead"
            else:
                update.update(due_ts=now + delay, last_error=error or "")
                outcome = "retry"
        WEBHOOK_DELIVERIES.labels(outcome).inc()
        # Only while still pending: a subscription disabled meanwhile has parked it in the dead list.
        await self._repo.deliveries.update_one({"_id": delivery_id_, "status": "pending"}, {"$set": update})
        await self._track_health(sub, ok)

    async def _post(self, sub: Document, delivery: Document) -> tuple[int | None, str | None, int]:
        """(status code, error or None when delivered, response time in ms)."""
        assert self._client is not None
        try:
            # Resolved and checked now (DNS may have changed since the subscription was made), and
            # the request goes to these very addresses: no second lookup an attacker could answer.
            addresses = await check_url(sub["url"], self._subscriptions.policy, self._resolver)
        except ValidationFailed as exc:
            WEBHOOK_DELIVERIES.labels("refused").inc()
            return None, "refused: " + "; ".join(e.reason for e in exc.errors), 0
        body = delivery["body"].encode()
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "content-type": CLOUDEVENTS_CONTENT_TYPE,
            "webhook-id": delivery["event_id"],
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(sub["secret"], timestamp, body),
        }
        started = time.perf_counter()
        try:
            with pinned(sub["url"], addresses):
                response = await self._client.post(sub["url"], content=body, headers=headers)
        except httpx.TimeoutException:
            return None, f"timeout after {self._s.webhook_timeout_seconds:g}s", _ms(started)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500], _ms(started)
        elapsed = _ms(started)
        WEBHOOK_LATENCY.observe(elapsed / 1000)
        if 200 <= response.status_code < 300:
            return response.status_code, None, elapsed
        return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}", elapsed

    async def _track_health(self, sub: Document, ok: bool) -> None:
        health = self._repo.webhook_health
        if ok:
            await health.update_one({"_id": sub["_id"]}, {"$set": {"consecutive_failures": 0}})
            return
        await health.update_one({"_id": sub["_id"]}, {"$inc": {"consecutive_failures": 1}})
        state = await health.find_one({"_id": sub["_id"]})
        failures = int((state or {}).get("consecutive_failures", 0))
        if failures < self._s.webhook_disable_after_failures:
            return
        disabled = await self._subscriptions.disable_for_failures(sub["_id"], failures)
        if disabled is not None:
            log.warning("webhook subscription disabled", subscription=sub["_id"], failures=failures)
            intents = planning.webhook_disabled(disabled["owner_id"], disabled["_id"], disabled["url"], failures)
            await self._inbox.deliver(
                intents,
                event_id=f"webhook-disabled:{disabled['_id']}:{disabled['version']}",
                event_type="crm.webhook.subscription_disabled",
            )


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


class Deliveries:
    """What an admin sees and does with a subscription's deliveries."""

    def __init__(self, repo: Repository, subscriptions: Subscriptions, clock: Clock, wake: Any) -> None:
        self._repo = repo
        self._subscriptions = subscriptions
        self._clock = clock
        self._wake = wake

    async def page(self, principal: Principal, subscription_id: str, status: str | None, paging: PageParams) -> Page:
        await self._subscriptions.get(principal, subscription_id)
        query: Document = {"subscription_id": subscription_id}
        if status:
            query["status"] = status
        return await fetch_page(
            self._repo.deliveries,
            query,
            paging,
            sort_fields={"created_at": "created_ms"},
            default_sort="-created_at",
            projection={"body": 0},
        )

    async def get(
        self, principal: Principal, subscription_id: str, delivery_id_: str
    ) -> tuple[Document, list[Document]]:
        await self._subscriptions.get(principal, subscription_id)  # someone else's subscription: 404
        delivery = await self._repo.deliveries.find_one({"_id": delivery_id_, "subscription_id": subscription_id})
        if delivery is None:
            raise NotFound(f"No delivery {delivery_id_} for webhook subscription {subscription_id}.")
        attempts = await self._repo.attempts.find({"delivery_id": delivery_id_}).to_list(None)
        return delivery, sorted(attempts, key=lambda a: int(a["number"]))

    async def _enabled(self, principal: Principal, subscription_id: str) -> None:
        sub = await self._subscriptions.get(principal, subscription_id)
        if not sub["enabled"]:
            # Replaying into a disabled subscription would park the deliveries again at once.
            raise Conflict("The subscription is disabled; enable it (PATCH enabled=true), then replay.")

    async def replay(self, principal: Principal, subscription_id: str, delivery_id_: str) -> Document:
        await self._enabled(principal, subscription_id)
        delivery, _ = await self.get(principal, subscription_id, delivery_id_)
        if delivery["status"] != "dead":
            raise Conflict(f"Only dead deliveries can be replayed; this one is {delivery['status']}.")
        await self._requeue({"_id": delivery_id_, "status": "dead"})
        found = await self._repo.deliveries.find_one({"_id": delivery_id_}, projection={"body": 0})
        assert found is not None
        return found

    async def replay_dead(self, principal: Principal, subscription_id: str) -> int:
        await self._enabled(principal, subscription_id)
        return await self._requeue({"subscription_id": subscription_id, "status": "dead"})

    async def _requeue(self, query: Document) -> int:
        # A replay starts a new retry period; the attempts logged so far stay (numbering continues).
        now = self._clock.now().timestamp()
        result = await self._repo.deliveries.update_many(
            query, {"$set": {"status": "pending", "due_ts": now, "first_attempt_ts": 0.0}}
        )
        if result.modified_count:
            self._wake()
        return int(result.modified_count)


def body_json(delivery: Document) -> Any:
    return json.loads(delivery["body"]) if "body" in delivery else None
