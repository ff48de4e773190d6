"""Use cases on recycling and claim rules: create, change, delete, read, history.

Admins manage every rule; managers the rules of their own department subtree. Each
change is stored with its events in one write (``crm.pool.rules_changed``, and
``crm.pool.claim_rules_changed`` when the claim part changed). The scheduler and the
previews work deadlines out from the rules at the moment they run, so a change applies at
once; the deadlines stored on the clocks (for operators reading the database) are then
refreshed in the background.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import pool as ev
from crm_platform.errors import Duplicate, FieldError, Forbidden, NotFound
from crm_platform.events import EventEnvelope, EventType
from crm_platform.history import HistoryEntry, history
from crm_platform.permissions import Permission
from crm_platform.store import Change
from crm_platform.tracing import current_traceparent
from crm_pool.adapters.repository import PoolRepository
from crm_pool.domain.model import CLAIM_FIELDS, EDITABLE, RuleCreate, RulePatch
from crm_pool.domain.recycling import POOL, path_within

Document = dict[str, Any]
Recompute = Callable[[str | None], Awaitable[None]]


def scope_key(department_path: str | None) -> str:
    return department_path or "global"


def snapshot(doc: Document) -> ev.PoolRuleSnapshot:
    return ev.PoolRuleSnapshot.model_validate({k: v for k, v in doc.items() if k in ev.PoolRuleSnapshot.model_fields})


def claim_rules(doc: Document) -> ev.ClaimRules:
    return ev.ClaimRules(
        rule_id=doc["rule_id"],
        department_path=doc.get("department_path"),
        cooldown_days=doc["cooldown_days"],
        claim_scope=doc["claim_scope"],
        max_held=doc.get("max_held"),
        deleted=doc.get("deleted", False),
    )


def summarise(envelope: EventEnvelope) -> tuple[str, list[dict[str, Any]]]:
    if envelope.type == ev.RULES_CHANGED.name:
        data = ev.RULES_CHANGED.parse(envelope)
        return f"rule {data.action}", [c.model_dump(mode="json") for c in data.changes]
    if envelope.type == ev.CLAIM_RULES_CHANGED.name:
        return "claim rules published", []
    return envelope.type, []


class Rules:
    def __init__(self, repo: PoolRepository, clock: Clock, source: str, recompute: Recompute) -> None:
        self.repo = repo
        self.clock = clock
        self.source = source
        self._recompute = recompute

    def _event(
        self, event_type: EventType[Any], rule_id: str, data: BaseModel, version: int, actor: str
    ) -> tuple[str, EventEnvelope]:
        return event_type.topic, event_type.build(
            source=self.source,
            subject=rule_id,
            data=data,
            aggregate_version=version,
            time=self.clock.now(),
            actor=actor,
            traceparent=current_traceparent.get(),
        )

    async def _changed(self, department_path: str | None) -> None:
        # Parked clocks were parked under the old rules: every one goes back into the next run.
        await self.repo.unpark_all()
        await self._recompute(department_path)

    @staticmethod
    def ensure_may_manage(principal: Principal, department_path: str | None) -> None:
        principal.require(Permission.pool_rules)
        if principal.reaches_all(POOL):
            return
        if department_path is None:
            raise Forbidden("The global rule is managed with a pool scope of all.")
        if not principal.reaches_path(department_path, POOL):
            raise Forbidden("You manage the rules of the departments your pool scope reaches.")

    @staticmethod
    def visible(principal: Principal, doc: Document) -> bool:
        if principal.reaches_all(POOL):
            return True
        path = doc.get("department_path")
        # A pool scope beyond one's own sees the rules that apply to what it reaches: the rules of
        # those departments, and those above (the global one included).
        return principal.reaches_beyond_own(POOL) and (
            path is None or principal.reaches_path(path, POOL) or path_within(principal.department_path, path)
        )

    async def create(self, principal: Principal, body: RuleCreate) -> Document:
        self.ensure_may_manage(principal, body.department_path)
        now = self.clock.now()
        rule_id = str(uuid.uuid4())
        doc: Document = {
            "_id": rule_id,
            "rule_id": rule_id,
            **body.model_dump(),
            "scope": scope_key(body.department_path),
            "deleted": False,
            "created_at": now,
            "created_by": principal.user_id,
            "updated_at": now,
            "updated_by": principal.user_id,
        }
        events = [
            self._event(
                ev.RULES_CHANGED, rule_id, ev.RulesChanged(rule=snapshot(doc), action="created"), 1, principal.user_id
            ),
            self._event(
                ev.CLAIM_RULES_CHANGED,
                rule_id,
                ev.ClaimRulesChanged(claim_rules=claim_rules(doc)),
                1,
                principal.user_id,
            ),
        ]
        try:
            stored = await self.repo.rule_store.insert(doc, events)
        except DuplicateKeyError as exc:
            where = body.department_path or "the whole company"
            raise Duplicate(
                f"A rule for {where} already exists; change it instead.",
                errors=[FieldError(field="department_path", reason="already has a rule")],
            ) from exc
        await self._changed(body.department_path)
        return stored

    async def get(self, principal: Principal, rule_id: str) -> Document:
        principal.require(Permission.pool_rules)
        doc = await self.repo.get_rule(rule_id)
        if doc is None or not self.visible(principal, doc):
            raise NotFound(f"No pool rule with id {rule_id}.")
        return doc

    async def list_rules(self, principal: Principal, include_deleted: bool = False) -> list[Document]:
        principal.require(Permission.pool_rules)
        query: Document = {} if include_deleted else {"deleted": False}
        docs = [d async for d in self.repo.rules.find(query, projection={"outbox": 0}).sort([("scope", 1)])]
        return [d for d in docs if self.visible(principal, d)]

    async def update(
        self, principal: Principal, rule_id: str, patch: RulePatch, expected_version: int | None
    ) -> Document:
        current = await self.get(principal, rule_id)
        self.ensure_may_manage(principal, current.get("department_path"))
        sent = patch.model_dump(exclude_unset=True)

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                raise NotFound(f"No pool rule with id {rule_id}.")
            changes = [
                ev.FieldChange(field=k, old=doc.get(k), new=v)
                for k, v in sent.items()
                if k in EDITABLE and doc.get(k) != v
            ]
            if not changes:
                return Change(None)
            for change in changes:
                doc[change.field] = change.new
            # The merged rule must still make sense (a limit left, warning shorter than the limits).
            RuleCreate.model_validate({k: doc.get(k) for k in (*EDITABLE, "department_path")})
            doc["updated_at"] = self.clock.now()
            doc["updated_by"] = principal.user_id
            events = [
                self._event(
                    ev.RULES_CHANGED,
                    rule_id,
                    ev.RulesChanged(rule=snapshot(doc), action="changed", changes=changes),
                    version,
                    principal.user_id,
                )
            ]
            if any(c.field in CLAIM_FIELDS for c in changes):
                events.append(
                    self._event(
                        ev.CLAIM_RULES_CHANGED,
                        rule_id,
                        ev.ClaimRulesChanged(claim_rules=claim_rules(doc)),
                        version,
                        principal.user_id,
                    )
                )
            return Change(doc, events)

        stored = await self.repo.rule_store.mutate(rule_id, decide, expected_version=expected_version)
        await self._changed(current.get("department_path"))
        return stored

    async def delete(self, principal: Principal, rule_id: str, expected_version: int | None) -> Document:
        current = await self.get(principal, rule_id)
        self.ensure_may_manage(principal, current.get("department_path"))

        def decide(doc: Document, version: int) -> Change:
            if doc.get("deleted"):
                return Change(None)
            doc["deleted"] = True
            doc.pop("scope", None)  # frees the scope for a new rule (the index is sparse)
            doc["updated_at"] = self.clock.now()
            doc["updated_by"] = principal.user_id
            return Change(
                doc,
                [
                    self._event(
                        ev.RULES_CHANGED,
                        rule_id,
                        ev.RulesChanged(rule=snapshot(doc), action="deleted"),
                        version,
                        principal.user_id,
                    ),
                    self._event(
                        ev.CLAIM_RULES_CHANGED,
                        rule_id,
                        ev.ClaimRulesChanged(claim_rules=claim_rules(doc)),
                        version,
                        principal.user_id,
                    ),
                ],
            )

        stored = await self.repo.rule_store.mutate(rule_id, decide, expected_version=expected_version)
        await self._changed(current.get("department_path"))
        return stored

    async def history(self, principal: Principal, rule_id: str, event_log: Any) -> list[HistoryEntry]:
        doc = await self.get(principal, rule_id)
        return await history(event_log, doc, summarise)
