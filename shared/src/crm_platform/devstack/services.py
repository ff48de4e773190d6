"""The registry of CRM services, and how to start one as a real process.

Adding a service to the local stack (and to the compose checks) is one line in
SERVICES. Ports: customers 8001, pipeline 8002, interactions 8003,
pool 8004, notifications 8005, reporting 8006, directory 8007, audit 8008, leads 8009, sales 8010, and the web
console 8000 (a front end over the others' APIs: no topics, no API docs; it
starts last, once the services it calls answer).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crm_platform.devstack.processes import (
    LOOPBACK,
    ManagedProcess,
    http_status,
    wait_until,
)
from crm_platform.kafka import dead_letter_topic, topic_for


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # short name, also the compose service name: "customers"
    module: str  # started with `python -m <module>`
    http_port: int
    database: str  # the MongoDB database it owns
    # A web front end (the console): it publishes and consumes no events, has no OpenAPI or
    # AsyncAPI documents, and reaches the other services through CRM_CONSOLE_<NAME>_URL.
    web: bool = False

    @property
    def topic(self) -> str:
        """The topic this service owns and publishes its events to."""
        return topic_for(self.name)

    @property
    def dlq_topic(self) -> str:
        """Where this service's consumers park events they gave up on."""
        return dead_letter_topic(f"crm.{self.name}")

    @property
    def topics(self) -> tuple[str, ...]:
        return () if self.web else (self.topic, self.dlq_topic)

    def url(self, path: str = "", host: str = LOOPBACK) -> str:
        return f"http://{host}:{self.http_port}{path}"


SERVICES: list[ServiceSpec] = [
    ServiceSpec(name="customers", module="crm_customers", http_port=8001, database="crm_customers"),
    ServiceSpec(name="pipeline", module="crm_pipeline", http_port=8002, database="crm_pipeline"),
    ServiceSpec(name="interactions", module="crm_interactions", http_port=8003, database="crm_interactions"),
    ServiceSpec(name="pool", module="crm_pool", http_port=8004, database="crm_pool"),
    ServiceSpec(name="notifications", module="crm_notifications", http_port=8005, database="crm_notifications"),
    ServiceSpec(name="reporting", module="crm_reporting", http_port=8006, database="crm_reporting"),
    ServiceSpec(name="directory", module="crm_directory", http_port=8007, database="crm_directory"),
    ServiceSpec(name="audit", module="crm_audit", http_port=8008, database="crm_audit"),
    ServiceSpec(name="leads", module="crm_leads", http_port=8009, database="crm_leads"),
    ServiceSpec(name="sales", module="crm_sales", http_port=8010, database="crm_sales"),
    # Last: `crm up` starts it once the services it calls are ready.
    ServiceSpec(name="console", module="crm_console", http_port=8000, database="crm_console", web=True),
]


def upstream_env(specs: Sequence[ServiceSpec], host: str = LOOPBACK) -> dict[str, str]:
    """Where a web front end finds each API service (the console's CRM_CONSOLE_<NAME>_URL)."""
    return {f"CRM_CONSOLE_{s.name.upper()}_URL": s.url(host=host) for s in specs if not s.web}


#: Connections each service keeps to the embedded store (CRM_MONGO_MAX_POOL_SIZE, PyMongo's default
#: 100). nx-27017 runs every command on the 6 threads of its asyncio executor (2 cores) and one
#: command at a time per database, so a service with more commands in flight does not go faster:
#: the extra ones take the store's threads and wait there on the database's lock, and every other
#: command, the drivers' heartbeats included, queues behind them. A heartbeat that misses its 2 s
#: makes PyMongo mark the store unknown and cancel the operations in flight (503 "operation
#: cancelled", in every service). With 2 (one running, one ready when the lock frees) a service's
#: queue waits in the service and the store's threads stay free for the others: another client's
#: ping during a burst of 64 scans, max 1.2 s with 100 connections, 0.2 s with 2
#: (bench/store_crowding.py).
EMBEDDED_STORE_CONNECTIONS = 2


def service_env(
    spec: ServiceSpec,
    *,
    kafka_bootstrap: str,
    mongo_url: str,
    jwt_secret: str,
    kafka_enable_idempotence: bool = False,
    http_host: str = LOOPBACK,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The CRM_* environment a service reads through pydantic-settings.

    Addresses and the secret are always set; log settings and the store's pool size (sized for
    the embedded store, see EMBEDDED_STORE_CONNECTIONS) only default, so a developer's
    `CRM_LOG_LEVEL=DEBUG crm up` still wins.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("CRM_LOG_LEVEL", "INFO")
    env.setdefault("CRM_LOG_FORMAT", "console")
    env.setdefault("CRM_MONGO_MAX_POOL_SIZE", str(EMBEDDED_STORE_CONNECTIONS))
    if not spec.web and http_host == LOOPBACK:
        # The console, on the same host, forwards each person's address (X-Forwarded-For): the API
        # services believe it from loopback only, so the directory's per-address sign-in limit and
        # the audit log name the person, not the console. Everything here listens on loopback.
        env.setdefault("CRM_TRUSTED_PROXIES", LOOPBACK)
    env |= {
        "CRM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        # Tansu fails InitProducerId, so the idempotent producer is off on it.
        "CRM_KAFKA_ENABLE_IDEMPOTENCE": "true" if kafka_enable_idempotence else "false",
        "CRM_MONGO_URL": mongo_url,
        "CRM_MONGO_DATABASE": spec.database,
        "CRM_HTTP_HOST": http_host,
        "CRM_HTTP_PORT": str(spec.http_port),
        "CRM_JWT_ALGORITHM": "HS256",
        "CRM_JWT_SECRET": jwt_secret,
        "PYTHONUNBUFFERED": "1",  # log lines reach the log file as they happen
        "NO_COLOR": "1",  # the output goes to a file, not a terminal
    }
    return env


def start_service(spec: ServiceSpec, env: Mapping[str, str], log_dir: Path, timeout: float = 60.0) -> ManagedProcess:
    """`python -m <module>`; ready once GET /readyz answers 200 (its dependencies are reachable)."""
    argv = [sys.executable, "-m", spec.module]
    proc = ManagedProcess(spec.name, argv, log_dir / f"{spec.name}.log", env=env, port=spec.http_port)
    try:
        wait_until(
            f"{spec.name}: GET /readyz",
            lambda: http_status(spec.url("/readyz")) == 200,
            timeout=timeout,
            process=proc,
        )
    except BaseException:
        proc.stop()
        raise
    proc.mark_ready()
    return proc
