"""The projection: every event of the other services into states and facts.

Idempotent and order-tolerant by construction:
- each aggregate's current state is kept as ``apply_versioned`` does (a stale or repeated
  event changes nothing), whatever order the services' topics arrive in;
- each event becomes at most one fact (``_id`` = event id, a repeat is ignored);
- the rollups the reports read move with the states (by the difference between the
  contribution a state had and the one it has now) and with each fact once; where a
  figure joins aggregates (a customer's reach, its last interaction, an interaction
  followed by a customer update) the dependent state is re-derived when either side
  arrives, so an interaction that arrives before its customer still counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import customers as cev
from crm_platform.contracts import directory as dev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as pev
from crm_platform.contracts import pool as poolev
from crm_platform.contracts import sales as sev
from crm_platform.customfield_store import DefinitionCopy
from crm_platform.events import EventEnvelope, registry
from crm_reporting.adapters.readmodels import Generations, ReadModels
from crm_reporting.adapters.rollups import DAY_MS, Batch, Contribute, Contribution, Mover, reconcile, write_with_rollups
from crm_reporting.application.contributions import (
    CUSTOMER_UPDATE_TYPES,
    ENTRY_TYPES,
    GROUP_MODULES,
    PLACEHOLDER,
    REUSE,
    Contributions,
    fact_counters,
    survivor,
)
from crm_reporting.application.lag import LagTracker
from crm_reporting.application.leadfigures import apply_lead_event, apply_opportunity
from crm_reporting.application.salesfigures import apply_sales_event
from crm_reporting.domain.summaries import summarize

Document = dict[str, Any]
TOPICS = [cev.TOPIC, pev.TOPIC, iev.TOPIC, poolev.TOPIC, dev.TOPIC, lev.TOPIC, sev.TOPIC]
#: crm.sales.v1: contracts and tickets feed the sales reports; the catalogue and quotations nothing yet.
SALES_TYPES = frozenset(e.name for e in registry.for_topic(sev.TOPIC))
POOL_TYPES = (poolev.RECYCLE_WARNING.name, poolev.RELEASE_DECIDED.name)
CONTACT_TYPES = (cev.CUSTOMER_CREATED.name, cev.CONTACT_ADDED.name, cev.CONTACT_CHANGED.name)
#: Each record's first event: its copy is almost never there yet (see write_with_rollups' likely_new).
FIRST_EVENTS = (
    cev.CUSTOMER_CREATED.name,
    pev.OPPORTUNITY_CREATED.name,
    iev.INTERACTION_LOGGED.name,
    iev.TASK_CREATED.name,
)
# Customer events after which reach and last interaction are derived afresh.
KEEPS_NOTHING = (*CONTACT_TYPES, cev.CONTACT_REMOVED.name, cev.MERGED.name, cev.PURGED.name)


def ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def customer_state(c: cev.CustomerSnapshot) -> Document:
    address = c.address or cev.Address()
    return {
        "_id": c.customer_id,
        "customer_id": c.customer_id,
        "name": c.name,
        "kind": c.kind,
        "status": c.status,
        "merged_into": c.merged_into or "",
        "owner_id": c.owner_id or "",
        "department_path": c.department_path or "",
        "in_pool": c.in_pool,
        "industry": c.industry,
        "size": c.size,
        "region": address.province,
        "city": address.city,
        "source": c.source,
        "tier": c.tier,
        "lifecycle_stage": c.lifecycle_stage,
        "tags": list(c.tags),
        "contact_ids": None if c.contacts is None else [x.contact_id for x in c.contacts],
        "contact_count": c.contact_count,
        "created_ms": ms(c.created_at),
        "created_by": c.created_by,
        "updated_ms": ms(c.updated_at),
        "custom": dict(c.custom or {}),
    }


def opportunity_state(o: pev.OpportunitySnapshot) -> Document:
    return {
        "_id": o.opportunity_id,
        "opportunity_id": o.opportunity_id,
        "name": o.name,
        "customer_id": o.customer_id,
        "amount": o.amount,
        "currency": o.currency,
        "probability": o.probability,
        "expected_close_date": iso(o.expected_close_date),
        "pipeline_id": o.pipeline_id,
        "stage_id": o.stage_id,
        "stage_name": o.stage_name,
        "stage_kind": o.stage_kind,
        "stage_entered_ms": ms(o.stage_entered_at),
        "status": o.status,
        "won_on": iso(o.won_on),
        "lost_on": iso(o.lost_on),
        "owner_id": o.owner_id,
        "department_path": o.department_path or "",
        "hidden": o.hidden,
        "created_ms": ms(o.created_at),
        "custom": dict(o.custom or {}),
    }


def _reach(contact: cev.ContactData) -> Document:
    # Its custom values too: data quality counts contacts missing a required custom field.
    return {
        "contact_id": contact.contact_id,
        "reach": bool(contact.phones or contact.emails),
        "custom": dict(contact.custom or {}),
    }


class Projection:
    def __init__(
        self,
        generations: Generations,
        lag: LagTracker,
        required_fields: list[str] | None = None,
        definitions: DefinitionCopy | None = None,
    ) -> None:
        self.generations = generations
        self.lag = lag
        self.required_fields = list(required_fields or [])
        #: Custom fields of customers (learnt from crm.custom_field.*): distribution and completeness.
        self.definitions = definitions

    def handlers(self) -> Mapping[str, Handler]:
        names = [t.name for topic in TOPICS for t in registry.for_topic(topic)]
        # Sign-ins, exports and imports are the audit log's, role definitions the permission
        # table's and custom field definitions configuration, not activity: left out of every report.
        audit_only = (
            "crm.directory.",
            "crm.customer_export.",
            "crm.customer_import.",
            "crm.role.",
            "crm.customer_export_policy.",
            "crm.customer_export_request.",
            "crm.custom_field.",
        )
        return {
            n: self.apply
            for n in names
            if (not n.startswith("crm.pool.") or n in POOL_TYPES) and not n.startswith(audit_only)
        }

    async def apply(self, envelope: EventEnvelope) -> None:
        models = await self.generations.current()
        await self.apply_to(models, envelope)
        topic = registry.get(envelope.type)
        self.lag.observe(topic.topic if topic else "unknown", envelope.time, envelope.id)

    async def apply_to(self, models: ReadModels, envelope: EventEnvelope) -> None:
        t = envelope.type
        if t.startswith(("crm.user.", "crm.department.")):
            await models.directory.store(envelope)
            return
        if t == pev.PIPELINE_CONFIGURED.name:
            p = pev.PIPELINE_CONFIGURED.parse(envelope).pipeline
            await apply_versioned(models.pipelines, envelope, {"_id": p.pipeline_id, **p.model_dump(mode="json")})
            return
        if t == pev.TARGET_SET.name:
            target = pev.TARGET_SET.parse(envelope).target
            await apply_versioned(models.targets, envelope, {"_id": target.target_id, **target.model_dump(mode="json")})
            return
        if t in (cev.LEAD_REFUSED.name, pev.OPPORTUNITY_LEAD_REFUSED.name):
            return  # answers to a conversion that wrote nothing (and carry no snapshot)
        if t.startswith(("crm.lead.", "crm.campaign.")):
            await apply_lead_event(models, envelope)  # leads and campaigns: application/leadfigures.py
            return
        if t in SALES_TYPES:
            await apply_sales_event(models, envelope)  # contracts and tickets: application/salesfigures.py
            return
        if t.startswith("crm.opportunity.") and "opportunity" in envelope.data:
            await apply_opportunity(models, envelope)  # for the leads it came from
        fact: Document = {
            "_id": envelope.id,
            "type": t,
            "subject": envelope.subject,
            "t": ms(envelope.time),
            "actor": envelope.actor or "",
            "summary": summarize(t, envelope.data),
        }
        state: Document | None = None
        if t.startswith("crm.customer."):
            state = self._customer(envelope, fact)
        elif t.startswith("crm.opportunity."):
            state = self._opportunity(envelope, fact)
        elif t.startswith("crm.interaction."):
            state = self._interaction(envelope, fact)
        elif t.startswith("crm.task."):
            task = iev.TaskSnapshot.model_validate(envelope.data["task"])
            state = {
                "_id": task.task_id,
                "assignee_id": task.assignee_id,
                "assignee_department_path": task.assignee_department_path or "",
                "customer_id": task.customer_id or "",
                "status": task.status,
                "hidden": task.hidden,
                "due_ms": ms(task.due_at),
                "created_ms": ms(task.created_at),
                "title": task.title,
                "custom": dict(task.custom or {}),
            }
            fact.update(customer_id=task.customer_id or "", owner_id=task.assignee_id)
            fact["department_path"] = task.assignee_department_path or ""
        elif t.startswith("crm.feedback."):
            fb = iev.FeedbackSnapshot.model_validate(envelope.data["feedback"])
            fact.update(customer_id=fb.customer_id, owner_id=fb.reported_by)
            fact["department_path"] = fb.reporter_department_path or ""
        elif t in POOL_TYPES:
            fact.update(customer_id=envelope.data["customer_id"], owner_id=envelope.data.get("owner_id") or "")
            fact["department_path"] = ""
        else:
            return
        # The fact goes in first: its insert is the once-only claim on its own counters, and the
        # states' rollups can read it (a contact's reach, a customer update). A retry after a
        # failure finds it there, moves no counter twice and completes the rest.
        batch = Batch()
        if await models.add_fact(fact):
            await batch.add(fact_counters(fact).minus(Contribution()))
        custom = self.definitions.fieldset("customers") if self.definitions is not None else None
        # Other modules' definitions: groups (opportunities, interactions, tasks) and the
        # required custom fields of opportunities and contacts (data quality).
        modules = (*GROUP_MODULES, "contacts")
        groupable = {m: self.definitions.fieldset(m) for m in modules} if self.definitions is not None else None
        rules = Contributions(models, self.required_fields, batch, custom, groupable)
        try:
            if t.startswith("crm.customer."):
                await self._customer_state(models, rules, envelope, state, fact)
            elif t.startswith("crm.opportunity."):
                assert state is not None
                await self._opportunity_state(models, rules, envelope, state, fact)
            elif t.startswith("crm.interaction."):
                assert state is not None
                await self._interaction_state(models, rules, envelope, state)
            elif t.startswith("crm.task."):
                assert state is not None
                await self._versioned(models, models.tasks, envelope, state, rules.task, rules.batch.add)
            if t in CUSTOMER_UPDATE_TYPES and fact.get("customer_id"):
                await self._followed_by_update(models, rules, fact["customer_id"], int(fact["t"]))
        finally:
            # Whatever was written moves its rollups, even if a later step fails (the retry then
            # finds those writes done and does only the rest).
            await batch.flush(models.collection)

    # --- states and what they move ------------------------------------------------------------

    async def _versioned(
        self,
        models: ReadModels,
        collection: AsyncCollection[Document],
        envelope: EventEnvelope,
        state: Document,
        contribute: Contribute,
        move: Mover,
        carry: tuple[str, ...] = (),
        adjust: Callable[[Document | None, Document], None] | None = None,
    ) -> tuple[Document | None, Document | None]:
        """``apply_versioned`` plus rollups: (previous, new) when this event was newer, else (None, None)."""
        seen: list[Document | None] = []

        def build(prev: Document | None) -> Document | None:
            seen.append(prev)
            if prev is not None and int(prev.get("source_version", 0)) >= envelope.aggregateversion:
                return None  # stale or repeated: nothing moves
            kept = {k: prev[k] for k in carry if prev is not None and k in prev}
            doc = {**state, **kept, "source_version": envelope.aggregateversion, "source_event_id": envelope.id}
            if adjust is not None:
                adjust(prev, doc)
            return doc

        new = await write_with_rollups(
            move, collection, state["_id"], build, contribute, likely_new=envelope.type in FIRST_EVENTS
        )
        return (seen[-1], new) if new is not None else (None, None)

    def _customer(self, envelope: EventEnvelope, fact: Document) -> Document:
        t = envelope.type
        if t == cev.PURGED.name:
            fact.update(customer_id=envelope.subject, owner_id="", department_path="")
            return {"_id": envelope.subject, "customer_id": envelope.subject, "status": "purged", "merged_into": "",
                    "owner_id": ""}  # fmt: skip
        snapshot = cev.CustomerSnapshot.model_validate(envelope.data["customer"])
        fact.update(
            customer_id=snapshot.customer_id,
            owner_id=snapshot.owner_id or "",
            department_path=snapshot.department_path or "",
        )
        if t in CONTACT_TYPES:
            if t == cev.CUSTOMER_CREATED.name:
                contacts = cev.CUSTOMER_CREATED.parse(envelope).contacts
            else:
                contacts = [cev.ContactData.model_validate(envelope.data["contact"])]
            fact["contacts"] = [_reach(c) for c in contacts]
        if t == cev.CUSTOMER_UPDATED.name:
            fact["fields"] = [c.get("field") for c in envelope.data.get("changes") or []]
        if t == cev.MERGED.name:
            fact["merged_customer_id"] = envelope.data["merged_customer_id"]
        return customer_state(snapshot)

    async def _customer_state(
        self, models: ReadModels, rules: Contributions, envelope: EventEnvelope, state: Document | None, fact: Document
    ) -> None:
        assert state is not None
        t = envelope.type

        def reuse(prev: Document | None, doc: Document) -> None:
            if prev is None and t == cev.CUSTOMER_CREATED.name and models.tracks_references:
                # No copy yet, not even a placeholder: nothing has referred to this customer
                # (no interaction, no customer merged into it), so its reach is that of the
                # contacts it was created with and it has no interaction: nothing to gather.
                current = doc.get("contact_ids")
                mine = [c for c in fact.get("contacts") or [] if current is None or c["contact_id"] in current]
                reach = any(c["reach"] for c in mine)
                doc[REUSE] = {"reach": reach, "touch_ms": -1, "contacts": [c.get("custom") or {} for c in mine]}
                return
            # A profile change keeps the customer's reach (its contacts) and last interaction.
            if (
                prev is not None
                and t not in KEEPS_NOTHING
                and prev.get("status") == "active"
                and "reach" in prev
                and "touch_ms" in prev
                and "contact_missing" in prev
                and prev.get("contact_ids") == doc.get("contact_ids")
            ):
                reused = ("reach", "touch_ms", "contact_missing")
                doc[REUSE] = {k: prev[k] for k in reused}

        _, new = await self._versioned(
            models,
            models.customers,
            envelope,
            state,
            rules.customer,
            rules.batch.add,
            carry=("touch_ms",),
            adjust=reuse,
        )
        if new is not None and not new.get("merged_into"):
            return  # just written, merged into nothing: it is its own survivor (no read needed)
        # A merged customer's contacts and interactions count for the one it was merged into
        # (whichever of the two events arrives first): re-derive that one.
        root = await survivor(models, state["_id"])
        if root is not None and root != state["_id"]:
            if not await reconcile(rules.batch.add, models.customers, root, rules.customer):
                await note_reference(models, root)  # merged into a customer not known yet

    def _opportunity(self, envelope: EventEnvelope, fact: Document) -> Document:
        o = pev.OpportunitySnapshot.model_validate(envelope.data["opportunity"])
        fact.update(
            customer_id=o.customer_id,
            opportunity_id=o.opportunity_id,
            owner_id=o.owner_id,
            department_path=o.department_path or "",
            pipeline_id=o.pipeline_id,
        )
        move = envelope.data.get("move")
        if envelope.type == pev.OPPORTUNITY_CREATED.name:
            # Creation is the entry into the first stage.
            fact.update(to_stage_id=o.stage_id, from_stage_id="", at=ms(o.created_at), seconds_in_previous=None)
        elif move is not None:
            m = pev.StageMove.model_validate(move)
            fact.update(
                to_stage_id=m.to_stage_id,
                from_stage_id=m.from_stage_id or "",
                at=ms(m.moved_at),
                seconds_in_previous=m.time_in_previous_stage_seconds,
            )
        if envelope.type == pev.OPPORTUNITY_CUSTOMER_CHANGED.name:
            fact["previous_customer_id"] = envelope.data["previous_customer_id"]
        return opportunity_state(o)

    async def _opportunity_state(
        self, models: ReadModels, rules: Contributions, envelope: EventEnvelope, state: Document, fact: Document
    ) -> None:
        """The opportunity's state (if this event is newer) and its journey: every stage entry,
        added once per fact whatever the order, in the same document and write."""
        entry = None
        if fact["type"] in ENTRY_TYPES and "to_stage_id" in fact:
            entry = [fact["_id"], fact.get("at"), fact["to_stage_id"], fact.get("owner_id") or "",
                     fact.get("department_path") or "", fact.get("pipeline_id") or ""]  # fmt: skip

        def build(prev: Document | None) -> Document | None:
            newer = prev is None or int(prev.get("source_version", 0)) < envelope.aggregateversion
            entries = list(prev.get("entries") or []) if prev else []
            known = entry is None or any(e[0] == entry[0] for e in entries)
            if not newer and known:
                return None
            if newer:
                base = {**state, "source_version": envelope.aggregateversion, "source_event_id": envelope.id}
            else:
                assert prev is not None
                base = {k: v for k, v in prev.items() if k not in ("contrib", "rev", "entries")}
            return {**base, "entries": entries if known else [*entries, entry]}

        await write_with_rollups(
            rules.batch.add,
            models.opportunities,
            state["_id"],
            build,
            rules.opportunity,
            likely_new=envelope.type in FIRST_EVENTS,
        )

    def _interaction(self, envelope: EventEnvelope, fact: Document) -> Document:
        if envelope.type == iev.INTERACTION_LOGGED.name and envelope.data.get("interaction") is None:
            logged = iev.INTERACTION_LOGGED.parse(envelope)  # an early event: flat fields only
            state: Document = {
                "_id": logged.interaction_id,
                "customer_id": logged.customer_id,
                "author_id": logged.author_id,
                "author_department_path": "",
                "channel": logged.channel,
                "occurred_ms": ms(logged.occurred_at),
                "status": "active",
                "hidden": False,
            }
        else:
            i = iev.InteractionSnapshot.model_validate(envelope.data["interaction"])
            state = {
                "_id": i.interaction_id,
                "customer_id": i.customer_id,
                "author_id": i.author_id,
                "author_department_path": i.author_department_path or "",
                "channel": i.channel,
                "occurred_ms": ms(i.occurred_at),
                "status": i.status,
                "hidden": i.hidden,
                "custom": dict(i.custom or {}),
            }
        fact.update(
            customer_id=state["customer_id"],
            owner_id=state["author_id"],
            department_path=state["author_department_path"],
            at=state["occurred_ms"],
            channel=state["channel"],
        )
        return state

    async def _interaction_state(
        self, models: ReadModels, rules: Contributions, envelope: EventEnvelope, state: Document
    ) -> None:
        prev, new = await self._versioned(
            models, models.interactions, envelope, state, rules.interaction, rules.batch.add
        )
        if new is None:
            return
        # The customers' last interaction ("not followed up"): a new later one only moves it
        # forward (one conditional write); a deletion or a move re-reads the customer's group.
        was = _touch(prev)
        now = _touch(new)
        if was == now:
            return
        if was is None and now is not None:
            root = await survivor(models, now[0])
            if root is None:
                await note_reference(models, now[0])  # an interaction before its customer
            else:
                await models.customers.update_one(
                    {"_id": root, "touch_ms": {"$lt": now[1]}}, {"$set": {"touch_ms": now[1]}, "$inc": {"rev": 1}}
                )
            return
        for customer_id in {x[0] for x in (was, now) if x is not None}:
            root = await survivor(models, customer_id)
            if root is None:
                await note_reference(models, customer_id)
            else:
                await reconcile(rules.batch.add, models.customers, root, rules.customer)

    async def _followed_by_update(self, models: ReadModels, rules: Contributions, customer_id: str, t: int) -> None:
        """A customer update marks that customer's interactions of the 24 h before it as followed up."""
        # Only the interactions of the 24 h before the update: an indexed range, not every one.
        window = {"customer_id": customer_id, "occurred_ms": {"$gte": t - DAY_MS, "$lte": t}}
        async for doc in models.interactions.find(window, {"occurred_ms": 1}):
            occurred = doc.get("occurred_ms")
            if occurred is not None and occurred <= t <= occurred + DAY_MS:
                await reconcile(rules.batch.add, models.interactions, doc["_id"], rules.interaction)


async def note_reference(models: ReadModels, customer_id: str) -> None:
    """Something refers to a customer this projection has no copy of yet: leave a placeholder,
    so that when the customer's own events arrive their copy is derived in full (its reach and
    last interaction gathered) rather than taken as new. It counts in no report: its status is
    none of the customer statuses, and its first event replaces it."""
    if not customer_id:
        return
    placeholder = {"customer_id": customer_id, "status": PLACEHOLDER, "merged_into": "", "owner_id": "", "rev": 0}
    await models.customers.update_one({"_id": customer_id}, {"$setOnInsert": placeholder}, upsert=True)


def _touch(doc: Document | None) -> tuple[str, int] | None:
    if doc is None or doc.get("status") != "active" or doc.get("occurred_ms") is None:
        return None
    if not doc.get("customer_id"):
        return None  # a follow-up on a lead: it touches its customer once the conversion moves it
    return str(doc.get("customer_id") or ""), int(doc["occurred_ms"])
