"""New stage positions recompute the clocks only when a live rule exempts by stage: positions
matter to nothing else, and a recompute reads every clock (about 10 s at 100k)."""

from __future__ import annotations

import uuid

from crm_platform.clock import SystemClock
from crm_platform.readmodels.opportunities import OpportunityReadModel
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import pipeline_configured
from crm_platform.testing.fixtures import database
from crm_pool.adapters.repository import PoolRepository
from crm_pool.application.clocks import ClockProjection


async def test_new_stages_recompute_the_clocks_only_when_a_rule_exempts_by_stage(backend: Backend) -> None:
    async with database(backend.mongo_url, f"crm_pool_stages_{uuid.uuid4().hex[:8]}") as db:
        repo = PoolRepository(db, SystemClock(), lambda: None)
        await repo.ensure_indexes()
        clocks = ClockProjection(repo, OpportunityReadModel(repo.opportunities))
        # A clock a run parked until its next step.
        await repo.clocks.insert_one({"_id": "c-1", "parked_until_ms": 4_102_444_800_000, "rev": 3})
        await repo.rules.insert_one({"_id": "r-1", "rule_id": "r-1", "deleted": False, "no_interaction_days": 30})

        await clocks.on_pipeline_configured(pipeline_configured("s-a", "s-b"))
        assert {s["_id"]: s["position"] async for s in repo.stages.find({})} == {"s-a": 1, "s-b": 2}
        parked = await repo.clocks.find_one({"_id": "c-1"})
        assert parked == {"_id": "c-1", "parked_until_ms": 4_102_444_800_000, "rev": 3}  # not touched

        # Once a rule exempts "at or past a stage", new positions may change exemptions: every
        # parked clock goes back into the runs, and every clock is recomputed.
        await repo.rules.insert_one({"_id": "r-2", "rule_id": "r-2", "deleted": False, "exempt_stage_id": "s-b"})
        await clocks.on_pipeline_configured(pipeline_configured("s-c"))
        again = await repo.clocks.find_one({"_id": "c-1"})
        assert again is not None and again["parked_until_ms"] == 0
        # A known stage at its known position changes nothing.
        await repo.clocks.update_one({"_id": "c-1"}, {"$set": {"parked_until_ms": 5}})
        await clocks.on_pipeline_configured(pipeline_configured("s-a", "s-b"))
        still = await repo.clocks.find_one({"_id": "c-1"})
        assert still is not None and still["parked_until_ms"] == 5
