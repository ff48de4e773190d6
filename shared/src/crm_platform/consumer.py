"""Idempotent event consumers with retries, backoff and a dead-letter topic.

A service declares handlers per event type; :class:`EventConsumer` subscribes a
consumer group to the topics, decodes each CloudEvent, calls the handler, retries
failures with exponential backoff (in place, so one aggregate's events stay in
order) and, when the attempts are spent, publishes the original message to the
group's dead-letter topic with the reason in its headers. Offsets are committed
only after the handler (or the dead-letter publish) has finished: a crash means
redelivery, which the idempotency helpers below turn into a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from crm_platform.availability import store_unavailable
from crm_platform.events import EventEnvelope, decode_event
from crm_platform.kafka import dead_letter_topic
from crm_platform.metrics import CONSUMER_LAG, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from crm_platform.storemetrics import ORIGIN

log = structlog.get_logger(__name__)

Handler = Callable[[EventEnvelope], Awaitable[None]]
Document = dict[str, Any]


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help (the event is invalid for us)."""


class EventConsumer:
    def __init__(
        self,
        broker: KafkaBroker,
        *,
        group_id: str,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        max_attempts: int = 5,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        batch_size: int = 1,
        batch_timeout_ms: int = 100,
        fallback: Handler | None = None,
        needed_for_readiness: bool = True,
    ) -> None:
        self.group_id = group_id
        # False: a replica without partitions in this group still serves (its effect reaches it
        # another way, e.g. the role definitions' read copy, reloaded from the store).
        self.needed_for_readiness = needed_for_readiness
        self.topics = list(topics)
        self.handlers = dict(handlers)
        # For the types no handler names (a consumer that takes every event of a topic generically,
        # including types added after it was written, such as the audit log); None ignores them.
        self.fallback = fallback
        self.dlq_topic = dead_letter_topic(group_id)
        self._broker = broker
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sleep = sleep
        self.batch_size = batch_size
        self.subscriber: Any
        description = f"Consumer group {group_id}: handles {', '.join(sorted(self.handlers))}"
        if batch_size > 1:
            # Up to batch_size records per fetch, handled one after the other (so each partition's
            # order holds), and ONE offset commit after the last: committing after every record
            # cost more than the handlers themselves (a round trip to the broker each).
            self.subscriber = broker.subscriber(
                *self.topics,
                group_id=group_id,
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                decoder=_raw_body,
                batch=True,
                max_records=batch_size,
                batch_timeout_ms=batch_timeout_ms,
                title=f"{group_id}:consume",
                description=description,
            )
            self.subscriber(self._on_batch)
        else:
            self.subscriber = broker.subscriber(
                *self.topics,
                group_id=group_id,
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                decoder=_raw_body,
                title=f"{group_id}:consume",
                description=description,
            )
            self.subscriber(self._on_message)

    async def _on_batch(self, bodies: list[bytes], message: KafkaMessage) -> None:
        # A record the handler gives up on goes to the dead-letter topic, and the batch goes on;
        # only a failed dead-letter publish raises, and then the whole batch comes back
        # (the records already handled are applied again: the handlers are idempotent).
        records = message.raw_message if isinstance(message.raw_message, tuple) else ()
        for i, body in enumerate(bodies):
            record = records[i] if i < len(records) else None
            await self._consume(body, _RecordMessage(record) if record is not None else message)

    async def _on_message(self, body: bytes, message: KafkaMessage) -> None:
        await self._consume(body, message)

    async def _consume(self, body: bytes, message: Any) -> None:
        try:
            event = decode_event(body)
        except Exception as exc:  # not a CloudEvent we can read: retrying will not help
            await self._dead_letter(message, body, "undecodable", f"{type(exc).__name__}: {exc}", attempts=1)
            return
        handler = self.handlers.get(event.type, self.fallback)
        if handler is None:
            EVENTS_CONSUMED.labels(self.group_id, event.type, "ignored").inc()
            return
        await self.handle(event, handler, message, body)

    async def handle(self, event: EventEnvelope, handler: Handler, message: Any, body: bytes) -> None:
        delay = self._backoff_initial
        # The event's trace context follows it into this service's logs.
        structlog.contextvars.bind_contextvars(event_id=event.id, event_type=event.type, traceparent=event.traceparent)
        ORIGIN.set("consumer")
        try:
            await self._attempt(event, handler, message, body, delay)
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "event_type", "traceparent")

    async def _attempt(self, event: EventEnvelope, handler: Handler, message: Any, body: bytes, delay: float) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await handler(event)
                EVENTS_CONSUMED.labels(self.group_id, event.type, "ok").inc()
                return
            except PermanentError as exc:
                await self._dead_letter(message, body, event.type, f"PermanentError: {exc}", attempt)
                return
            except Exception as exc:
                if store_unavailable(exc):
                    # The store being down is not the event's fault: wait it out (the offset stays
                    # uncommitted) instead of spending attempts and dead-lettering a good event.
                    attempt -= 1
                elif attempt >= self._max_attempts:
                    await self._dead_letter(message, body, event.type, f"{type(exc).__name__}: {exc}", attempt)
                    return
                log.warning(
                    "event handler failed; retrying",
                    group=self.group_id,
                    type=event.type,
                    event_id=event.id,
                    attempt=attempt,
                    error=str(exc),
                )
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff_max)

    async def _dead_letter(self, message: Any, body: bytes, event_type: str, reason: str, attempts: int) -> None:
        headers = dict(message.headers) if message is not None else {}
        raw = message.raw_message if message is not None else None
        headers.update(
            {
                "x-dlq-reason": reason[:2000],
                "x-dlq-group": self.group_id,
                "x-dlq-attempts": str(attempts),
                "x-dlq-source-topic": str(getattr(raw, "topic", "")),
                "x-dlq-source-partition": str(getattr(raw, "partition", "")),
                "x-dlq-source-offset": str(getattr(raw, "offset", "")),
            }
        )
        key = getattr(raw, "key", None)
        # If this publish fails the handler raises, the offset is not committed and the event comes back.
        await self._broker.publish(body, self.dlq_topic, key=key, headers={k: str(v) for k, v in headers.items()})
        EVENTS_CONSUMED.labels(self.group_id, event_type, "dead_lettered").inc()
        EVENTS_DEAD_LETTERED.labels(self.group_id, event_type).inc()
        log.error("event dead-lettered", group=self.group_id, type=event_type, reason=reason, attempts=attempts)

    async def lag(self) -> dict[str, int]:
        """Messages not yet consumed, per topic (0 for partitions not assigned to this member)."""
        consumer = getattr(self.subscriber, "consumer", None)
        lag: dict[str, int] = {}
        if consumer is None:
            return lag
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # nothing fetched yet from this partition
            position = await consumer.position(tp)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(highwater - position, 0)
        for topic, value in lag.items():
            CONSUMER_LAG.labels(self.group_id, topic).set(value)
        return lag

    def assigned(self) -> bool:
        """True once the group has given this member its partitions (readiness)."""
        consumer = getattr(self.subscriber, "consumer", None)
        return bool(consumer is not None and consumer.assignment())


async def _raw_body(message: Any) -> Any:
    # FastStream's default decoder does not treat application/cloudevents+json as JSON;
    # we take the bytes (a list of them for a batch) and parse the envelopes ourselves.
    return message.body


class _RecordMessage:
    """One record of a batch, with what dead-lettering reads from a message (headers, raw record)."""

    def __init__(self, record: Any) -> None:
        self.raw_message = record
        self.headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in (record.headers or [])}


def versioned_copy(event: EventEnvelope, state: Document) -> Document:
    """The read copy :func:`apply_versioned` writes for ``state`` (what a reader finds when it applied)."""
    return {
        **state,
        "_id": state.get("_id", event.subject),
        "source_version": event.aggregateversion,
        "source_event_id": event.id,
    }


async def apply_versioned(collection: AsyncCollection[Document], event: EventEnvelope, state: Document) -> bool:
    """Store a read copy from an event unless a newer (or the same) version is already there.

    One conditional write: ``{_id, source_version < v}`` matches only a copy older than the
    event, so a stale or repeated event finds nothing and its upsert collides on ``_id``
    (DuplicateKeyError), which we read as "already applied". The filter is an ``_id``
    lookup and an AND, nothing else: an ``$or`` next to the ``_id`` (say, "or no version
    yet") becomes ``_id = ? AND A OR B`` on the embedded store, which scans and can match,
    and overwrite, another row.

    A copy stored without ``source_version`` (older code) would collide forever; the
    collision path reads it once and replaces it by ``_id`` (it had no version to guard).
    """
    doc = versioned_copy(event, state)
    try:
        result = await collection.replace_one(
            {"_id": doc["_id"], "source_version": {"$lt": event.aggregateversion}}, doc, upsert=True
        )
    except DuplicateKeyError:
        current = await collection.find_one({"_id": doc["_id"]}, projection={"source_version": 1})
        if current is None or isinstance(current.get("source_version"), int):
            return False  # a newer or the same version is there: stale or repeated
        result = await collection.replace_one({"_id": doc["_id"]}, doc)
    return result.matched_count > 0 or result.upserted_id is not None


APPLIED_EVENTS_KEPT = 500


async def apply_once(
    collection: AsyncCollection[Document],
    doc_id: Any,
    event_id: str,
    change: Callable[[Document | None], Document | None],
    *,
    likely_new: bool = False,
) -> bool:
    """Apply ``change`` to one document at most once per event id, recorded in that same document.

    ``change`` gets the current document (None if absent) and returns the new one (None: skip).
    The write is a replace guarded by the document's ``rev``, retried if someone else wrote first.
    ``likely_new`` (e.g. the event that creates the aggregate): try the insert first, without
    reading; if the document exists after all, the insert fails on its ``_id`` and the usual
    read-and-replace follows, so the outcome is the same, for one command instead of two.
    """
    if likely_new:
        first = change(None)
        if first is None:
            return False
        first["_id"] = doc_id
        first["applied_events"] = [event_id]
        first["rev"] = 1
        try:
            await collection.insert_one(first)
            return True
        except DuplicateKeyError:
            pass
    for _ in range(8):
        current = await collection.find_one({"_id": doc_id})
        applied: list[str] = list((current or {}).get("applied_events", []))
        if event_id in applied:
            return False
        new = change(None if current is None else dict(current))
        if new is None:
            return False
        new["_id"] = doc_id
        new["applied_events"] = [*applied, event_id][-APPLIED_EVENTS_KEPT:]
        rev = int((current or {}).get("rev", 0))
        new["rev"] = rev + 1
        if current is None:
            try:
                await collection.insert_one(new)
                return True
            except DuplicateKeyError:
                continue
        result = await collection.replace_one({"_id": doc_id, "rev": rev}, new)
        if result.matched_count:
            return True
    raise RuntimeError(f"could not apply event {event_id} to {doc_id}: too much contention")
