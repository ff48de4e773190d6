"""Keeps the local stack's children running: a dead one is restarted with backoff, the rest stay up.

`crm up` used to stop everything when one child died, so a crashed broker took the whole
stack (and everyone's work in it) down. Now each child (S3, broker, store, SMTP sink, each
service) is watched; one that dies is started again after a pause that doubles with each
restart in a row (capped, and back to the first pause once the child has stayed up a while),
with a line on the console saying so. Meanwhile the services' own /readyz names what they
miss (the store, the broker), and the supervisor's view is written to a status file that
`crm status` prints.

Restarts run in a helper thread each, since a start waits until the child is ready (a
service: until /readyz answers 200, which needs the store and the broker): the loop keeps
watching the others meanwhile, and Ctrl-C stops a child that is still starting.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.text import Text

from crm_platform.devstack.processes import ManagedProcess, spawn_observer

State = Literal["running", "waiting", "starting", "stopped"]
STATUS_EVERY_SECONDS = 2.0  # the status file's heartbeat, so a stale one can be told from a live one


@dataclass(frozen=True)
class Backoff:
    """Pause before restart number n in a row: initial × factor^(n-1), at most ``cap``.

    A child that stayed up ``stable_after`` seconds starts again from ``initial``: a crash a
    day should not wait as long as the tenth crash in a minute.
    """

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    stable_after: float = 60.0

    def delay(self, in_a_row: int) -> float:
        return float(min(self.initial * self.factor ** max(in_a_row - 1, 0), self.cap))


@dataclass
class Child:
    """One supervised child and what the supervisor knows of it."""

    name: str
    start: Callable[[], ManagedProcess]  # starts it and returns once it is ready
    process: ManagedProcess | None = None
    state: State = "running"
    restarts: int = 0  # restart attempts so far
    in_a_row: int = 0  # restarts since it last stayed up `stable_after` seconds
    up_since: float = field(default_factory=time.monotonic)
    restart_at: float | None = None
    last_exit: str | None = None
    last_exit_at: str | None = None
    last_error: str | None = None
    _thread: threading.Thread | None = None
    _started: ManagedProcess | None = None
    _failure: BaseException | None = None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Supervisor:
    def __init__(
        self,
        console: Console,
        *,
        backoff: Backoff | None = None,
        status_file: Path | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self._console = console
        self._backoff = backoff or Backoff()
        self._status_file = status_file
        self._poll = poll_seconds
        self._children: list[Child] = []
        self._closing = False
        self._status_written = 0.0

    # --- set-up ---------------------------------------------------------------------

    def adopt(self, name: str, process: ManagedProcess, start: Callable[[], ManagedProcess]) -> None:
        """Watch ``process`` (already started and ready); ``start()`` brings a new one up."""
        self._children.append(Child(name=name, start=start, process=process))

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        """Watch until interrupted (run_up turns SIGINT/SIGTERM into an exception here)."""
        while True:
            self.tick()
            time.sleep(self._poll)  # a supervision poll, not a wait for readiness

    def tick(self) -> None:
        """One pass: notice deaths, start what is due, collect finished restarts, write the status."""
        now = time.monotonic()
        changed = False
        for child in self._children:
            if child.state == "running" and child.process is not None and not child.process.is_running():
                self._died(child, now)
                changed = True
            elif child.state == "waiting" and child.restart_at is not None and now >= child.restart_at:
                self._launch(child)
                changed = True
            elif child.state == "starting" and child._thread is not None and not child._thread.is_alive():
                self._collect(child, now)
                changed = True
        if changed or now - self._status_written >= STATUS_EVERY_SECONDS:
            self.write_status()

    def _died(self, child: Child, now: float) -> None:
        assert child.process is not None
        code = child.process.poll()
        child.last_exit = f"{child.process.describe_exit()} (code {code})"
        child.last_exit_at = _now_iso()
        if now - child.up_since >= self._backoff.stable_after:
            child.in_a_row = 0
        delay = self._schedule(child, now)
        self._say(
            f"{child.name} {child.last_exit}; restarting in {delay:g} s (restart {child.restarts + 1})",
            "yellow",
        )
        self._say(f"  last lines of {child.process.log_path}:\n{child.process.log_tail(lines=5)}", "dim")

    def _schedule(self, child: Child, now: float) -> float:
        child.in_a_row += 1
        delay = self._backoff.delay(child.in_a_row)
        child.state, child.restart_at = "waiting", now + delay
        return delay

    def _launch(self, child: Child) -> None:
        child.restarts += 1
        child.state, child.restart_at = "starting", None
        child._started, child._failure = None, None

        def attach(process: ManagedProcess) -> None:
            child.process = process  # known at once, so Ctrl-C can stop it mid-start

        def restart() -> None:
            try:
                with spawn_observer(attach):
                    child._started = child.start()
            except BaseException as exc:  # reported by the loop, in the main thread
                child._failure = exc

        child._thread = threading.Thread(target=restart, name=f"restart {child.name}", daemon=True)
        child._thread.start()

    def _collect(self, child: Child, now: float) -> None:
        if child._started is not None:
            child.process, child.state, child.up_since = child._started, "running", now
            child.last_error = None
            ready = f", ready in {child.process.ready_after:.1f} s" if child.process.ready_after else ""
            self._say(f"{child.name} restarted (pid {child.process.pid}{ready})", "green")
            return
        child.last_error = str(child._failure).splitlines()[0] if child._failure else "did not start"
        delay = self._schedule(child, now)
        self._say(
            f"{child.name} did not come back ({child.last_error}); retrying in {delay:g} s "
            f"(restart {child.restarts + 1})",
            "red",
        )

    # --- stopping -------------------------------------------------------------------

    def stop_all(self, join_seconds: float = 30.0) -> None:
        """Stop every child, last started first, including any caught mid-restart."""
        self._closing = True
        for child in reversed(self._children):
            process = child.process
            if process is not None:
                process.stop()
                self._say(f"stopped {child.name}", "dim")
            child.state = "stopped"
        deadline = time.monotonic() + join_seconds
        for child in self._children:
            if child._thread is not None:
                # Its child is stopped, so its readiness wait fails at once and the thread ends.
                child._thread.join(max(deadline - time.monotonic(), 0))
            if child._started is not None:
                child._started.stop()  # came up just as we stopped: not to be left behind
        self.write_status()

    # --- reporting ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "supervisor_pid": os.getpid(),
            "updated_at": _now_iso(),
            "stopping": self._closing,
            "children": {
                child.name: {
                    "state": child.state,
                    "pid": child.process.pid if child.process is not None else None,
                    "port": child.process.port if child.process is not None else None,
                    "restarts": child.restarts,
                    "up_seconds": round(now - child.up_since, 1) if child.state == "running" else None,
                    "restart_in_seconds": (
                        round(max(child.restart_at - now, 0), 1) if child.restart_at is not None else None
                    ),
                    "last_exit": child.last_exit,
                    "last_exit_at": child.last_exit_at,
                    "last_error": child.last_error,
                    "log": os.fspath(child.process.log_path) if child.process is not None else None,
                }
                for child in self._children
            },
        }

    def write_status(self) -> None:
        self._status_written = time.monotonic()
        if self._status_file is None:
            return
        self._status_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._status_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.status(), indent=2) + "\n")
        temporary.replace(self._status_file)  # readers never see half a file

    def _say(self, message: str, style: str) -> None:
        # Text, not markup: log lines are full of [brackets].
        self._console.print(Text(f"{datetime.now().strftime('%H:%M:%S')} {message}", style=style), highlight=False)


def read_status(status_file: Path) -> dict[str, Any] | None:
    """The last status `crm up` wrote, with ``running`` telling whether its supervisor still is."""
    try:
        status: dict[str, Any] = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None
    pid = status.get("supervisor_pid")
    try:
        os.kill(int(pid), 0) if pid else None
        alive = bool(pid) and not status.get("stopping")
    except (ProcessLookupError, ValueError, TypeError):
        alive = False
    except PermissionError:
        alive = True
    status["running"] = alive
    return status
