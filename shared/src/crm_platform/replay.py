"""Replaying topics into a fresh copy of a read model: knowing when the copy has caught up.

A rebuild starts a second consumer group at offset 0; ``caught_up`` waits until every
consumer of it has partitions and has committed up to the end offsets seen when it
was called (events produced later are the live projection's, or the next call's).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.structs import TopicPartition

from crm_platform.consumer import EventConsumer


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
