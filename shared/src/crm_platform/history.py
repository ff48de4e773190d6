"""Field-level history (查看历史) of an aggregate, read from its own events.

The outbox relay archives every published event in the service's event log
(``kit.event_log``); events still waiting in the aggregate's outbox are shown too,
so a change appears in the history the moment it is written. A service supplies
``summarise(event) -> (summary, changes)`` that turns one of its event types into a
sentence and a list of ``{field, old, new}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.clock import as_utc
from crm_platform.events import EventEnvelope

Document = dict[str, Any]
Summarise = Callable[[EventEnvelope], tuple[str, list[dict[str, Any]]]]


class HistoryEntry(BaseModel):
    event_id: str
    type: str
    version: int
    at: datetime
    actor: str | None = None
    summary: str
    changes: list[dict[str, Any]] = []
    published: bool = True


async def history(
    event_log: AsyncCollection[Document], doc: Document, summarise: Summarise, *, limit: int = 500
) -> list[HistoryEntry]:
    """Every event of the aggregate ``doc`` (published or pending), oldest first."""
    entries: dict[str, tuple[EventEnvelope, bool]] = {}
    async for stored in event_log.find({"subject": doc["_id"]}).sort([("time", ASCENDING)]).limit(limit):
        stored.pop("_id", None)
        stored.pop("topic", None)
        stored["time"] = as_utc(stored["time"])
        envelope = EventEnvelope.model_validate(stored)
        entries[envelope.id] = (envelope, True)
    for pending in doc.get("outbox") or []:
        envelope = EventEnvelope.model_validate(pending["envelope"])
        entries.setdefault(envelope.id, (envelope, False))
    out: list[HistoryEntry] = []
    for envelope, published in sorted(entries.values(), key=lambda e: (e[0].aggregateversion, e[0].time)):
        summary, changes = summarise(envelope)
        out.append(
            HistoryEntry(
                event_id=envelope.id,
                type=envelope.type,
                version=envelope.aggregateversion,
                at=envelope.time,
                actor=envelope.actor,
                summary=summary,
                changes=changes,
                published=published,
            )
        )
    return out
