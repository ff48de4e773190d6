"""Password hashing off the event loop, at most two at a time.

argon2 is deliberately slow and memory-hungry. Run in threads without a bound, twenty
sign-ups or sign-ins at once took both cores from the event loop, and the service's
/readyz went unanswered for 30 s under load; two at a time keeps a core for everything else
(requests beyond that wait their turn, which is what a slow hash is for).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CONCURRENT_HASHES = 2
# One semaphore per event loop: a semaphore belongs to the loop it first waits on, and the
# command line (create-admin) runs its own loop beside the service's in tests.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def off_loop(work: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(CONCURRENT_HASHES)
    async with slots:
        return await asyncio.to_thread(work, *args)
