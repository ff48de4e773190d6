"""Use cases of follow-up tasks (待办): create, change, reschedule, complete, reopen, delete, list.

Who sees and acts on a task: its assignee and creator, managers of either one's
department subtree, admins. Reminders and overdue notices are sent by the
scheduler (see scheduler.py), not here.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Literal

from crm_interactions.adapters.repository import LIST_PROJECTION, Repository
from crm_interactions.application.custom import custom_changes, fieldset, list_sorts
from crm_interactions.application.references import References
from crm_interactions.domain import tasks as rules
from crm_interactions.domain.calendar import to_millis, zone
from crm_interactions.domain.interactions import TASKS
from crm_interactions.domain.model import RescheduleIn, TaskIn, TaskPatch
from crm_interactions.settings import InteractionsSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import interactions as ev
from crm_platform.customfield_store import CustomFields
from crm_platform.errors import Forbidden, NotFound, ValidationFailed
from crm_platform.events import EventFactory
from crm_platform.idempotency import IdempotencyKey, create_once
from crm_platform.listing import PageParams, all_of, fetch_page
from crm_platform.sortkeys import TIEBREAK
from crm_platform.store import Change

Document = dict[str, Any]
Scope = Literal["mine", "created", "team", "all"]
StatusFilter = Literal["open", "done", "all"]


class Tasks:
    def __init__(
        self,
        repo: Repository,
        refs: References,
        clock: Clock,
        settings: InteractionsSettings,
        event: EventFactory,
        fields: CustomFields | None = None,
    ) -> None:
        self.fields = fields
        self.repo = repo
        self.refs = refs
        self.clock = clock
        self.settings = settings
        self.event = event
        self.skew = timedelta(seconds=settings.future_skew_seconds)

    def _snapshot_event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(task=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    async def create(self, principal: Principal, data: TaskIn, key: IdempotencyKey | None = None) -> Document:
        """Create a task; with a key its id comes from it, so a retry answers with the first task."""
        return await create_once(key, self.repo.task_store.get, lambda: self._create(principal, data, key))

    async def _create(self, principal: Principal, data: TaskIn, key: IdempotencyKey | None) -> Document:
        now = self.clock.now()
        rules.check_future(data.due_at, now, self.skew, "due_at")
        if data.remind_at is not None:
            rules.check_future(data.remind_at, now, self.skew, "remind_at")
        assignee_id = data.assignee_id or principal.user_id
        assignee_path = await self.refs.user_department(principal, assignee_id, "assignee_id")
        rules.ensure_may_assign(principal, assignee_id, assignee_path)
        customer_id = data.customer_id
        lead_id = data.lead_id
        if customer_id is not None and lead_id is not None:
            raise ValidationFailed.for_field("lead_id", "give customer_id or lead_id, not both")
        if data.interaction_id:
            source = await self.repo.interaction_store.get(data.interaction_id)
            if source is None or source.get("status") != "active" or source.get("hidden"):
                raise ValidationFailed.for_field("interaction_id", f"no interaction {data.interaction_id}")
            if customer_id and customer_id != source["customer_id"]:
                raise ValidationFailed.for_field("interaction_id", "belongs to another customer")
            if lead_id and lead_id != source.get("lead_id"):
                raise ValidationFailed.for_field("interaction_id", "belongs to another lead")
            customer_id = source["customer_id"]
            lead_id = source.get("lead_id")
        if data.opportunity_id and not customer_id:
            raise ValidationFailed.for_field("customer_id", "give the customer of the opportunity")
        if customer_id:
            customer = await self.refs.customer(principal, customer_id)
            if data.opportunity_id:
                await self.refs.opportunity(principal, data.opportunity_id, customer)
        elif lead_id:
            await self.refs.lead(principal, lead_id)
        custom = (await fieldset(self.fields, TASKS)).validate(data.custom)
        doc = rules.new_task(
            key.record_id if key else str(uuid.uuid4()),
            title=data.title,
            notes=data.notes,
            due_at=data.due_at,
            remind_at=data.remind_at,
            assignee_id=assignee_id,
            assignee_department_path=assignee_path,
            principal=principal,
            customer_id=customer_id,
            opportunity_id=data.opportunity_id,
            interaction_id=data.interaction_id,
            now=now,
        )
        doc["custom"] = custom
        doc["lead_id"] = lead_id
        if key is not None:
            key.stamp(doc)
        event = self._snapshot_event(ev.TASK_CREATED, doc, 1, principal.user_id)
        return await self.repo.task_store.insert(doc, [event])

    async def get(self, principal: Principal, task_id: str) -> Document:
        doc = await self.repo.task_store.get(task_id)
        if doc is None or doc.get("status") == "deleted" or doc.get("hidden") or not rules.can_act(principal, doc):
            raise NotFound(f"No task with id {task_id}.")
        return doc

    def _guard(self, principal: Principal, doc: Document, task_id: str) -> None:
        if doc.get("status") == "deleted" or doc.get("hidden") or not rules.can_act(principal, doc):
            raise NotFound(f"No task with id {task_id}.")

    async def update(
        self, principal: Principal, task_id: str, patch: TaskPatch, expected_version: int | None
    ) -> Document:
        await self.get(principal, task_id)
        values = patch.model_dump(include=patch.model_fields_set - {"custom"})  # custom: apart
        fields = await fieldset(self.fields, TASKS)
        if "title" in values and values["title"] is None:
            raise ValidationFailed.for_field("title", "a task needs a title")
        if "assignee_id" in values:
            if values["assignee_id"] is None:
                raise ValidationFailed.for_field("assignee_id", "a task needs an assignee")
            path = await self.refs.user_department(principal, values["assignee_id"], "assignee_id")
            rules.ensure_may_assign(principal, values["assignee_id"], path)
            values["assignee_department_path"] = path
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            self._guard(principal, doc, task_id)
            changes = rules.apply_values(doc, values)
            changes += custom_changes(doc, fields, patch.custom if "custom" in patch.model_fields_set else None)
            if not changes:
                return Change(None)
            doc["updated_at"] = now
            return Change(
                doc, [self._snapshot_event(ev.TASK_UPDATED, doc, version, principal.user_id, changes=changes)]
            )

        return await self.repo.task_store.mutate(task_id, decide, expected_version=expected_version)

    async def reschedule(
        self, principal: Principal, task_id: str, data: RescheduleIn, expected_version: int | None
    ) -> Document:
        await self.get(principal, task_id)
        now = self.clock.now()
        rules.check_future(data.due_at, now, self.skew, "due_at")
        keep_lead = "remind_at" not in data.model_fields_set

        def decide(doc: Document, version: int) -> Change:
            self._guard(principal, doc, task_id)
            previous_due, previous_remind = doc["due_at"], doc.get("remind_at")
            remind_at = rules.same_lead_time(doc, to_millis(data.due_at)) if keep_lead else data.remind_at
            if remind_at is not None and remind_at < now - self.skew:
                field = "due_at" if keep_lead else "remind_at"
                raise ValidationFailed.for_field(field, "puts the reminder in the past; give remind_at")
            rules.reschedule(doc, data.due_at, remind_at)
            doc["updated_at"] = now
            event = self._snapshot_event(
                ev.TASK_RESCHEDULED,
                doc,
                version,
                principal.user_id,
                previous_due_at=previous_due,
                previous_remind_at=previous_remind,
                reason=data.reason,
            )
            return Change(doc, [event])

        return await self.repo.task_store.mutate(task_id, decide, expected_version=expected_version)

    async def complete(
        self, principal: Principal, task_id: str, note: str | None, expected_version: int | None
    ) -> Document:
        await self.get(principal, task_id)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            self._guard(principal, doc, task_id)
            rules.complete(doc, principal, now)
            doc["updated_at"] = now
            return Change(doc, [self._snapshot_event(ev.TASK_COMPLETED, doc, version, principal.user_id, note=note)])

        return await self.repo.task_store.mutate(task_id, decide, expected_version=expected_version)

    async def reopen(
        self, principal: Principal, task_id: str, reason: str | None, expected_version: int | None
    ) -> Document:
        await self.get(principal, task_id)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            self._guard(principal, doc, task_id)
            rules.reopen(doc)
            doc["updated_at"] = now
            return Change(doc, [self._snapshot_event(ev.TASK_REOPENED, doc, version, principal.user_id, reason=reason)])

        return await self.repo.task_store.mutate(task_id, decide, expected_version=expected_version)

    async def delete(
        self, principal: Principal, task_id: str, reason: str | None, expected_version: int | None
    ) -> Document:
        await self.get(principal, task_id)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            self._guard(principal, doc, task_id)
            doc["status"] = "deleted"
            doc["deleted"] = {"by": principal.user_id, "at": now, "reason": reason}
            doc["updated_at"] = now
            rules.refresh(doc)
            return Change(doc, [self._snapshot_event(ev.TASK_DELETED, doc, version, principal.user_id, reason=reason)])

        return await self.repo.task_store.mutate(task_id, decide, expected_version=expected_version)

    # --- lists -----------------------------------------------------------------------------

    async def list(
        self,
        principal: Principal,
        *,
        view: rules.View,
        scope: Scope,
        status: StatusFilter,
        tz: str | None,
        filters: Document,
        sort: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Document], str | None]:
        clauses: list[Document] = [{"hidden": False}, filters]
        clauses.append({"status": {"$in": ["open", "done"]}} if status == "all" else {"status": status})
        if scope == "mine":
            clauses.append({"assignee_id": principal.user_id})
        elif scope == "created":
            clauses.append({"created_by": principal.user_id})
        elif scope == "team":
            if not principal.reaches_beyond_own(TASKS):
                raise Forbidden("The team's tasks (scope=team) need a tasks scope beyond one's own.")
            if not principal.reaches_all(TASKS):
                clauses.append(principal.mongo_visibility("assignee_id", "assignee_department_path", module=TASKS))
        elif not principal.reaches_all(TASKS):
            raise Forbidden("Every task (scope=all) needs a tasks scope of all.")
        clauses.append(rules.view_filter(view, self.clock.now(), zone(tz or self.settings.default_timezone)))
        sort_fields, custom = await list_sorts(self.fields, TASKS, rules.SORT_FIELDS, sort)
        page = await fetch_page(
            self.repo.tasks,
            all_of(*clauses),
            PageParams(sort=sort, cursor=cursor, limit=limit),
            sort_fields=sort_fields,
            default_sort=rules.DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            tie_follows_last=custom,
        )
        return page.items, page.next_cursor
