"""Storing a record under a number already taken (quotations, contracts, tickets, invoices).

A number comes from a counter (one ``$inc``) once every check has passed; the record is then
stored with it. A store error between the two would leave the number unused, so the write is
retried with the same id and number, a few times with a short back-off. A duplicate id whose
stored record carries this number is an earlier attempt that was stored but whose answer was
lost: that record is the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pymongo.errors import DuplicateKeyError, PyMongoError

from crm_platform.events import EventEnvelope
from crm_platform.store import VersionedStore

Document = dict[str, Any]
T = TypeVar("T")
#: How many times a write under a taken number is tried before the error is the answer.
ATTEMPTS = 5


async def retried(write: Callable[[], Awaitable[T]], attempts: int = ATTEMPTS) -> T:
    """``write()``, tried again after a store error (0.05 s, 0.1 s, … between tries)."""
    for attempt in range(attempts):
        try:
            return await write()
        except DuplicateKeyError:
            raise
        except PyMongoError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def insert_numbered(
    store: VersionedStore,
    doc: Document,
    events: Sequence[tuple[str, EventEnvelope]],
    get: Callable[[str], Awaitable[Document | None]],
) -> Document:
    """Insert ``doc`` (numbered, with its creation ``events``), retried on store errors; a
    duplicate id is our own earlier attempt when the stored record has ``doc``'s number."""

    async def insert() -> Document:
        try:
            return await store.insert(doc, events)
        except DuplicateKeyError:
            stored = await get(doc["_id"])
            if stored is not None and stored.get("number") == doc["number"]:
                return stored  # an earlier attempt stored it (its answer was lost)
            raise

    return await retried(insert)
