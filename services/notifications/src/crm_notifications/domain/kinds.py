"""What a notification can be about, and which kinds come by email unless the user says otherwise."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    task_reminder = "task_reminder"
    task_overdue = "task_overdue"
    customer_assigned = "customer_assigned"
    customer_recycle_warning = "customer_recycle_warning"
    lead_recycle_warning = "lead_recycle_warning"
    customer_released = "customer_released"
    opportunity_assigned = "opportunity_assigned"
    big_deal_won = "big_deal_won"
    feedback_assigned = "feedback_assigned"
    webhook_disabled = "webhook_disabled"
    export_approval_requested = "export_approval_requested"
    export_approved = "export_approved"
    export_rejected = "export_rejected"
    lead_assigned = "lead_assigned"
    lead_conversion_failed = "lead_conversion_failed"
    ticket_escalated = "ticket_escalated"
    ticket_assigned = "ticket_assigned"
    ticket_sla_breached = "ticket_sla_breached"
    quotation_approval_requested = "quotation_approval_requested"
    quotation_approved = "quotation_approved"
    quotation_rejected = "quotation_rejected"
    contract_instalment_overdue = "contract_instalment_overdue"


# Email by default only where missing the message costs something: a customer about to be
# lost to the pool, a task already late, an integration that stopped. The rest stays in the inbox.
DEFAULT_EMAIL: dict[Kind, bool] = {
    Kind.task_reminder: False,
    Kind.task_overdue: True,
    Kind.customer_assigned: False,
    Kind.customer_recycle_warning: True,
    Kind.lead_recycle_warning: True,
    Kind.customer_released: False,
    Kind.opportunity_assigned: False,
    Kind.big_deal_won: False,
    Kind.feedback_assigned: False,
    Kind.webhook_disabled: True,
    # Export approval: the approvers' request and the requester's answer stay in the inbox.
    Kind.export_approval_requested: False,
    Kind.export_approved: False,
    Kind.export_rejected: False,
    # Leads: a lead given to someone, a conversion that was refused: the inbox.
    Kind.lead_assigned: False,
    Kind.lead_conversion_failed: False,
    # A service ticket about to break its SLA: the assignee and the department's managers, by email
    # too (it is the last moment to act).
    Kind.ticket_escalated: True,
    # A ticket given to someone: the inbox (like every other assignment). A target missed: by email
    # too, to the assignee and the managers (a promise to the customer is already broken).
    Kind.ticket_assigned: False,
    Kind.ticket_sla_breached: True,
    # Quotations: a discount waiting for approval, and the decision: the inbox.
    Kind.quotation_approval_requested: False,
    Kind.quotation_approved: False,
    Kind.quotation_rejected: False,
    # Contracts: money that is late costs something, so the owner gets it by email too.
    Kind.contract_instalment_overdue: True,
}


def email_wanted(kind: Kind, preferences: dict[str, bool] | None) -> bool:
    """The user's choice for this kind, else the default."""
    if preferences and kind.value in preferences:
        return bool(preferences[kind.value])
    return DEFAULT_EMAIL[kind]
