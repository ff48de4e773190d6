"""Helpers for the services' query-plan tests (see :mod:`crm_platform.testing.query_plans`).

A plan test starts a service against the traced store, feeds its consumer handlers real
envelopes built with the contracts, and asserts what the store ran was index lookups.
Envelopes are built by the feeds (:class:`CustomerFeed`, :class:`EventFeed`) with a
:class:`KeepingProducer`, which keeps the records instead of sending them, so a test
hands each event to the handlers itself (:func:`deliver`), in order and exactly when it
wants, while the service's own Kafka consumer sees nothing of it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from crm_platform.events import EventEnvelope
from crm_platform.metrics import STORE_COMMANDS
from crm_platform.storemetrics import ORIGIN
from crm_platform.testing.query_plans import Capture


class KeepingProducer:
    """Stands in for an AIOKafkaProducer in the feeds: records are built, never sent."""

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> None:
        return None


async def deliver(app: Any, envelope: EventEnvelope, origin: str = "consumer") -> int:
    """Hand ``envelope`` to every handler the service's consumers register for its type, as a
    consumer would (origin ``consumer``); returns how many handlers took it. Another ``origin``
    counts its store commands apart from every other consumer of the process (a full test run
    has many, catching up in the background): :func:`origin_commands`."""
    taken = 0
    for consumer in app.state.kit.consumers:
        handler = consumer.handlers.get(envelope.type)
        if handler is not None:
            token = ORIGIN.set(origin)
            try:
                await handler(envelope)
            finally:
                ORIGIN.reset(token)
            taken += 1
    return taken


@asynccontextmanager
async def consumers_paused(app: Any, settle: float = 0.5) -> AsyncIterator[None]:
    """The service's own Kafka consumers fetch nothing while the block runs (their partitions
    paused, then resumed), so a capture holds what the test hands to the handlers itself and not
    what other tests of a full run publish on the same topics meanwhile. ``settle``: time for a
    record already being handled to finish first."""
    async with _paused(app.state.kit.consumers, settle):
        yield


@asynccontextmanager
async def other_copies_paused(app: Any, settle: float = 0.5) -> AsyncIterator[None]:
    """Every other copy of ``app``'s service in this process fetches nothing while the block runs.

    A test session runs many in-process copies of a service, each with its own database and its
    own consumer group, so each gets every record. A command that one copy alone can answer (a
    lead's conversion into a customer only this copy's database holds) would otherwise be
    answered first, and refused, by another. In a deployment a service's replicas share one
    consumer group, and one of them takes each command: this gives the test that. The other
    copies take the records once the block ends; answers that late are stale by then."""
    from crm_platform.service import ServiceKit

    kit = app.state.kit
    name = kit.settings.service_name
    others = [o for o in gc.get_objects() if isinstance(o, ServiceKit) and o is not kit]
    consumers = [c for other in others if other.settings.service_name == name for c in other.consumers]
    async with _paused(consumers, settle):
        yield


@asynccontextmanager
async def _paused(consumers: list[Any], settle: float) -> AsyncIterator[None]:
    paused: list[tuple[Any, list[Any]]] = []
    for consumer in consumers:
        client = getattr(consumer.subscriber, "consumer", None)
        if client is not None:
            partitions = list(client.assignment())
            client.pause(*partitions)
            paused.append((client, partitions))
    await asyncio.sleep(settle)
    try:
        yield
    finally:
        for client, partitions in paused:
            held = client.assignment()  # a partition the group took away meanwhile is not resumed
            client.resume(*(p for p in partitions if p in held))


def consumer_commands() -> float:
    """Store commands this process has sent on behalf of consumers so far (every command name)."""
    return origin_commands("consumer")


def origin_commands(origin: str) -> float:
    """Store commands this process has sent for ``origin`` (``http``, ``relay``, ``consumer``…) so far."""
    total = 0.0
    for metric in STORE_COMMANDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("origin") == origin:
                total += sample.value
    return total


async def settled_commands(origin: str, quiet: float = 0.3, timeout: float = 5.0) -> float:
    """:func:`origin_commands` once it has not moved for ``quiet`` seconds (at most ``timeout``):
    work an earlier request left behind (a lease given back just after its answer, a task it
    started) is counted before a test takes its starting figure, not inside its measure."""
    deadline = time.monotonic() + timeout
    value = origin_commands(origin)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = origin_commands(origin)
        if now == value:
            return now
        value = now
    return value


def assert_indexed(
    capture: Capture, *, sorted_results: bool = False, row_filters: bool = True, unkeyed_sorts: bool = False
) -> None:
    """No statement of ``capture`` grows with its collection: no scan, no whole-index walk, and (by
    default) no per-row filter, an equality the embedded store compiles as an array test because
    its field has no ``idx_<field>`` index, which walks every row the index prefix finds (a list
    page's cost then grows with the data). ``sorted_results``/``unkeyed_sorts`` also refuse sorts."""
    assert capture.statements, "nothing was recorded: the capture did not see the store"
    scans = capture.scans(sorted_results=sorted_results, row_filters=row_filters, unkeyed_sorts=unkeyed_sorts)
    report = capture.report(sorted_results=sorted_results, row_filters=row_filters, unkeyed_sorts=unkeyed_sorts)
    assert not scans, f"{len(scans)} statements scan:\n" + report


def keys_before_epoch_ms(keys: dict[str, Any]) -> dict[str, Any]:
    """Sort keys as stored before :mod:`crm_platform.sortkeys` (a test's "old record"): moments
    (``*_at``) as dates, no shape version (``v``) and no copy of the id (``id``)."""
    return {
        k: datetime.fromtimestamp(v / 1000, UTC) if k.endswith("_at") and isinstance(v, int) else v
        for k, v in keys.items()
        if k not in ("v", "id")
    }


async def start_and_stop(app: Any) -> None:
    """Run a service instance's start-up (indexes, one-off upgrades) and shut it down again: a
    second replica, or the service restarted, on the same database."""
    async with app.router.lifespan_context(app):
        pass
