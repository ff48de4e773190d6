"""Service tickets (工单): what the API takes, the SLA targets and their state, the escalation
moments the scheduler acts on, and the status moves (no I/O).

Statuses::

    open -> in_progress -> resolved -> closed
       \\________________/    |
                             `-> in_progress (reopen, within the reopen window)

A ticket has two SLA targets, each a moment fixed when it is opened from its priority's policy
(``CRM_SALES_TICKET_SLA``): the **first response** (met by the first reply) and the
**resolution** (met by resolving). While a target is open the scheduler watches two moments of
it: when a share of its time has elapsed (``CRM_SALES_TICKET_ESCALATE_AT``, e.g. 80 %) it
escalates once, and at the target itself it records a breach once. ``s.check_at`` (epoch ms,
indexed) is the earliest such moment still armed, so the scheduler's poll is an index range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crm_platform.contracts import sales as ev
from crm_platform.errors import Conflict, ValidationFailed
from crm_platform.sortkeys import epoch_ms

Document = dict[str, Any]

Source = Literal["complaint", "agent", "phone", "email", "web", "wechat"]
Priority = Literal["urgent", "high", "normal", "low"]
Target = Literal["first_response", "resolution"]
PRIORITIES: tuple[Priority, ...] = ("urgent", "high", "normal", "low")
TARGETS: tuple[Target, ...] = ("first_response", "resolution")
STATUSES = ("open", "in_progress", "resolved", "closed")
#: Categories of a ticket (code -> zh name), the codes the API takes.
CATEGORIES: dict[str, str] = {
    "installation": "安装",
    "fault": "故障",
    "consultation": "咨询",
    "complaint": "投诉",
    "billing": "账单",
    "maintenance": "维护保养",
    "other": "其他",
}
CategoryCode = Literal["installation", "fault", "consultation", "complaint", "billing", "maintenance", "other"]
MAX_REPLIES = 500
NUMBER_DIGITS = 6
#: Far in the future: the scheduler's moment of a ticket with nothing left to watch.
NEVER_MS = 253402300799000  # 9999-12-31T23:59:59Z
_NUMBER = re.compile(r"^T-(?P<year>[0-9]{4})-(?P<seq>[0-9]{6,})$")


# --- the SLA policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sla:
    first_response: timedelta
    resolution: timedelta

    def target(self, name: Target) -> timedelta:
        return self.first_response if name == "first_response" else self.resolution


SlaPolicy = dict[str, Sla]
DEFAULT_SLA = "urgent=1h/4h,high=4h/24h,normal=8h/72h,low=24h/168h"
_DURATION = re.compile(r"^([0-9]{1,5})([mhd])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def _duration(text: str, where: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{where}: '{text}' is not a duration above 0 such as 30m, 4h or 3d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_sla(raw: str) -> SlaPolicy:
    """``urgent=1h/4h,high=4h/24h,...``: per priority, the first-response and resolution targets.

    Every priority must be named once, and a first response may not be due after the resolution
    (ValueError naming what is wrong, so a bad setting stops the service at start)."""
    policy: SlaPolicy = {}
    for part in (p for p in raw.split(",") if p.strip()):
        name, sep, targets = part.partition("=")
        priority = name.strip().lower()
        if not sep or priority not in PRIORITIES:
            raise ValueError(f"'{part.strip()}': write <priority>=<first response>/<resolution>, e.g. high=4h/24h")
        if priority in policy:
            raise ValueError(f"{priority} is given twice")
        first, slash, resolution = targets.partition("/")
        if not slash:
            raise ValueError(f"{priority}: write <first response>/<resolution>, e.g. 4h/24h")
        sla = Sla(_duration(first, f"{priority} first response"), _duration(resolution, f"{priority} resolution"))
        if sla.first_response > sla.resolution:
            raise ValueError(f"{priority}: the first response ({first}) is due after the resolution ({resolution})")
        policy[priority] = sla
    missing = [p for p in PRIORITIES if p not in policy]
    if missing:
        raise ValueError(f"no targets for {', '.join(missing)}")
    return policy


# --- input ---------------------------------------------------------------------------------------


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None


def _required(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be blank")
    return text


Required = Annotated[str, AfterValidator(_required)]
Optional = Annotated[str | None, AfterValidator(_text)]


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=100)
    contract_id: Optional = Field(default=None, max_length=100)
    contact_id: Optional = Field(default=None, max_length=100)
    source: Source = "agent"
    category: CategoryCode
    priority: Priority = "normal"
    subject: Required = Field(min_length=1, max_length=200)
    description: Optional = Field(default=None, max_length=10000)


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Required = Field(min_length=1, max_length=10000)
    public: bool = Field(default=True, description="Shown to the customer (true) or an internal note (false).")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee_id: Required = Field(min_length=1, max_length=100)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Required = Field(min_length=1, max_length=4000)


class ReopenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Optional = Field(default=None, max_length=2000)


class ReturnVisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    satisfaction: int = Field(ge=1, le=5, description="The customer's rating, 1 (very unhappy) to 5.")
    comment: Optional = Field(default=None, max_length=4000)
    channel: Literal["phone", "wechat", "email", "visit", "sms", "other"] = "phone"


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    no_visit_reason: Optional = Field(
        default=None,
        max_length=2000,
        description="Why there is no return visit (e.g. the customer could not be reached); needed without one.",
    )


# --- numbers -------------------------------------------------------------------------------------


def format_number(year: int, seq: int) -> str:
    """``T-2026-000123``: the year and the year's sequence (at least six digits)."""
    if seq < 1:
        raise ValueError("a ticket number's sequence starts at 1")
    return f"T-{year:04d}-{seq:0{NUMBER_DIGITS}d}"


def parse_number(number: str) -> tuple[int, int]:
    match = _NUMBER.match(number)
    if match is None:
        raise ValueError(f"'{number}' is not a ticket number")
    return int(match.group("year")), int(match.group("seq"))


def counter_id(year: int) -> str:
    return f"ticket:{year:04d}"


# --- SLA state -----------------------------------------------------------------------------------


def due_at(doc: Document, target: Target) -> datetime:
    value: datetime = doc[f"{target}_due_at"]
    return value


def warn_at(doc: Document, target: Target) -> datetime:
    """When ``share`` of the target's time has elapsed (stored when opened)."""
    value: datetime = doc[f"{target}_warn_at"]
    return value


def done_at(doc: Document, target: Target) -> datetime | None:
    value: datetime | None = doc.get("first_responded_at" if target == "first_response" else "resolved_at")
    return value


def sla_state(doc: Document, target: Target, now: datetime) -> str:
    """``met`` or ``breached`` once the target is done; before: ``breached`` past it, ``at_risk``
    past the escalation share, else ``on_track``."""
    done = done_at(doc, target)
    if target == "resolution" and done is None and doc.get("status") == "closed":
        done = doc.get("closed_at")
    if done is not None:
        return "breached" if done > due_at(doc, target) or target in doc.get("breaches", {}) else "met"
    if now >= due_at(doc, target):
        return "breached"
    if now >= warn_at(doc, target):
        return "at_risk"
    return "on_track"


def _target_open(doc: Document, target: Target) -> bool:
    if doc.get("status") == "closed":
        return False
    return done_at(doc, target) is None


Action = tuple[Literal["escalate", "breach"], Target]


def due_action(doc: Document, now: datetime) -> Action | None:
    """The first escalation or breach whose moment has come and that has not been recorded."""
    for target in TARGETS:
        if not _target_open(doc, target):
            continue
        if target not in doc.get("escalations", {}) and warn_at(doc, target) <= now:
            return ("escalate", target)
        if target not in doc.get("breaches", {}) and due_at(doc, target) <= now:
            return ("breach", target)
    return None


def check_at(doc: Document) -> int:
    """The earliest moment (epoch ms) the scheduler has something to do for this ticket."""
    moments = []
    for target in TARGETS:
        if not _target_open(doc, target):
            continue
        if target not in doc.get("escalations", {}):
            moments.append(epoch_ms(warn_at(doc, target)))
        elif target not in doc.get("breaches", {}):
            moments.append(epoch_ms(due_at(doc, target)))
    return min(moments, default=NEVER_MS)


def record(doc: Document, action: Action, now: datetime) -> None:
    kind, target = action
    if kind == "escalate":
        doc.setdefault("escalations", {})[target] = now
        doc["escalation_level"] = len(doc["escalations"])
    else:
        doc.setdefault("breaches", {})[target] = now
        doc["breached"] = True


def late_breach(doc: Document, target: Target, now: datetime) -> bool:
    """A target met late that the scheduler had not marked yet: mark it now (the caller publishes
    crm.ticket.sla_breached once, with the change)."""
    if target in doc.get("breaches", {}) or now <= due_at(doc, target):
        return False
    record(doc, ("breach", target), now)
    return True


# --- the document --------------------------------------------------------------------------------


def new_ticket(
    ticket_id: str,
    data: TicketIn,
    customer: Document,
    owner_id: str | None,
    opened_by: str,
    department_path: str | None,
    sla: Sla,
    escalate_share: Decimal,
    now: datetime,
    feedback_id: str | None = None,
) -> Document:
    doc: Document = {
        "_id": ticket_id,
        "live": True,
        "status": "open",
        "customer_id": customer["_id"],
        "customer_name": customer.get("name"),
        "contract_id": data.contract_id,
        "contact_id": data.contact_id,
        "feedback_id": feedback_id,
        "source": data.source,
        "category": data.category,
        "priority": data.priority,
        "subject": data.subject,
        "description": data.description,
        "owner_id": owner_id,
        "created_by": opened_by,
        "department_path": department_path,
        "opened_at": now,
        "first_responded_at": None,
        "resolved_at": None,
        "resolution": None,
        "closed_at": None,
        "no_visit_reason": None,
        "return_visit": None,
        "satisfaction": None,
        "replies": [],
        "escalations": {},
        "breaches": {},
        "breached": False,
        "escalation_level": 0,
        "reopen_count": 0,
        "updated_at": now,
        "updated_by": opened_by,
    }
    for target in TARGETS:
        span = sla.target(target)
        doc[f"{target}_due_at"] = now + span
        doc[f"{target}_warn_at"] = now + span * float(escalate_share)
    return refresh(doc)


def numbered(doc: Document, year: int, seq: int) -> Document:
    return {**doc, "number": format_number(year, seq)}


#: The list's sorts (API name -> the stored keys, before the id copy ``s.id``): newest first, the
#: resolution due soonest first (what breaks next), urgent first then the resolution due soonest.
SORTS: dict[str, tuple[str, ...]] = {
    "-opened_at": ("-opened_at",),
    "resolution_due": ("resolution_due",),
    "priority": ("priority", "resolution_due"),
}
SORT_FIELDS = {"opened_at": "s.opened_at", "resolution_due": "s.resolution_due_at", "priority": "s.priority"}


def refresh(doc: Document) -> Document:
    """The sort and scheduler keys (epoch ms; the embedded store indexes integers, not dates)."""
    doc["s"] = {
        "opened_at": epoch_ms(doc["opened_at"]),
        "resolution_due_at": epoch_ms(doc["resolution_due_at"]),
        "priority": PRIORITIES.index(doc["priority"]),  # urgent 0 .. low 3: the list's priority sort
        "check_at": check_at(doc),
        "id": doc["_id"],
    }
    return doc


def sees(principal: Any, doc: Document, module: str = "tickets") -> bool:
    if doc.get("created_by") == principal.user_id:
        return True
    return bool(principal.can_see_owned(doc.get("owner_id"), doc.get("department_path"), module=module))


class StatusConflict(Conflict):
    code, title = "ticket-status", "The ticket's status does not allow this"


#: action -> statuses it starts from
MOVES: dict[str, tuple[str, ...]] = {
    "assign": ("open", "in_progress", "resolved"),
    "reply": ("open", "in_progress", "resolved"),
    "resolve": ("open", "in_progress"),
    "reopen": ("resolved",),
    "return_visit": ("resolved",),
    "close": ("resolved",),
}


def check_move(doc: Document, action: str) -> None:
    starts = MOVES[action]
    status = str(doc["status"])
    if status not in starts:
        raise StatusConflict(
            f"Cannot {action.replace('_', ' ')} a ticket that is {status} (only from {', '.join(starts)}).",
            extra={"ticket_status": status, "action": action},
        )


def add_reply(doc: Document, reply: ReplyIn, author: str, now: datetime) -> bool:
    """Add the reply; True if it is the first (it sets ``first_responded_at``). The first reply
    moves an open ticket to in_progress."""
    check_move(doc, "reply")
    replies = list(doc.get("replies") or [])
    if len(replies) >= MAX_REPLIES:
        raise Conflict(f"A ticket holds at most {MAX_REPLIES} replies; open a new ticket.")
    replies.append({"body": reply.body, "public": reply.public, "by": author, "at": now})
    doc["replies"] = replies
    first = doc.get("first_responded_at") is None
    if first:
        doc["first_responded_at"] = now
    if doc["status"] == "open":
        doc["status"] = "in_progress"
    return first


def resolve(doc: Document, resolution: str, now: datetime) -> None:
    check_move(doc, "resolve")
    doc["status"] = "resolved"
    doc["resolution"] = resolution
    doc["resolved_at"] = now
    if doc.get("first_responded_at") is None:  # resolving answers the customer too
        doc["first_responded_at"] = now


def reopen(doc: Document, now: datetime, window: timedelta) -> None:
    check_move(doc, "reopen")
    resolved_at: datetime = doc["resolved_at"]
    if now > resolved_at + window:
        raise StatusConflict(
            f"The ticket was resolved on {resolved_at.date().isoformat()}, more than {window.days} days ago: "
            "open a new ticket.",
            extra={"ticket_status": doc["status"], "action": "reopen", "reason": "reopen-window-passed"},
        )
    doc["status"] = "in_progress"
    doc["resolved_at"] = None
    doc["resolution"] = None
    doc["return_visit"] = None
    doc["satisfaction"] = None
    doc["reopen_count"] = int(doc.get("reopen_count") or 0) + 1


def return_visit(doc: Document, visit: ReturnVisitIn, by: str, now: datetime) -> None:
    check_move(doc, "return_visit")
    if doc.get("return_visit") is not None:
        raise StatusConflict(
            "This resolution already has its return visit.",
            extra={"ticket_status": doc["status"], "action": "return_visit", "reason": "already-visited"},
        )
    doc["return_visit"] = {
        "satisfaction": visit.satisfaction,
        "comment": visit.comment,
        "channel": visit.channel,
        "by": by,
        "at": now,
    }
    doc["satisfaction"] = visit.satisfaction


def close(doc: Document, no_visit_reason: str | None, now: datetime) -> None:
    check_move(doc, "close")
    if doc.get("return_visit") is None and not no_visit_reason:
        raise ValidationFailed.for_field(
            "no_visit_reason", "a ticket closes after a return visit, or with the reason why there is none"
        )
    doc["status"] = "closed"
    doc["closed_at"] = now
    doc["no_visit_reason"] = None if doc.get("return_visit") is not None else no_visit_reason


def touch(doc: Document, actor: str, now: datetime) -> Document:
    doc["updated_at"] = now
    doc["updated_by"] = actor
    return refresh(doc)


def snapshot(doc: Document, version: int) -> ev.TicketSnapshot:
    return ev.TicketSnapshot(
        ticket_id=doc["_id"],
        number=doc["number"],
        customer_id=doc["customer_id"],
        contract_id=doc.get("contract_id"),
        contact_id=doc.get("contact_id"),
        feedback_id=doc.get("feedback_id"),
        source=doc["source"],
        category=doc["category"],
        priority=doc["priority"],
        subject=doc["subject"],
        status=doc["status"],
        owner_id=doc.get("owner_id"),
        opened_by=doc["created_by"],
        department_path=doc.get("department_path"),
        opened_at=doc["opened_at"],
        first_response_due_at=doc["first_response_due_at"],
        resolution_due_at=doc["resolution_due_at"],
        first_responded_at=doc.get("first_responded_at"),
        resolved_at=doc.get("resolved_at"),
        closed_at=doc.get("closed_at"),
        satisfaction=doc.get("satisfaction"),
        escalation_level=int(doc.get("escalation_level") or 0),
        breached=[t for t in TARGETS if t in (doc.get("breaches") or {})],
        version=version,
    )
