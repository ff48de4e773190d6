"""Stored sort keys: moments as integers, and the one-off upgrade of documents stored before.

List views sort and page on a subdocument of never-null copies (``s.<key>``) rather than on the
fields themselves. Moments go in as epoch milliseconds: the embedded store wraps a date in a
function (``datetime(COALESCE(...))``), so no index serves a range on it and every cursor page
after the first read the whole collection; a range on an indexed integer is an index search.
The record's id is copied in too (``s.id``), as the last sort key: a range on ``_id`` (the
tie-break branch of every cursor) is another full scan there. Customers did this first
(``crm_customers.domain.rules.sort_keys``); this module is the same for the other services.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from crm_platform.outbox import REV

Document = dict[str, Any]

#: Where the sort keys keep the record's id: pass as ``tiebreak`` to ``listing.fetch_page``.
TIEBREAK = "s.id"


def epoch_ms(value: datetime | None) -> int:
    """A moment as the integer sort keys and date filters use (0: never)."""
    if value is None:
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


async def upgrade_sort_keys(
    collection: AsyncCollection[Document], sort_keys: Callable[[Document], Document], version: int
) -> int:
    """Rewrite ``s`` of documents stored with an older shape (``s.v`` not ``version``), once.

    A marker in the database's ``migrations`` collection records that it is done, so later
    starts skip the read of every document. Each stale document is replaced whole, guarded by
    its version and outbox revision like every other write, so a change or the relay that
    rewrote it meanwhile wins (and wrote the new keys itself); a later pass picks up the rest.
    Returns how many documents were rewritten.
    """
    migrations = collection.database["migrations"]
    marker = f"sort_keys_v{version}:{collection.name}"
    if await migrations.find_one({"_id": marker}) is not None:
        return 0
    upgraded = 0
    for _ in range(5):
        stale = 0
        batch: list[ReplaceOne[Document]] = []
        async for doc in collection.find({}):
            if (doc.get("s") or {}).get("v") == version:
                continue
            stale += 1
            guard: Document = {"_id": doc["_id"]}
            for field in ("version", REV):  # a filter on a missing field is unreliable on the embedded store
                if field in doc:
                    guard[field] = doc[field]
            batch.append(ReplaceOne(guard, {**doc, "s": sort_keys(doc)}))
            if len(batch) >= 500:
                upgraded += (await collection.bulk_write(batch, ordered=False)).matched_count
                batch = []
        if batch:
            upgraded += (await collection.bulk_write(batch, ordered=False)).matched_count
        if stale == 0:
            break
    with contextlib.suppress(DuplicateKeyError):  # another replica finished first
        await migrations.insert_one({"_id": marker, "documents": upgraded})
    return upgraded
