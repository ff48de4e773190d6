"""Slowing down repeated failed sign-ins: the arithmetic, without I/O or a clock of its own.

One counter per key ("email:<address>", "ip:<address>"). After ``max_failures``
failures within ``window`` the key is blocked for ``base_delay``; every further
failure (once the block has passed) blocks it again for twice as long, up to
``max_delay``. A key forgets everything after a quiet ``window`` (no failure and no
block in it), and the caller resets an email's key on a successful sign-in.
Attempts while blocked are refused before the password is even checked, and do
not count: the block cannot be extended by hammering it.

Times are epoch seconds (floats): they compare the same on every store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int = 5
    window: float = 15 * 60
    base_delay: float = 30
    max_delay: float = 15 * 60

    def delay(self, strike: int) -> float:
        """How long the ``strike``-th block (1, 2, ...) lasts: doubling, capped."""
        if strike < 1:
            return 0.0
        return float(min(self.base_delay * 2 ** min(strike - 1, 62), self.max_delay))


@dataclass(frozen=True)
class ThrottleState:
    failures: int = 0
    window_started_at: float = 0.0
    last_failure_at: float = 0.0
    blocked_until: float = 0.0
    strikes: int = 0


def retry_after(state: ThrottleState, now: float) -> int | None:
    """Whole seconds until the key may try again, or None if it may try now."""
    if state.blocked_until > now:
        return max(1, math.ceil(state.blocked_until - now))
    return None


def is_forgotten(state: ThrottleState, now: float, policy: ThrottlePolicy) -> bool:
    """A quiet window since the last failure and since the end of the last block."""
    return now - max(state.last_failure_at, state.blocked_until) >= policy.window


def after_failure(state: ThrottleState, now: float, policy: ThrottlePolicy) -> ThrottleState:
    """The key's state after one more failed attempt at ``now`` (not while blocked)."""
    if state.failures == 0 or is_forgotten(state, now, policy):
        state = ThrottleState(window_started_at=now)
    elif state.strikes == 0 and now - state.window_started_at >= policy.window:
        # Fewer than max_failures in the last window, never blocked: a new window starts.
        state = ThrottleState(window_started_at=now)
    state = replace(state, failures=state.failures + 1, last_failure_at=now)
    if state.failures >= policy.max_failures:
        strikes = state.strikes + 1
        state = replace(state, strikes=strikes, blocked_until=now + policy.delay(strikes))
    return state


def expires_at(state: ThrottleState, policy: ThrottlePolicy) -> float:
    """When the stored state may be thrown away (it would be forgotten by then anyway)."""
    return max(state.last_failure_at, state.blocked_until) + policy.window
