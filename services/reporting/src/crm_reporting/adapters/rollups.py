"""Pre-aggregated rollups: small counter documents the projection moves as events arrive.

A report reads a few hundred of these instead of every state and fact. Two rules keep
them exact under duplicates, reordering and concurrent writers:

- every source document (customer, interaction, opportunity, journey) stores in
  ``contrib`` the contribution it currently has in the rollups; a change writes the
  document conditionally on its ``rev`` (optimistic concurrency) and then moves the
  rollups by (new contribution - stored contribution), so a repeated or stale event,
  which writes nothing, moves nothing;
- counters that come straight from a fact move only when that fact was inserted
  (the insert is once per event id).

Time-keyed rollups have one document per (owner, department, UTC day) whose counter
fields are named ``<metric>@<quarter of the day>``: every time zone's midnight falls on
a UTC quarter hour, so any period and any day/week/month bucket in any time zone is a
whole set of quarters, and the figures are exact without knowing the zone in advance.

Counters use ``$inc`` with numbers only (the embedded store stores datetimes set by an
operator as strings, and treats dotted paths in an upsert literally, so field names
here never contain a dot). Money is an integer of ten-thousandths (``SCALE``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]
DAY_MS = 86_400_000
QUARTER_MS = 900_000
SCALE = Decimal(10_000)  # money in rollups: integer ten-thousandths of the currency unit
ATTEMPTS = 20

# A rollup key: (collection name, key fields in a fixed order).
Key = tuple[str, tuple[tuple[str, Any], ...]]
Counters = dict[str, float]


def enc(part: str) -> str:
    """A value safe inside a field name (no dot, no $, none of our separators)."""
    out = part
    for ch, code in (("%", "%25"), (".", "%2E"), ("$", "%24"), ("@", "%40"), (":", "%3A"), (",", "%2C")):
        out = out.replace(ch, code)
    return out


def dec_(part: str) -> str:
    out = part
    for ch, code in ((",", "%2C"), (":", "%3A"), ("@", "%40"), ("$", "%24"), (".", "%2E"), ("%", "%25")):
        out = out.replace(code, ch)
    return out


def scaled(amount: Decimal) -> int:
    return int((amount * SCALE).to_integral_value(rounding=ROUND_HALF_UP))


def unscaled(value: float) -> Decimal:
    return Decimal(int(value)) / SCALE


def day_of(epoch_ms: int) -> int:
    return epoch_ms // DAY_MS


def quarter_field(metric: str, epoch_ms: int) -> str:
    return f"{metric}@{(epoch_ms % DAY_MS) // QUARTER_MS}"


@dataclass
class Contribution:
    """What one source document adds to the rollups."""

    counters: dict[Key, Counters] = field(default_factory=lambda: defaultdict(dict))

    def add(self, collection: str, key: dict[str, Any], name: str, value: float = 1) -> None:
        k: Key = (collection, tuple(key.items()))
        bucket = self.counters[k]
        bucket[name] = bucket.get(name, 0) + value

    def timed(self, collection: str, owner_id: str, path: str, epoch_ms: int, metric: str, value: float = 1) -> None:
        """A counter of the time-keyed rollup ``collection`` at the instant ``epoch_ms``."""
        key = {"owner_id": owner_id, "department_path": path, "day": day_of(epoch_ms)}
        self.add(collection, key, quarter_field(metric, epoch_ms), value)

    def encode(self) -> str:
        rows = [[c, [list(kv) for kv in key], counters] for (c, key), counters in self.counters.items() if counters]
        return json.dumps(sorted(rows, key=lambda r: json.dumps(r[:2])), sort_keys=True, ensure_ascii=False)

    @classmethod
    def decode(cls, text: str | None) -> Contribution:
        out = cls()
        for c, key, counters in json.loads(text or "[]"):
            out.counters[(c, tuple((k, v) for k, v in key))] = dict(counters)
        return out

    def minus(self, other: Contribution) -> dict[Key, Counters]:
        delta: dict[Key, Counters] = defaultdict(dict)
        for k, counters in self.counters.items():
            for name, v in counters.items():
                delta[k][name] = delta[k].get(name, 0) + v
        for k, counters in other.counters.items():
            for name, v in counters.items():
                delta[k][name] = delta[k].get(name, 0) - v
        return {k: {n: v for n, v in c.items() if v} for k, c in delta.items() if any(c.values())}


def rollup_id(key: tuple[tuple[str, Any], ...]) -> str:
    return json.dumps([v for _, v in key], ensure_ascii=False)


Collections = Callable[[str], AsyncCollection[Document]]


async def bump(collections: Collections, delta: dict[Key, Counters]) -> None:
    """Add ``delta`` to the rollups: one upsert with ``$inc`` per document, in one bulk per collection."""
    per: dict[str, list[UpdateOne]] = defaultdict(list)
    for (name, key), counters in delta.items():
        if counters:
            per[name].append(
                UpdateOne({"_id": rollup_id(key)}, {"$inc": counters, "$setOnInsert": dict(key)}, upsert=True)
            )
    for name, ops in per.items():
        await collections(name).bulk_write(ops, ordered=True)


class Batch:
    """The rollup changes of one event, written together at its end (one bulk per collection)."""

    def __init__(self) -> None:
        self.delta: dict[Key, Counters] = defaultdict(dict)

    async def add(self, delta: dict[Key, Counters]) -> None:
        for key, counters in delta.items():
            bucket = self.delta[key]
            for name, value in counters.items():
                bucket[name] = bucket.get(name, 0) + value

    async def flush(self, collections: Collections) -> None:
        delta = {k: {n: v for n, v in c.items() if v} for k, c in self.delta.items()}
        self.delta = defaultdict(dict)
        await bump(collections, delta)


Mover = Callable[[dict[Key, Counters]], Awaitable[None]]


def _rev(doc: Document) -> Document:
    # A document written before rollups existed has no rev (a rebuild gives it one).
    return {"rev": doc["rev"]} if "rev" in doc else {"rev": {"$exists": False}}


Contribute = Callable[[Document], Awaitable[tuple[Contribution, Document]]]


async def write_with_rollups(
    move: Mover,
    collection: AsyncCollection[Document],
    doc_id: str,
    build: Callable[[Document | None], Document | None],
    contribute: Contribute,
    *,
    likely_new: bool = False,
) -> Document | None:
    """Replace one source document (``build(previous)``; None = nothing to do) and move the rollups.

    The write is conditional on the ``rev`` read, so the rollups move (``move``: at once, or
    into the event's :class:`Batch`) by the difference between exactly the contribution
    replaced and the one written. Returns the new document.

    ``likely_new``: the event is the record's first (a creation), so the first attempt inserts
    without reading; if a copy was there after all (a placeholder, a repeated event), the
    insert fails on its ``_id`` and the usual read and guarded write follow. One command saved
    on almost every creation, one spent on the rare other case.
    """
    for attempt in range(ATTEMPTS):
        prev = None if likely_new and attempt == 0 else await collection.find_one({"_id": doc_id})
        doc = build(prev)
        if doc is None:
            return None
        doc["_id"] = doc_id
        doc["rev"] = int(prev.get("rev", 0)) + 1 if prev else 1
        contribution, extra = await contribute(doc)
        doc.update(extra)
        doc["contrib"] = contribution.encode()
        if prev is None:
            try:
                await collection.insert_one(doc)
            except DuplicateKeyError:
                continue
        else:
            result = await collection.replace_one({"_id": doc_id, **_rev(prev)}, doc)
            if result.matched_count == 0:
                continue
        before = Contribution.decode(prev.get("contrib") if prev else None)
        await move(contribution.minus(before))
        return doc
    raise RuntimeError(f"{collection.name} {doc_id} kept changing under the projection")  # the consumer retries


async def reconcile(move: Mover, collection: AsyncCollection[Document], doc_id: str, contribute: Contribute) -> bool:
    """Re-derive one document's contribution (something it depends on changed) and move the
    rollups; False when there is no such document."""
    for _ in range(ATTEMPTS):
        doc = await collection.find_one({"_id": doc_id})
        if doc is None:
            return False
        contribution, extra = await contribute(doc)
        text = contribution.encode()
        if text == doc.get("contrib") and all(doc.get(k) == v for k, v in extra.items()):
            return True
        result = await collection.update_one(
            {"_id": doc_id, **_rev(doc)}, {"$set": {**extra, "contrib": text}, "$inc": {"rev": 1}}
        )
        if result.matched_count == 0:
            continue
        await move(contribution.minus(Contribution.decode(doc.get("contrib"))))
        return True
    raise RuntimeError(f"{collection.name} {doc_id} kept changing under the projection")


async def timed_counters(
    collection: AsyncCollection[Document], query: Document, start_ms: int, end_ms: int
) -> AsyncIterator[tuple[Document, str, int, float]]:
    """(rollup document, metric, instant of its quarter, value) of every counter in [start_ms, end_ms)."""
    days = {"$gte": day_of(start_ms), "$lte": day_of(max(end_ms - 1, start_ms))}
    async for doc in collection.find({**query, "day": days}):
        base = int(doc["day"]) * DAY_MS
        for name, value in doc.items():
            metric, sep, quarter = name.rpartition("@")
            if not sep or not value or not quarter.isdigit():
                continue
            instant = base + int(quarter) * QUARTER_MS
            if start_ms <= instant < end_ms:
                yield doc, metric, instant, value
