"""Refreshing the deadline snapshot stored on the clocks after a rule change, in the background.

Nothing decides from the stored snapshot (the scheduler, the previews and the countdown work
deadlines out from the rules of the moment), so nothing waits for this: at 100k customers it
is a minute or two of whole-document writes on the embedded store. A refresh lost to a crash
is redone at the next start-up (a full pass, in the background).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)
Recompute = Callable[[str | None], Awaitable[int]]


class Recomputes:
    def __init__(self, recompute: Recompute) -> None:
        self._recompute = recompute
        self._tasks: set[asyncio.Task[int]] = set()

    async def request(self, department_path: str | None) -> None:
        """Start recomputing the deadlines under ``department_path`` (None: all)."""
        task = asyncio.create_task(self._run(department_path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, department_path: str | None) -> int:
        try:
            return await self._recompute(department_path)
        except Exception as exc:  # logged; the next start-up's full pass redoes it
            log.error("deadline recompute failed", department_path=department_path, error=str(exc))
            return 0

    async def settle(self) -> None:
        """Wait for the recomputes started so far."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
