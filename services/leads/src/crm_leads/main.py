"""The leads service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from crm_leads.adapters.assignment import AssignmentRepository
from crm_leads.adapters.repository import LeadRepository
from crm_leads.adapters.scoring_store import ScoredStore, ScoringRepository
from crm_leads.application.assignment import AssignmentRules
from crm_leads.application.campaigns import Campaigns
from crm_leads.application.conversion import Conversions
from crm_leads.application.customer_keys import CustomerKeysCopy
from crm_leads.application.followups import Followups
from crm_leads.application.leads import Leads
from crm_leads.application.recycling import Recycling
from crm_leads.application.scoring import Scoring
from crm_leads.application.webform import WebForms
from crm_leads.entrypoints import assignment as assignment_http
from crm_leads.entrypoints import campaigns as campaigns_http
from crm_leads.entrypoints import conversion as conversion_http
from crm_leads.entrypoints import http, imports, webform
from crm_leads.entrypoints import scoring as scoring_http
from crm_leads.settings import LeadsSettings
from crm_platform.clock import Clock
from crm_platform.contracts import customers, directory, interactions, pipeline, pool
from crm_platform.contracts import leads as _lead_events  # (also registers the event types)
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.service import Periodic, ServiceKit

DESCRIPTION = """Leads (线索): prospects before they are customers. Entry with validation (phones to E.164,
emails), a duplicate check against other leads and against customers ("first entered owns"; the customers'
keys are kept from `crm.customers.v1`), statuses new -> contacted -> qualified / disqualified, the lead pool
(claim, release, assign), campaigns (市场活动) with budgets and costs, field-level history. Every change is
published on `crm.leads.v1`: see /asyncapi."""


def create_app(settings: LeadsSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or LeadsSettings()
    kit = ServiceKit(settings, title="CRM leads", description=DESCRIPTION, clock=clock)
    repo = LeadRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(repo.leads)
    kit.outbox(repo.campaigns)
    kit.outbox(repo.imports)
    scoring_repo = ScoringRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(scoring_repo.collection)
    # Every lead written carries its score, computed with the rules and model in force (lead scoring).
    repo.store = ScoredStore(repo.leads, kit.clock, scoring_repo.scorer, wake_relay=kit.wake_relay)
    # A restore (crm restore leads) cannot restate a lead the topic shows newer than the backup
    # yet: such a restore is refused (see crm_platform.backup) rather than guessed.
    directory_copy = kit.read_copy(DirectoryReadModel(repo.directory_users, repo.directory_departments))
    customer_keys = CustomerKeysCopy(repo)
    service = Leads(repo, kit.clock, kit.source)
    campaigns = Campaigns(repo, kit.clock, kit.source)
    conversions = Conversions(repo, service, kit.clock, kit.source)
    assignment_repo = AssignmentRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(assignment_repo.rules)
    kit.outbox(assignment_repo.settings)
    assignment = AssignmentRules(assignment_repo, service, kit.clock, kit.source)
    scoring = Scoring(
        repo,
        scoring_repo,
        service,
        kit.clock,
        kit.source,
        min_per_class=settings.scoring_min_per_class,
        max_history=settings.scoring_max_history,
        rescore_page=settings.scoring_rescore_page,
        rescore_pages_per_tick=settings.scoring_rescore_pages_per_tick,
        history_page=settings.scoring_history_page,
    )
    kit.background(Periodic("lead-rescore", scoring.rescore_tick, settings.scoring_rescore_interval_seconds))

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await directory_copy.ensure_indexes()
        await assignment_repo.ensure_indexes()
        await scoring.start_if_never_scored()

    kit.on_startup(setup)
    # The answers to conversions come from the customers and pipeline services (crm_leads.application.conversion).
    kit.consume(
        [customers.TOPIC, directory.TOPIC, pipeline.TOPIC],
        {**customer_keys.handlers(), **directory_copy.handlers(), **conversions.handlers()},
    )
    # A lead entering the pool (created in it, released to it, by any path) is offered to the
    # assignment rules: this service reacts to its own events, in a consumer group of its own.
    kit.consume(
        [_lead_events.TOPIC],
        {t.name: assignment.on_pool_entry for t in (_lead_events.LEAD_CREATED, _lead_events.LEAD_OWNER_CHANGED)},
        group_suffix=".assignment",
        needed_for_readiness=False,
    )
    # Follow-ups logged on leads (crm.interactions.v1) and the pool's decisions to recycle leads nobody
    # works (crm.pool.v1): both change leads, through the lead's guarded write.
    followups = Followups(repo, kit.clock, kit.source)
    recycling = Recycling(repo, kit.clock, kit.source)
    kit.consume(
        [interactions.TOPIC, pool.TOPIC], {**followups.handlers(), **recycling.handlers()}, group_suffix=".followups"
    )
    # The scoring and assignment routers first: their paths (/v1/leads/scoring/..., /v1/leads/pool-settings)
    # are not lead ids.
    # The import's fixed path (/v1/leads/import) before the lead routes' /{lead_id} too.
    app = kit.build_app(
        [
            scoring_http.router,
            assignment_http.router,
            imports.router,
            http.router,
            campaigns_http.router,
            conversion_http.router,
            webform.staff,
            webform.public,
        ]
    )
    app.state.leads = service
    app.state.campaigns = campaigns
    app.state.assignment = assignment
    app.state.conversions = conversions
    app.state.scoring = scoring
    app.state.repo = repo
    app.state.customer_keys = customer_keys
    app.state.web_forms = WebForms(repo, service, campaigns, settings)
    app.state.followups = followups
    app.state.recycling = recycling
    return app
