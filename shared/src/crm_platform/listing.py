"""List views: multi-key sort, opaque keyset cursors.

Keyset (not offset) pagination keeps page N as fast as page 1 and stable while
records change. The cursor holds the sort-key values of the last row returned,
plus its id as the final tie-breaker. Nulls sort first in MongoDB and compare
only with nulls, so the "after" condition treats them explicitly.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.errors import FieldError, ValidationFailed

MAX_SORT_KEYS = 4


@dataclass(frozen=True)
class SortKey:
    field: str
    direction: int  # 1 ascending, -1 descending

    def __str__(self) -> str:
        return ("-" if self.direction < 0 else "") + self.field


def parse_sort(raw: str | None, allowed: dict[str, str], default: str) -> list[SortKey]:
    """Parse ``-updated_at,name`` into sort keys; ``allowed`` maps API names to stored fields."""
    text = raw if raw else default
    keys: list[SortKey] = []
    seen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        direction = -1 if part.startswith("-") else 1
        name = part.lstrip("+-")
        if name not in allowed:
            raise ValidationFailed(
                f"Cannot sort on '{name}'.",
                errors=[
                    FieldError(
                        field="sort",
                        reason=f"unknown sort key '{name}'; use one of {', '.join(sorted(allowed))}",
                        location="query",
                    )
                ],
            )
        if name in seen:
            raise ValidationFailed.for_field("sort", f"'{name}' is named twice", "query")
        seen.add(name)
        keys.append(SortKey(allowed[name], direction))
    if len(keys) > MAX_SORT_KEYS:
        raise ValidationFailed.for_field("sort", f"at most {MAX_SORT_KEYS} sort keys", "query")
    if not any(k.field == "_id" for k in keys):
        keys.append(SortKey("_id", 1))
    return keys


def mongo_sort(keys: list[SortKey]) -> list[tuple[str, int]]:
    return [(k.field, k.direction) for k in keys]


def _get(doc: dict[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    return value


def values_of(doc: dict[str, Any], keys: list[SortKey]) -> list[Any]:
    """The sort-key values of a row: where the next page starts."""
    return [_get(doc, k.field) for k in keys]


def encode_cursor(doc: dict[str, Any], keys: list[SortKey]) -> str:
    payload = {"s": [str(k) for k in keys], "v": [_encode_value(v) for v in values_of(doc, keys)]}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token: str, keys: list[SortKey]) -> list[Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values = [_decode_value(v) for v in payload["v"]]
        if payload["s"] != [str(k) for k in keys] or len(values) != len(keys):
            raise ValueError("sort changed")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationFailed.for_field(
            "cursor", "not a cursor for this list and sort; start again without it", "query"
        ) from exc
    return values


def _after(field: str, direction: int, value: Any) -> dict[str, Any]:
    if direction > 0:
        return {field: {"$ne": None}} if value is None else {field: {"$gt": value}}
    if value is None:
        return {field: {"$in": []}}  # nothing sorts before null
    return {"$or": [{field: {"$lt": value}}, {field: None}]}


def all_of(*clauses: dict[str, Any]) -> dict[str, Any]:
    """AND the clauses as one flat document, with ``$and`` only for keys that repeat.

    Same meaning on every store, but the embedded one uses an index only for top-level
    fields (``{"$and": [...]}`` makes it scan every document: 1.2 s against 11 ms at 20k).
    """
    merged: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    for clause in clauses:
        for key, value in clause.items():
            if key in merged or key == "$and":
                rest.extend(value if key == "$and" else [{key: value}])
            else:
                merged[key] = value
    if rest:
        merged["$and"] = rest
    return merged


async def count(collection: AsyncCollection[dict[str, Any]], query: dict[str, Any]) -> int:
    """Count matches with the ``count`` command.

    ``count_documents`` runs an aggregation whose cost on the embedded store grows with the
    whole collection (5.4 s against 92 ms for the same filter at 20k documents).
    """
    result = await collection.database.command("count", collection.name, query=query)
    return int(result["n"])


def keyset_filter(keys: list[SortKey], values: list[Any]) -> dict[str, Any]:
    """Rows strictly after the cursor row in the given order."""
    branches: list[dict[str, Any]] = []
    for i, key in enumerate(keys):
        clause: list[dict[str, Any]] = [{k.field: values[j]} for j, k in enumerate(keys[:i])]
        clause.append(_after(key.field, key.direction, values[i]))
        branches.append({"$and": clause} if len(clause) > 1 else clause[0])
    return {"$or": branches}


class PageParams(BaseModel):
    """The paging part of every list endpoint's query; a service's filter model extends it."""

    model_config = ConfigDict(extra="forbid")

    sort: str | None = Field(default=None, description="Up to four keys, '-' for descending: e.g. -tier,name.")
    cursor: str | None = Field(default=None, description="next_cursor of the previous page.")
    limit: int = Field(default=50, ge=1, le=500)
    include_total: bool = Field(default=False, description="Count every match too (costs time on large lists).")


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None


async def fetch_page(
    collection: AsyncCollection[dict[str, Any]],
    base_query: dict[str, Any],
    paging: PageParams,
    *,
    sort_fields: dict[str, str],
    default_sort: str,
    projection: dict[str, Any] | None = None,
) -> Page:
    """One page of a list view: keyset after the cursor, one extra row to know if there is more."""
    keys = parse_sort(paging.sort, sort_fields, default_sort)
    query = base_query
    if paging.cursor:
        query = all_of(base_query, keyset_filter(keys, decode_cursor(paging.cursor, keys)))
    found = collection.find(query, projection=projection).sort(mongo_sort(keys)).limit(paging.limit + 1)
    docs = [d async for d in found]
    next_cursor = encode_cursor(docs[paging.limit - 1], keys) if len(docs) > paging.limit else None
    # Counting is the slow part at 100k records, so it is on demand.
    total = await count(collection, base_query) if paging.include_total else None
    return Page(items=docs[: paging.limit], next_cursor=next_cursor, total=total)
