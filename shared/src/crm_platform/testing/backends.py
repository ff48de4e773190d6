"""A Kafka and a MongoDB for integration tests: embedded processes or Docker containers.

`CRM_TEST_BACKEND=embedded` (the default) starts Tansu (memory storage) and
nx-27017 (in-memory databases) on free ports; `CRM_TEST_BACKEND=docker` starts
real Apache Kafka (KRaft) and MongoDB with testcontainers, where a Docker
engine exists. Tests see only addresses, so the same test runs on both.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crm_platform.devstack.embedded import IN_MEMORY, start_broker, start_store
from crm_platform.devstack.processes import (
    LOOPBACK,
    ManagedProcess,
    PortInUseError,
    StartupError,
    free_port,
)

BACKEND_ENV = "CRM_TEST_BACKEND"
KINDS = ("embedded", "docker")
# testcontainers' KafkaContainer drives the Confluent image's start-up scripts,
# so it is the Confluent build of Apache Kafka (7.6 = Kafka 3.6), in KRaft mode.
DEFAULT_KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
DEFAULT_MONGO_IMAGE = "mongo:7.0"
_PORT_RACE_ATTEMPTS = 3


@dataclass
class Backend:
    """Where the tests' Kafka and MongoDB are; stop() releases them (idempotent)."""

    kind: str
    kafka_bootstrap: str
    mongo_url: str
    kafka_enable_idempotence: bool
    processes: tuple[ManagedProcess, ...] = ()  # empty for docker
    _cleanup: Callable[[], None] | None = field(default=None, repr=False)

    def env(self, database: str | None = None) -> dict[str, str]:
        """The CRM_* variables a service started against this backend needs."""
        env = {
            "CRM_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "CRM_KAFKA_ENABLE_IDEMPOTENCE": "true" if self.kafka_enable_idempotence else "false",
            "CRM_MONGO_URL": self.mongo_url,
        }
        if database is not None:
            env["CRM_MONGO_DATABASE"] = database
        return env

    def stop(self) -> None:
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()


def backend_kind() -> str:
    """The kind chosen by CRM_TEST_BACKEND, "embedded" when unset."""
    return os.environ.get(BACKEND_ENV, "").strip().lower() or "embedded"


def start_backend(kind: str | None = None) -> Backend:
    """Start a Kafka and a MongoDB of the given kind (default: from CRM_TEST_BACKEND)."""
    kind = kind or backend_kind()
    if kind == "embedded":
        return _start_embedded()
    if kind == "docker":
        return _start_docker()
    raise ValueError(f"unknown test backend {kind!r} (set {BACKEND_ENV} to one of {', '.join(KINDS)})")


# --- embedded -------------------------------------------------------------------


def _start_embedded() -> Backend:
    work_dir = Path(tempfile.mkdtemp(prefix="crm-test-backend-"))
    try:
        broker = _with_free_port(lambda port: start_broker(port, "memory", work_dir))
        try:
            store = _with_free_port(lambda port: start_store(IN_MEMORY, port, work_dir))
        except BaseException:
            broker.stop()
            raise
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise

    def cleanup() -> None:
        store.stop()
        broker.stop()
        shutil.rmtree(work_dir, ignore_errors=True)

    return Backend(
        kind="embedded",
        kafka_bootstrap=f"{LOOPBACK}:{_port_of(broker)}",
        mongo_url=f"mongodb://{LOOPBACK}:{_port_of(store)}",
        kafka_enable_idempotence=False,  # Tansu fails InitProducerId
        processes=(broker, store),
        _cleanup=cleanup,
    )


def _with_free_port(start: Callable[[int], ManagedProcess]) -> ManagedProcess:
    """Start on a free port, again on another if someone took it between pick and bind."""
    for attempt in range(1, _PORT_RACE_ATTEMPTS + 1):
        port = free_port()
        try:
            proc = start(port)
        except (PortInUseError, StartupError) as exc:
            if attempt == _PORT_RACE_ATTEMPTS or (isinstance(exc, StartupError) and not exc.process_died):
                raise
            continue
        return proc
    raise AssertionError("unreachable")


def _port_of(proc: ManagedProcess) -> int:
    assert proc.port is not None
    return proc.port


# --- docker ---------------------------------------------------------------------


def _start_docker() -> Backend:
    # Imported here so testcontainers (and a Docker engine) are needed only for this kind.
    kafka_cls, mongo_cls = _testcontainers_classes()
    kafka = kafka_cls(image=os.environ.get("CRM_TEST_KAFKA_IMAGE", DEFAULT_KAFKA_IMAGE)).with_kraft()
    mongo = mongo_cls(image=os.environ.get("CRM_TEST_MONGO_IMAGE", DEFAULT_MONGO_IMAGE))
    kafka.start(timeout=120)
    try:
        mongo.start()
    except BaseException:
        kafka.stop()
        raise

    def cleanup() -> None:
        mongo.stop()
        kafka.stop()

    return Backend(
        kind="docker",
        kafka_bootstrap=kafka.get_bootstrap_server(),
        mongo_url=mongo.get_connection_url(),
        kafka_enable_idempotence=True,
        _cleanup=cleanup,
    )


def _testcontainers_classes() -> tuple[Any, Any]:
    # testcontainers 4.x moved the modules under "community"; older ones had them on top.
    for package in ("testcontainers.community", "testcontainers"):
        try:
            kafka = importlib.import_module(f"{package}.kafka")
            mongodb = importlib.import_module(f"{package}.mongodb")
        except ImportError:
            continue
        return kafka.KafkaContainer, mongodb.MongoDbContainer
    raise RuntimeError(
        f"{BACKEND_ENV}=docker needs testcontainers (`uv pip install testcontainers`) and a Docker engine"
    )
