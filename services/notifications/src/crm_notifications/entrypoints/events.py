"""What the notifications service does with other services' events.

Two consumer groups, so that neither can hold the other up: the inbox group (directory
copy + notifications for people) and the webhook group (every topic, fanned out to
subscriptions as stored delivery jobs, never an HTTP call on the consumer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from crm_notifications.application.deliveries import Fanout
from crm_notifications.application.inbox import Inbox
from crm_notifications.domain import planning
from crm_notifications.domain.planning import Intent
from crm_notifications.entrypoints.contracts import contract_planners
from crm_notifications.entrypoints.leads import lead_planners
from crm_notifications.entrypoints.quotations import quotation_planners
from crm_platform.catalogue import event_types, load_contracts
from crm_platform.consumer import Handler
from crm_platform.contracts import customers, interactions, leads, pipeline, pool, sales
from crm_platform.contracts import export_approval as exports
from crm_platform.events import EventEnvelope
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.roles import RoleBook

Planner = Callable[[EventEnvelope], Awaitable[list[Intent]]]


def inbox_handlers(
    inbox: Inbox,
    directory: DirectoryReadModel,
    big_deal_amount: Decimal,
    conversions: Any = None,
    roles: RoleBook | None = None,
) -> Mapping[str, Handler]:
    """``conversions``: the collection where who asked for each lead conversion is kept (see entrypoints/leads.py)."""

    async def managers_above(department_path: str | None) -> list[str]:
        """Managers of the department and every department above it, nearest first."""
        managers = []
        for department_id in planning.department_ids(department_path):
            department = await directory.department(department_id)
            if department and department.get("manager_id") and department.get("status") != "deleted":
                managers.append(str(department["manager_id"]))
        return managers

    async def task_reminder(e: EventEnvelope) -> list[Intent]:
        return planning.task_reminder(interactions.TASK_REMINDER_DUE.parse(e))

    async def task_overdue(e: EventEnvelope) -> list[Intent]:
        return planning.task_overdue(interactions.TASK_OVERDUE.parse(e))

    async def customer_owner_changed(e: EventEnvelope) -> list[Intent]:
        return planning.customer_owner_changed(customers.OWNER_CHANGED.parse(e), e.actor)

    async def customer_released(e: EventEnvelope) -> list[Intent]:
        return planning.customer_released(customers.RELEASED.parse(e), e.actor)

    async def recycle_warning(e: EventEnvelope) -> list[Intent]:
        return planning.recycle_warning(pool.RECYCLE_WARNING.parse(e))

    async def lead_recycle_warning(e: EventEnvelope) -> list[Intent]:
        return planning.lead_recycle_warning(pool.LEAD_RECYCLE_WARNING.parse(e))

    async def opportunity_created(e: EventEnvelope) -> list[Intent]:
        return planning.opportunity_assigned(pipeline.OPPORTUNITY_CREATED.parse(e).opportunity, e.actor)

    async def opportunity_owner_changed(e: EventEnvelope) -> list[Intent]:
        return planning.opportunity_assigned(pipeline.OPPORTUNITY_OWNER_CHANGED.parse(e).opportunity, e.actor)

    async def opportunity_won(e: EventEnvelope) -> list[Intent]:
        o = pipeline.OPPORTUNITY_WON.parse(e).opportunity
        if not planning.is_big_deal(o, big_deal_amount):
            return []
        path = o.department_path
        if path is None:
            owner = await directory.user(o.owner_id)
            path = (owner or {}).get("department_path")
        return planning.big_deal_won(o, await managers_above(path))

    async def feedback_opened(e: EventEnvelope) -> list[Intent]:
        return planning.feedback_assigned(interactions.FEEDBACK_OPENED.parse(e).feedback, e.actor)

    async def feedback_updated(e: EventEnvelope) -> list[Intent]:
        data = interactions.FEEDBACK_UPDATED.parse(e)
        if not planning.handler_changed(data.changes):
            return []
        return planning.feedback_assigned(data.feedback, e.actor)

    async def name_of(user_id: str | None) -> str:
        user = await directory.user(user_id) if user_id else None
        return str((user or {}).get("name") or user_id or "-")

    async def export_requested(e: EventEnvelope) -> list[Intent]:
        request = exports.EXPORT_REQUESTED.parse(e).request
        path = request.requester_department_path
        return planning.export_requested(request, await name_of(request.requester_id), await managers_above(path))

    async def export_answered(e: EventEnvelope) -> list[Intent]:
        request = exports.EXPORT_APPROVED.parse(e).request  # approved and rejected carry the same data
        return planning.export_answered(request, await name_of(request.decided_by))

    async def ticket_managers(ticket: sales.TicketSnapshot) -> list[str]:
        path = ticket.department_path
        if path is None and ticket.owner_id:
            owner = await directory.user(ticket.owner_id)
            path = (owner or {}).get("department_path")
        return await managers_above(path)

    async def ticket_escalated(e: EventEnvelope) -> list[Intent]:
        data = sales.TICKET_ESCALATED.parse(e)
        return planning.ticket_escalated(data, await ticket_managers(data.ticket))

    async def ticket_sla_breached(e: EventEnvelope) -> list[Intent]:
        data = sales.TICKET_SLA_BREACHED.parse(e)
        return planning.ticket_sla_breached(data, await ticket_managers(data.ticket))

    async def ticket_assigned(e: EventEnvelope) -> list[Intent]:
        return planning.ticket_assigned(sales.TICKET_ASSIGNED.parse(e), e.actor)

    planners: dict[str, Planner] = {
        interactions.TASK_REMINDER_DUE.name: task_reminder,
        interactions.TASK_OVERDUE.name: task_overdue,
        customers.OWNER_CHANGED.name: customer_owner_changed,
        customers.RELEASED.name: customer_released,
        pool.RECYCLE_WARNING.name: recycle_warning,
        pool.LEAD_RECYCLE_WARNING.name: lead_recycle_warning,
        pipeline.OPPORTUNITY_CREATED.name: opportunity_created,
        pipeline.OPPORTUNITY_OWNER_CHANGED.name: opportunity_owner_changed,
        pipeline.OPPORTUNITY_WON.name: opportunity_won,
        interactions.FEEDBACK_OPENED.name: feedback_opened,
        interactions.FEEDBACK_UPDATED.name: feedback_updated,
        exports.EXPORT_REQUESTED.name: export_requested,
        exports.EXPORT_APPROVED.name: export_answered,
        exports.EXPORT_REJECTED.name: export_answered,
        sales.TICKET_ESCALATED.name: ticket_escalated,
        sales.TICKET_SLA_BREACHED.name: ticket_sla_breached,
        sales.TICKET_ASSIGNED.name: ticket_assigned,
    }
    if conversions is not None:
        planners.update(lead_planners(conversions))
    planners.update(quotation_planners(directory, roles))
    planners.update(contract_planners())

    def handler(plan: Planner) -> Handler:
        async def handle(envelope: EventEnvelope) -> None:
            await inbox.deliver(await plan(envelope), event_id=envelope.id, event_type=envelope.type)

        return handle

    out: dict[str, Handler] = dict(directory.handlers())
    out.update({name: handler(plan) for name, plan in planners.items()})
    return out


INBOX_TOPICS = [customers.TOPIC, pipeline.TOPIC, interactions.TOPIC, pool.TOPIC, leads.TOPIC, sales.TOPIC]


def webhook_topics() -> list[str]:
    """Every topic of every service: all contracts modules are imported, so a new service's events
    reach integrators without a change here."""
    load_contracts()
    return sorted({t.topic for t in event_types()})


def webhook_handlers(fanout: Fanout) -> Mapping[str, Handler]:
    load_contracts()
    return {t.name: fanout.on_event for t in event_types()}
