"""Use cases of the lead pool's assignment rules and settings.

Rules (``leads:rules``): create, read, change, delete, with history and ETag/If-Match; a rule's
scope must be in the caller's ``leads`` reach and its users active directory users in that scope.

Assignment: when a lead enters the pool (created in it, released to it: this service reacts to its
own ``crm.lead.created``/``crm.lead.owner_changed`` events, so web-to-lead, imports and recycling need
call nothing), on ``POST /v1/leads/{id}/auto-assign`` and on ``POST /v1/leads/assignment-rules/run``,
the first matching rule picks the next user with room; with no rule, or nobody with room, the lead
stays in the pool. Fair and race-free across replicas: a round-robin turn is an atomic counter by
``_id``; a user's open leads are counted (index-served) while holding that user's lease, so two
runs never both fill the last slot; the lead itself changes hands by its guarded write (a lead
claimed meanwhile is skipped).

Pool settings (``claim_scope``): ``department`` (default) or ``company``; only a caller whose
``leads`` scope is ``all`` (admins) may change them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from crm_leads.adapters.assignment import POOL_SETTINGS_ID, AssignmentRepository
from crm_leads.application.leads import LeadFilter, Leads
from crm_leads.domain import assignment as rules
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.concurrency import stale
from crm_platform.contracts import leads as ev
from crm_platform.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.history import HistoryEntry, history
from crm_platform.sortkeys import epoch_ms
from crm_platform.store import Change

Document = dict[str, Any]
MODULE = "leads"
#: How long a user's assignment lease lasts if its holder dies before dropping it.
LEASE_MS = 30_000
#: How long an assignment waits for another run's lease on the same user before skipping them.
LEASE_WAIT_SECONDS = 5.0
#: The most pool leads one ``run`` looks at.
RUN_LIMIT = 2000


class Assignment(BaseModel):
    lead_id: str
    owner_id: str
    rule_id: str


@dataclass
class RunResult:
    examined: int = 0
    assignments: list[Assignment] = field(default_factory=list)


class AssignmentRules:
    def __init__(self, repo: AssignmentRepository, leads: Leads, clock: Clock, source: str) -> None:
        self.repo = repo
        self.leads = leads
        self.clock = clock
        self.event = EventFactory(source, clock)

    def _event(self, doc: Document, version: int, actor: str, action: str, changes: Any = ()) -> Any:
        data = ev.LeadRuleChanged(rule=rules.snapshot(doc), action=action, changes=list(changes))  # type: ignore[arg-type]
        return self.event(ev.LEAD_RULE_CHANGED, doc["_id"], data, version, actor)

    # --- pool settings -------------------------------------------------------------------------

    async def settings(self) -> Document:
        stored = await self.repo.pool_settings()
        if stored is not None:
            return stored
        now = self.clock.now()
        return {"_id": POOL_SETTINGS_ID, "claim_scope": "department", "updated_at": now, "version": 0}

    async def put_settings(
        self, principal: Principal, data: rules.PoolSettingsIn, expected_version: int | None
    ) -> Document:
        if not principal.reaches_all(MODULE):
            raise Forbidden("Only a caller whose leads scope reaches every department may change the pool's settings.")
        now = self.clock.now()
        stored = await self.repo.pool_settings()
        if stored is None:
            if expected_version not in (None, 0):
                raise stale(0, expected_version)
            doc: Document = {"_id": POOL_SETTINGS_ID, "claim_scope": "department", "updated_at": now}
            changes = [ev.FieldChange(field="claim_scope", old="department", new=data.claim_scope)]
            doc.update(claim_scope=data.claim_scope, updated_by=principal.user_id)
            event = self._settings_event(doc, 1, principal.user_id, changes)
            try:
                return await self.repo.settings_store.insert(doc, [event])
            except DuplicateKeyError as exc:  # another first write won: its version is 1 now
                raise Conflict("The pool settings changed meanwhile; read them again.") from exc

        def decide(current: Document, version: int) -> Change:
            if current.get("claim_scope") == data.claim_scope:
                return Change(None)
            changes = [ev.FieldChange(field="claim_scope", old=current.get("claim_scope"), new=data.claim_scope)]
            current.update(claim_scope=data.claim_scope, updated_at=now, updated_by=principal.user_id)
            return Change(current, [self._settings_event(current, version, principal.user_id, changes)])

        return await self.repo.settings_store.mutate(POOL_SETTINGS_ID, decide, expected_version=expected_version)

    def _settings_event(self, doc: Document, version: int, actor: str, changes: list[ev.FieldChange]) -> Any:
        settings = ev.LeadPoolSettings(
            claim_scope=doc["claim_scope"], updated_at=doc["updated_at"], updated_by=doc.get("updated_by")
        )
        data = ev.LeadPoolSettingsChanged(settings=settings, changes=changes)
        return self.event(ev.LEAD_POOL_SETTINGS_CHANGED, POOL_SETTINGS_ID, data, version, actor)

    # --- rules ---------------------------------------------------------------------------------

    async def _scope(self, principal: Principal, department_id: str) -> str:
        department = await self.repo.department(department_id)
        if department is None or department.get("status", "active") != "active":
            raise ValidationFailed.for_field("department_id", f"no active department {department_id} in the directory")
        path = str(department.get("path") or "")
        if not principal.reaches_path(path, MODULE):
            raise ValidationFailed.for_field("department_id", "outside the departments your leads scope reaches")
        return path

    async def _check_users(self, users: list[str], scope_path: str) -> None:
        errors: list[FieldError] = []
        for i, user_id in enumerate(users):
            user = await self.repo.user(user_id)
            if user is None or user.get("status", "active") != "active":
                errors.append(FieldError(field=f"users[{i}]", reason=f"no active user {user_id} in the directory"))
            elif not rules.within(user.get("department_path"), scope_path):
                errors.append(
                    FieldError(field=f"users[{i}]", reason=f"{user_id} is outside the rule's scope {scope_path}")
                )
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)

    async def create(self, principal: Principal, data: rules.RuleIn) -> Document:
        path = await self._scope(principal, data.department_id)
        await self._check_users(data.users, path)
        doc = rules.new_rule(str(uuid.uuid4()), data, path, principal, self.clock.now())
        return await self.repo.rule_store.insert(doc, [self._event(doc, 1, principal.user_id, "created")])

    async def get(self, rule_id: str) -> Document:
        doc = await self.repo.rule_store.get(rule_id)
        if doc is None or doc.get("deleted"):
            raise NotFound(f"No assignment rule with id {rule_id}.")
        return doc

    async def all_rules(self) -> list[Document]:
        found = await self.repo.live_rules()
        return sorted(found, key=lambda r: (int(r["position"]), r.get("created_ms", 0), r["_id"]))

    async def history(self, rule_id: str, event_log: Any) -> list[HistoryEntry]:
        return await history(event_log, await self.get(rule_id), summarise)

    async def update(
        self, principal: Principal, rule_id: str, patch: rules.RulePatch, expected_version: int | None
    ) -> Document:
        current = await self.get(rule_id)
        if not principal.reaches_path(current.get("department_path"), MODULE):
            raise Forbidden("This rule's scope is outside the departments your leads scope reaches.")
        values = patch.model_dump(mode="json", include=patch.model_fields_set)
        for name in ("name", "position", "department_id", "condition", "method", "users", "enabled"):
            if name in values and values[name] is None:
                raise ValidationFailed.for_field(name, "cannot be cleared")
        path = current["department_path"]
        if "department_id" in values:
            path = await self._scope(principal, values["department_id"])
            values["department_path"] = path
        if "users" in values or "department_id" in values:
            await self._check_users(values.get("users") or current["users"], path)
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                raise NotFound(f"No assignment rule with id {rule_id}.")
            changes = rules.apply_values(doc, values)
            if not changes:
                return Change(None)
            doc["updated_at"] = now
            return Change(doc, [self._event(doc, version, principal.user_id, "updated", changes)])

        return await self.repo.rule_store.mutate(rule_id, decide, expected_version=expected_version, current=current)

    async def delete(self, principal: Principal, rule_id: str, expected_version: int | None) -> Document:
        current = await self.get(rule_id)
        if not principal.reaches_path(current.get("department_path"), MODULE):
            raise Forbidden("This rule's scope is outside the departments your leads scope reaches.")
        now = self.clock.now()

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                raise NotFound(f"No assignment rule with id {rule_id}.")
            doc.update(deleted=True, live=False, updated_at=now)
            return Change(doc, [self._event(doc, version, principal.user_id, "deleted")])

        return await self.repo.rule_store.mutate(rule_id, decide, expected_version=expected_version, current=current)

    # --- assignment ----------------------------------------------------------------------------

    async def auto_assign(self, lead_id: str, live_rules: list[Document] | None = None) -> Assignment | None:
        """Give the pool lead ``lead_id`` to the next user with room under the first rule that matches
        it. None: no rule matches, nobody has room, or the lead is not in the pool (any more)."""
        lead = await self.leads.repo.get(lead_id)
        if lead is None or lead.get("deleted") or not lead.get("in_pool"):
            return None
        rule = rules.first_match(live_rules if live_rules is not None else await self.repo.live_rules(), lead)
        if rule is None:
            return None
        eligible = [u for u in rule["users"] if await self._eligible(u, rule)]
        if not eligible:
            return None
        if rule["method"] == "round_robin":
            order = rules.round_robin_order(rule["users"], await self.repo.next_turn(rule["_id"]))
        else:
            loads = {u: await self.repo.open_leads(u) for u in eligible}
            order = rules.least_loaded_order(rule["users"], loads)
        for user_id in order:
            if user_id not in eligible:
                continue
            outcome = await self._try(user_id, rule, lead)
            if outcome == "gone":
                return None
            if outcome == "assigned":
                return Assignment(lead_id=lead_id, owner_id=user_id, rule_id=rule["_id"])
        return None

    async def _eligible(self, user_id: str, rule: Document) -> bool:
        """Active in the directory and in the rule's scope now (a user deactivated or moved later is skipped)."""
        user = await self.repo.user(user_id)
        return (
            user is not None
            and user.get("status", "active") == "active"
            and rules.within(user.get("department_path"), rule.get("department_path"))
        )

    async def _try(self, user_id: str, rule: Document, lead: Document) -> str:
        """Give ``lead`` to ``user_id`` if they have room: "assigned", "full" or "gone" (the lead left the pool)."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + LEASE_WAIT_SECONDS
        while not await self.repo.take_lease(user_id, holder, epoch_ms(self.clock.now()), LEASE_MS):
            if time.monotonic() > deadline:
                return "full"  # busy for too long: treat as no room this time
            await asyncio.sleep(0.01)
        try:
            capacity = rule.get("capacity")
            if capacity is not None and not rules.has_room(await self.repo.open_leads(user_id, capacity), capacity):
                return "full"
            user = await self.repo.user(user_id)
            if user is None:
                return "full"
            reason = f"assignment rule {rule['name']} ({rule['_id']})"
            try:
                await self.leads.assign_by_rule(lead, user, rule["_id"], reason)
            except (Conflict, NotFound):
                return "gone"
            return "assigned"
        finally:
            await self.repo.drop_lease(user_id, holder)

    async def auto_assign_one(self, principal: Principal, lead_id: str) -> tuple[Document, Assignment | None]:
        """``POST /v1/leads/{id}/auto-assign``: the lead must be one the caller sees, in the pool."""
        lead = await self.leads.get(principal, lead_id)
        if not lead.get("in_pool"):
            raise Conflict("The lead is not in the lead pool.")
        done = await self.auto_assign(lead_id)
        return await self._stored(lead_id), done

    async def _stored(self, lead_id: str) -> Document:
        doc = await self.leads.repo.get(lead_id)
        if doc is None:
            raise NotFound(f"No lead with id {lead_id}.")
        return doc

    async def run(self, principal: Principal) -> RunResult:
        """The rules over the pool as it stands: every pool lead the caller sees, oldest first."""
        result = RunResult()
        live_rules = await self.repo.live_rules()
        cursor: str | None = None
        while result.examined < RUN_LIMIT:
            page = await self.leads.page(
                principal, LeadFilter(in_pool=True, sort="created_at", limit=200, cursor=cursor)
            )
            for lead in page.items:
                result.examined += 1
                done = await self.auto_assign(lead["_id"], live_rules)
                if done is not None:
                    result.assignments.append(done)
            cursor = page.next_cursor
            if not cursor:
                break
        return result

    async def on_pool_entry(self, envelope: EventEnvelope) -> None:
        """``crm.lead.created`` / ``crm.lead.owner_changed``: a lead that entered the pool is offered to
        the rules. Idempotent: it acts on the lead as it is now, and only while it is in the pool (a
        repeated or stale event finds it assigned, claimed or deleted and does nothing)."""
        lead = (envelope.data or {}).get("lead") or {}
        if lead.get("owner_id") is None and not lead.get("deleted"):
            await self.auto_assign(str(envelope.subject))


def summarise(envelope: Any) -> tuple[str, list[dict[str, Any]]]:
    data = envelope.data
    if envelope.type == ev.LEAD_RULE_CHANGED.name:
        action = data.get("action")
        return f"Rule {action}", list(data.get("changes") or [])
    return envelope.type, []
