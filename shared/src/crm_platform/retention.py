"""Retention of source records: the append-only records a service writes only so that an event
for the audit log leaves through its outbox (the customers service's export and import records,
the directory's sign-in attempts).

Once its event is published a record has done its job (the audit service keeps the entry, with
its own retention), yet nothing ever deleted it, so these collections grew with every export and
every sign-in. :func:`purge_records` deletes the records older than the retention whose events
have left; a record still holding an unpublished event is kept whatever its age, so a relay that
was down never costs the audit log an entry.

Each record carries ``at_ms`` (epoch milliseconds, an integer so that the embedded store's index
serves it); the purge walks the ``idx_at_ms`` index oldest first, a batch at a time, and deletes
by ``_id``. Several replicas purging at once delete the same rows twice, which deletes nothing the
second time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.outbox import LEGACY_PENDING, PENDING, epoch_ms

Document = dict[str, Any]

#: When a record was written (epoch ms); the purge's key.
AT = "at_ms"
#: The embedded store uses a single-field index only if its name ends in ``_<field>``.
AT_INDEX = f"idx_{AT}"


async def ensure_record_index(collection: AsyncCollection[Document]) -> None:
    await collection.create_index([(AT, ASCENDING)], name=AT_INDEX)


def _published(doc: Document) -> bool:
    return PENDING not in doc and LEGACY_PENDING not in doc and not doc.get("outbox")


async def purge_records(
    collection: AsyncCollection[Document], now: datetime, retention_days: float, batch_size: int
) -> int:
    """Delete the records written more than ``retention_days`` before ``now`` whose events were
    published; returns how many. Stops at a batch in which every record still waits for its
    event (the relay is behind: those records, and any after them, wait for the next pass)."""
    cutoff = epoch_ms(now - timedelta(days=retention_days))
    total = 0
    while True:
        batch = [
            doc
            async for doc in collection.find(
                {AT: {"$lt": cutoff}}, projection={"_id": 1, PENDING: 1, LEGACY_PENDING: 1, "outbox": 1}
            )
            .sort([(AT, ASCENDING)])
            .limit(batch_size)
        ]
        ids = [doc["_id"] for doc in batch if _published(doc)]
        if ids:
            result = await collection.delete_many({"_id": {"$in": ids}})
            total += int(result.deleted_count)
        if len(batch) < batch_size or not ids:
            return total
