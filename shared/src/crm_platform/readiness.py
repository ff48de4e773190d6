"""/readyz's checks run side by side under one deadline that nothing they do can stretch.

An orchestrator (or `crm up`) asks /readyz precisely while something is down or the service is
busy catching up, and needs its answer within the time it waits for one. Bounding each check with
``asyncio.wait_for`` is not enough: ``wait_for`` returns only once the cancelled check has finished
cancelling, and a check's clean-up may itself wait (a store client closing a connection behind a
backlog, a broker client leaving a request). Here the deadline is the probe's own: when it comes,
checks still running are cancelled and left to finish their clean-up on their own, and the probe
answers with what it has, those checks counted as missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Missed:
    """A check that raised (``error``) or had not answered when the deadline came (``error`` None)."""

    error: BaseException | None = None

    def reason(self, limit: float) -> str:
        """Why, short (it goes into /readyz)."""
        if self.error is None or isinstance(self.error, TimeoutError):
            return f"no answer within {limit:g} s"
        return f"{type(self.error).__name__}: {str(self.error)[:200]}"


async def within(limit: float, checks: Mapping[Hashable, Awaitable[Any]]) -> dict[Hashable, Any]:
    """Each check's answer, or :class:`Missed` for one that failed or did not answer in ``limit`` s.

    All start at once and the whole takes at most ``limit`` seconds (plus the event loop's own
    delay): checks still running then are cancelled and not waited for.
    """
    tasks = {key: asyncio.ensure_future(check) for key, check in checks.items()}
    try:
        if tasks:
            await asyncio.wait(tasks.values(), timeout=limit)
    except BaseException:  # the request itself cancelled: take its checks with it
        _abandon(tasks.values())
        raise
    answers: dict[Hashable, Any] = {}
    for key, task in tasks.items():
        if not task.done():
            _abandon([task])
            answers[key] = Missed()
        elif task.cancelled():
            answers[key] = Missed()
        elif task.exception() is not None:
            answers[key] = Missed(task.exception())
        else:
            answers[key] = task.result()
    return answers


def _abandon(tasks: Any) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
            task.add_done_callback(_collect)


def _collect(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned check's outcome (so asyncio does not report it as never retrieved)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("readiness check failed after its deadline", error=repr(task.exception()))
