"""Which generations take the short way for a new customer (see readmodels.TRACKED_PREFIX)."""

from __future__ import annotations

import uuid

from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import database
from crm_reporting.adapters.readmodels import META_ID, ROLLUP_FORMAT, Generations


async def test_only_generations_filled_from_empty_by_this_version_track_references(backend: Backend) -> None:
    async with database(backend.mongo_url, f"crm_reporting_gen_{uuid.uuid4().hex[:8]}") as db:
        fresh = Generations(db)
        assert (await fresh.current()).tracks_references  # a store without read models: generation 1
        rebuilt = await fresh.next_generation()  # a rebuild fills a new one from empty
        assert await Generations(db).tracks_references(rebuilt)
        # ... and keeps the deals' amounts per currency (an older one: the startup says "rebuild").
        assert await fresh.rollup_format(1) == await fresh.rollup_format(rebuilt) == ROLLUP_FORMAT == 2

    async with database(backend.mongo_url, f"crm_reporting_gen_{uuid.uuid4().hex[:8]}") as db:
        # Read models an earlier version built: no marker, so new customers are derived in full
        # (an interaction may have arrived before its customer without leaving a placeholder).
        await db["meta"].insert_one({"_id": META_ID, "generation": 3, "previous": 2})
        models = await Generations(db).current()
        assert models.generation == 3 and not models.tracks_references
        assert await Generations(db).rollup_format(3) == 1
