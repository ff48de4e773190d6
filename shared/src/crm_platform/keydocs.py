"""Duplicate-check keys as documents of their own, looked up by ``_id`` (customers, leads).

Each key a record holds (a normalised company name, a phone, an email…) is a document
``{_id: key, holders: [...]}``. A duplicate check is then one ``_id`` lookup of the
candidate's keys, on any store; the same check on the records themselves needs ``$in`` on
array fields, which the embedded store answers by reading every record (73-93 ms at 6.4k
customers, growing with each one).

The records stay the truth. A key document may name a holder that no longer holds the key
(a write that failed after the key was added, a crash before an old key was removed):
readers check each holder against the record's current keys and ignore the stale ones, and
a create takes such a key over. So keys are added *before* the write that needs them and
removed *after* the write that drops them: a crash between leaves a stale holder, never a
missing key.

A create claims its keys by inserting their documents: of two creates of the same record
racing, one insert collides on ``_id`` and that create is refused (first entered owns).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

Document = dict[str, Any]
CHUNK = 500  # keys per lookup: an `_id $in` of this size is one indexed query
ATTEMPTS = 8


class KeysTaken(Exception):
    """Some of the keys a create claimed are held by another record (it may be stale)."""

    def __init__(self, keys: set[str]) -> None:
        super().__init__(", ".join(sorted(keys)))
        self.keys = keys


class KeyDocuments:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def holders(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Who is recorded as holding each of ``keys`` (stale holders included)."""
        wanted = sorted(set(keys))
        found: dict[str, list[str]] = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            async for doc in self.collection.find({"_id": {"$in": chunk}}):
                found[doc["_id"]] = list(doc.get("holders") or [])
        return found

    async def claim(self, keys: Iterable[str], holder_id: str) -> None:
        """Insert the documents of ``keys`` held by ``holder_id``; raises :class:`KeysTaken`
        (after giving back what it inserted) if any exists already."""
        wanted = sorted(set(keys))
        if not wanted:
            return
        docs = [{"_id": k, "holders": [holder_id], "rev": 0} for k in wanted]
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            taken = {wanted[e["index"]] for e in errors}
            await self.remove(set(wanted) - taken, holder_id)
            raise KeysTaken(taken) from exc

    async def add(self, keys: Iterable[str], holder_id: str) -> None:
        """Record ``holder_id`` as a holder of ``keys``, next to any others (idempotent)."""
        for key in sorted(set(keys)):
            await self._change(key, lambda holders: holders if holder_id in holders else [*holders, holder_id])

    async def take_over(self, key: str, holder_id: str, stale: Iterable[str]) -> None:
        """Make ``holder_id`` a holder of ``key`` and drop the holders found stale."""
        dropped = set(stale)
        await self._change(
            key, lambda holders: [*(h for h in holders if h not in dropped and h != holder_id), holder_id]
        )

    async def remove(self, keys: Iterable[str], holder_id: str) -> None:
        """``holder_id`` no longer holds ``keys``; a key nobody holds is deleted."""
        for key in sorted(set(keys)):
            await self._change(key, lambda holders: [h for h in holders if h != holder_id])

    async def _change(self, key: str, change: Callable[[list[str]], list[str]]) -> None:
        # Read, change, write back guarded by the revision read (one document: atomic on every store).
        for _ in range(ATTEMPTS):
            doc = await self.collection.find_one({"_id": key})
            current = list((doc or {}).get("holders") or [])
            holders = change(current)
            if holders == current and doc is not None:
                return
            if doc is None:
                if not holders:
                    return
                try:
                    await self.collection.insert_one({"_id": key, "holders": holders, "rev": 0})
                    return
                except DuplicateKeyError:
                    continue
            rev = int(doc.get("rev", 0))
            if not holders:
                result: Any = await self.collection.delete_one({"_id": key, "rev": rev})
                if result.deleted_count:
                    return
                continue
            result = await self.collection.replace_one({"_id": key, "rev": rev}, {"holders": holders, "rev": rev + 1})
            if result.matched_count:
                return
        raise RuntimeError(f"too much contention on duplicate-check key {key}")
