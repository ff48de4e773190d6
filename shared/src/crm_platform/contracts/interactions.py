"""Events of the interactions service, on ``crm.interactions.v1`` (key: the aggregate id).

Three aggregates publish here, each keyed by its own id: interactions (跟进记录: calls,
emails, meetings, visits, chats, notes), follow-up tasks (待办/提醒) and customer
feedback (requests, suggestions, complaints). Every event carries the full snapshot
of its aggregate as it stands after the change (``interaction``, ``task`` or
``feedback``), so a consumer keeps a read copy from any single event, applied by
``aggregateversion``.

``crm.interaction.logged`` came first and other services rely on its flat fields
(``customer_id``, ``author_id``, ``channel``, ``occurred_at``): the customers service
keeps "last followed up" from it, the pool service and reports count follow-ups.
Those fields stay; the snapshot was added beside them (additively, optional).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crm_platform.events import define

TOPIC = "crm.interactions.v1"

Channel = Literal["phone", "email", "meeting", "visit", "social", "note"]
Direction = Literal["in", "out"]
InteractionStatus = Literal["active", "deleted"]
TaskStatus = Literal["open", "done", "deleted"]
FeedbackKind = Literal["request", "suggestion", "complaint"]
FeedbackStatus = Literal["open", "in_progress", "resolved", "closed"]
FeedbackPriority = Literal["low", "normal", "high", "urgent"]


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


# --- interactions -----------------------------------------------------------------------


class InteractionSnapshot(BaseModel):
    """An interaction as it stands after the change. Channel fields are null where they do not apply."""

    interaction_id: str
    channel: Channel
    customer_id: str | None = Field(
        default=None, description="None for a follow-up on a lead (lead_id) until the lead is converted."
    )
    contact_ids: list[str] = Field(default_factory=list)
    opportunity_id: str | None = None
    author_id: str
    author_department_path: str | None = None
    occurred_at: datetime = Field(description="When it happened.")
    recorded_at: datetime = Field(description="When it was first logged.")
    recorded_late: bool = Field(description="Logged more than the allowed delay (24 h) after it happened.")
    summary: str | None = None
    # phone, email, social
    direction: Direction | None = None
    # phone
    duration_seconds: int | None = None
    key_points: str | None = None
    objections: str | None = None
    # email
    subject: str | None = None
    participants: list[str] = Field(default_factory=list)
    body_excerpt: str | None = None
    message_id: str | None = None
    # meeting, visit
    attendees: list[str] = Field(default_factory=list)
    location: str | None = None
    minutes: str | None = None
    # social (WeChat, WeCom, DingTalk, ...), note
    platform: str | None = None
    content: str | None = None
    status: InteractionStatus = "active"
    hidden: bool = Field(default=False, description="True while its customer is deleted or purged.")
    updated_at: datetime
    updated_by: str | None = None
    # Added in schema 1 without a version bump (additive): custom field values by key.
    custom: dict[str, Any] | None = None
    # Added in schema 1 without a version bump (additive): the lead it follows up, if any (kept after
    # the lead's conversion moved it to the customer).
    lead_id: str | None = None


class InteractionLogged(BaseModel):
    interaction_id: str
    customer_id: str | None = Field(default=None, description="None for a follow-up on a lead (see lead_id).")
    author_id: str
    channel: str
    occurred_at: datetime
    contact_ids: list[str] = []
    opportunity_id: str | None = None
    recorded_late: bool | None = None
    interaction: InteractionSnapshot | None = None
    # Added in schema 1 without a version bump (additive): the lead it follows up, if any.
    lead_id: str | None = None


class InteractionUpdated(BaseModel):
    interaction: InteractionSnapshot
    changes: list[FieldChange]
    reason: str | None = Field(default=None, description="Why, when the system changed it (e.g. 'customer merged').")


class InteractionDeleted(BaseModel):
    interaction: InteractionSnapshot
    reason: str | None = None


# --- tasks --------------------------------------------------------------------------------


class TaskSnapshot(BaseModel):
    task_id: str
    title: str
    notes: str | None = None
    due_at: datetime
    remind_at: datetime | None = None
    assignee_id: str
    assignee_department_path: str | None = None
    created_by: str
    creator_department_path: str | None = None
    customer_id: str | None = None
    opportunity_id: str | None = None
    interaction_id: str | None = Field(default=None, description="The interaction this follow-up came from.")
    status: TaskStatus = "open"
    completed_at: datetime | None = None
    completed_by: str | None = None
    reminder_sent_at: datetime | None = Field(default=None, description="When crm.task.reminder_due went out.")
    overdue_since: datetime | None = Field(default=None, description="When crm.task.overdue went out.")
    hidden: bool = False
    created_at: datetime
    updated_at: datetime
    # Added in schema 1 without a version bump (additive): custom field values by key.
    custom: dict[str, Any] | None = None
    # Added in schema 1 without a version bump (additive): the lead it follows up, if any.
    lead_id: str | None = None


class TaskCreated(BaseModel):
    task: TaskSnapshot


class TaskUpdated(BaseModel):
    task: TaskSnapshot
    changes: list[FieldChange]
    reason: str | None = None


class TaskRescheduled(BaseModel):
    task: TaskSnapshot
    previous_due_at: datetime
    previous_remind_at: datetime | None = None
    reason: str | None = None


class TaskCompleted(BaseModel):
    task: TaskSnapshot
    note: str | None = None


class TaskReopened(BaseModel):
    task: TaskSnapshot
    reason: str | None = None


class TaskDeleted(BaseModel):
    task: TaskSnapshot
    reason: str | None = None


class TaskReminderDue(BaseModel):
    task: TaskSnapshot


class TaskOverdue(BaseModel):
    task: TaskSnapshot


# --- feedback -------------------------------------------------------------------------------


class FeedbackSnapshot(BaseModel):
    feedback_id: str
    kind: FeedbackKind
    priority: FeedbackPriority = "normal"
    title: str
    description: str
    customer_id: str
    contact_id: str | None = None
    status: FeedbackStatus
    reported_by: str
    reporter_department_path: str | None = None
    handler_id: str | None = None
    handler_department_path: str | None = None
    resolution: str | None = None
    satisfaction: int | None = Field(default=None, ge=1, le=5, description="The customer's rating, 1 to 5.")
    reopen_count: int = 0
    opened_at: datetime
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    hidden: bool = False
    updated_at: datetime
    # Added in schema 1 without a version bump (additive): custom field values by key.
    custom: dict[str, Any] | None = None


class FeedbackOpened(BaseModel):
    feedback: FeedbackSnapshot


class FeedbackUpdated(BaseModel):
    feedback: FeedbackSnapshot
    changes: list[FieldChange]
    reason: str | None = None


class FeedbackStatusChanged(BaseModel):
    feedback: FeedbackSnapshot
    from_status: FeedbackStatus
    to_status: FeedbackStatus
    note: str | None = None


class FeedbackResolved(BaseModel):
    feedback: FeedbackSnapshot
    from_status: FeedbackStatus
    resolution: str
    satisfaction: int | None = None
    note: str | None = None


INTERACTION_LOGGED = define(
    "crm.interaction.logged",
    InteractionLogged,
    TOPIC,
    description="A follow-up (call, email, meeting, visit, chat, note) was logged for a customer.",
)
INTERACTION_UPDATED = define(
    "crm.interaction.updated",
    InteractionUpdated,
    TOPIC,
    description="Fields of an interaction changed (by its author, or its customer was merged or hidden).",
)
INTERACTION_DELETED = define(
    "crm.interaction.deleted", InteractionDeleted, TOPIC, description="An interaction was deleted (kept, hidden)."
)
TASK_CREATED = define("crm.task.created", TaskCreated, TOPIC, description="A follow-up task (待办) was created.")
TASK_UPDATED = define(
    "crm.task.updated",
    TaskUpdated,
    TOPIC,
    description="Title, notes or assignee of a task changed, or its customer was merged or hidden.",
)
TASK_RESCHEDULED = define(
    "crm.task.rescheduled",
    TaskRescheduled,
    TOPIC,
    description="The task's due time or reminder time moved; its reminder and overdue notices are armed again.",
)
TASK_COMPLETED = define("crm.task.completed", TaskCompleted, TOPIC, description="The task was done.")
TASK_REOPENED = define("crm.task.reopened", TaskReopened, TOPIC, description="A done task was opened again.")
TASK_DELETED = define("crm.task.deleted", TaskDeleted, TOPIC, description="The task was cancelled (kept, hidden).")
TASK_REMINDER_DUE = define(
    "crm.task.reminder_due",
    TaskReminderDue,
    TOPIC,
    description="The task's reminder time arrived: remind the assignee. Published once per reminder time.",
)
TASK_OVERDUE = define(
    "crm.task.overdue",
    TaskOverdue,
    TOPIC,
    description="An open task passed its due time. Published once per due time.",
)
FEEDBACK_OPENED = define(
    "crm.feedback.opened",
    FeedbackOpened,
    TOPIC,
    description="Customer feedback (a request, suggestion or complaint) was recorded.",
)
FEEDBACK_UPDATED = define(
    "crm.feedback.updated",
    FeedbackUpdated,
    TOPIC,
    description="Fields of the feedback changed (title, description, priority, handler, ...).",
)
FEEDBACK_STATUS_CHANGED = define(
    "crm.feedback.status_changed",
    FeedbackStatusChanged,
    TOPIC,
    description="The feedback moved to another status (in progress, closed, reopened); resolving is "
    "crm.feedback.resolved.",
)
FEEDBACK_RESOLVED = define(
    "crm.feedback.resolved",
    FeedbackResolved,
    TOPIC,
    description="The feedback was resolved, with the resolution and (if given) the customer's satisfaction.",
)

INTERACTION_EVENTS = (INTERACTION_LOGGED, INTERACTION_UPDATED, INTERACTION_DELETED)
TASK_EVENTS = (
    TASK_CREATED,
    TASK_UPDATED,
    TASK_RESCHEDULED,
    TASK_COMPLETED,
    TASK_REOPENED,
    TASK_DELETED,
    TASK_REMINDER_DUE,
    TASK_OVERDUE,
)
FEEDBACK_EVENTS = (FEEDBACK_OPENED, FEEDBACK_UPDATED, FEEDBACK_STATUS_CHANGED, FEEDBACK_RESOLVED)
