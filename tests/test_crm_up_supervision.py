"""`crm up` keeps the stack running when a child dies (issue 14, point 2), as real processes.

The real command (`python -m crm_platform.cli up --memory`) on free ports; then the broker,
the store and one service are SIGKILLed in turn. Each time: the supervisor says so on the
console and restarts that child (a new pid, `restarts` 1 in the status file), every other
child keeps its pid, the services' /readyz name the missing dependency meanwhile, and every
/readyz is 200 again afterwards. Ctrl-C's SIGTERM then stops everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_platform.devstack.processes import free_port, free_port_run, group_is_gone
from crm_platform.devstack.services import SERVICES

pytestmark = pytest.mark.process

START_TIMEOUT = 300.0  # seven services start one after the other; 2 busy cores are slow
RECOVERY_TIMEOUT = 120.0
RESTART_BACKOFF = 4


def http_port_base() -> int:
    """A base whose next seven ports are free (the services take base+1 … base+7), below the
    kernel's ephemeral range, so no client socket takes one before its service binds it."""
    return free_port_run(len(SERVICES) + 1)


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.console_path = data_dir / "console.txt"
        self.base = http_port_base()
        self.status_file = data_dir / "devstack" / "status.json"
        argv = [
            sys.executable,
            "-m",
            "crm_platform.cli",
            "up",
            "--memory",
            "--data-dir",
            os.fspath(data_dir),
            "--kafka-port",
            str(free_port()),
            "--mongo-port",
            str(free_port()),
            "--http-port-base",
            str(self.base),
            "--smtp-port",
            str(free_port()),
            # Long enough for /readyz (2 s per check) to see the broker or store missing: with the
            # default 1 s, Tansu is back before a readiness check has given up on it.
            "--restart-backoff",
            str(RESTART_BACKOFF),
        ]
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.console_path.open("wb") as console:
            # Its own session, as at a terminal; COLUMNS so rich does not wrap the lines we look for.
            self.process = subprocess.Popen(
                argv,
                stdout=console,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "250"},
                start_new_session=True,
            )

    def console(self) -> str:
        return self.console_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_file.read_text())["children"])
        except (OSError, ValueError, KeyError):
            return {}

    def urls(self) -> dict[str, str]:
        return {spec.name: f"http://127.0.0.1:{self.base + i}" for i, spec in enumerate(SERVICES, start=1)}

    def readyz(self) -> dict[str, tuple[int | str, Any]]:
        answers: dict[str, tuple[int | str, Any]] = {}
        for name, url in self.urls().items():
            try:
                response = httpx.get(f"{url}/readyz", timeout=5)
                answers[name] = (response.status_code, response.json())
            except httpx.HTTPError as exc:
                answers[name] = (type(exc).__name__, None)
        return answers

    def wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.process.poll() is not None:
                raise AssertionError(f"crm up exited ({self.process.returncode}) waiting for {what}:\n{self.console()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not within {timeout:.0f} s; status {self.status()}\n{self.console()}")
            time.sleep(0.3)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path / "var")
    try:
        yield stack
    finally:
        if stack.process.poll() is None:
            os.killpg(stack.process.pid, signal.SIGTERM)
            try:
                stack.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(stack.process.pid, signal.SIGKILL)
        for child in stack.status().values():  # never leave a child behind a failed test
            if child.get("pid"):
                try:
                    os.killpg(child["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_crm_up_restarts_the_broker_the_store_and_a_service_and_keeps_the_rest(stack: Stack) -> None:
    def all_ready() -> bool:
        return all(status == 200 for status, _ in stack.readyz().values())

    stack.wait(
        "the stack up",
        lambda: len(stack.status()) == len(SERVICES) + 3 and all_ready(),  # + broker, store, smtp-sink
        START_TIMEOUT,
    )
    assert {"broker", "store", "smtp-sink", *(s.name for s in SERVICES)} == set(stack.status())

    # Which /readyz check names the victim while it is away (a service's own is just unreachable).
    names = {"broker": "kafka", "store": "mongo"}
    for victim in ("broker", "store", "customers"):
        before = {name: child["pid"] for name, child in stack.status().items()}
        restarts = {name: child["restarts"] for name, child in stack.status().items()}
        os.killpg(before[victim], signal.SIGKILL)
        missing: list[tuple[str, Any]] = []

        def back(victim: str = victim, before: dict[str, int] = before, missing: list[Any] = missing) -> bool:
            child = stack.status()[victim]
            answers = stack.readyz()
            missing.extend((name, body["failing"]) for name, (status, body) in answers.items() if status == 503)
            restarted = child["state"] == "running" and child["pid"] != before[victim]
            return restarted and all(status == 200 for status, _ in answers.values())

        stack.wait(f"{victim} restarted and every service ready", back, RECOVERY_TIMEOUT)
        after = stack.status()
        assert after[victim]["restarts"] == 1 and after[victim]["last_exit"] == "killed by SIGKILL (code -9)"
        assert f"{victim} killed by SIGKILL (code -9); restarting in {RESTART_BACKOFF} s (restart 1)" in stack.console()
        assert f"{victim} restarted (pid {after[victim]['pid']}" in stack.console()
        for name, pid in before.items():
            if name != victim:  # untouched: same process, no restart since the last round
                assert after[name]["pid"] == pid and after[name]["restarts"] == restarts[name], (name, after[name])
                os.kill(pid, 0)  # still there
        if victim in names:
            # While it was away, the services' /readyz said which dependency they missed.
            assert any(names[victim] in failing for _, failing in missing), missing

    pids = [child["pid"] for child in stack.status().values()]
    os.killpg(stack.process.pid, signal.SIGTERM)
    assert stack.process.wait(90) == 0, stack.console()
    assert all(group_is_gone(pid) for pid in pids)
    assert json.loads(stack.status_file.read_text())["stopping"] is True
