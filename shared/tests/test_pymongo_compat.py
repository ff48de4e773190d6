"""PyMongo's async condition waits survive cancellation (crm_platform.pymongo_compat).

The stress below is what /readyz and impatient clients do to the topology lock during a store
outage: many tasks wait on the client's condition with short timeouts while their callers are
cancelled at random moments. With PyMongo 4.20's own wait on Python 3.11 the lock ended up held
by nobody-who-will-release-it in 20 runs of 20 (every later ``acquire`` waited forever); with the
fix it is free at the end of every run.
"""

from __future__ import annotations

import asyncio
import random

import pymongo.asynchronous.pool
import pymongo.asynchronous.topology
import pymongo.lock
from pymongo.lock import _async_create_condition, _async_create_lock

import crm_platform  # noqa: F401  (installs the fix, as every service does by importing it)
from crm_platform import pymongo_compat


def test_pymongo_uses_the_fixed_wait_where_it_is_needed() -> None:
    if not pymongo_compat.needed():
        return  # Python 3.12+: asyncio.wait_for already waits in the caller's task
    for module in (pymongo.lock, pymongo.asynchronous.pool, pymongo.asynchronous.topology):
        assert module._async_cond_wait is pymongo_compat.cond_wait, module.__name__


async def _stress(seed: int) -> bool:
    """True when the lock can still be taken after cancelled waits on it."""
    rng = random.Random(seed)
    lock = _async_create_lock()
    condition = _async_create_condition(lock)
    wait = pymongo.asynchronous.topology._async_cond_wait  # what the topology calls

    async def waiter() -> None:
        async with lock:
            await wait(condition, rng.uniform(0.001, 0.02))
            await asyncio.sleep(rng.uniform(0, 0.003))

    async def notifier() -> None:
        for _ in range(100):
            await asyncio.sleep(0.002)
            async with lock:
                condition.notify_all()

    notifying = asyncio.create_task(notifier())
    callers = []
    for _ in range(200):
        # The caller gives up at a random moment, as /readyz's bounded ping does.
        callers.append(asyncio.create_task(asyncio.wait_for(waiter(), rng.uniform(0.001, 0.03))))
        if rng.random() < 0.3:
            await asyncio.sleep(0.001)
    await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), timeout=10)
    await notifying
    try:
        await asyncio.wait_for(lock.acquire(), timeout=2)
    except TimeoutError:
        return False
    lock.release()
    return True


async def test_cancelled_waits_leave_the_lock_free() -> None:
    for seed in range(5):
        assert await _stress(seed), f"lock left held after cancelled waits (seed {seed})"
