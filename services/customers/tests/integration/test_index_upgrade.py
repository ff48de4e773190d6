"""List indexes replaced by a later version are dropped at start-up, after their successors exist.

Checked by the indexes' fields: the embedded store names indexes itself and ignores directions
(see crm_platform.indexes), MongoDB keeps our names.
"""

from __future__ import annotations

from typing import Any

from crm_customers.adapters import tag_index
from crm_customers.adapters.repository import INDEXES, REPLACED_INDEXES, CustomerRepository
from crm_platform.clock import SystemClock


def fields(key: Any) -> tuple[str, ...]:
    return tuple(key.keys())


async def present(collection: Any) -> set[tuple[str, ...]]:
    return {fields(ix["key"]) async for ix in await collection.list_indexes()}


async def test_replaced_list_indexes_are_dropped_and_their_successors_made(customers_db: Any) -> None:
    customers, memberships = customers_db["customers"], customers_db["customer_tags"]
    # What an earlier version left behind.
    await customers.create_indexes(REPLACED_INDEXES)
    await memberships.create_indexes(tag_index.REPLACED_INDEXES)
    before = await present(customers)
    assert ("status", "s.last_followed_up_at") in before

    repo = CustomerRepository(customers_db, SystemClock(), lambda: None)
    await repo.ensure_indexes()
    await repo.ensure_indexes()  # a second start: nothing left to drop, nothing fails

    after = await present(customers)
    wanted = {fields(ix.document["key"]) for ix in INDEXES}
    assert wanted <= after
    replaced = {fields(ix.document["key"]) for ix in REPLACED_INDEXES} - wanted
    assert replaced and not (after & replaced), after & replaced
    assert ("status", "s.last_followed_up_at", "s.id") in after
    assert ("status", "s.tier_desc", "s.name", "s.id") in after
    assert ("status", "s.tier", "s.name", "s.id") not in after
    tags_wanted = {fields(ix.document["key"]) for ix in tag_index.INDEXES}
    tags_after = await present(memberships)
    assert tags_wanted <= tags_after
    tags_replaced = {fields(ix.document["key"]) for ix in tag_index.REPLACED_INDEXES} - tags_wanted
    assert not (tags_after & tags_replaced), tags_after & tags_replaced
