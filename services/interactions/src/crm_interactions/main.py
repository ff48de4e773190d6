"""The interactions service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from crm_interactions.adapters.leads import LeadReadModel
from crm_interactions.adapters.repository import (
    Repository,
    feedback_custom_field_indexes,
    feedback_custom_sort_indexes,
    interaction_custom_field_indexes,
    interaction_custom_sort_indexes,
    task_custom_field_indexes,
    task_custom_sort_indexes,
)
from crm_interactions.application.custom import MODULES
from crm_interactions.application.customer_events import CustomerReactions
from crm_interactions.application.feedback import Feedback
from crm_interactions.application.interactions import Interactions
from crm_interactions.application.lead_events import LeadConversions
from crm_interactions.application.references import References
from crm_interactions.application.scheduler import TaskScheduler
from crm_interactions.application.tasks import Tasks
from crm_interactions.domain.interactions import FEEDBACK, INTERACTIONS, TASKS
from crm_interactions.entrypoints import events, http
from crm_interactions.entrypoints.schemas import FeedbackOut, InteractionOut, TaskOut
from crm_interactions.settings import InteractionsSettings
from crm_platform import customfield_store
from crm_platform.clock import Clock
from crm_platform.contracts import customers, directory, leads, pipeline
from crm_platform.contracts import interactions as _interaction_events  # noqa: F401  (registers the event types)
from crm_platform.customfield_http import fields_router
from crm_platform.customfield_store import CustomFields
from crm_platform.events import EventFactory
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.readmodels.opportunities import OpportunityReadModel
from crm_platform.service import Periodic, ServiceKit

#: Names no custom field may take: each record's own fields (with the output's, below), and stored ones.
BUILTIN = frozenset({"custom", "s", "version", "outbox", "status", "hidden"})

DESCRIPTION = """Interactions (跟进记录) on every channel — calls, emails, meetings, visits, social and chat
messages, notes — with the 24-hour rule for minutes; follow-up tasks (待办) with reminders; customer feedback
(requests, suggestions, complaints) closed in a loop; activity counts per rep and channel. Customers,
opportunities and users come from the other services' events (read copies). Every change is published on
Kafka topic `crm.interactions.v1` as a CloudEvent: see /asyncapi."""


def create_app(settings: InteractionsSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or InteractionsSettings()
    kit = ServiceKit(settings, title="CRM interactions", description=DESCRIPTION, clock=clock)
    repo = Repository(kit.db, kit.clock, kit.wake_relay)
    for collection in (repo.interactions, repo.tasks, repo.feedback):
        kit.outbox(collection)
    event = EventFactory(kit.source, kit.clock)
    customer_copy = kit.read_copy(CustomerReadModel(repo.customers))
    opportunity_copy = kit.read_copy(OpportunityReadModel(repo.opportunities))
    directory_copy = kit.read_copy(DirectoryReadModel(repo.directory_users, repo.directory_departments))
    # Leads, for follow-ups on them (lead_id) and for moving those to the customer on conversion.
    lead_copy = LeadReadModel(repo.leads)
    refs = References(customer_copy, opportunity_copy, directory_copy, lead_copy)
    # Administrators' custom fields of interactions, tasks and feedback: definitions in this database,
    # so a write is validated synchronously. Their lists filter on the filterable ones and sort on
    # the sortable ones (each with its indexes behind the list prefixes, made and dropped with the
    # flag); every write of a record keeps its copies (s.cf_<key>, s.cfq_<key>), backfilled per
    # module when a flag that needs them is set.
    fields = CustomFields(
        kit.db[customfield_store.COLLECTION],
        kit.event_log,
        {INTERACTIONS: repo.interactions, TASKS: repo.tasks, FEEDBACK: repo.feedback},
        {
            INTERACTIONS: BUILTIN | frozenset(InteractionOut.model_fields),
            TASKS: BUILTIN | frozenset(TaskOut.model_fields),
            FEEDBACK: BUILTIN | frozenset(FeedbackOut.model_fields),
        },
        kit.clock,
        kit.source,
        kit.wake_relay,
        index_models={
            INTERACTIONS: interaction_custom_field_indexes,
            TASKS: task_custom_field_indexes,
            FEEDBACK: feedback_custom_field_indexes,
        },
        topic=kit.topic,
        filterable_modules=MODULES,
        sorting={
            INTERACTIONS: interaction_custom_sort_indexes,
            TASKS: task_custom_sort_indexes,
            FEEDBACK: feedback_custom_sort_indexes,
        },
        copying={
            INTERACTIONS: lambda definition, again: repo.backfill_copies(repo.interactions, definition, again),
            TASKS: lambda definition, again: repo.backfill_copies(repo.tasks, definition, again),
            FEEDBACK: lambda definition, again: repo.backfill_copies(repo.feedback, definition, again),
        },
    )
    repo.fieldsets = fields.fieldset
    kit.outbox(fields.collection)
    # What other replicas change reaches this one's validation within the interval.
    kit.background(Periodic("custom-fields", fields.reload, settings.custom_fields_reload_seconds))
    kit.restate(fields.collection, "crm.custom_field.", customfield_store.restater(kit.source))
    interactions = Interactions(repo, refs, kit.clock, settings, event, fields)
    tasks = Tasks(repo, refs, kit.clock, settings, event, fields)
    feedback = Feedback(repo, refs, kit.clock, event, fields)
    scheduler = TaskScheduler(repo, kit.clock, event, batch_size=settings.scheduler_batch_size)
    # Every pass is logged, counted and shown in /readyz ("background": runs, last error, stalled).
    periodic = Periodic("task-scheduler", scheduler.tick, settings.scheduler_poll_seconds)

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await fields.ensure_indexes()
        await customer_copy.ensure_indexes()
        await opportunity_copy.ensure_indexes()
        await directory_copy.ensure_indexes()

    kit.on_startup(setup)
    kit.consume(
        [customers.TOPIC, pipeline.TOPIC, directory.TOPIC, leads.TOPIC],
        {
            **events.handlers(customer_copy, CustomerReactions(repo, event), opportunity_copy, directory_copy),
            **LeadConversions(repo, lead_copy, event, settings.lead_move_batch_size).handlers(),
        },
    )
    if settings.scheduler_enabled:
        kit.background(periodic)
    app = kit.build_app(
        [http.interactions_router, http.tasks_router, http.feedback_router, *(fields_router(m) for m in MODULES)]
    )
    app.state.custom_fields = fields
    app.state.services = http.Services(interactions, tasks, feedback, settings, kit)
    app.state.scheduler = periodic
    app.state.task_scheduler = scheduler  # one pass on demand (tests)
    app.state.repo = repo
    app.state.lead_copy = lead_copy
    return app
