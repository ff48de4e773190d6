"""The per-customer clock, built only from events.

Fed by three topics: customers (owner, since when, department, tags, status, through
the shared :class:`CustomerReadModel` and its ``changed`` hook), pipeline (open
opportunities and their stages, the last won deal, stage positions) and interactions
(the last follow-up per author). Each event changes one clock at most once (the event
id is recorded in the clock, :func:`apply_once`). The same write stores the two
rule-independent, indexed starting points the scheduler's range queries read
(``touch_ms``, ``won_ms``: see :func:`bases`), and a snapshot of the deadline under the
rules of that moment (refreshed after a rule change; decisions never rely on it).
"""

from __future__ import annotations

import re
import time as monotonic_time
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any

from pymongo import ReplaceOne

from crm_platform.clock import as_utc
from crm_platform.consumer import apply_once
from crm_platform.contracts import customers as customer_events
from crm_platform.contracts import interactions, pipeline
from crm_platform.events import EventEnvelope
from crm_platform.readmodels.customers import CustomerEvent
from crm_platform.readmodels.opportunities import OpportunityReadModel
from crm_pool.adapters.repository import PoolRepository
from crm_pool.domain.recycling import StagePlace, due, ms, schedule

Document = dict[str, Any]

#: Events after which the customer has a new owner (or none): the owner's clock restarts.
OWNERSHIP_EVENTS = {
    customer_events.CUSTOMER_CREATED.name,
    customer_events.OWNER_CHANGED.name,
    customer_events.RELEASED.name,
    customer_events.CLAIMED.name,
}
#: What a rule change can move on a clock (a recompute writes the clocks where one of them changed).
SCHEDULE_FIELDS = (
    "deadline",
    "warn_at",
    "warn_due",
    "release_due",
    "rule_id",
    "reason",
    "exempt",
    "touch_ms",
    "won_ms",
    "parked_until_ms",
)
PROJECTION_FIELDS = (
    "name",
    "owner_id",
    "owner_since",
    "owner_version",
    "department_path",
    "tags",
    "status",
    "in_pool",
    "interactions_by_author",
    "last_won_at",
    "won_deals",
    "open_opportunities",
)


def new_clock(customer_id: str) -> Document:
    return {
        "_id": customer_id,
        "customer_id": customer_id,
        "name": None,
        "owner_id": None,
        "owner_since": None,
        "owner_version": 0,
        "department_path": None,
        "tags": [],
        "status": "active",
        "in_pool": False,
        "interactions_by_author": [],
        "last_won_at": None,
        "won_deals": [],
        "open_opportunities": [],
    }


def won_deals(clock: Document | None) -> list[Document]:
    """The customer's won opportunities and when each was won (``last_won_at`` is the latest)."""
    return list((clock or {}).get("won_deals") or [])


def _start_of(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


class ClockProjection:
    def __init__(self, repo: PoolRepository, opportunities: OpportunityReadModel) -> None:
        self.repo = repo
        self.opportunities = opportunities
        self._cached: tuple[float, list[Document], dict[str, StagePlace]] | None = None

    async def _context(self) -> tuple[list[Document], dict[str, StagePlace]]:
        """The rules and stage positions for the stored deadline snapshot, read at most every 2 s.

        Only that informational snapshot depends on them (decisions work deadlines out from the
        rules of the moment, and a rule change refreshes the snapshot), so a short-lived copy
        spares two reads per event when a backlog is replayed.
        """
        now = monotonic_time.monotonic()
        if self._cached is None or now - self._cached[0] > 2.0:
            self._cached = (now, await self.repo.live_rules(), await self.repo.stage_positions())
        return self._cached[1], self._cached[2]

    async def _apply(
        self,
        customer_id: str,
        event_id: str,
        change: Callable[[Document], Document | None],
        *,
        likely_new: bool = False,
    ) -> bool:
        rules, positions = await self._context()

        def decide(current: Document | None) -> Document | None:
            clock = change(current or new_clock(customer_id))
            return None if clock is None else schedule(clock, due(clock, rules, positions))

        return await apply_once(self.repo.clocks, customer_id, event_id, decide, likely_new=likely_new)

    # --- customers ---------------------------------------------------------------------

    async def on_customer(self, event: CustomerEvent) -> None:
        copy = event.copy
        envelope = event.envelope

        def change(clock: Document) -> Document:
            if copy is not None:
                for name in ("name", "owner_id", "department_path", "status", "in_pool"):
                    clock[name] = copy.get(name)
                clock["tags"] = list(copy.get("tags") or [])
            if envelope.type in OWNERSHIP_EVENTS and envelope.aggregateversion > int(clock.get("owner_version") or 0):
                clock["owner_since"] = ms(envelope.time)
                clock["owner_version"] = envelope.aggregateversion
            return clock

        # A customer's clock is usually new with its created event (an interaction or an
        # opportunity that arrived first may have made it already: then the insert fails over).
        created = envelope.type == customer_events.CUSTOMER_CREATED.name
        await self._apply(event.customer_id, envelope.id, change, likely_new=created)

    # --- interactions -----------------------------------------------------------------------

    async def on_interaction_logged(self, envelope: EventEnvelope) -> None:
        data = interactions.INTERACTION_LOGGED.parse(envelope)
        if data.customer_id is None:
            return  # a follow-up on a lead: it counts for the customer once the conversion moves it
        await self._followed_up(data.customer_id, data.author_id, data.occurred_at, envelope.id)

    async def on_interaction_updated(self, envelope: EventEnvelope) -> None:
        """A lead's follow-up moved to the customer the lead became (customer_id None -> id): it
        counts from now on, as if logged for that customer. Other updates change no clock here."""
        data = interactions.INTERACTION_UPDATED.parse(envelope)
        moved = any(c.field == "customer_id" and c.old is None and c.new for c in data.changes)
        snapshot = data.interaction
        if not moved or snapshot.customer_id is None or snapshot.status != "active":
            return
        await self._followed_up(snapshot.customer_id, snapshot.author_id, snapshot.occurred_at, envelope.id)

    async def _followed_up(self, customer_id: str, author_id: str, occurred_at: datetime, event_id: str) -> None:
        at = ms(as_utc(occurred_at))

        def change(clock: Document) -> Document | None:
            entries = list(clock.get("interactions_by_author") or [])
            mine = next((e for e in entries if e["author_id"] == author_id), None)
            if mine is not None and ms(mine["at"]) >= at:
                return None  # an older follow-up changes nothing
            entries = [e for e in entries if e["author_id"] != author_id] + [{"author_id": author_id, "at": at}]
            clock["interactions_by_author"] = entries
            return clock

        await self._apply(customer_id, event_id, change)

    # --- pipeline ------------------------------------------------------------------------------

    async def on_opportunity(self, envelope: EventEnvelope) -> None:
        """Open opportunities (for exemptions) and won deals (for the no-won-deal rule) of the customer.

        Won deals are kept per opportunity, so a reopened deal stops counting (the customer's
        last won date goes back to its previous won deal, or to none) and a deal that moves
        to another customer in a merge takes its won date along.
        """
        await self.opportunities.store(envelope)
        snapshot = pipeline.OpportunitySnapshot.model_validate(envelope.data["opportunity"])
        opportunity_id = snapshot.opportunity_id
        won_at: datetime | None = None
        if envelope.type == pipeline.OPPORTUNITY_WON.name:
            won_at = ms(as_utc(pipeline.OPPORTUNITY_WON.parse(envelope).move.moved_at))
        elif envelope.type == pipeline.OPPORTUNITY_CUSTOMER_CHANGED.name and snapshot.status == "won":
            previous_id = pipeline.OPPORTUNITY_CUSTOMER_CHANGED.parse(envelope).previous_customer_id
            previous = await self.repo.get_clock(previous_id)
            carried = next((d for d in won_deals(previous) if d["opportunity_id"] == opportunity_id), None)
            won_at = ms(carried["at"]) if carried else _start_of(snapshot.won_on) or ms(envelope.time)
        still_won = snapshot.status == "won"

        customers = [snapshot.customer_id]
        if envelope.type == pipeline.OPPORTUNITY_CUSTOMER_CHANGED.name:
            customers.append(pipeline.OPPORTUNITY_CUSTOMER_CHANGED.parse(envelope).previous_customer_id)
        for customer_id in customers:
            opened = await self._open_opportunities(customer_id)
            mine = customer_id == snapshot.customer_id

            def change(clock: Document, opened: list[Document] = opened, mine: bool = mine) -> Document:
                clock["open_opportunities"] = opened
                deals = [d for d in won_deals(clock) if d["opportunity_id"] != opportunity_id]
                if mine and still_won:
                    kept = next((d for d in won_deals(clock) if d["opportunity_id"] == opportunity_id), None)
                    at = won_at or (ms(kept["at"]) if kept else None)
                    if at is not None:
                        deals.append({"opportunity_id": opportunity_id, "at": at})
                clock["won_deals"] = deals
                clock["last_won_at"] = max((ms(d["at"]) for d in deals), default=None)
                return clock

            await self._apply(customer_id, envelope.id, change)

    async def _open_opportunities(self, customer_id: str) -> list[Document]:
        query = {"customer_id": customer_id, "status": "open", "hidden": False}
        return [
            {"opportunity_id": o["_id"], "stage_id": o.get("stage_id"), "stage_name": o.get("stage_name")}
            async for o in self.opportunities.collection.find(query).sort([("_id", 1)])
        ]

    async def on_pipeline_configured(self, envelope: EventEnvelope) -> None:
        data = pipeline.PIPELINE_CONFIGURED.parse(envelope)
        changed = False
        for stage in data.pipeline.stages:
            current = await self.repo.stages.find_one({"_id": stage.stage_id})
            if current is None or current.get("position") != stage.position:
                changed = True
            await self.repo.stages.replace_one(
                {"_id": stage.stage_id},
                {
                    "_id": stage.stage_id,
                    "pipeline_id": data.pipeline.pipeline_id,
                    "position": stage.position,
                    "kind": stage.kind,
                },
                upsert=True,
            )
        # Exemptions "at or past a stage" depend on the positions, and nothing else does: with no
        # live rule exempting by stage (most installations), a new pipeline recomputes no clock
        # (every clock, about 10 s at 100k). A rule that exempts by stage, when one is made, is a
        # rule change: it recomputes then, with the positions stored here.
        if changed and any(rule.get("exempt_stage_id") for rule in await self.repo.live_rules()):
            await self.repo.unpark_all()
            await self.recompute(None)

    # --- rules changed ----------------------------------------------------------------------

    async def recompute(self, department_path: str | None, batch: int = 1000) -> int:
        """Recompute the due dates of every clock under ``department_path`` (None: all); returns how many moved.

        One pass of a single cursor in natural order, writes in unordered bulks of ``batch``,
        and only for clocks whose dates moved. Paging by ``_id`` instead (``_id > last``,
        sorted) made the embedded store rescan the collection for every page: 100k clocks took
        224 s just to read against 10 s for one cursor.
        """
        self._cached = None  # the events applied from now on use the new rules too
        rules = await self.repo.live_rules()
        positions = await self.repo.stage_positions()
        query: Document = {}
        if department_path:
            query = {"department_path": {"$regex": f"^{re.escape(department_path.rstrip('/'))}(/|$)"}}
        moved = 0
        writes: list[ReplaceOne[Document]] = []
        async for clock in self.repo.clocks.find(query, batch_size=batch):
            before = {k: clock.get(k) for k in SCHEDULE_FIELDS}
            schedule(clock, due(clock, rules, positions))
            if any(clock.get(k) != v for k, v in before.items()):
                rev = int(clock.get("rev", 0))
                # Guarded by rev: a clock an event changed meanwhile was rescheduled by that
                # change, with these same rules (they were stored before the recompute began).
                writes.append(ReplaceOne({"_id": clock["_id"], "rev": rev}, {**clock, "rev": rev + 1}))
            if len(writes) >= batch:
                moved += await self._write(writes)
                writes = []
        if writes:
            moved += await self._write(writes)
        return moved

    async def _write(self, writes: list[ReplaceOne[Document]]) -> int:
        result = await self.repo.clocks.bulk_write(writes, ordered=False)
        return int(result.matched_count)

    async def reset(self) -> None:
        """Forget everything built from events (the rebuild replays it); rules and notices stay."""
        await self.repo.clocks.delete_many({})
        await self.repo.customers.delete_many({})
        await self.repo.opportunities.delete_many({})
        await self.repo.stages.delete_many({})


def projection(clock: Document) -> Document:
    """The part of a clock that comes from events (what a rebuild must reproduce)."""
    return {k: clock.get(k) for k in ("_id", *PROJECTION_FIELDS, "deadline", "rule_id", "reason")}
