"""Use cases of opportunities (商机), one method each.

Each reads what it needs (the pipeline, the customer's read copy), applies the
domain rules inside the store's ``decide`` and stores the new state with its event
in one guarded write. A rule that fails raises before anything is written: no
half-done change, no event for a change that did not happen.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from crm_pipeline.adapters.repository import Repository
from crm_pipeline.application.pipelines import Pipelines
from crm_pipeline.domain import opportunities as rules
from crm_pipeline.domain import pipelines as pl
from crm_pipeline.domain import requirements as req
from crm_pipeline.domain.model import (
    ApprovalIn,
    ApprovalRequestIn,
    AssignIn,
    DocumentIn,
    OpportunityCreate,
    OpportunityPatch,
)
from crm_pipeline.settings import PipelineSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import pipeline as ev
from crm_platform.errors import Forbidden, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.idempotency import IdempotencyKey, create_once
from crm_platform.permissions import Permission
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.store import Change

Document = dict[str, Any]
HIDDEN_STATUSES = ("deleted", "purged")


class Opportunities:
    def __init__(
        self,
        repo: Repository,
        pipelines: Pipelines,
        customers: CustomerReadModel,
        clock: Clock,
        settings: PipelineSettings,
        events: EventFactory,
    ) -> None:
        self.repo = repo
        self.pipelines = pipelines
        self.customers = customers
        self.clock = clock
        self.settings = settings
        self.zone: ZoneInfo = settings.zone
        self.event = events

    # --- helpers ---------------------------------------------------------------------------------

    def _snapshot_event(self, event_type: Any, doc: Document, version: int, actor: str, **fields: Any) -> Any:
        data = event_type.data_model(opportunity=rules.snapshot(doc), **fields)
        return self.event(event_type, doc["_id"], data, version, actor)

    def _updated(
        self,
        doc: Document,
        version: int,
        actor: str,
        changes: list[ev.FieldChange],
        reason: str | None = None,
        traceparent: str | None = None,
    ) -> Any:
        data = ev.OpportunityUpdated(opportunity=rules.snapshot(doc), changes=changes, reason=reason)
        return self.event(ev.OPPORTUNITY_UPDATED, doc["_id"], data, version, actor, traceparent)

    async def _customer_for(self, principal: Principal, customer_id: str) -> Document:
        """The customer from the read copy: it must exist, be active and be visible to the caller."""
        copy = await self.customers.arrived(customer_id)
        if copy is None or not CustomerReadModel.visible_to(principal, copy):
            raise ValidationFailed.for_field(
                "customer_id",
                f"no customer {customer_id} that you can see "
                "(a customer created a moment ago may take a second to arrive)",
            )
        status = copy.get("status")
        if status == "deleted":
            raise ValidationFailed.for_field("customer_id", "the customer is in the recycle bin")
        if status == "merged":
            raise ValidationFailed.for_field(
                "customer_id", f"the customer was merged into {copy.get('merged_into')}; use that one"
            )
        if status != "active":
            raise ValidationFailed.for_field("customer_id", f"no customer {customer_id} that you can see")
        if copy.get("in_pool"):
            raise ValidationFailed.for_field("customer_id", "the customer is in the public pool (公海); claim it first")
        return copy

    async def _pipeline_of(self, doc: Document) -> Document:
        pipeline = await self.repo.pipeline(doc["pipeline_id"])
        if pipeline is None:  # pipelines are never deleted; this is a broken reference, not the caller's fault
            raise RuntimeError(f"opportunity {doc['_id']} names missing pipeline {doc['pipeline_id']}")
        return pipeline

    @staticmethod
    def _stage(pipeline: Document, stage_id: str, field: str = "stage_id") -> Document:
        stage = pl.stage_of(pipeline, stage_id)
        if stage is None:
            raise ValidationFailed.for_field(field, f"pipeline {pipeline['_id']} has no stage {stage_id}")
        return stage

    @staticmethod
    def _refresh_stage_name(doc: Document, pipeline: Document) -> None:
        # The stored name follows renames at the next write, so snapshots carry the current one.
        stage = pl.stage_of(pipeline, doc["stage_id"])
        if stage is not None:
            doc["stage_name"] = stage["name"]

    async def _visible(self, principal: Principal, opportunity_id: str) -> Document:
        return rules.ensure_visible(principal, await self.repo.opportunity(opportunity_id), opportunity_id)

    # --- create and read ---------------------------------------------------------------------------

    async def create(
        self, principal: Principal, data: OpportunityCreate, key: IdempotencyKey | None = None
    ) -> Document:
        """Create; with a key the id comes from it, so a retry answers with the first opportunity."""
        return await create_once(key, self.repo.opportunity, lambda: self._create(principal, data, key))

    async def _create(self, principal: Principal, data: OpportunityCreate, key: IdempotencyKey | None) -> Document:
        customer = await self._customer_for(principal, data.customer_id)
        pipeline = await self.pipelines.resolve(data.pipeline_id)
        stage = self._stage(pipeline, data.stage_id) if data.stage_id else pl.first_open_stage(pipeline)
        custom = (await self.pipelines.fieldset()).validate(data.custom)
        doc = rules.new_opportunity(
            data,
            principal,
            pipeline,
            stage,
            CustomerReadModel.contact_ids(customer),
            self.clock.now(),
            self.zone,
            self.settings.default_currency,
            custom,
        )
        if key is not None:
            doc["_id"] = key.record_id
            key.stamp(doc)
        event = self._snapshot_event(ev.OPPORTUNITY_CREATED, doc, 1, principal.user_id)
        stored = await self.repo.opportunity_store.insert(doc, [event])
        # The customer may have been deleted or merged between our check and the insert; its
        # event handler may have missed this opportunity, so follow the customer once more.
        return await self.follow_customer(stored["_id"], principal.user_id) or stored

    async def get(self, principal: Principal, opportunity_id: str) -> tuple[Document, Document]:
        doc = await self._visible(principal, opportunity_id)
        return doc, await self._pipeline_of(doc)

    # --- fields ------------------------------------------------------------------------------------

    async def update(
        self, principal: Principal, opportunity_id: str, patch: OpportunityPatch, expected_version: int | None
    ) -> Document:
        current = await self._visible(principal, opportunity_id)
        customer = await self.customers.get(current["customer_id"]) if "contact_ids" in patch.model_fields_set else None
        pipeline = await self._pipeline_of(current)
        fieldset = await self.pipelines.fieldset()

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            rules.ensure_open(doc)
            changes = rules.apply_patch(doc, patch, CustomerReadModel.contact_ids(customer))
            if "custom" in patch.model_fields_set and patch.custom is not None:
                # Validated against the stored values (a deactivated option it holds may stay).
                changes += rules.apply_custom(doc, fieldset.validate(patch.custom, doc.get("custom") or {}))
            if not changes:
                return Change(None)
            self._refresh_stage_name(doc, pipeline)
            rules.touch(doc, principal.user_id, self.clock.now())
            return Change(doc, [self._updated(doc, version, principal.user_id, changes)])

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    async def add_document(
        self, principal: Principal, opportunity_id: str, data: DocumentIn, expected_version: int | None
    ) -> tuple[Document, Document]:
        await self._visible(principal, opportunity_id)
        added: dict[str, Document] = {}

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            rules.ensure_open(doc)
            now = self.clock.now()
            added["document"] = rules.add_document(doc, data, principal.user_id, now)
            rules.touch(doc, principal.user_id, now)
            rules.refresh(doc)
            change = ev.FieldChange(field="documents", old=None, new=rules.document_out(added["document"]))
            return Change(doc, [self._updated(doc, version, principal.user_id, [change])])

        doc = await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)
        return doc, added["document"]

    async def remove_document(
        self, principal: Principal, opportunity_id: str, document_id: str, expected_version: int | None
    ) -> Document:
        await self._visible(principal, opportunity_id)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            rules.ensure_open(doc)
            removed = rules.remove_document(doc, document_id)
            rules.touch(doc, principal.user_id, self.clock.now())
            rules.refresh(doc)
            change = ev.FieldChange(field="documents", old=rules.document_out(removed), new=None)
            return Change(doc, [self._updated(doc, version, principal.user_id, [change])])

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    # --- stages --------------------------------------------------------------------------------------

    async def move(
        self, principal: Principal, opportunity_id: str, stage_id: str, expected_version: int | None
    ) -> Document:
        current = await self._visible(principal, opportunity_id)
        pipeline = await self._pipeline_of(current)
        target = self._stage(pipeline, stage_id)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            now = self.clock.now()
            self._refresh_stage_name(doc, pipeline)
            stage_move = rules.move(doc, pipeline, target, principal.user_id, now)
            if stage_move is None:
                return Change(None)
            rules.touch(doc, principal.user_id, now)
            return Change(
                doc,
                [self._snapshot_event(ev.OPPORTUNITY_STAGE_CHANGED, doc, version, principal.user_id, move=stage_move)],
            )

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    async def win(
        self, principal: Principal, opportunity_id: str, reason: str, expected_version: int | None
    ) -> Document:
        current = await self._visible(principal, opportunity_id)
        pipeline = await self._pipeline_of(current)
        won_stage = pl.stage_of_kind(pipeline, "won")

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            now = self.clock.now()
            self._refresh_stage_name(doc, pipeline)
            stage_move = rules.win(doc, pipeline, won_stage, principal.user_id, now, reason, self.zone)
            rules.touch(doc, principal.user_id, now)
            return Change(
                doc,
                [
                    self._snapshot_event(
                        ev.OPPORTUNITY_WON, doc, version, principal.user_id, move=stage_move, reason=reason
                    )
                ],
            )

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    async def lose(
        self,
        principal: Principal,
        opportunity_id: str,
        reason: str,
        competitor: str | None,
        expected_version: int | None,
    ) -> Document:
        current = await self._visible(principal, opportunity_id)
        pipeline = await self._pipeline_of(current)
        lost_stage = pl.stage_of_kind(pipeline, "lost")

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            now = self.clock.now()
            self._refresh_stage_name(doc, pipeline)
            stage_move = rules.lose(doc, lost_stage, principal.user_id, now, reason, competitor, self.zone)
            rules.touch(doc, principal.user_id, now)
            event = self._snapshot_event(
                ev.OPPORTUNITY_LOST,
                doc,
                version,
                principal.user_id,
                move=stage_move,
                reason=reason,
                competitor=competitor,
            )
            return Change(doc, [event])

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    async def reopen(
        self, principal: Principal, opportunity_id: str, reason: str, stage_id: str, expected_version: int | None
    ) -> Document:
        current = await self._visible(principal, opportunity_id)
        pipeline = await self._pipeline_of(current)
        target = self._stage(pipeline, stage_id)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            now = self.clock.now()
            self._refresh_stage_name(doc, pipeline)
            stage_move, previous = rules.reopen(doc, target, principal, now, reason)
            rules.touch(doc, principal.user_id, now)
            event = self._snapshot_event(
                ev.OPPORTUNITY_REOPENED,
                doc,
                version,
                principal.user_id,
                move=stage_move,
                reason=reason,
                previous_status=previous,
            )
            return Change(doc, [event])

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    # --- ownership -------------------------------------------------------------------------------------

    async def assign(
        self, principal: Principal, opportunity_id: str, data: AssignIn, expected_version: int | None
    ) -> Document:
        principal.require(Permission.opportunities_assign)
        if not principal.reaches_path(data.department_path, rules.OPPORTUNITIES):
            raise Forbidden("You may only assign opportunities to people your opportunities scope reaches.")
        await self._visible(principal, opportunity_id)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            rules.ensure_open(doc)
            rules.ensure_manager_of(principal, doc, "assign this opportunity")
            if doc["owner_id"] == data.owner_id and doc.get("department_path") == data.department_path:
                return Change(None)
            previous_owner, previous_path = rules.assign(doc, data.owner_id, data.department_id, data.department_path)
            rules.touch(doc, principal.user_id, self.clock.now())
            rules.refresh(doc)
            event = self._snapshot_event(
                ev.OPPORTUNITY_OWNER_CHANGED,
                doc,
                version,
                principal.user_id,
                previous_owner_id=previous_owner,
                previous_department_path=previous_path,
                owner_id=data.owner_id,
                reason=data.reason,
            )
            return Change(doc, [event])

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    # --- approvals ---------------------------------------------------------------------------------------

    async def _approval_stage(self, doc: Document, stage_id: str) -> Document:
        stage = self._stage(await self._pipeline_of(doc), stage_id)
        if not (stage.get("requirements") or {}).get("approval"):
            raise ValidationFailed.for_field("stage_id", f"{stage['name']} does not require an approval")
        return stage

    async def request_approval(self, principal: Principal, opportunity_id: str, data: ApprovalRequestIn) -> Document:
        current = await self._visible(principal, opportunity_id)
        stage = await self._approval_stage(current, data.stage_id)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            rules.ensure_open(doc)
            existing = req.approval_of(doc, stage["stage_id"])
            if existing is not None and existing["status"] in ("pending", "approved"):
                return Change(None)  # asked already, or granted: asking again changes nothing
            now = self.clock.now()
            entry = {
                "stage_id": stage["stage_id"],
                "stage_name": stage["name"],
                "status": "pending",
                "requested_by": principal.user_id,
                "requested_at": now,
                "note": data.note,
                "decided_by": None,
                "decided_at": None,
                "decision_note": None,
            }
            previous = rules.set_approval(doc, entry)
            rules.touch(doc, principal.user_id, now)
            rules.refresh(doc)
            change = ev.FieldChange(
                field=f"approvals[{stage['stage_id']}]", old=(previous or {}).get("status"), new="pending"
            )
            return Change(doc, [self._updated(doc, version, principal.user_id, [change])])

        return await self.repo.opportunity_store.mutate(opportunity_id, decide)

    async def decide_approval(
        self, principal: Principal, opportunity_id: str, data: ApprovalIn, expected_version: int | None
    ) -> Document:
        principal.require(Permission.opportunities_approve)
        current = await self._visible(principal, opportunity_id)
        stage = await self._approval_stage(current, data.stage_id)

        def decide(doc: Document, version: int) -> Change:
            rules.ensure_visible(principal, doc, opportunity_id)
            rules.ensure_open(doc)
            rules.ensure_manager_of(principal, doc, "approve stage requirements")
            # One's own opportunity: only a scope of all (the built-in admin's) approves it.
            if doc["owner_id"] == principal.user_id and not principal.reaches_all(rules.OPPORTUNITIES):
                raise Forbidden("You cannot approve your own opportunity; ask another manager of the department.")
            now = self.clock.now()
            existing = req.approval_of(doc, stage["stage_id"]) or {}
            entry = {
                "stage_id": stage["stage_id"],
                "stage_name": stage["name"],
                "status": data.decision,
                "requested_by": existing.get("requested_by"),
                "requested_at": existing.get("requested_at"),
                "note": existing.get("note"),
                "decided_by": principal.user_id,
                "decided_at": now,
                "decision_note": data.note,
            }
            previous = rules.set_approval(doc, entry)
            rules.touch(doc, principal.user_id, now)
            rules.refresh(doc)
            change = ev.FieldChange(
                field=f"approvals[{stage['stage_id']}]", old=(previous or {}).get("status"), new=data.decision
            )
            return Change(doc, [self._updated(doc, version, principal.user_id, [change])])

        return await self.repo.opportunity_store.mutate(opportunity_id, decide, expected_version=expected_version)

    # --- following the customer (fed by crm.customers.v1) -------------------------------------------------

    async def move_to_survivor(
        self, opportunity_id: str, duplicate_id: str, survivor_id: str, cause: EventEnvelope | None
    ) -> bool:
        """One opportunity of a merged-away customer moves to the survivor (a no-op if it moved already)."""
        survivor = await self.customers.get(survivor_id)
        actor = (cause.actor if cause else None) or "system:pipeline"

        def decide(doc: Document, version: int) -> Change:
            if doc["customer_id"] != duplicate_id:
                return Change(None)
            doc["customer_id"] = survivor_id
            # contact_ids stay: a merge moves every contact of the duplicate to the survivor with its id.
            if survivor is not None and survivor.get("status") in ("active", *HIDDEN_STATUSES):
                self._set_hidden(doc, survivor["status"] in HIDDEN_STATUSES, f"customer {survivor['status']}")
            rules.touch(doc, actor, self.clock.now())
            rules.refresh(doc)
            data = ev.CustomerChanged(
                opportunity=rules.snapshot(doc), previous_customer_id=duplicate_id, customer_id=survivor_id
            )
            return Change(
                doc,
                [
                    self.event(
                        ev.OPPORTUNITY_CUSTOMER_CHANGED,
                        doc["_id"],
                        data,
                        version,
                        actor,
                        cause.traceparent if cause else None,
                    )
                ],
            )

        before = await self.repo.opportunity(opportunity_id)
        after = await self.repo.opportunity_store.mutate(opportunity_id, decide)
        return before is not None and after.get("version") != before.get("version")

    @staticmethod
    def _set_hidden(doc: Document, hidden: bool, reason: str) -> bool:
        if bool(doc.get("hidden")) == hidden:
            return False
        doc["hidden"] = hidden
        doc["hidden_reason"] = reason if hidden else None
        return True

    async def sync_visibility(
        self, opportunity_id: str, customer: Document | None, cause: EventEnvelope | None
    ) -> None:
        """Hidden while the customer is deleted or purged, shown while it is active; decided from the read copy."""
        if customer is None or customer.get("status") not in ("active", *HIDDEN_STATUSES):
            return  # unknown, or merged (the merge moves the opportunity instead)
        hidden = customer["status"] in HIDDEN_STATUSES
        reason = f"customer {customer['status']}"
        actor = (cause.actor if cause else None) or "system:pipeline"

        def decide(doc: Document, version: int) -> Change:
            if doc["customer_id"] != customer["_id"] or not self._set_hidden(doc, hidden, reason):
                return Change(None)
            rules.touch(doc, actor, self.clock.now())
            rules.refresh(doc)
            change = ev.FieldChange(field="hidden", old=not hidden, new=hidden)
            return Change(
                doc, [self._updated(doc, version, actor, [change], reason, cause.traceparent if cause else None)]
            )

        await self.repo.opportunity_store.mutate(opportunity_id, decide)

    async def follow_customer(self, opportunity_id: str, actor: str) -> Document | None:
        """Bring one opportunity in line with its customer's read copy (merged: move; deleted: hide)."""
        doc = await self.repo.opportunity(opportunity_id)
        if doc is None:
            return None
        customer = await self.customers.get(doc["customer_id"])
        if customer is None:
            return doc
        if customer.get("status") == "merged" and customer.get("merged_into"):
            await self.move_to_survivor(opportunity_id, doc["customer_id"], customer["merged_into"], None)
        else:
            await self.sync_visibility(opportunity_id, customer, None)
        return await self.repo.opportunity(opportunity_id)
