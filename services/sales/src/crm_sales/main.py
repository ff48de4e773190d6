"""The sales service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from crm_platform.clock import Clock
from crm_platform.contracts import customers as customer_events
from crm_platform.contracts import directory as directory_events
from crm_platform.contracts import interactions as interaction_events
from crm_platform.contracts import pipeline as pipeline_events
from crm_platform.contracts import sales as _sales_events  # noqa: F401  (registers the event types)
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.readmodels.opportunities import OpportunityReadModel
from crm_platform.service import Periodic, ServiceKit
from crm_sales.adapters.contracts import ContractRepository
from crm_sales.adapters.quotations import QuotationRepository
from crm_sales.adapters.repository import SalesRepository
from crm_sales.adapters.tickets import TicketRepository
from crm_sales.application.contracts import Contracts
from crm_sales.application.customer_events import CustomerReactions
from crm_sales.application.overdue import OverdueScheduler
from crm_sales.application.price_lists import PriceLists
from crm_sales.application.products import Products
from crm_sales.application.quotations import Quotations
from crm_sales.application.receivables import Receivables
from crm_sales.application.tickets import Tickets
from crm_sales.entrypoints import contracts as contracts_http
from crm_sales.entrypoints import price_lists as price_lists_http
from crm_sales.entrypoints import products as products_http
from crm_sales.entrypoints import quotation_list as quotation_list_http
from crm_sales.entrypoints import quotations as quotations_http
from crm_sales.entrypoints import tickets as tickets_http
from crm_sales.settings import SalesSettings

DESCRIPTION = """Sales (after the deal): the product catalogue (SKU unique in the organisation, unit,
category, active flag) and price lists per currency and customer tier, valid over a period, with prices
as decimal strings quantized to the currency's minor unit; the price that applies to a product for a
currency, a tier and a day. Every change is published on `crm.sales.v1`: see /asyncapi.
Quotations (报价单): numbered per year without gaps, revisions, approval of discounts above a threshold,
sending and the customer's answer, a PDF. Service tickets (工单): SLA targets per priority, escalation,
return visits, closed loop. Contracts (合同): numbered per year, approval by amount bands, signing and
execution; their payment plans, payments received (回款), overdue reminders and invoices."""


def create_app(settings: SalesSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or SalesSettings()
    kit = ServiceKit(settings, title="CRM sales", description=DESCRIPTION, clock=clock)
    repo = SalesRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(repo.products)
    kit.outbox(repo.price_lists)
    products = Products(repo, kit.clock, kit.source)
    price_lists = PriceLists(repo, kit.clock, kit.source)

    # Quotations: their own collections, and a read copy of the customers they are for.
    quotation_repo = QuotationRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(quotation_repo.quotations)
    customers = kit.read_copy(CustomerReadModel(quotation_repo.customers))
    quotations = Quotations(
        quotation_repo, repo, customers, kit.clock, kit.source, settings.sales_discount_approval_percent
    )
    tickets = add_tickets(kit, settings, quotation_repo, customers)
    # Merges move the quotations, contracts and tickets of the merged-away customer (application/customer_events.py):
    # one follower per aggregate that names a customer.
    contracts, overdue = add_contracts(kit, settings, quotation_repo, customers)
    CustomerReactions(customers, [quotations, contracts, tickets]).install()
    kit.consume([customer_events.TOPIC], customers.handlers())

    async def setup(_: ServiceKit) -> None:
        await repo.ensure_indexes()
        await quotation_repo.ensure_indexes()
        await customers.ensure_indexes()

    kit.on_startup(setup)
    # The catalogue needs nothing from other services; quotations need the customers (above). The
    # kit also keeps its read copy of the role definitions, in the group crm.sales.roles.
    app = kit.build_app(
        [
            products_http.router,
            price_lists_http.router,
            quotations_http.router,
            quotation_list_http.router,
            *tickets_http.ROUTERS,
            *contracts_http.routers(),
        ]
    )
    app.state.quotations = quotations
    app.state.products = products
    app.state.price_lists = price_lists
    app.state.repo = repo
    app.state.tickets = tickets
    app.state.ticket_scheduler = tickets.scheduler  # one pass on demand (tests)
    app.state.contracts = contracts
    app.state.receivables = Receivables(contracts)
    app.state.overdue_scheduler = overdue  # one pass on demand (tests)
    return app


def add_tickets(
    kit: ServiceKit, settings: SalesSettings, counters: QuotationRepository, customers: CustomerReadModel
) -> Tickets:
    """Service tickets (工单): their collection, the complaints consumer (its own group, so neither
    holds the other up), the SLA scheduler (safe in every replica; a setting turns it off)."""
    ticket_repo = TicketRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(ticket_repo.tickets)
    # The directory's users (an assignee's department and status), in a group of its own.
    users = kit.read_copy(DirectoryReadModel(kit.db["directory_users"], kit.db["directory_departments"]))
    kit.consume([directory_events.TOPIC], users.handlers(), group_suffix=".directory")
    tickets = Tickets(
        ticket_repo,
        counters,
        customers,
        kit.clock,
        kit.source,
        settings.ticket_sla(),
        settings.sales_ticket_escalate_at,
        settings.sales_ticket_reopen_days,
        settings.sales_ticket_scheduler_batch_size,
        users,
        kit.db["contracts"],  # read only: the contracts' own collection (add_contracts)
    )
    kit.consume([interaction_events.TOPIC], tickets.handlers(), group_suffix=".tickets")
    if settings.sales_ticket_scheduler_enabled:
        kit.background(
            Periodic("ticket-scheduler", tickets.scheduler.tick, settings.sales_ticket_scheduler_poll_seconds)
        )

    async def setup(_: ServiceKit) -> None:
        await ticket_repo.ensure_indexes()
        await users.ensure_indexes()

    kit.on_startup(setup)
    return tickets


def add_contracts(
    kit: ServiceKit, settings: SalesSettings, quotation_repo: QuotationRepository, customers: CustomerReadModel
) -> tuple[Contracts, OverdueScheduler]:
    """Contracts and receivables: their collection, and a read copy of the pipeline's opportunities
    (a contract follows a won one), fed by crm.pipeline.v1 in a group of its own."""
    contract_repo = ContractRepository(kit.db, kit.clock, kit.wake_relay)
    kit.outbox(contract_repo.contracts)
    opportunities = kit.read_copy(OpportunityReadModel(contract_repo.opportunities))
    kit.consume([pipeline_events.TOPIC], opportunities.handlers(), group_suffix=".opportunities")
    entity = settings.sales_contract_entity or settings.sales_organisation_name
    contracts = Contracts(
        contract_repo,
        quotation_repo,
        customers,
        opportunities,
        kit.clock,
        kit.source,
        settings.contract_bands(),
        entity,
        settings.business_zone,
    )

    async def setup(_: ServiceKit) -> None:
        await contract_repo.ensure_indexes()
        await opportunities.ensure_indexes()

    kit.on_startup(setup)
    overdue = OverdueScheduler(contract_repo, kit.clock, contracts.event, zone=settings.business_zone)
    if settings.sales_overdue_scheduler_enabled:
        kit.background(Periodic("contract-overdue", overdue.tick, settings.sales_overdue_poll_seconds))
    return contracts, overdue
