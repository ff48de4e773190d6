"""The customers service's app factory."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from crm_customers.adapters import tag_index
from crm_customers.adapters.claim_rules import ClaimRulesCopy
from crm_customers.adapters.export_requests import ExportApprovalStore
from crm_customers.adapters.repository import CustomerRepository, custom_field_indexes, custom_sort_indexes
from crm_customers.application.customers import CONTACTS, MODULE, Customers
from crm_customers.application.export_approval import ExportApprovals
from crm_customers.application.lead_conversion import COLLECTION as LEAD_CONVERSIONS
from crm_customers.application.lead_conversion import LeadConversions
from crm_customers.application.restore import restater
from crm_customers.domain import rules
from crm_customers.entrypoints import events, export_approval, http
from crm_customers.entrypoints.schemas import ContactOut, CustomerOut
from crm_customers.settings import CustomersSettings
from crm_platform import customfield_store
from crm_platform.clock import Clock
from crm_platform.contracts import customers as _customer_events  # noqa: F401  (registers the event types)
from crm_platform.contracts import directory, interactions, leads, pool
from crm_platform.customfield_http import fields_router
from crm_platform.customfield_store import CustomFields
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.retention import purge_records
from crm_platform.service import Periodic, ServiceKit

#: Names a custom field of customers may not take: the record's own fields.
BUILTIN_FIELDS = frozenset(CustomerOut.model_fields) | {"contacts", "s", "status", "version", "outbox", "custom"}
BUILTIN_CONTACT_FIELDS = frozenset(ContactOut.model_fields) | {"created_by", "custom"}

DESCRIPTION = """Customers (客户) and their contacts: validation (USCC, phones, emails), duplicate checks
("first entered owns"), ownership and the public pool (公海), locks, field-level history and the
recycle bin. Every change is published on Kafka topic `crm.customers.v1` as a CloudEvent: see /asyncapi."""


def create_app(settings: CustomersSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or CustomersSettings()
    kit = ServiceKit(settings, title="CRM customers", description=DESCRIPTION, clock=clock)
    repo = CustomerRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(repo.collection)
    kit.outbox(repo.exports)
    kit.outbox(repo.import_records)
    # A restore (crm restore customers) restates customers the topic shows newer than the backup;
    # export and import records are append-only, each under an id of its own: nothing to restate.
    kit.restate(repo.collection, "crm.customer.", restater(kit.source))
    kit.restate(repo.exports, "crm.customer_export.", None)
    kit.restate(repo.import_records, "crm.customer_import.", None)
    claim_rules = ClaimRulesCopy(kit.db)
    # Who users are (department, active or not) for assignments, fed by the directory's events.
    directory_copy = kit.read_copy(DirectoryReadModel(kit.db["directory_users"], kit.db["directory_departments"]))
    # Administrators' custom fields of customers: definitions in this database, so every write
    # validates against them synchronously; filterable ones get an index on the customers.
    fields = CustomFields(
        kit.db[customfield_store.COLLECTION],
        kit.event_log,
        {MODULE: repo.collection, CONTACTS: repo.collection},
        {MODULE: BUILTIN_FIELDS, CONTACTS: BUILTIN_CONTACT_FIELDS},
        kit.clock,
        kit.source,
        kit.wake_relay,
        {MODULE: custom_field_indexes},
        filterable_modules=(MODULE,),  # contacts are listed with their customer, not filtered on
        # Sortable ones get sort indexes behind each scope.
        sorting={MODULE: custom_sort_indexes},
        # Sortable fields and filterable dates and money keep copies beside the sort keys,
        # backfilled on every customer when the flag is set.
        copying={MODULE: repo.backfill_copies},
        # Tag-filtered lists run on the tag memberships: the same flags index them too.
        extra_indexes={MODULE: [(repo.tags.collection, tag_index.custom_field_indexes, tag_index.custom_sort_indexes)]},
    )
    # Every customer write keeps the fields' copies (s.cf_<key>, s.cfq_<key>) from the definitions.
    repo.fieldset = lambda: fields.fieldset(MODULE)
    kit.outbox(fields.collection)
    # What other replicas change reaches this one's validation within the interval.
    kit.background(Periodic("custom-fields", fields.reload, settings.custom_fields_reload_seconds))
    kit.restate(fields.collection, "crm.custom_field.", customfield_store.restater(kit.source))
    service = Customers(repo, kit.clock, settings, kit.source, claim_rules, directory_copy, fields)
    # Leads' conversions into customers: commands on crm.leads.v1, refusals in a collection of their own.
    lead_conversions = LeadConversions(service, kit.db[LEAD_CONVERSIONS], kit.wake_relay)
    kit.outbox(lead_conversions.collection)
    approval_store = ExportApprovalStore(kit.db, kit.clock, kit.wake_relay)
    approvals = ExportApprovals(
        approval_store, kit.clock, service.events, timedelta(hours=settings.export_approval_valid_hours)
    )
    kit.outbox(approval_store.policies)
    kit.outbox(approval_store.requests)
    # A restore leaves the export policy and requests as the backup had them: a request answered
    # after the backup is pending again (answer it again; the audit log keeps both answers).
    kit.restate(approval_store.policies, "crm.customer_export_policy.", None)
    kit.restate(approval_store.requests, "crm.customer_export_request.", None)

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await fields.ensure_indexes()
        await approvals.ensure_indexes()
        await directory_copy.ensure_indexes()
        # Documents written by an older version get today's sort keys (a no-op once done).
        await repo.upgrade_sort_keys(rules.sort_keys, rules.SORT_KEYS_VERSION)
        # Duplicate-check keys for customers stored before they were documents of their own (once).
        await repo.rebuild_keys()
        # Tag memberships (what tag-filtered lists page on): built once for customers stored
        # before they existed or before today's sort keys, then those of writes a crash cut short.
        await repo.tags.rebuild(repo.collection, f"v{tag_index.VERSION}_s{rules.SORT_KEYS_VERSION}")
        await repo.tags.resync_pending(repo.collection)

    async def purge_source_records() -> None:
        days, batch = settings.record_retention_days, settings.record_purge_batch_size
        await repo.purge_records(days, batch)
        await purge_records(approval_store.requests, kit.clock.now(), days, batch)  # export requests, answered or not

    kit.on_startup(setup)
    if settings.record_purge_enabled:
        # Export and import records, once the audit log has long had their events (CRM_RECORD_RETENTION_DAYS).
        kit.background(Periodic("record-retention-purge", purge_source_records, settings.record_purge_interval_seconds))
    kit.consume(
        [interactions.TOPIC, pool.TOPIC, directory.TOPIC, leads.TOPIC],
        {**events.handlers(service, claim_rules), **directory_copy.handlers(), **lead_conversions.handlers()},
    )
    app = kit.build_app(
        [export_approval.router, http.router, http.views_router, fields_router(MODULE), fields_router(CONTACTS)]
    )  # export approval's paths before /customers/{id}
    app.state.customers = service
    app.state.lead_conversions = lead_conversions
    app.state.export_approvals = approvals
    app.state.custom_fields = fields
    return app
