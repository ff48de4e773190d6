"""Where lead scoring keeps its state, and the lead store that stamps each written lead with its score.

``lead_scoring`` holds three documents under fixed ids: the rule set and the trained model (each an
aggregate written through a :class:`VersionedStore`, its events in its own outbox) and the
re-score job (a list cursor over the live leads, with a lease so that one replica works it at a
time). The model is data (coefficients, intercept, feature names), never a pickle.

:class:`ScoredStore` is the leads' :class:`VersionedStore` that sets ``score``, ``s.score`` and
``score_basis`` on every lead it writes (create, patch, status, owner, and any later writer such as
follow-up activity), computed with the rules and model in force, in the same guarded write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_leads.domain.scoring import Rule, Scorer
from crm_platform.clock import Clock
from crm_platform.contracts.leads import SCORING_MODEL_ID, SCORING_RULES_ID
from crm_platform.errors import NotFound
from crm_platform.events import EventEnvelope
from crm_platform.store import Change, Decide, VersionedStore

Document = dict[str, Any]
RESCORE_ID = "lead-rescore"


class ScoringRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.collection: AsyncCollection[Document] = db["lead_scoring"]
        self.store = VersionedStore(self.collection, clock, wake_relay=wake_relay)

    async def rules(self) -> Document | None:
        return await self.collection.find_one({"_id": SCORING_RULES_ID})

    async def model(self) -> Document | None:
        return await self.collection.find_one({"_id": SCORING_MODEL_ID})

    async def scorer(self) -> Scorer:
        """The rules and model in force (two ``_id`` look-ups)."""
        rules, model = await self.rules(), await self.model()
        return Scorer(
            rules=[Rule.model_validate(r) for r in (rules or {}).get("rules", [])],
            model=model,
            rules_version=int((rules or {}).get("version", 0)),
            model_version=int((model or {}).get("version", 0)),
        )

    # --- the re-score job ---------------------------------------------------------------------------

    async def job(self) -> Document | None:
        return await self.collection.find_one({"_id": RESCORE_ID})

    async def start_job(self, basis: str, now_ms: int) -> None:
        """(Re)start the re-score from the first lead, for ``basis``."""
        await self.collection.update_one(
            {"_id": RESCORE_ID},
            {
                # The lease is freed too: a pass still working the old basis stops at its next page
                # (its progress no longer matches), and the next tick of any replica starts over.
                "$set": {
                    "basis": basis,
                    "after": "",
                    "done": False,
                    "started_at_ms": now_ms,
                    "scored": 0,
                    "lease_until_ms": 0,
                },
            },
            upsert=True,
        )

    async def lease(self, now_ms: int, seconds: float) -> Document | None:
        """Take the job for ``seconds`` unless another replica holds it; the job, or None."""
        found: Document | None = await self.collection.find_one_and_update(
            {"_id": RESCORE_ID, "done": False, "lease_until_ms": {"$lt": now_ms}},
            {"$set": {"lease_until_ms": now_ms + int(seconds * 1000)}},
            return_document=ReturnDocument.AFTER,
        )
        return found

    async def advance(self, basis: str, after: str, scored: int, done: bool, now_ms: int, seconds: float) -> bool:
        """Record progress (and renew the lease); False when the job was restarted for another basis."""
        result = await self.collection.update_one(
            {"_id": RESCORE_ID, "basis": basis},
            {
                "$set": {"after": after, "done": done, "lease_until_ms": 0 if done else now_ms + int(seconds * 1000)},
                "$inc": {"scored": scored},
            },
        )
        return bool(result.matched_count)

    async def release(self, basis: str) -> None:
        """Give the lease up between ticks, so the next tick (of any replica) goes on at once."""
        await self.collection.update_one({"_id": RESCORE_ID, "basis": basis}, {"$set": {"lease_until_ms": 0}})


class ScoredStore(VersionedStore):
    """The leads' store: every lead written carries its score, computed in the write that changes it."""

    def __init__(
        self, collection: AsyncCollection[Document], clock: Clock, scorer: Callable[[], Awaitable[Scorer]], **kw: Any
    ) -> None:
        super().__init__(collection, clock, not_found=lambda i: NotFound(f"No lead with id {i}."), **kw)
        self._scorer = scorer
        self._now = clock.now

    async def insert(self, state: Document, events: Sequence[tuple[str, EventEnvelope]]) -> Document:
        (await self._scorer()).stamp(state, self._now())
        return await super().insert(state, events)

    async def mutate(
        self,
        aggregate_id: str,
        decide: Decide,
        *,
        expected_version: int | None = None,
        current: Document | None = None,
    ) -> Document:
        scorer = await self._scorer()

        async def scored(doc: Document, version: int) -> Change:
            decided = decide(doc, version)
            change = await decided if isinstance(decided, Awaitable) else decided
            if change.state is not None:
                scorer.stamp(change.state, self._now())
            return change

        return await super().mutate(aggregate_id, scored, expected_version=expected_version, current=current)
