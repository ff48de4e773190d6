"""Use cases of customer feedback: record, change, move through its statuses, list.

Who sees and acts on feedback: the customer's owner and the managers of its
department subtree (from the read copy), the person who recorded it, its handler,
managers of either one's department subtree, admins.
"""

from __future__ import annotations

import uuid
from typing import Any

from crm_interactions.adapters.repository import CUSTOMER_OWNER, LIST_PROJECTION, Repository
from crm_interactions.application.custom import custom_changes, fieldset, list_sorts
from crm_interactions.application.interactions import my_customers, sees_customer_records
from crm_interactions.application.references import References
from crm_interactions.domain import feedback as rules
from crm_interactions.domain.interactions import FEEDBACK
from crm_interactions.domain.model import FeedbackIn, FeedbackPatch, TransitionIn
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import interactions as ev
from crm_platform.customfield_store import CustomFields
from crm_platform.errors import NotFound, ValidationFailed
from crm_platform.events import EventFactory
from crm_platform.idempotency import IdempotencyKey, create_once
from crm_platform.listing import PageParams, all_of, fetch_page
from crm_platform.sortkeys import TIEBREAK
from crm_platform.store import Change

Document = dict[str, Any]


def involved(principal: Principal, doc: Document) -> bool:
    """Reporter, handler, or a caller whose feedback scope reaches the reporter's or handler's department."""
    if principal.scope(FEEDBACK) is None:
        return False
    if principal.user_id in (doc.get("reported_by"), doc.get("handler_id")):
        return True
    return principal.reaches_path(doc.get("reporter_department_path"), FEEDBACK) or principal.reaches_path(
        doc.get("handler_department_path"), FEEDBACK
    )


class Feedback:
    def __init__(
        self, repo: Repository, refs: References, clock: Clock, event: EventFactory, fields: CustomFields | None = None
    ) -> None:
        self.fields = fields
        self.repo = repo
        self.refs = refs
        self.clock = clock
        self.event = event

    def _event(self, event_type: Any, doc: Document, version: int, actor: str | None, **fields: Any) -> Any:
        data = event_type.data_model(feedback=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    async def open(self, principal: Principal, data: FeedbackIn, key: IdempotencyKey | None = None) -> Document:
        """Record feedback; with a key its id comes from it, so a retry answers with the first record."""
        return await create_once(key, self.repo.feedback_store.get, lambda: self._open(principal, data, key))

    async def _open(self, principal: Principal, data: FeedbackIn, key: IdempotencyKey | None) -> Document:
        customer = await self.refs.customer(principal, data.customer_id)
        if data.contact_id:
            self.refs.contacts(customer, [data.contact_id], "contact_id")
        handler_path = None
        if data.handler_id:
            handler_path = await self.refs.user_department(principal, data.handler_id, "handler_id")
        custom = (await fieldset(self.fields, FEEDBACK)).validate(data.custom)
        doc = rules.new_feedback(
            key.record_id if key else str(uuid.uuid4()),
            kind=data.kind,
            title=data.title,
            description=data.description,
            priority=data.priority,
            customer_id=data.customer_id,
            contact_id=data.contact_id,
            handler_id=data.handler_id,
            handler_department_path=handler_path,
            principal=principal,
            now=self.clock.now(),
        )
        doc["custom"] = custom
        doc[CUSTOMER_OWNER] = customer.get("owner_id")
        if key is not None:
            key.stamp(doc)
        stored = await self.repo.feedback_store.insert(
            doc, [self._event(ev.FEEDBACK_OPENED, doc, 1, principal.user_id)]
        )
        await self.repo.recheck_customer_owner(self.repo.feedback, stored)
        return stored

    async def _visible(self, principal: Principal, doc: Document) -> bool:
        if involved(principal, doc):
            return True
        return sees_customer_records(principal, await self.refs.customers.get(doc["customer_id"]), FEEDBACK)

    async def get(self, principal: Principal, feedback_id: str) -> Document:
        doc = await self.repo.feedback_store.get(feedback_id)
        if doc is None or doc.get("hidden") or not await self._visible(principal, doc):
            raise NotFound(f"No feedback with id {feedback_id}.")
        return doc

    @staticmethod
    def _guard(doc: Document, feedback_id: str) -> None:
        if doc.get("hidden"):
            raise NotFound(f"No feedback with id {feedback_id}.")

    async def update(
        self, principal: Principal, feedback_id: str, patch: FeedbackPatch, expected_version: int | None
    ) -> Document:
        current = await self.get(principal, feedback_id)
        values = patch.model_dump(include=patch.model_fields_set - {"custom"})  # custom: apart
        fields = await fieldset(self.fields, FEEDBACK)
        for name in ("kind", "title", "description", "priority"):
            if name in values and values[name] is None:
                raise ValidationFailed.for_field(name, "cannot be cleared")
        if values.get("contact_id"):
            customer = await self.refs.customers.get(current["customer_id"])
            self.refs.contacts(customer or {"_id": current["customer_id"]}, [values["contact_id"]], "contact_id")
        if values.get("handler_id"):
            values["handler_department_path"] = await self.refs.user_department(
                principal, values["handler_id"], "handler_id"
            )
        elif "handler_id" in values:
            values["handler_department_path"] = None
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            self._guard(doc, feedback_id)
            rules.ensure_editable(doc)
            changes = rules.apply_values(doc, values)
            changes += custom_changes(doc, fields, patch.custom if "custom" in patch.model_fields_set else None)
            if not changes:
                return Change(None)
            doc["updated_at"] = now
            rules.refresh(doc)  # the sort keys follow the priority and the time of the change
            return Change(doc, [self._event(ev.FEEDBACK_UPDATED, doc, version, principal.user_id, changes=changes)])

        return await self.repo.feedback_store.mutate(feedback_id, decide, expected_version=expected_version)

    async def transition(
        self, principal: Principal, feedback_id: str, move: TransitionIn, expected_version: int | None
    ) -> Document:
        await self.get(principal, feedback_id)
        handler_path = None
        if move.handler_id is not None:
            handler_path = await self.refs.user_department(principal, move.handler_id, "handler_id")
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            self._guard(doc, feedback_id)
            previous = rules.transition(doc, move, principal, now, handler_department_path=handler_path)
            if move.status == "resolved":
                event = self._event(
                    ev.FEEDBACK_RESOLVED,
                    doc,
                    version,
                    principal.user_id,
                    from_status=previous,
                    resolution=doc["resolution"],
                    satisfaction=doc.get("satisfaction"),
                    note=move.note,
                )
            else:
                event = self._event(
                    ev.FEEDBACK_STATUS_CHANGED,
                    doc,
                    version,
                    principal.user_id,
                    from_status=previous,
                    to_status=move.status,
                    note=move.note,
                )
            return Change(doc, [event])

        return await self.repo.feedback_store.mutate(feedback_id, decide, expected_version=expected_version)

    async def list(
        self, principal: Principal, filters: Document, sort: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        clauses: list[Document] = [{"hidden": False}, filters]
        alternatives: int | None = None
        if not principal.reaches_all(FEEDBACK):
            options: list[Document] = [{"reported_by": principal.user_id}, {"handler_id": principal.user_id}]
            if principal.reaches_beyond_own(FEEDBACK):
                reporters = principal.mongo_visibility("reported_by", "reporter_department_path", module=FEEDBACK)
                handlers = principal.mongo_visibility("handler_id", "handler_department_path", module=FEEDBACK)
                options += [*reporters.get("$or", [reporters]), *handlers.get("$or", [handlers])]
            options.append(my_customers(principal))
            # Each distinct alternative once: fetch_page runs one indexed query per alternative.
            unique = list({repr(sorted(o.items())): o for o in options}.values())
            clauses.append({"$or": unique})
            alternatives = len(unique)
        sort_fields, custom = await list_sorts(self.fields, FEEDBACK, rules.SORT_FIELDS, sort)
        page = await fetch_page(
            self.repo.feedback,
            all_of(*clauses),
            PageParams(sort=sort, cursor=cursor, limit=limit),
            sort_fields=sort_fields,
            default_sort=rules.DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            max_alternatives=alternatives,
            tie_follows_last=custom,
        )
        return page.items, page.next_cursor
