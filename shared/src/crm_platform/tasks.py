"""Stopping a background task for sure.

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the same
loop iteration as the awaited future's result (fixed in 3.12): a relay woken by a write
just as the service stops went on polling, and the shutdown that awaited it hung for
ever. So a stop cancels again until the task has really ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], *, recancel_every: float = 0.5) -> None:
    task.cancel()
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=recancel_every)
        if not done:
            task.cancel()  # the first cancellation was swallowed: ask again
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
