"""Use cases of interactions (跟进记录): log, read, change, delete, list a customer's history.

Who sees an interaction: its customer's owner and the managers of the customer's
department subtree (from the customer read copy, as it stands now), admins, and
its author (with the author's managers). Who changes or deletes it: its author,
the author's managers, admins.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from crm_interactions.adapters.leads import LeadReadModel
from crm_interactions.adapters.repository import CUSTOMER_OWNER, LIST_PROJECTION, Repository
from crm_interactions.application.custom import custom_changes, fieldset, list_sorts
from crm_interactions.application.lead_follow_ups import lead_follow_up, no_customer_yet, sees_lead_records
from crm_interactions.application.references import References
from crm_interactions.domain import interactions as rules
from crm_interactions.domain.interactions import INTERACTIONS
from crm_interactions.domain.model import EmailIn, InteractionIn, InteractionPatch
from crm_interactions.settings import InteractionsSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import interactions as ev
from crm_platform.customfield_store import CustomFields
from crm_platform.errors import Conflict, NotFound
from crm_platform.events import EventFactory
from crm_platform.idempotency import IdempotencyKey, create_once
from crm_platform.listing import PageParams, all_of, fetch_page
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.sortkeys import TIEBREAK
from crm_platform.store import Change

Document = dict[str, Any]


def sees_customer_records(principal: Principal, customer: Document | None, module: str = INTERACTIONS) -> bool:
    """Every record (of ``module``) of a customer is seen by its owner and by a caller whose scope
    in ``module`` reaches the customer's department (all: every customer's)."""
    if principal.reaches_all(module):
        return True
    if customer is None:
        return False
    return principal.can_see_owned(customer.get("owner_id"), customer.get("department_path"), module=module)


def my_customers(principal: Principal) -> Document:
    """The list alternative "records of the customers I own": the customer's owner is kept on each
    record (``customer_owner_id``, following the customers' events), so it is one equality an index
    serves in sort order, however many customers one owns."""
    return {CUSTOMER_OWNER: principal.user_id}


def author_visibility(principal: Principal) -> Document:
    """Records one authored, and those authored in the departments one's interactions scope reaches."""
    return principal.mongo_visibility(owner_field="author_id", path_field="author_department_path", module=INTERACTIONS)


class Interactions:
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
        self.event = event
        self.late_after = timedelta(hours=settings.late_after_hours)
        self.skew = timedelta(seconds=settings.future_skew_seconds)

    # --- log -----------------------------------------------------------------------------

    async def log(
        self, principal: Principal, data: InteractionIn, key: IdempotencyKey | None = None
    ) -> tuple[Document, bool]:
        """Log one interaction; returns (record, created). An email synced again returns the first record.

        With a key the record's id comes from it, so a retry answers with the record its first
        attempt logged, as created (201) like that attempt was, before the Message-ID check
        could call it an email synced again (200).
        """
        if key is None:
            return await self._log(principal, data, None)
        outcome: list[bool] = []

        async def attempt() -> Document:
            doc, created = await self._log(principal, data, key)
            outcome.append(created)
            return doc

        doc = await create_once(key, self.repo.interaction_store.get, attempt)
        if doc["_id"] == key.record_id and outcome != [True]:
            # Ours, logged by an earlier attempt (found by id, or by its Message-ID when racing it).
            return key.replay(doc), True
        return doc, outcome == [True]

    async def _log(
        self, principal: Principal, data: InteractionIn, key: IdempotencyKey | None
    ) -> tuple[Document, bool]:
        if isinstance(data, EmailIn) and data.message_id:
            existing = await self.repo.interaction_by_message(data.message_id)
            if existing is not None:
                return await self._already_logged(principal, existing), False
        customer: Document | None = None
        if data.customer_id is None or data.lead_id is not None:
            await lead_follow_up(self.refs, principal, data)  # on a lead, or exactly-one refused
        else:
            customer = await self.refs.customer(principal, data.customer_id)
            self.refs.contacts(customer, data.contact_ids)
            if data.opportunity_id:
                await self.refs.opportunity(principal, data.opportunity_id, customer)
        now = self.clock.now()
        interaction_id = key.record_id if key else str(uuid.uuid4())
        custom = (await fieldset(self.fields, INTERACTIONS)).validate(data.custom)
        doc = rules.new_interaction(interaction_id, data, principal, now, late_after=self.late_after, skew=self.skew)
        doc["custom"] = custom
        doc[CUSTOMER_OWNER] = await self._customer_owner(doc.get("customer_id"), customer)
        if key is not None:
            key.stamp(doc)
        snap = rules.snapshot(doc)
        logged = ev.InteractionLogged(
            interaction_id=doc["_id"],
            customer_id=doc["customer_id"],
            author_id=doc["author_id"],
            channel=doc["channel"],
            occurred_at=doc["occurred_at"],
            contact_ids=doc["contact_ids"],
            opportunity_id=doc["opportunity_id"],
            recorded_late=doc["recorded_late"],
            interaction=snap,
            lead_id=doc.get("lead_id"),
        )
        try:
            stored = await self.repo.interaction_store.insert(
                doc, [self.event(ev.INTERACTION_LOGGED, doc["_id"], logged, 1, principal.user_id)]
            )
        except DuplicateKeyError:
            # Two syncs of one email at once: the unique Message-ID key let exactly one in.
            existing = await self.repo.interaction_by_message(doc.get("message_key") or "")
            if existing is None:
                raise
            return await self._already_logged(principal, existing), False
        await self.repo.recheck_customer_owner(self.repo.interactions, stored)
        return stored, True

    async def _customer_owner(self, customer_id: str | None, customer: Document | None) -> str | None:
        """The owner a new record of ``customer_id`` keeps (from the copy just read, if it was)."""
        if customer_id is None:
            return None
        if customer is not None:
            return customer.get("owner_id")
        return await self.repo.customer_owner(customer_id)

    async def _already_logged(self, principal: Principal, existing: Document) -> Document:
        if existing.get("status") == "deleted" or existing.get("hidden"):
            raise Conflict(
                "This email was logged before and that interaction was deleted.",
                extra={"existing_id": existing["_id"]},
            )
        if not await self._visible(principal, existing):
            raise Conflict(
                "This email is already logged, by someone whose records you may not see.",
                extra={"existing_id": existing["_id"]},
            )
        return existing

    # --- read ----------------------------------------------------------------------------

    async def _visible(self, principal: Principal, doc: Document) -> bool:
        if rules.can_edit(principal, doc):
            return True
        if doc.get("customer_id") is None:
            return await sees_lead_records(self.refs, principal, doc.get("lead_id"))
        return sees_customer_records(principal, await self.refs.customers.get(doc["customer_id"]))

    async def get(self, principal: Principal, interaction_id: str) -> Document:
        doc = await self.repo.interaction_store.get(interaction_id)
        if doc is None or doc.get("status") != "active" or doc.get("hidden") or not await self._visible(principal, doc):
            raise NotFound(f"No interaction with id {interaction_id}.")
        return doc

    # --- change --------------------------------------------------------------------------

    async def update(
        self, principal: Principal, interaction_id: str, patch: InteractionPatch, expected_version: int | None
    ) -> Document:
        current = await self.get(principal, interaction_id)
        rules.ensure_can_edit(principal, current)
        values = rules.patch_changes(current, patch)
        fields = await fieldset(self.fields, INTERACTIONS)
        now = self.clock.now()
        if values.get("occurred_at") is not None:
            rules.check_occurred_at(values["occurred_at"], now, self.skew)
        if current.get("customer_id") is None:
            no_customer_yet(values)
        elif values.get("contact_ids") or values.get("opportunity_id"):
            customer = await self.refs.customers.get(current["customer_id"])
            if customer is None:
                raise NotFound(f"No interaction with id {interaction_id}.")
            if values.get("contact_ids"):
                self.refs.contacts(customer, values["contact_ids"])
            if values.get("opportunity_id"):
                await self.refs.opportunity(principal, values["opportunity_id"], customer)

        def decide(doc: Document, version: int) -> Change:
            if doc.get("status") != "active" or doc.get("hidden"):
                raise NotFound(f"No interaction with id {interaction_id}.")
            rules.ensure_can_edit(principal, doc)
            changes = rules.apply_values(doc, values, self.late_after)
            changes += custom_changes(doc, fields, patch.custom if "custom" in patch.model_fields_set else None)
            if not changes:
                return Change(None)
            doc["updated_at"], doc["updated_by"] = now, principal.user_id
            data = ev.InteractionUpdated(interaction=rules.snapshot(doc), changes=changes)
            return Change(doc, [self.event(ev.INTERACTION_UPDATED, doc["_id"], data, version, principal.user_id)])

        return await self.repo.interaction_store.mutate(interaction_id, decide, expected_version=expected_version)

    async def delete(
        self, principal: Principal, interaction_id: str, reason: str | None, expected_version: int | None
    ) -> Document:
        await self.get(principal, interaction_id)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if doc.get("status") != "active" or doc.get("hidden"):
                raise NotFound(f"No interaction with id {interaction_id}.")
            rules.ensure_can_edit(principal, doc)
            doc["status"] = "deleted"
            doc["deleted"] = {"by": principal.user_id, "at": now, "reason": reason}
            doc["updated_at"], doc["updated_by"] = now, principal.user_id
            data = ev.InteractionDeleted(interaction=rules.snapshot(doc), reason=reason)
            return Change(doc, [self.event(ev.INTERACTION_DELETED, doc["_id"], data, version, principal.user_id)])

        return await self.repo.interaction_store.mutate(interaction_id, decide, expected_version=expected_version)

    # --- lists -----------------------------------------------------------------------------

    async def customer_history(
        self,
        principal: Principal,
        customer_id: str,
        filters: Document,
        sort: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Document], str | None]:
        """What a rep reads before a visit: every interaction with the customer, in time order."""
        customer = await self.refs.customers.get(customer_id)
        if customer is None or customer.get("status") == "purged":
            raise NotFound(f"No customer with id {customer_id}.")
        if customer.get("status") == "merged":
            raise NotFound(
                f"Customer {customer_id} was merged into {customer.get('merged_into')}; its history moved there.",
                extra={"merged_into": customer.get("merged_into")},
            )
        clauses = [{"customer_id": customer_id}, filters]
        if not sees_customer_records(principal, customer):
            clauses.append(author_visibility(principal))
        items, next_cursor = await self._page(all_of(*clauses), sort, cursor, limit)
        if not items and cursor is None and not sees_customer_records(principal, customer):
            if not CustomerReadModel.visible_to(principal, customer):
                raise NotFound(f"No customer with id {customer_id}.")
        return items, next_cursor

    async def lead_history(
        self,
        principal: Principal,
        lead_id: str,
        filters: Document,
        sort: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Document], str | None]:
        """Every follow-up on a lead, in time order (also after its conversion moved them to the customer)."""
        lead = await self.refs.leads.get(lead_id) if self.refs.leads is not None else None
        if lead is None:
            raise NotFound(f"No lead with id {lead_id}.")
        sees_lead = LeadReadModel.visible_to(principal, lead)
        clauses = [{"lead_id": lead_id}, filters]
        if not sees_lead:
            clauses.append(author_visibility(principal))
        items, next_cursor = await self._page(all_of(*clauses), sort, cursor, limit)
        if not items and cursor is None and not sees_lead:
            raise NotFound(f"No lead with id {lead_id}.")
        return items, next_cursor

    async def search(
        self, principal: Principal, filters: Document, sort: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        """Interactions across customers: one's own, those one's scope reaches, one's customers'."""
        clauses = [filters]
        if not principal.reaches_all(INTERACTIONS):
            mine = author_visibility(principal)
            options = [*mine.get("$or", [mine]), my_customers(principal)]
            # A real alternative: fetch_page runs each option as its own indexed query.
            clauses.append({"$or": options} if len(options) > 1 else options[0])
            return await self._page(all_of(*clauses), sort, cursor, limit, alternatives=len(options))
        return await self._page(all_of(*clauses), sort, cursor, limit)

    async def _page(
        self, query: Document, sort: str | None, cursor: str | None, limit: int, *, alternatives: int | None = None
    ) -> tuple[list[Document], str | None]:
        sort_fields, custom = await list_sorts(self.fields, INTERACTIONS, rules.SORT_FIELDS, sort)
        page = await fetch_page(
            self.repo.interactions,
            all_of(query, {"status": "active", "hidden": False}),
            PageParams(sort=sort, cursor=cursor, limit=limit),
            sort_fields=sort_fields,
            default_sort=rules.DEFAULT_SORT,
            projection=LIST_PROJECTION,
            tiebreak=TIEBREAK,
            max_alternatives=alternatives,
            tie_follows_last=custom,
        )
        return page.items, page.next_cursor
