"""A fix for PyMongo's async client on Python 3.11: a cancelled wait could leave its lock held.

PyMongo's async topology and pool wait on their condition variables through
``pymongo.lock._async_cond_wait``, which is ``asyncio.wait_for(condition.wait(), timeout)``.
On Python 3.11 ``asyncio.wait_for`` runs the wait as a task of its own. When the caller is
cancelled while that inner task is re-acquiring the lock after its timeout (``Condition.wait``
must hold the lock again before it returns or raises), the caller leaves its ``async with lock``
block, releasing a lock it does not hold, and the inner task acquires the lock a moment later
with nobody left to release it. From then on every operation of the client waits on the
topology lock forever: no server selection, no pool checkout, no monitor update.

We cancel such waits on purpose: /readyz bounds its store ping with a timeout while the store
is down, and a client that gives up cancels its request. Seen in the store-outage test: after
the store's return one service in two runs kept answering 503 "mongo: no answer within 2 s"
and its writes hung until it was restarted (issue 14, point 1). A stress of cancelled waits
(shared/tests/test_pymongo_compat.py) deadlocks PyMongo 4.20's lock in every run on 3.11.

Python 3.12's ``asyncio.wait_for`` is ``asyncio.timeout`` around the awaited coroutine, in the
caller's own task: the lock is re-acquired by the task that leaves the ``async with`` block, so
the release matches. This module gives PyMongo that behaviour on 3.11 (``asyncio.timeout``
exists there); on 3.12 and later it changes nothing.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pymongo.asynchronous.pool
import pymongo.asynchronous.topology
import pymongo.lock

#: The modules that call the waiter by the name they imported it under.
_USERS = (pymongo.lock, pymongo.asynchronous.pool, pymongo.asynchronous.topology)


async def cond_wait(condition: Any, timeout: float | None) -> bool:
    """Wait on ``condition`` (its lock held) for at most ``timeout`` seconds, in this task.

    True when notified, False when the time ran out; either way, and on cancellation too,
    the lock is held again when this returns or raises (``Condition.wait`` sees to that, in
    the same task that will release it).
    """
    try:
        async with asyncio.timeout(timeout):
            return bool(await condition.wait())
    except TimeoutError:
        return False


def needed() -> bool:
    """Whether this interpreter's ``asyncio.wait_for`` runs the awaited coroutine in a task of its own."""
    return sys.version_info < (3, 12)


def install() -> None:
    """Replace PyMongo's condition wait where it is used (idempotent; a no-op from Python 3.12)."""
    if not needed():
        return
    for module in _USERS:
        if hasattr(module, "_async_cond_wait"):
            module._async_cond_wait = cond_wait  # type: ignore[attr-defined]
