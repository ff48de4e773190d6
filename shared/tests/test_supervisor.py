"""The local stack's supervisor on stand-in children: restarts with backoff, leaves the others alone."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from crm_platform.devstack.processes import ManagedProcess, StartupError, wait_until
from crm_platform.devstack.supervisor import Backoff, Supervisor, read_status


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=1, factor=2, cap=5)
    assert [backoff.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def sleeper(name: str, logs: Path) -> ManagedProcess:
    process = ManagedProcess(name, [sys.executable, "-c", "import time; time.sleep(600)"], logs / f"{name}.log")
    process.mark_ready()
    return process


def test_a_dead_child_is_restarted_with_backoff_and_the_others_keep_running(tmp_path: Path) -> None:
    out = io.StringIO()
    status_file = tmp_path / "devstack" / "status.json"
    supervisor = Supervisor(
        Console(file=out, width=200),
        backoff=Backoff(initial=0.2, factor=2, cap=1, stable_after=1.5),
        status_file=status_file,
        poll_seconds=0.05,
    )
    attempts = {"n": 0}

    def flaky_start() -> ManagedProcess:
        attempts["n"] += 1
        if attempts["n"] == 2:  # the second restart fails to start: retried after a longer pause
            raise StartupError("store: MongoDB ping not ready after 30 s")
        return sleeper("store", tmp_path)

    store = sleeper("store", tmp_path)
    other = sleeper("customers", tmp_path)
    supervisor.adopt("store", store, flaky_start)
    supervisor.adopt("customers", other, lambda: sleeper("customers", tmp_path))

    def state() -> dict[str, dict[str, object]]:
        supervisor.tick()
        return supervisor.status()["children"]

    try:
        for death in (1, 2, 3):
            if death == 3:
                time.sleep(1.6)  # up longer than stable_after: the next pause is the first one again
            victim = state()["store"]["pid"]
            assert isinstance(victim, int)
            os.killpg(victim, signal.SIGKILL)
            wait_until(
                "store restarted",
                lambda v=victim: state()["store"]["state"] == "running" and state()["store"]["pid"] != v,
                timeout=10,
            )
            assert (
                other.is_running()
                and state()["customers"]["pid"] == other.pid
                and state()["customers"]["restarts"] == 0
            )
        assert state()["store"]["restarts"] == 4  # three deaths, one failed start in between
        console = out.getvalue()
        assert "store killed by SIGKILL (code -9); restarting in 0.2 s (restart 1)" in console
        assert "store killed by SIGKILL (code -9); restarting in 0.4 s (restart 2)" in console  # again at once
        assert "did not come back (store: MongoDB ping not ready after 30 s); retrying in 0.8 s (restart 3)" in console
        assert "store killed by SIGKILL (code -9); restarting in 0.2 s (restart 4)" in console  # after a stable run
        written = read_status(status_file)
        assert written is not None and written["running"] is True
        assert written["children"]["store"]["last_exit"] == "killed by SIGKILL (code -9)"
    finally:
        supervisor.stop_all()
    assert not store.is_running() and not other.is_running()
    assert all(child.process is None or not child.process.is_running() for child in supervisor.children)
    assert read_status(status_file)["running"] is False  # type: ignore[index]
