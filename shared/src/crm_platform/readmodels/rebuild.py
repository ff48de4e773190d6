"""Rebuilding a service's read copies of customers, opportunities and users from the topics.

``crm rebuild-copies SERVICE`` (the service stopped): each read copy the service declared
(``kit.read_copy``) is dropped and refilled by applying, in each partition's order, every event
of its topic up to the offsets the service's consumer group has committed, with a copy of the
read model that has no hooks. Up to the committed offsets, not to the end of the topic: what
the group has not consumed yet, the service consumes when it starts, hooks included (a merge
moving opportunities, a deleted customer hiding them), exactly as it would have without the
rebuild; the copies then hold what they would hold had they never been lost or damaged.

The topics must keep their whole history for this (``retention.ms=-1``): an event deleted by
retention is missing from the rebuilt copy. Reporting and the pool's clocks have rebuilds of
their own (``crm-reporting rebuild``, ``crm-pool rebuild``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.consumer import EventConsumer, Handler
from crm_platform.contracts import customers, directory, pipeline
from crm_platform.events import decode_event
from crm_platform.kafka_offsets import committed_offsets, records_between
from crm_platform.readmodels.customers import CustomerReadModel
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.readmodels.opportunities import OpportunityReadModel

log = structlog.get_logger(__name__)

Document = dict[str, Any]


class OwnReadCopy(Protocol):
    """A read copy a service defines itself (e.g. the pipeline's copy of the sales catalogue),
    rebuilt like the shared ones: it names its topic and collections and gives a copy of itself
    without hooks (see :func:`_fresh`)."""

    def handlers(self) -> Mapping[str, Handler]: ...

    async def ensure_indexes(self) -> None: ...

    def rebuild_parts(self) -> tuple[OwnReadCopy, str, list[AsyncCollection[Document]]]:
        """(a copy without hooks, its topic, its collections)."""
        ...


ReadCopy = CustomerReadModel | OpportunityReadModel | DirectoryReadModel | OwnReadCopy


def _fresh(model: ReadCopy) -> tuple[ReadCopy, str, list[AsyncCollection[Document]]]:
    """A copy of ``model`` over the same collections without hooks, its topic and its collections."""
    if isinstance(model, CustomerReadModel):
        return CustomerReadModel(model.collection), customers.TOPIC, [model.collection]
    if isinstance(model, OpportunityReadModel):
        return OpportunityReadModel(model.collection), pipeline.TOPIC, [model.collection]
    if isinstance(model, DirectoryReadModel):
        return DirectoryReadModel(model.users, model.departments), directory.TOPIC, [model.users, model.departments]
    return model.rebuild_parts()


def group_of(model: ReadCopy, consumers: Sequence[EventConsumer]) -> str:
    """The consumer group that feeds ``model`` (the one whose handlers take its event types)."""
    types = set(model.handlers())
    for consumer in consumers:
        if types <= set(consumer.handlers):
            return consumer.group_id
    raise LookupError(f"no consumer group of this service applies {sorted(types)[:3]}…")


async def rebuild_read_copies(
    bootstrap: str, copies: Sequence[ReadCopy], consumers: Sequence[EventConsumer]
) -> dict[str, int]:
    """Drop and refill ``copies`` up to their groups' committed offsets; returns the events applied
    per collection (counting the documents would read them all again)."""
    counts: dict[str, int] = {}
    for model in copies:
        fresh, topic, collections = _fresh(model)
        group = group_of(model, consumers)
        committed = await committed_offsets(bootstrap, group, [topic])
        end = {t: {p: o for p, o in parts.items() if o} for t, parts in committed.items()}
        for collection in collections:
            await collection.drop()
        await fresh.ensure_indexes()
        handlers: dict[str, Handler] = dict(fresh.handlers())
        applied = 0
        async for record in records_between(bootstrap, {}, end):
            try:
                event = decode_event(record.value)
            except Exception:  # what the consumer would have dead-lettered
                continue
            handler = handlers.get(event.type)
            if handler is not None:
                await handler(event)
                applied += 1
        counts["+".join(c.name for c in collections)] = applied
        log.info("read copy rebuilt", topic=topic, group=group, up_to=end)
    return counts
