"""Who is told what about an event: pure functions from an event's data to notification intents.

An :class:`Intent` names the recipient, the kind, the record it links to and the values the
templates need; the application layer renders it in the recipient's language and stores it.
Nobody is told about what they did themselves (the actor is skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from crm_notifications.domain.kinds import Kind
from crm_notifications.domain.templates import feedback_kind_params, ticket_params
from crm_platform.contracts import customers, interactions, leads, pipeline, pool, sales
from crm_platform.contracts import export_approval as exports


@dataclass(frozen=True)
class Intent:
    recipient_id: str
    kind: Kind
    link: str
    params: dict[str, str] = field(default_factory=dict)
    #: Params that show a protected field (param -> (module, field)): left out, as :data:`HIDDEN`,
    #: for a recipient whose roles hide that field (crm_platform.fieldaccess).
    protected: dict[str, tuple[str, str]] = field(default_factory=dict)


#: What a notification shows in place of a value its reader's roles hide.
HIDDEN = "—"


def visible_params(intent: Intent, hidden: Callable[[str, str], bool]) -> dict[str, str]:
    """The intent's params as its recipient may read them: ``hidden(module, field)`` says which
    protected ones their roles hide."""
    return {
        name: HIDDEN if name in intent.protected and hidden(*intent.protected[name]) else value
        for name, value in intent.params.items()
    }


def when(moment: datetime) -> str:
    """A moment, kept exact (ISO 8601) until it is rendered in the reader's time zone."""
    return moment.isoformat()


def money(amount: str | None, currency: str) -> str:
    return f"{amount} {currency}" if amount else f"- {currency}"


def _others(recipient_id: str | None, actor: str | None) -> bool:
    return bool(recipient_id) and recipient_id != actor


def task_reminder(data: interactions.TaskReminderDue) -> list[Intent]:
    return _task(data.task, Kind.task_reminder)


def task_overdue(data: interactions.TaskOverdue) -> list[Intent]:
    return _task(data.task, Kind.task_overdue)


def _task(task: interactions.TaskSnapshot, kind: Kind) -> list[Intent]:
    if task.status != "open" or task.hidden:
        return []  # done or cancelled meanwhile: nothing to remind of
    return [
        Intent(
            task.assignee_id, kind, f"/tasks/{task.task_id}", {"task_title": task.title, "due_at": when(task.due_at)}
        )
    ]


def contract_instalment_overdue(data: sales.ContractInstalmentOverdue, instalment_no: int) -> list[Intent]:
    """The contract's owner is reminded of an instalment past due (once: the sales service publishes it once)."""
    c = data.contract
    if c.status in ("completed", "terminated"):
        return []
    params = {
        "contract_number": c.number,
        "customer_name": data.customer_name or c.customer_id,
        "instalment_no": str(instalment_no),
        "due_on": data.instalment.due_date.isoformat(),
        "days_overdue": str(data.days_overdue),
        "outstanding": money(data.instalment.outstanding, c.currency),
    }
    return [Intent(data.owner_id, Kind.contract_instalment_overdue, f"/contracts/{c.contract_id}", params)]


def customer_owner_changed(data: customers.OwnerChanged, actor: str | None) -> list[Intent]:
    if not _others(data.owner_id, actor) or data.owner_id is None:
        return []
    c = data.customer
    return [Intent(data.owner_id, Kind.customer_assigned, f"/customers/{c.customer_id}", {"customer_name": c.name})]


def customer_released(data: customers.ReleasedToPool, actor: str | None) -> list[Intent]:
    if not _others(data.previous_owner_id, actor) or data.previous_owner_id is None:
        return []
    c = data.customer
    return [
        Intent(
            data.previous_owner_id,
            Kind.customer_released,
            f"/customers/{c.customer_id}",
            {"customer_name": c.name, "reason": data.reason},
        )
    ]


def recycle_warning(data: pool.RecycleWarning) -> list[Intent]:
    return [
        Intent(
            data.owner_id,
            Kind.customer_recycle_warning,
            f"/customers/{data.customer_id}",
            {
                "customer_name": data.customer_name or data.customer_id,
                "days_left": str(data.days_left),
                "recycle_at": when(data.recycle_at),
            },
        )
    ]


def lead_recycle_warning(data: pool.LeadRecycleWarning) -> list[Intent]:
    return [
        Intent(
            data.owner_id,
            Kind.lead_recycle_warning,
            f"/leads/{data.lead_id}",
            {
                "company_name": data.company_name or data.lead_id,
                "days_left": str(data.days_left),
                "recycle_at": when(data.recycle_at),
            },
        )
    ]


def _opportunity_params(o: pipeline.OpportunitySnapshot) -> dict[str, str]:
    return {"opportunity_name": o.name, "amount": money(o.amount, o.currency)}


#: The opportunity notifications' params that show a protected field.
_OPPORTUNITY_PROTECTED = {"amount": ("opportunities", "amount")}


def opportunity_assigned(o: pipeline.OpportunitySnapshot, actor: str | None) -> list[Intent]:
    if not _others(o.owner_id, actor):
        return []
    link = f"/opportunities/{o.opportunity_id}"
    return [Intent(o.owner_id, Kind.opportunity_assigned, link, _opportunity_params(o), _OPPORTUNITY_PROTECTED)]


def is_big_deal(o: pipeline.OpportunitySnapshot, threshold: Decimal) -> bool:
    """Amounts are compared as numbers in their own currency (the threshold has none)."""
    try:
        return o.amount is not None and Decimal(o.amount) >= threshold
    except InvalidOperation:
        return False


def department_ids(path: str | None) -> list[str]:
    """The department and its ancestors, from a path of ids: /hq/east/t1 -> [t1, east, hq]."""
    return [p for p in (path or "").split("/") if p][::-1]


def big_deal_won(o: pipeline.OpportunitySnapshot, managers: list[str]) -> list[Intent]:
    """One intent per manager above the owner (a manager who won it themselves is not told)."""
    seen: set[str] = set()
    out: list[Intent] = []
    for manager in managers:
        if manager == o.owner_id or manager in seen:
            continue
        seen.add(manager)
        link = f"/opportunities/{o.opportunity_id}"
        out.append(Intent(manager, Kind.big_deal_won, link, _opportunity_params(o), _OPPORTUNITY_PROTECTED))
    return out


def feedback_assigned(f: interactions.FeedbackSnapshot, actor: str | None) -> list[Intent]:
    if not _others(f.handler_id, actor) or f.handler_id is None or f.hidden:
        return []
    params = {"feedback_title": f.title, "priority": f.priority, **feedback_kind_params(f.kind)}
    return [Intent(f.handler_id, Kind.feedback_assigned, f"/feedback/{f.feedback_id}", params)]


def handler_changed(changes: list[interactions.FieldChange]) -> bool:
    return any(c.field == "handler_id" and c.new and c.new != c.old for c in changes)


def webhook_disabled(owner_id: str, subscription_id: str, url: str, failures: int) -> list[Intent]:
    return [
        Intent(owner_id, Kind.webhook_disabled, f"/webhooks/{subscription_id}", {"url": url, "failures": str(failures)})
    ]


def _export_link(request: exports.ExportRequestSnapshot) -> str:
    return f"/export-requests/{request.request_id}"  # the console's page of the request


def export_requested(request: exports.ExportRequestSnapshot, requester_name: str, managers: list[str]) -> list[Intent]:
    """One intent per manager above the requester (administrators, who may answer any request,
    find it on their pending list)."""
    params = {"requester_name": requester_name, "rows": str(request.rows), "threshold": str(request.threshold)}
    seen: set[str] = set()
    out: list[Intent] = []
    for manager in managers:
        if manager == request.requester_id or manager in seen:
            continue
        seen.add(manager)
        out.append(Intent(manager, Kind.export_approval_requested, _export_link(request), params))
    return out


def export_answered(request: exports.ExportRequestSnapshot, approver_name: str) -> list[Intent]:
    """The requester learns the answer, the approver's comment and, if approved, until when to download."""
    params = {"approver_name": approver_name, "rows": str(request.rows), "comment": request.comment or "-"}
    if request.status == "approved" and request.valid_until is not None:
        return [
            Intent(
                request.requester_id,
                Kind.export_approved,
                _export_link(request),
                {**params, "valid_until_at": when(request.valid_until)},
            )
        ]
    if request.status == "rejected":
        return [Intent(request.requester_id, Kind.export_rejected, _export_link(request), params)]
    return []


def lead_assigned(lead: leads.LeadSnapshot, actor: str | None, how: str | None = None) -> list[Intent]:
    """A lead's new owner is told, unless they took it themselves (claimed, or created their own);
    a release to the lead pool has no new owner."""
    if how in ("claimed", "released") or lead.owner_id is None or not _others(lead.owner_id, actor) or lead.deleted:
        return []
    return [Intent(lead.owner_id, Kind.lead_assigned, f"/leads/{lead.lead_id}", {"lead_name": lead.company_name})]


def lead_conversion_failed(data: leads.LeadConversionFailed, requested_by: str | None) -> list[Intent]:
    """Who asked for the conversion learns why it failed (the lead's owner when that is not known)."""
    recipient = requested_by or data.lead.owner_id
    if not recipient:
        return []
    params = {"lead_name": data.lead.company_name, "reason": data.reason}
    return [Intent(recipient, Kind.lead_conversion_failed, f"/leads/{data.lead.lead_id}", params)]


def ticket_escalated(data: sales.TicketSla, managers: list[str]) -> list[Intent]:
    """A ticket's SLA target is about to break: its assignee and the managers of its department
    (and the departments above, nearest first), each told once."""
    return _ticket_sla(data, managers, Kind.ticket_escalated)


def ticket_sla_breached(data: sales.TicketSla, managers: list[str]) -> list[Intent]:
    """A ticket's SLA target was missed (by the scheduler at the due moment, or a late answer): the
    same people as its escalation, each told once; a closed ticket tells nobody."""
    return _ticket_sla(data, managers, Kind.ticket_sla_breached)


def ticket_assigned(data: sales.TicketAssigned, actor: str | None) -> list[Intent]:
    """The new assignee of a ticket, unless they took it themselves (the actor)."""
    t = data.ticket
    if t.owner_id is None or t.status == "closed" or not _others(t.owner_id, actor):
        return []
    params = {
        "ticket_number": t.number,
        "subject": t.subject,
        "due_at": when(t.resolution_due_at),
        **ticket_params("resolution", t.priority),
    }
    return [Intent(t.owner_id, Kind.ticket_assigned, f"/tickets/{t.ticket_id}", params)]


def _ticket_sla(data: sales.TicketSla, managers: list[str], kind: Kind) -> list[Intent]:
    t = data.ticket
    if t.status == "closed":
        return []
    params = {
        "ticket_number": t.number,
        "subject": t.subject,
        "due_at": when(data.due_at),
        **ticket_params(data.target, t.priority),
    }
    out: list[Intent] = []
    seen: set[str] = set()
    for recipient in [t.owner_id, *managers]:
        if not recipient or recipient in seen:
            continue
        seen.add(recipient)
        out.append(Intent(recipient, kind, f"/tickets/{t.ticket_id}", params))
    return out
