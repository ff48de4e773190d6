"""Replacing an index: the new one made, the one it replaces dropped, on MongoDB and the embedded store.

MongoDB knows an index by the name we give it. The embedded store (nx-27017) ignores that name and
the key directions: it names each index ``idx_<collection>_<fields>`` and lists every key as
ascending, and dropping by our name silently does nothing. So an index to drop is recognised by
our name (MongoDB) or by its fields (the embedded store), and dropped by the name the store
reports. Fields shared with an index still wanted are never dropped by fields: on the embedded
store that is the same index (directions ignored); on MongoDB the old one goes by its name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection


def _fields(key: Any) -> tuple[str, ...]:
    return tuple(key.keys()) if hasattr(key, "keys") else tuple(k for k, _ in key)


async def drop_replaced(
    collection: AsyncCollection[Any], wanted: Iterable[IndexModel], replaced: Iterable[IndexModel]
) -> list[str]:
    """Drop the indexes ``replaced`` (earlier definitions: name and keys) unless still ``wanted``;
    returns the names dropped. Call it after creating ``wanted``, so a list is never left without one."""
    wanted_fields = {_fields(ix.document["key"]) for ix in wanted}
    old_names = {ix.document["name"] for ix in replaced}
    old_fields = {_fields(ix.document["key"]) for ix in replaced} - wanted_fields
    dropped = []
    for present in [ix async for ix in await collection.list_indexes()]:
        name = present["name"]
        if name == "_id_":
            continue
        if name in old_names or _fields(present["key"]) in old_fields:
            await collection.drop_index(name)
            dropped.append(name)
    return dropped
