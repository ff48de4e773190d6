"""Aggregates in MongoDB: optimistic read-modify-replace with the outbox in the same write.

:meth:`VersionedStore.mutate` reads the aggregate, lets the caller compute the new
state and its events from it, and replaces the document only if neither its
version nor its ``outbox_rev`` moved meanwhile. A version that moved is a real
conflict (412 when the client sent If-Match; otherwise the change is recomputed
on the fresh state); an ``outbox_rev`` that moved only means the relay published
something, so the write is retried on the fresh document.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.clock import Clock
from crm_platform.concurrency import stale
from crm_platform.errors import Conflict, NotFound
from crm_platform.events import EventEnvelope
from crm_platform.outbox import BOOKKEEPING, PENDING, REV, epoch_ms, outbox_entries

Document = dict[str, Any]
MAX_ATTEMPTS = 50
MAX_BACKOFF_SECONDS = 0.05


async def _back_off(attempt: int) -> None:
    # Jittered exponential backoff, so writers racing for one document spread out.
    await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.001 * 2**attempt)))


@dataclass
class Change:
    """What a use case decided: the new state (None: nothing to change) and the events it causes."""

    state: Document | None
    events: Sequence[tuple[str, EventEnvelope]] = field(default_factory=list)


Decide = Callable[[Document, int], Change | Awaitable[Change]]


def public(doc: Document) -> Document:
    """The aggregate without the outbox bookkeeping."""
    return {k: v for k, v in doc.items() if k not in BOOKKEEPING}


class VersionedStore:
    def __init__(
        self,
        collection: AsyncCollection[Document],
        clock: Clock,
        *,
        wake_relay: Callable[[], None] = lambda: None,
        not_found: Callable[[str], Exception] = lambda i: NotFound(f"No record with id {i}."),
    ) -> None:
        self.collection = collection
        self._clock = clock
        self._wake = wake_relay
        self._not_found = not_found

    async def get(self, aggregate_id: str) -> Document | None:
        return await self.collection.find_one({"_id": aggregate_id})

    @staticmethod
    def first_state(state: Document) -> Document:
        """``state`` as :meth:`insert` stores it, but for the outbox: version 1, revision 0."""
        return {**state, "version": 1, REV: 0}

    async def insert(self, state: Document, events: Sequence[tuple[str, EventEnvelope]]) -> Document:
        """Insert a new aggregate at version 1 with its creation events (one write)."""
        doc = {**self.first_state(state), "outbox": outbox_entries(events)}
        if events:
            doc[PENDING] = epoch_ms(self._clock.now())
        await self.collection.insert_one(doc)
        if events:
            self._wake()
        return doc

    async def mutate(
        self,
        aggregate_id: str,
        decide: Decide,
        *,
        expected_version: int | None = None,
        current: Document | None = None,
    ) -> Document:
        """Apply ``decide`` to the current state and store the result atomically with its events.

        ``decide(current, next_version)`` gets a private copy of the document and returns a
        :class:`Change`; it may raise a domain error, in which case nothing is written.
        ``current``: the whole stored document, when the caller has just read it (a query that
        found it): the first attempt starts from it instead of reading it again. The write is
        guarded by its version and outbox revision as always, so a copy that is stale by then
        only costs a retry, which reads the document afresh.
        """
        known = current
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                await _back_off(attempt)
            current, known = (known, None) if known is not None else (await self.get(aggregate_id), None)
            if current is None:
                raise self._not_found(aggregate_id)
            version = int(current.get("version", 0))
            if expected_version is not None and version != expected_version:
                raise stale(version, expected_version)
            decided = decide(copy.deepcopy(current), version + 1)
            change = await decided if isinstance(decided, Awaitable) else decided
            if change.state is None:
                return current  # nothing changed: no new version, no event
            doc = {k: v for k, v in change.state.items() if k not in BOOKKEEPING}
            doc["_id"] = current["_id"]
            doc["version"] = version + 1
            doc[REV] = current.get(REV, 0)
            doc["outbox"] = list(current.get("outbox") or []) + outbox_entries(change.events)
            pending = current.get(PENDING)
            if doc["outbox"]:
                doc[PENDING] = pending if isinstance(pending, int) else epoch_ms(self._clock.now())
            result = await self.collection.replace_one(
                {"_id": current["_id"], "version": version, REV: current.get(REV, 0)}, doc
            )
            if result.matched_count:
                if change.events:
                    self._wake()
                return doc
        raise Conflict("The record is changing too fast; retry in a moment.")
