"""Topic end offsets, consumer groups' committed offsets, and reading a topic between offsets.

What a backup records next to a service's database and what a restore sets back. Offsets are
kept as ``{topic: {partition: offset}}`` with the partition as a string, so they go into a JSON
manifest as they are. Plain aiokafka clients; only setting a group's offsets joins the group
(see :func:`set_committed_offsets`), and it succeeds only once no other member of it runs,
which is what a restore wants.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

Offsets = dict[str, dict[str, int]]  # topic -> partition (as a string) -> offset
CommittedOffsets = dict[str, dict[str, int | None]]  # None: the group has committed nothing there


async def _started(bootstrap: str, group_id: str | None = None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False, request_timeout_ms=10_000
    )
    await consumer.start()
    return consumer


async def _partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    known = await consumer.topics()  # fetches the cluster's metadata
    out: list[TopicPartition] = []
    for topic in topics:
        if topic not in known:
            continue  # never created: nothing was ever published or consumed there
        out += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    return out


def _nested(values: dict[TopicPartition, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for tp, value in sorted(values.items()):
        out.setdefault(tp.topic, {})[str(tp.partition)] = value
    return out


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> Offsets:
    """The offset the next record of each partition of ``topics`` will get."""
    consumer = await _started(bootstrap)
    try:
        parts = await _partitions(consumer, topics)
        ends = await consumer.end_offsets(parts) if parts else {}
        return _nested({tp: int(o) for tp, o in ends.items()})
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group_id: str, topics: Iterable[str]) -> CommittedOffsets:
    """What ``group_id`` has committed on each partition of ``topics`` (None where nothing)."""
    consumer = await _started(bootstrap, group_id)
    try:
        found: dict[TopicPartition, int | None] = {}
        for tp in await _partitions(consumer, topics):
            committed = await consumer.committed(tp)
            found[tp] = None if committed is None or committed < 0 else int(committed)
        return _nested(found)
    finally:
        await consumer.stop()


class GroupBusy(RuntimeError):
    """Another member of the consumer group holds some of its partitions: a consumer of it runs."""


async def set_committed_offsets(
    bootstrap: str, group_id: str, offsets: CommittedOffsets, wait_seconds: float = 60.0
) -> dict[str, dict[str, int]]:
    """Commit ``offsets`` for ``group_id``; where an offset is None, the partition's beginning
    (what the group's ``auto_offset_reset=earliest`` would have started from). Returns what was
    committed.

    The commit is made as a member of the group, so every broker takes it (the embedded one
    refuses a commit from outside a group it knows): this joins the group and must be given
    every partition of its topics. A member that still runs keeps some of them, and after
    ``wait_seconds`` :class:`GroupBusy` is raised with nothing committed. (A member stopped
    without leaving the group is dropped by the broker after its session timeout, 10 s.) Not
    tested against a member that runs: on the embedded broker such an attempt hung.
    """
    probe = await _started(bootstrap)
    try:
        parts = await _partitions(probe, offsets)
        wanted = {tp: offsets[tp.topic].get(str(tp.partition)) for tp in parts}
        beginnings = await probe.beginning_offsets([tp for tp, o in wanted.items() if o is None]) if parts else {}
    finally:
        await probe.stop()
    final = {tp: int(o) if o is not None else int(beginnings[tp]) for tp, o in wanted.items()}
    if not final:
        return {}
    member = AIOKafkaConsumer(
        *sorted({tp.topic for tp in final}),
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
    )
    await member.start()
    try:
        deadline = time.monotonic() + wait_seconds
        while set(member.assignment()) != set(final):
            if time.monotonic() > deadline:
                missing = sorted(f"{tp.topic}[{tp.partition}]" for tp in set(final) - set(member.assignment()))
                raise GroupBusy(f"another member of {group_id} holds {', '.join(missing)}")
            await member.getmany(timeout_ms=200)  # lets the group assign; what it fetches is not used
        await member.commit({tp: OffsetAndMetadata(o, "") for tp, o in final.items()})
        return _nested(final)
    finally:
        await member.stop()


@dataclass(frozen=True)
class TailRecord:
    topic: str
    partition: int
    offset: int
    value: bytes


async def records_between(
    bootstrap: str, start: Offsets, end: Offsets, timeout: float = 300.0
) -> AsyncIterator[TailRecord]:
    """Every record from ``start`` (inclusive, 0 where absent) to ``end`` (exclusive), each
    partition in order; TimeoutError if they do not all arrive within ``timeout`` seconds."""
    bounds = {
        TopicPartition(topic, int(p)): (start.get(topic, {}).get(p, 0), stop)
        for topic, parts in end.items()
        for p, stop in parts.items()
    }
    remaining = {tp: b for tp, b in bounds.items() if b[1] > b[0]}
    if not remaining:
        return
    consumer = await _started(bootstrap)
    try:
        consumer.assign(list(remaining))
        for tp, (first, _) in remaining.items():
            consumer.seek(tp, first)
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"records up to {end} did not arrive within {timeout:g} s")
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                stop = remaining.get(tp, (0, 0))[1]
                for r in records:
                    if r.offset < stop:
                        yield TailRecord(r.topic, r.partition, r.offset, r.value or b"")
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp][1]:
                    del remaining[tp]
    finally:
        await consumer.stop()


async def read_between(bootstrap: str, start: Offsets, end: Offsets) -> list[TailRecord]:
    """:func:`records_between`, as a list (for a short stretch of a topic)."""
    return [r async for r in records_between(bootstrap, start, end)]
