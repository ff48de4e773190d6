"""The pool service's app factory, the periodic scheduler and the rebuild."""

from __future__ import annotations

import uuid

import structlog
from fastapi import FastAPI

from crm_platform.clock import Clock
from crm_platform.contracts import customers as customer_events
from crm_platform.contracts import interactions, pipeline
from crm_platform.contracts import leads as lead_events
from crm_platform.contracts import pool as _pool_events  # noqa: F401  (registers the event types)
from crm_platform.listing import count
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.opportunities import OpportunityReadModel
from crm_platform.replay import caught_up
from crm_platform.service import Periodic, ServiceKit
from crm_pool.adapters.lead_clocks import LeadClocks
from crm_pool.adapters.repository import PoolRepository
from crm_pool.application.clocks import ClockProjection
from crm_pool.application.leads import LeadRecycling
from crm_pool.application.rebuilds import Rebuilds
from crm_pool.application.recompute import Recomputes
from crm_pool.application.recycler import Recycler
from crm_pool.application.rules import Rules
from crm_pool.entrypoints import events, http
from crm_pool.settings import PoolSettings

log = structlog.get_logger(__name__)

DESCRIPTION = """The public pool (公海): recycling rules per department, the per-customer clock built from
customers, pipeline and interactions events, warnings K days ahead, release decisions (applied by the
customers service), claim rules, a preview and each rep's countdown. Events on `crm.pool.v1`: see /asyncapi."""


def create_app(settings: PoolSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or PoolSettings()
    kit = ServiceKit(settings, title="CRM pool", description=DESCRIPTION, clock=clock)
    repo = PoolRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(repo.rules)
    kit.outbox(repo.notices)
    customers = kit.read_copy(CustomerReadModel(repo.customers))
    opportunities = kit.read_copy(OpportunityReadModel(repo.opportunities))
    clocks = ClockProjection(repo, opportunities)
    customers.add_hook("changed", clocks.on_customer)
    recomputes = Recomputes(clocks.recompute)
    rules = Rules(repo, kit.clock, kit.source, recomputes.request)
    rebuilds = Rebuilds(
        kit.db["rebuilds"],
        kit.clock,
        lambda: rebuild(settings, kit.clock, settings.rebuild_timeout_seconds),
        lease_seconds=settings.rebuild_timeout_seconds + 60,
    )
    kit.background(rebuilds)
    lead_clocks = LeadClocks(kit.db)
    lead_recycling = LeadRecycling(repo, lead_clocks, kit.clock, kit.source, settings.scheduler_batch_size)
    recycler = Recycler(
        repo, kit.clock, kit.source, settings.scheduler_batch_size, paused=rebuilds.in_progress, leads=lead_recycling
    )

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await customers.ensure_indexes()
        await opportunities.ensure_indexes()
        await lead_clocks.ensure_indexes()
        await recomputes.request(None)  # redoes a recompute a crash may have cut short

    kit.on_startup(setup)
    kit.consume(
        [customer_events.TOPIC, pipeline.TOPIC, interactions.TOPIC, lead_events.TOPIC],
        {**events.handlers(clocks, customers), **lead_recycling.handlers()},
    )
    if settings.scheduler_enabled:
        kit.background(Periodic("pool-recycler", recycler.run, settings.scheduler_interval_seconds))
    app = kit.build_app([http.router])
    app.state.rules = rules
    app.state.recycler = recycler
    app.state.clocks = clocks
    app.state.repo = repo
    app.state.lead_recycling = lead_recycling
    app.state.recomputes = recomputes
    app.state.rebuilds = rebuilds
    return app


async def rebuild(settings: PoolSettings, clock: Clock | None = None, timeout: float = 1800.0) -> int:
    """Reset the clocks and replay the customers, pipeline and interactions topics from the start.

    Returns the number of clocks rebuilt. The scheduler is off in the rebuilding copy.
    """
    suffix = f"{settings.consumer_group_suffix}.rebuild-{uuid.uuid4().hex[:8]}"
    app = create_app(settings.model_copy(update={"consumer_group_suffix": suffix, "scheduler_enabled": False}), clock)
    clocks: ClockProjection = app.state.clocks
    await clocks.reset()
    async with app.router.lifespan_context(app):
        await caught_up(app.state.kit.consumers, timeout)
        await app.state.recomputes.settle()
        return await count(app.state.repo.clocks, {})
