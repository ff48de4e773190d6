"""The pipeline service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from crm_pipeline.adapters.repository import Repository, custom_field_indexes, custom_sort_indexes
from crm_pipeline.application.catalogue import Catalogue
from crm_pipeline.application.customer_events import CustomerReactions
from crm_pipeline.application.lead_conversions import COLLECTION as LEAD_CONVERSIONS
from crm_pipeline.application.lead_conversions import WAITING as LEAD_CONVERSIONS_WAITING
from crm_pipeline.application.lead_conversions import LeadConversions
from crm_pipeline.application.lines import LineItems
from crm_pipeline.application.opportunities import Opportunities
from crm_pipeline.application.pipelines import MODULE, Pipelines
from crm_pipeline.application.targets import Targets
from crm_pipeline.entrypoints import events, http
from crm_pipeline.entrypoints import lines as lines_http
from crm_pipeline.entrypoints.schemas import OpportunityOut
from crm_pipeline.settings import PipelineSettings
from crm_platform import customfield_store
from crm_platform.clock import Clock
from crm_platform.contracts import customers, directory, leads, sales
from crm_platform.contracts import pipeline as _pipeline_events  # noqa: F401  (registers the event types)
from crm_platform.customfield_http import fields_router
from crm_platform.customfield_store import CustomFields
from crm_platform.events import EventFactory
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.service import Periodic, ServiceKit

#: Names a custom field of opportunities may not take: the record's own fields (and stored ones).
BUILTIN_FIELDS = frozenset(OpportunityOut.model_fields) | {
    "amount_minor",
    "quotation_minor",
    "stage_id",
    "stage_name",
    "hidden",
    "s",
    "version",
    "outbox",
    "custom",
}

DESCRIPTION = """Pipelines and sales stages (销售阶段) with entry requirements, opportunities (商机) and their
stage moves, targets and the forecast (目标/预测), and the funnel (销售漏斗). Customers come from the
customers service's events (a read copy). Every change is published on Kafka topic `crm.pipeline.v1` as a
CloudEvent: see /asyncapi."""


def create_app(settings: PipelineSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or PipelineSettings()
    kit = ServiceKit(settings, title="CRM pipeline", description=DESCRIPTION, clock=clock)
    repo = Repository(kit.db, kit.clock, kit.wake_relay)
    for collection in (repo.pipelines, repo.opportunities, repo.targets):
        kit.outbox(collection)
    factory = EventFactory(kit.source, kit.clock)
    read_model = kit.read_copy(CustomerReadModel(repo.customers))
    # Administrators' custom fields of opportunities: definitions in this database, so a write is
    # validated synchronously; stages may require them, lists filter on the filterable ones (each
    # with its indexes behind the list's visibility prefixes, made and dropped with the flag).
    fields = CustomFields(
        kit.db[customfield_store.COLLECTION],
        kit.event_log,
        {MODULE: repo.opportunities},
        {MODULE: BUILTIN_FIELDS},
        kit.clock,
        kit.source,
        kit.wake_relay,
        index_models={MODULE: custom_field_indexes},
        topic=kit.topic,
        filterable_modules=(MODULE,),
        # Sortable ones get sort indexes behind each list visibility prefix.
        sorting={MODULE: custom_sort_indexes},
        # Sortable fields and filterable dates and money keep copies beside the sort keys,
        # backfilled on every opportunity when the flag is set.
        copying={MODULE: repo.backfill_copies},
    )
    # Every opportunity write keeps the fields' copies (s.cf_<key>, s.cfq_<key>) from the definitions.
    repo.opportunity_store.fieldset = lambda: fields.fieldset(MODULE)
    kit.outbox(fields.collection)
    # What other replicas change reaches this one's validation within the interval.
    kit.background(Periodic("custom-fields", fields.reload, settings.custom_fields_reload_seconds))
    kit.restate(fields.collection, "crm.custom_field.", customfield_store.restater(kit.source))
    pipelines = Pipelines(repo, kit.clock, factory, fields)
    opportunities = Opportunities(repo, pipelines, read_model, kit.clock, settings, factory)
    # Reps' and departments' paths for targets, fed by the directory's events.
    directory_copy = kit.read_copy(DirectoryReadModel(kit.db["directory_users"], kit.db["directory_departments"]))
    targets = Targets(repo, kit.clock, settings, factory, directory_copy)

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await fields.ensure_indexes()
        await read_model.ensure_indexes()
        await directory_copy.ensure_indexes()
        await pipelines.seed_default()

    # A lead's conversion asks for an opportunity (crm.lead.conversion_progressed); a refusal is a
    # document of its own (keyed by conversion id) with its event in its own outbox.
    refusals = kit.outbox(kit.db[LEAD_CONVERSIONS])
    kit.restate(refusals, "crm.opportunity.lead_refused", None)
    waiting = kit.db[LEAD_CONVERSIONS_WAITING]
    conversions = LeadConversions(
        repo, opportunities, pipelines, read_model, refusals, waiting, kit.clock, settings, factory, kit.wake_relay
    )
    kit.on_startup(lambda _: conversions.ensure_indexes())
    # A command whose customer has not arrived yet is parked; this pass tries the parked ones again.
    kit.background(Periodic("lead-conversions", conversions.resume, settings.lead_conversion_resume_seconds))
    # Its own group: a conversion's failure holds up no customer event. One topic is fewer
    # partitions than replicas may be: a replica without any still serves (the others make the
    # opportunities), so readiness does not wait for this group.
    kit.consume(
        [leads.TOPIC],
        conversions.handlers(),
        group_suffix=".leads",
        max_attempts=settings.lead_conversion_max_attempts,
        needed_for_readiness=False,
    )

    # The sales service's products and price lists (line items from products): a read copy in its
    # own group, so a catalogue backlog holds up no customer event; readiness does not wait for it.
    catalogue = kit.read_copy(Catalogue(kit.db))  # rebuilt by `crm rebuild-copies pipeline` too
    kit.on_startup(lambda _: catalogue.ensure_indexes())
    kit.consume([sales.TOPIC], catalogue.handlers(), group_suffix=".sales", needed_for_readiness=False)
    line_items = LineItems(opportunities, catalogue)

    kit.on_startup(setup)
    kit.consume(
        [customers.TOPIC, directory.TOPIC],
        {
            **events.customer_handlers(read_model, CustomerReactions(repo, opportunities)),
            **directory_copy.handlers(),
        },
    )
    app = kit.build_app(
        [http.pipelines_router, http.router, lines_http.router, http.reports_router, fields_router(MODULE)]
    )
    app.state.line_items = line_items
    app.state.lead_conversions = conversions
    app.state.custom_fields = fields
    app.state.pipeline = http.Services(pipelines, opportunities, targets, settings)
    app.state.customer_read_model = read_model
    return app
