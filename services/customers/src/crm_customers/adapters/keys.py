"""The customers' duplicate-check keys (``customer_keys``): :class:`crm_platform.keydocs.KeyDocuments`
(see there why keys are documents of their own), plus the one-time rebuild from the customers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.keydocs import CHUNK, KeyDocuments, KeysTaken

__all__ = ["CustomerKeys", "KeysTaken"]

Document = dict[str, Any]


class CustomerKeys(KeyDocuments):
    async def rebuild(self, customers: AsyncCollection[Document], keys_of: Callable[[Document], set[str]]) -> int:
        """Rewrite every key document from the customers (the one-time upgrade; reads them all)."""
        holders: dict[str, list[str]] = {}
        projection = {"kind": 1, "status": 1, "name_normalised": 1, "merged_names": 1, "uscc": 1}
        projection |= {"match_phones": 1, "match_emails": 1}
        async for doc in customers.find({}, projection=projection):
            for key in keys_of(doc):
                holders.setdefault(key, []).append(doc["_id"])
        await self.collection.delete_many({})
        docs = [{"_id": k, "holders": sorted(v), "rev": 0} for k, v in holders.items()]
        for start in range(0, len(docs), CHUNK):
            await self.collection.insert_many(docs[start : start + CHUNK], ordered=False)
        return len(docs)
