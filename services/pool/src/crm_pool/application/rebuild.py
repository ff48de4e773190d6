"""Rebuild the clocks from the topics: reset the projections, replay from the beginning.

A second copy of the service's consumers reads every topic from offset 0 under a new
consumer group (``consumer_group_suffix``), so the running service keeps its own
partitions and offsets meanwhile; both apply the same events at most once per clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.structs import TopicPartition

from crm_platform.consumer import EventConsumer


async def caught_up(consumers: list[EventConsumer], timeout: float) -> None:
    """Wait until every consumer is assigned and has committed up to the end offsets seen once assigned."""
    deadline = time.monotonic() + timeout
    while not all(c.assigned() for c in consumers):
        if time.monotonic() > deadline:
            raise TimeoutError("the rebuild consumers got no partitions")
        await asyncio.sleep(0.1)
    targets: list[tuple[Any, dict[TopicPartition, int]]] = []
    for c in consumers:
        raw: Any = c.subscriber.consumer  # the aiokafka consumer, present once assigned
        partitions = list(raw.assignment())
        targets.append((raw, await raw.end_offsets(partitions)))
    for raw, ends in targets:
        for tp, end in ends.items():
            while end > 0:
                committed = await raw.committed(tp)
                if committed is not None and committed >= end:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the rebuild did not reach the end of {tp.topic}[{tp.partition}]")
                await asyncio.sleep(0.1)
