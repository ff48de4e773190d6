"""The reporting service's app factory and the rebuild."""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from crm_platform.clock import Clock
from crm_platform.customfield_store import DefinitionCopy
from crm_platform.replay import caught_up
from crm_platform.service import Periodic, ServiceKit
from crm_reporting.adapters.readmodels import ROLLUP_FORMAT, Generations, ReadModels
from crm_reporting.adapters.rebuild_lease import RebuildLease
from crm_reporting.application.lag import LagTracker, readiness_probe
from crm_reporting.application.projection import TOPICS, Projection
from crm_reporting.application.rebuild import RebuildResult
from crm_reporting.application.reports import Reports
from crm_reporting.entrypoints import http, leadreports, salesreports
from crm_reporting.settings import ReportingSettings

log = structlog.get_logger(__name__)
DESCRIPTION = """Reports and KPIs built only from the other services' events: sales funnel, forecast against
targets, activity, customer distribution, the customer 360 timeline, data quality and adoption; from
`crm.sales.v1` receivables ageing and collection, contracts against target, ticket SLA and satisfaction,
customer lifetime value. JSON, or CSV with `?format=csv`. Publishes no events."""


def create_app(
    settings: ReportingSettings | None = None, clock: Clock | None = None, generation: int | None = None
) -> FastAPI:
    """``generation``: pin the projection to that set of read models (the rebuild's copy)."""
    settings = settings or ReportingSettings()
    kit = ServiceKit(settings, title="CRM reporting", description=DESCRIPTION, clock=clock)
    generations = Generations(kit.db, settings.generation_refresh_seconds, pinned=generation)
    lag = LagTracker(kit.clock)
    # Custom fields of customers, learnt from crm.custom_field.* (kept apart from the read models'
    # generations: configuration, not history), for distributions and completeness.
    definitions = DefinitionCopy(kit.db["custom_field_definitions"])
    kit.background(Periodic("custom-fields", definitions.reload, settings.custom_fields_reload_seconds))
    projection = Projection(generations, lag, settings.required_customer_fields, definitions)

    async def setup(_: ServiceKit) -> None:
        models = await generations.current()
        await models.ensure_indexes()
        await definitions.ensure_indexes()
        await definitions.reload()
        if generation is None and await models.without_rollups():
            # Read models built before the rollups existed: every report would read zeros.
            log.error(
                "the active read models have no rollups: run `crm-reporting rebuild`", generation=models.generation
            )
        elif (
            generation is None
            and await generations.rollup_format(models.generation) < ROLLUP_FORMAT
            and await models.collection("roll_deals").find_one({}, {"_id": 1}) is not None
        ):
            log.error(
                "the active read models add every currency's amounts up: run `crm-reporting rebuild` (until "
                "then the funnel's and the forecast's amounts count only opportunities changed since the upgrade)",
                generation=models.generation,
            )

    kit.on_startup(setup)
    # The projection's own consumers: not the role definitions' group every service has.
    projection_consumer = kit.consume(TOPICS, {**projection.handlers(), **definitions.handlers()})
    kit.readiness("projection_lag", readiness_probe(lag, lambda: [projection_consumer], settings.ready_max_lag_seconds))
    app = kit.build_app([http.router, leadreports.router, salesreports.router, http.admin])
    app.state.settings = settings
    app.state.generations = generations
    app.state.lag = lag
    app.state.reports = Reports(settings, definitions)
    app.state.rebuild_task = None
    return app


async def rebuild(
    settings: ReportingSettings,
    clock: Clock | None = None,
    live: Generations | None = None,
    lease: RebuildLease | None = None,
) -> RebuildResult:
    """Replay every topic into a new generation, switch to it, drop the old one.

    Under the rebuild lease (one rebuild at a time on every replica and the command line):
    taken here unless the caller took it already (the HTTP API, to answer 409 at once).
    """
    started = time.monotonic()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(settings.mongo_url, tz_aware=True)
    try:
        if lease is None:
            lease = await RebuildLease.acquire(client[settings.mongo_database])
        try:
            return await _rebuild(settings, client, clock, live, started)
        finally:
            await lease.release()
    finally:
        await client.close()


async def _rebuild(
    settings: ReportingSettings,
    client: AsyncMongoClient[dict[str, object]],
    clock: Clock | None,
    live: Generations | None,
    started: float,
) -> RebuildResult:
    generations = Generations(client[settings.mongo_database], settings.generation_refresh_seconds)
    generation = await generations.next_generation()
    fresh = ReadModels(generations.db, generation)
    await fresh.drop()  # leftovers of a rebuild that died half-way
    suffix = f"{settings.consumer_group_suffix}.rebuild-{uuid.uuid4().hex[:8]}"
    app = create_app(settings.model_copy(update={"consumer_group_suffix": suffix}), clock, generation)
    async with app.router.lifespan_context(app):
        consumers = app.state.kit.consumers
        await caught_up(consumers, settings.rebuild_timeout_seconds)
        previous = await generations.switch(generation)
        if live is not None:
            await live.switch(generation)  # this process's projection: at once
        # Other replicas see the switch within one refresh; what they consumed before it
        # went to the old generation, so the copy reads up to the new end once more.
        await asyncio.sleep(settings.generation_refresh_seconds + 0.5)
        await caught_up(consumers, settings.rebuild_timeout_seconds)
    if previous != generation:
        await ReadModels(generations.db, previous).drop()
    facts = await fresh.facts.estimated_document_count()
    return RebuildResult(generation, previous, facts, round(time.monotonic() - started, 2))
