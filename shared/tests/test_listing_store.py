"""Keyset paging against the real (embedded) store: every row once, in order, whatever the ties."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel

from crm_platform.listing import PageParams, fetch_page
from crm_platform.testing.backends import Backend

SORT = {"created_at": "created_at", "owner": "owner", "n": "n"}


@pytest.fixture(scope="module")
async def rows(backend: Backend) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    collection = client[f"listing_{uuid.uuid4().hex[:8]}"]["rows"]
    await collection.create_indexes(
        [
            IndexModel([("created_at", DESCENDING)], name="idx_created_at"),
            IndexModel([("owner", ASCENDING)], name="idx_owner"),
        ]
    )
    base = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    docs = []
    for i in range(23):
        # Ties: three rows per timestamp; microseconds the store rounds away; two owners.
        at = base + timedelta(minutes=i // 3, microseconds=123_456)
        docs.append({"_id": f"r{i:02d}", "created_at": at, "owner": "a" if i % 2 else "b", "n": i % 4})
    await collection.insert_many(docs)
    yield collection
    await client.close()


async def walk(collection: Any, query: dict[str, Any], sort: str, limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        page = await fetch_page(
            collection, query, PageParams(sort=sort, cursor=cursor, limit=limit), sort_fields=SORT, default_sort=sort
        )
        seen += [d["_id"] for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "owner,-created_at", "-n,created_at"])
@pytest.mark.parametrize("limit", [1, 2, 4, 7])
async def test_every_row_once_in_order_across_pages(rows: Any, sort: str, limit: int) -> None:
    everything = [d async for d in rows.find({})]
    keys = [(k.lstrip("-"), -1 if k.startswith("-") else 1) for k in sort.split(",")] + [("_id", 1)]

    def order(doc: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(doc[f] if d > 0 else _Desc(doc[f]) for f, d in keys)

    expected = [d["_id"] for d in sorted(everything, key=order)]
    assert await walk(rows, {}, sort, limit) == expected
    # With an alternative (visibility) split into indexed branches and merged.
    visible = {"$or": [{"owner": "a"}, {"n": 0}]}
    expected_visible = [
        i
        for i in expected
        if next(d for d in everything if d["_id"] == i)["owner"] == "a"
        or next(d for d in everything if d["_id"] == i)["n"] == 0
    ]
    assert await walk(rows, visible, sort, limit) == expected_visible


class _Desc:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return bool(self.value > other.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value
