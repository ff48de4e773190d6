"""Rebuild the read models from the topics without taking the reports down.

A second copy of the projection, under a fresh consumer group, reads every topic from
offset 0 into a new generation of collections while the reports keep reading the
active one. Once that copy has caught up, the ``meta`` document switches the active
generation; the running projection (which re-reads it every
``generation_refresh_seconds``) then writes into the new one as well, the copy
catches up once more so nothing that arrived meanwhile is missing, and the old
generation is dropped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import TopicPartition

from crm_platform.consumer import EventConsumer


@dataclass(frozen=True)
class RebuildResult:
    generation: int
    previous: int
    facts: int
    seconds: float


async def caught_up(consumers: list[EventConsumer], timeout: float) -> None:
    """Wait until every consumer is assigned and has committed up to the end offsets seen now."""
    deadline = time.monotonic() + timeout
    while not all(c.assigned() for c in consumers):
        if time.monotonic() > deadline:
            raise TimeoutError("the rebuild consumers got no partitions")
        await asyncio.sleep(0.1)
    targets: list[tuple[Any, dict[TopicPartition, int]]] = []
    for c in consumers:
        raw: Any = c.subscriber.consumer  # the aiokafka consumer, present once assigned
        targets.append((raw, await raw.end_offsets(list(raw.assignment()))))
    for raw, ends in targets:
        for tp, end in ends.items():
            while end > 0:
                committed = await raw.committed(tp)
                if committed is not None and committed >= end:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the rebuild did not reach the end of {tp.topic}[{tp.partition}]")
                await asyncio.sleep(0.1)
