"""The failed-sign-in throttle's arithmetic, driven by a ManualClock (no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_directory.domain.throttle import (
    ThrottlePolicy,
    ThrottleState,
    after_failure,
    is_forgotten,
    retry_after,
)
from crm_platform.clock import ManualClock

POLICY = ThrottlePolicy(max_failures=5, window=900, base_delay=30, max_delay=900)


def fail(state: ThrottleState, clock: ManualClock, times: int = 1) -> ThrottleState:
    for _ in range(times):
        state = after_failure(state, clock.now().timestamp(), POLICY)
    return state


def now(clock: ManualClock) -> float:
    return clock.now().timestamp()


def test_four_failures_do_not_block_the_fifth_does():
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    state = fail(ThrottleState(), clock, 4)
    assert retry_after(state, now(clock)) is None
    state = fail(state, clock)
    assert retry_after(state, now(clock)) == 30


def test_the_delay_doubles_with_each_further_failure_up_to_the_cap():
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    state = fail(ThrottleState(), clock, 5)
    seen = []
    for _ in range(8):
        wait = retry_after(state, now(clock))
        assert wait is not None
        seen.append(wait)
        clock.advance(timedelta(seconds=wait))
        assert retry_after(state, now(clock)) is None, "the block ends when Retry-After says"
        state = fail(state, clock)
    assert seen == [30, 60, 120, 240, 480, 900, 900, 900]


def test_failures_spread_over_more_than_the_window_never_block():
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    state = ThrottleState()
    for _ in range(12):
        state = fail(state, clock)
        clock.advance(timedelta(minutes=4))  # 4 failures per 16 minutes
        assert retry_after(state, now(clock)) is None
    assert state.failures < 5


def test_a_quiet_window_after_the_block_forgets_everything():
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    state = fail(ThrottleState(), clock, 7)  # blocked at the 5th; the 6th and 7th raise the strikes
    assert state.strikes == 3
    clock.advance(timedelta(seconds=state.blocked_until - now(clock)) + timedelta(minutes=15))
    assert is_forgotten(state, now(clock), POLICY)
    state = fail(state, clock)
    assert (state.failures, state.strikes) == (1, 0)
    assert retry_after(state, now(clock)) is None


def test_retry_after_is_rounded_up_to_whole_seconds():
    state = ThrottleState(failures=5, blocked_until=100.2, strikes=1)
    assert retry_after(state, 99.9) == 1
    assert retry_after(state, 70.0) == 31
    assert retry_after(state, 100.2) is None


def test_delay_is_capped_even_for_absurd_strike_counts():
    assert POLICY.delay(0) == 0
    assert POLICY.delay(1) == 30
    assert POLICY.delay(10_000) == 900
