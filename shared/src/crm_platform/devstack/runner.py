"""`crm up`: the whole CRM on this machine, no Docker needed.

Order matters: S3 before the broker that stores into it, the broker and the
store before the services that need them; shutdown goes in reverse, so the
services flush to a broker that is still there.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from crm_platform.devstack.embedded import (
    WeedPorts,
    s3_settings,
    start_broker,
    start_s3,
    start_smtp_sink,
    start_store,
)
from crm_platform.devstack.processes import (
    LOOPBACK,
    DevStackError,
    ManagedProcess,
    ensure_ports_free,
    run_coroutine_sync,
)
from crm_platform.devstack.services import (
    SERVICES,
    ServiceSpec,
    service_env,
    start_service,
    upstream_env,
)
from crm_platform.devstack.supervisor import Backoff, Supervisor
from crm_platform.kafka import TopicCreationError, ensure_topics

DEFAULT_KAFKA_PORT = 19092
DEFAULT_MONGO_PORT = 27018
DEFAULT_SMTP_PORT = 8025  # the notifications service's default CRM_SMTP_PORT
TOPIC_PARTITIONS = 3
JWT_SECRET_FILE = "jwt-secret"


@dataclass(frozen=True)
class StackLayout:
    """Where everything lives under the data dir (default ./var, git-ignored)."""

    data_dir: Path

    @property
    def s3_dir(self) -> Path:
        return self.data_dir / "s3"

    @property
    def mongo_dir(self) -> Path:
        return self.data_dir / "mongo"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def jwt_secret_file(self) -> Path:
        return self.data_dir / JWT_SECRET_FILE

    @property
    def status_file(self) -> Path:
        """What `crm up`'s supervisor sees: each child's state, pid, restarts (read by `crm status`)."""
        return self.data_dir / "devstack" / "status.json"


def default_data_dir(start: Path | None = None) -> Path:
    """`var/` at the repository root (found from the current directory), else ./var."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "shared").is_dir() and (candidate / "services").is_dir():
            return candidate / "var"
    return here / "var"


def load_or_create_jwt_secret(data_dir: Path) -> str:
    """The HS256 secret of the local stack, made once and kept in `data_dir/jwt-secret` (0600).

    `crm token` reads the same file, so tokens it signs are accepted by the
    services started by `crm up`, across restarts.
    """
    path = data_dir / JWT_SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def run_up(
    data_dir: Path,
    durable: bool = True,
    kafka_port: int = DEFAULT_KAFKA_PORT,
    mongo_port: int = DEFAULT_MONGO_PORT,
    *,
    weed_ports: WeedPorts | None = None,
    services: Sequence[ServiceSpec] | None = None,
    smtp_port: int = DEFAULT_SMTP_PORT,
    console: Console | None = None,
    ready_timeout: float = 60.0,
    backoff: Backoff | None = None,
) -> None:
    """Start S3 (if durable), Kafka, MongoDB and every service; block until Ctrl-C or SIGTERM.

    A child that dies meanwhile is restarted with backoff (the others keep running), and
    the supervisor's view is kept in ``<data_dir>/devstack/status.json`` (`crm status`).
    Returns after a clean stop. Raises SystemExit(1) if anything fails to start; everything
    started is stopped first.
    """
    console = console or Console()
    specs = list(SERVICES if services is None else services)
    layout = StackLayout(data_dir.resolve())
    weed_ports = weed_ports or WeedPorts()
    supervisor = Supervisor(console, backoff=backoff, status_file=layout.status_file)
    exit_code = 0
    with _signals_raise_shutdown():
        try:
            ensure_ports_free(_all_ports(durable, kafka_port, mongo_port, weed_ports, specs, smtp_port))
            secret = load_or_create_jwt_secret(layout.data_dir)
            children = _children(
                layout, durable, kafka_port, mongo_port, weed_ports, specs, smtp_port, secret, ready_timeout
            )
            for child in children:
                with console.status(child.status):
                    supervisor.adopt(child.name, child.start(), child.start)
            supervisor.write_status()
            started = [c.process for c in supervisor.children if c.process is not None]
            _print_summary(console, layout, durable, kafka_port, mongo_port, weed_ports, specs, smtp_port, started)
            supervisor.run()
        except _Shutdown:
            console.print("stopping…")
        except (DevStackError, TopicCreationError) as exc:
            # Text, not markup: messages hold log lines full of [brackets].
            console.print(Text("error: ", style="red") + Text(str(exc)), highlight=False)
            exit_code = 1
        finally:
            # Reverse start order; a second Ctrl-C must not abandon half-stopped children.
            with _signals_ignored():
                supervisor.stop_all()
    if exit_code:
        raise SystemExit(exit_code)


@dataclass(frozen=True)
class _ChildSpec:
    name: str  # as the supervisor, the console and `crm status` call it
    status: str  # what the console shows while it starts
    start: Callable[[], ManagedProcess]  # starts it (again) and returns once it is ready


def _children(
    layout: StackLayout,
    durable: bool,
    kafka_port: int,
    mongo_port: int,
    weed_ports: WeedPorts,
    specs: Sequence[ServiceSpec],
    smtp_port: int,
    secret: str,
    ready_timeout: float,
) -> list[_ChildSpec]:
    """Every child in start order (S3 before the broker storing into it, backends before services)."""
    bootstrap = f"{LOOPBACK}:{kafka_port}"
    topics = [t for spec in specs for t in spec.topics]
    children: list[_ChildSpec] = []
    if durable:
        children.append(
            _ChildSpec(
                "s3",
                "starting SeaweedFS (S3 for the broker's storage)…",
                lambda: start_s3(layout.s3_dir, layout.log_dir, weed_ports),
            )
        )

    def start_kafka() -> ManagedProcess:
        if durable:
            broker = start_broker(kafka_port, "s3", layout.log_dir, s3_settings(layout.s3_dir, weed_ports))
        else:
            broker = start_broker(kafka_port, "memory", layout.log_dir)
        # Topics before the services look for them; a memory broker comes back without any.
        try:
            run_coroutine_sync(lambda: ensure_topics(bootstrap, topics))
        except BaseException:
            broker.stop()
            raise
        return broker

    storage = "S3 storage" if durable else "memory storage"
    children.append(_ChildSpec("broker", f"starting Tansu (Kafka, {storage})…", start_kafka))
    children.append(
        _ChildSpec(
            "store", "starting nx-27017 (MongoDB)…", lambda: start_store(layout.mongo_dir, mongo_port, layout.log_dir)
        )
    )
    if _sends_mail(specs):
        children.append(
            _ChildSpec(
                "smtp-sink",
                "starting the SMTP sink (mail stays on this machine)…",
                lambda: start_smtp_sink(smtp_port, layout.mail_dir, layout.log_dir),
            )
        )
    for spec in specs:
        env = service_env(
            spec,
            kafka_bootstrap=bootstrap,
            mongo_url=f"mongodb://{LOOPBACK}:{mongo_port}",
            jwt_secret=secret,
        )
        if spec.name == "notifications":
            env["CRM_SMTP_PORT"] = str(smtp_port)
        if spec.web:
            env |= upstream_env(specs)
        children.append(
            _ChildSpec(
                spec.name,
                f"starting {spec.name} (python -m {spec.module})…",
                functools.partial(start_service, spec, env, layout.log_dir, ready_timeout),
            )
        )
    return children


def _all_ports(
    durable: bool,
    kafka_port: int,
    mongo_port: int,
    weed_ports: WeedPorts,
    specs: Sequence[ServiceSpec],
    smtp_port: int = DEFAULT_SMTP_PORT,
) -> dict[str, int]:
    ports = {"Kafka (Tansu)": kafka_port, "MongoDB (nx-27017)": mongo_port}
    ports |= {f"{spec.name} HTTP": spec.http_port for spec in specs}
    if _sends_mail(specs):
        ports["SMTP sink"] = smtp_port
    if durable:
        ports |= weed_ports.all()
    return ports


def _sends_mail(specs: Sequence[ServiceSpec]) -> bool:
    return any(spec.name == "notifications" for spec in specs)


def _print_summary(
    console: Console,
    layout: StackLayout,
    durable: bool,
    kafka_port: int,
    mongo_port: int,
    weed_ports: WeedPorts,
    specs: Sequence[ServiceSpec],
    smtp_port: int,
    started: Sequence[ManagedProcess],
) -> None:
    ready = {proc.name: proc.ready_after for proc in started}

    def secs(name: str) -> str:
        value = ready.get(name)
        return f"{value:.1f} s" if value is not None else ""

    table = Table(title="CRM local stack", title_justify="left")
    table.add_column("what")
    # Shrink the labels, not the URLs: a URL cut short with "…" is useless.
    table.add_column("where", no_wrap=True, overflow="fold")
    table.add_column("ready in", justify="right")
    for spec in specs:
        if spec.web:
            table.add_row(f"{spec.name} (web UI: sign in with a directory user)", spec.url("/"), secs(spec.name))
            continue
        table.add_row(f"{spec.name} API docs", spec.url("/docs"), secs(spec.name))
        table.add_row(f"{spec.name} event catalogue", spec.url("/asyncapi"), "")
        table.add_row(f"{spec.name} AsyncAPI JSON", spec.url("/asyncapi.json"), "")
        table.add_row(f"{spec.name} health", f"{spec.url('/healthz')} /readyz", "")
    storage = "S3 storage" if durable else "memory: lost on stop"
    kafka = f"{LOOPBACK}:{kafka_port}"
    table.add_row(f"Kafka (Tansu, {storage})", kafka, secs("tansu"))
    mongo = f"mongodb://{LOOPBACK}:{mongo_port}"
    table.add_row("MongoDB (nx-27017)", mongo, secs("nx-27017"))
    if durable:
        s3 = f"http://{LOOPBACK}:{weed_ports.s3}"
        table.add_row("S3 (SeaweedFS)", s3, secs("weed"))
    if _sends_mail(specs):
        table.add_row("SMTP sink (mail kept as .eml)", f"{LOOPBACK}:{smtp_port} → {layout.mail_dir}", secs("smtp-sink"))
    console.print(table)
    topics = ", ".join(t for spec in specs for t in spec.topics)
    console.print(f"topics: {topics} ({TOPIC_PARTITIONS} partitions each)", highlight=False)
    console.print(f"data: {layout.data_dir}   logs: {layout.log_dir}", highlight=False)
    console.print(
        f"JWT (HS256) secret: {layout.jwt_secret_file}; `crm token` signs with it "
        f"(or: export CRM_JWT_SECRET=$(cat {layout.jwt_secret_file}))",
        highlight=False,
    )
    console.print(
        f"A child that dies is restarted (with backoff); `crm status` or {layout.status_file} shows them all.",
        highlight=False,
    )
    console.print("[bold]Ctrl-C to stop.[/bold]")


_Handler = Callable[[int, FrameType | None], Any] | int | None


class _Shutdown(Exception):
    """Raised in the main thread by SIGINT/SIGTERM so every `finally` runs."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown(signal.Signals(signum).name)


@contextmanager
def _signals_raise_shutdown() -> Iterator[None]:
    with _handlers(_raise_shutdown):
        yield


@contextmanager
def _signals_ignored() -> Iterator[None]:
    with _handlers(signal.SIG_IGN):
        yield


@contextmanager
def _handlers(handler: _Handler) -> Iterator[None]:
    """Swap SIGINT/SIGTERM handlers; a no-op off the main thread, where Python forbids it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
