"""Use cases of lead scoring: the rule set (read, replace, history), training the model on the
organisation's own history, a lead's score with its reasons, and the background re-score.

Every lead written carries its score (:class:`crm_leads.adapters.scoring_store.ScoredStore`).
After the rules change or the model is retrained, the re-score job walks every live lead in the
order they were entered (the admin list's index), a page at a time, and stores the new score where
the lead was scored on another basis; its cursor is stored after each page, so a restart resumes
where it stopped, and a lease keeps it to one replica at a time. A score is stored without a new
version or event (it is derived, not a change of the lead), guarded by the lead's version: a lead
changed meanwhile was scored by that change.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from crm_leads.adapters.repository import LeadRepository
from crm_leads.adapters.scoring_store import ScoringRepository
from crm_leads.application.leads import Leads
from crm_leads.domain import leads as lead_rules
from crm_leads.domain.scoring import (
    NEGATIVE,
    POSITIVE,
    ModelScore,
    RulesIn,
    RulesScore,
    Sample,
    TooLittleHistory,
    facts,
    features,
    rule_errors,
    train,
)
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.concurrency import stale
from crm_platform.contracts import leads as ev
from crm_platform.errors import Conflict, NotFound, ValidationFailed
from crm_platform.events import EventFactory
from crm_platform.history import HistoryEntry, history
from crm_platform.listing import PageParams, fetch_page
from crm_platform.sortkeys import TIEBREAK, epoch_ms
from crm_platform.store import Change

Document = dict[str, Any]


class Scoring:
    def __init__(
        self,
        repo: LeadRepository,
        store: ScoringRepository,
        leads: Leads,
        clock: Clock,
        source: str,
        *,
        min_per_class: int,
        max_history: int,
        rescore_page: int,
        rescore_pages_per_tick: int,
        history_page: int = 500,
    ) -> None:
        self.repo = repo
        self.store = store
        self.leads = leads
        self.clock = clock
        self.event = EventFactory(source, clock)
        self.min_per_class = min_per_class
        self.max_history = max_history
        self.rescore_page = rescore_page
        self.rescore_pages_per_tick = rescore_pages_per_tick
        self.history_page = history_page

    # --- rules -------------------------------------------------------------------------------------

    async def rules(self) -> Document:
        return await self.store.rules() or {"_id": ev.SCORING_RULES_ID, "rules": [], "version": 0}

    async def put_rules(self, principal: Principal, body: RulesIn, expected_version: int | None) -> Document:
        errors = rule_errors(body.rules)
        if errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
        rules = [r.model_dump(mode="json") for r in body.rules]
        now = self.clock.now()

        def event(previous: list[Document], version: int) -> Any:
            data = ev.ScoringRulesChanged.model_validate({"rules": rules, "previous": previous})
            return self.event(ev.SCORING_RULES_CHANGED, ev.SCORING_RULES_ID, data, version, principal.user_id)

        current = await self.store.rules()
        fields = {"rules": rules, "updated_by": principal.user_id, "updated_at_ms": epoch_ms(now)}
        if current is None:
            if expected_version not in (None, 0):
                raise stale(0, expected_version)
            try:
                doc = await self.store.store.insert({"_id": ev.SCORING_RULES_ID, **fields}, [event([], 1)])
            except DuplicateKeyError:
                raise stale(1, 0) from None
        else:

            def decide(doc: Document, version: int) -> Change:
                if doc.get("rules") == rules:
                    return Change(None)
                previous = list(doc.get("rules") or [])
                return Change({**doc, **fields}, [event(previous, version)])

            doc = await self.store.store.mutate(ev.SCORING_RULES_ID, decide, expected_version=expected_version)
            if doc["version"] == current["version"]:
                return doc  # the same rules again: nothing changed, nothing to re-score
        await self._restart_rescore()
        return doc

    async def rules_history(self, event_log: Any) -> list[HistoryEntry]:
        return await history(event_log, await self.rules(), summarise)

    # --- the model ---------------------------------------------------------------------------------

    async def model(self) -> Document:
        doc = await self.store.model()
        if doc is None:
            raise NotFound("No scoring model has been trained yet: POST /v1/leads/scoring/model/train.")
        return doc

    async def _history(self, status: str) -> list[Sample]:
        """The organisation's leads that ended ``status``, read a page at a time along an index
        (live, status, created): every lead, whoever owns it, since the model is the organisation's."""
        samples: list[Sample] = []
        cursor: str | None = None
        now = self.clock.now()
        while len(samples) < self.max_history:
            page = await fetch_page(
                self.repo.leads,
                {"deleted": False, "status": status},
                PageParams(sort="created_at", cursor=cursor, limit=self.history_page),
                sort_fields=lead_rules.SORT_FIELDS,
                default_sort=lead_rules.DEFAULT_SORT,
                projection={"outbox": 0},
                tiebreak=TIEBREAK,
                tie_follows_last=True,
            )
            samples += [Sample(features(facts(d, now)), status == POSITIVE) for d in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        return samples[: self.max_history]

    async def train(self, principal: Principal) -> Document:
        samples = await self._history(POSITIVE) + await self._history(NEGATIVE)
        try:
            # CPU work (fitting and cross-validation): off the event loop, so the service keeps serving.
            trained = await asyncio.to_thread(train, samples, self.min_per_class)
        except TooLittleHistory as exc:
            raise Conflict(
                str(exc),
                extra={"converted": exc.counts[POSITIVE], "disqualified": exc.counts[NEGATIVE], "needed": exc.needed},
            ) from None
        now = self.clock.now()
        fields = {**trained.as_document(), "trained_at_ms": epoch_ms(now), "trained_by": principal.user_id}

        def event(version: int) -> Any:
            data = ev.ScoringModelTrained(**trained.as_document(), trained_at=now, trained_by=principal.user_id)
            return self.event(ev.SCORING_MODEL_TRAINED, ev.SCORING_MODEL_ID, data, version, principal.user_id)

        if await self.store.model() is None:
            try:
                doc = await self.store.store.insert({"_id": ev.SCORING_MODEL_ID, **fields}, [event(1)])
            except DuplicateKeyError:
                raise Conflict("Another training finished at the same moment; train again.") from None
        else:
            doc = await self.store.store.mutate(
                ev.SCORING_MODEL_ID, lambda d, version: Change({**d, **fields}, [event(version)])
            )
        await self._restart_rescore()
        return doc

    # --- a lead's score ----------------------------------------------------------------------------

    async def score(self, principal: Principal, lead_id: str) -> tuple[int, RulesScore, ModelScore | None, datetime]:
        doc = await self.leads.get(principal, lead_id)
        now = self.clock.now()
        score, by_rules, by_model = (await self.store.scorer()).score(doc, now)
        return score, by_rules, by_model, now

    # --- the re-score ------------------------------------------------------------------------------

    async def _restart_rescore(self) -> None:
        scorer = await self.store.scorer()
        await self.store.start_job(scorer.basis, epoch_ms(self.clock.now()))

    async def start_if_never_scored(self) -> None:
        """At startup: leads stored before scoring existed carry no score; a first re-score gives them one."""
        if await self.store.job() is None:
            await self._restart_rescore()

    async def rescore_tick(self) -> bool:
        """Work the re-score job for at most ``rescore_pages_per_tick`` pages (if no other replica
        holds it); True when it is done (or there is none)."""
        lease_seconds = 60.0
        job = await self.store.lease(epoch_ms(self.clock.now()), lease_seconds)
        if job is None:
            current = await self.store.job()
            return current is None or bool(current.get("done"))
        scorer = await self.store.scorer()
        basis, after = job["basis"], job.get("after") or None
        for _ in range(self.rescore_pages_per_tick):
            # The live leads in the order they were entered, along the same index as the admin's list.
            page = await fetch_page(
                self.repo.leads,
                {"deleted": False},
                PageParams(sort="created_at", cursor=after, limit=self.rescore_page),
                sort_fields=lead_rules.SORT_FIELDS,
                default_sort=lead_rules.DEFAULT_SORT,
                projection={"outbox": 0},
                tiebreak=TIEBREAK,
                tie_follows_last=True,
            )
            scored = 0
            now = self.clock.now()
            for doc in page.items:
                if doc.get("score_basis") == scorer.basis:
                    continue
                value, _, _ = scorer.score(doc, now)
                result = await self.repo.leads.update_one(
                    {"_id": doc["_id"], "version": doc["version"]},
                    {"$set": {"score": value, "s.score": value, "score_basis": scorer.basis}},
                )
                scored += result.modified_count
            done = page.next_cursor is None
            after = page.next_cursor or after
            if not await self.store.advance(
                basis, after or "", scored, done, epoch_ms(self.clock.now()), lease_seconds
            ):
                return False  # restarted for newer rules or model: the next tick starts over
            if done:
                return True
            await asyncio.sleep(0)
        await self.store.release(basis)
        return False

    async def rescore_until_done(self, max_ticks: int = 10_000) -> None:
        """Work the re-score job to its end (tests, and an operator's one-off)."""
        for _ in range(max_ticks):
            if await self.rescore_tick():
                return
            await asyncio.sleep(0.01)  # another pass may hold the lease: let it work


def summarise(envelope: Any) -> tuple[str, list[dict[str, Any]]]:
    data = envelope.data
    if envelope.type == ev.SCORING_RULES_CHANGED.name:
        change = {"field": "rules", "old": data.get("previous"), "new": data.get("rules")}
        return f"Scoring rules set ({len(data.get('rules') or [])} rules)", [change]
    return envelope.type, []
