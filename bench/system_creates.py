"""The whole system on its default (`crm up`, durable): what a customer create costs everywhere.

    ip netns add bench && ip netns exec bench ip link set lo up
    ip netns exec bench .venv/bin/python bench/system_creates.py [--n 1000] [--concurrency 16]
        [--rate 50] [--seconds 60] [--prefill 100000]

It runs `crm up` itself (SeaweedFS + Tansu on S3, nx-27017 on disk, every service, the console):
what a new user gets from `./dev up`. The ports are the default ones, so run it in a network
namespace of its own. One run, in order:

1. idle: every process's CPU and every service's store commands over 10 s with nothing to do
   (relays and schedulers poll), so the later figures can be given net of it;
2. closed loop: --n creates through POST /v1/customers at --concurrency, then the wait until
   the system has settled (every consumer of every service done, the outbox empty). Printed:
   creates/s and latency; CPU-ms per create for each process (customers, store, broker, S3,
   each consumer service), gross and net of idle; store commands per create, by service and
   origin (request, relay, consumers), summed over every service's /metrics;
3. raw: PyMongo insert_one of documents of the same stored shape, same concurrency, same store,
   into a collection with the same indexes; the ratio API/raw;
4. sustained: --rate creates/s for --seconds (open loop: a create starts on schedule whether or
   not the last one answered); HTTP 201 -> crm.customer.created readable on Kafka p50/p99, and
   the customers outbox backlog sampled every second (it must not grow);
5. with --prefill K: K customers written by the raw driver (clones in the service's stored shape,
   with their duplicate keys), then step 2 again: creates/s and CPU-ms per create at K stored
   against step 2's, the flat-cost ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import header, percentile
from customers_throughput import (
    CREATED,
    TOPIC,
    EventWatcher,
    Rep,
    Run,
    api_creates,
    payload,
    prefill,
    raw_inserts,
    stored_document,
)
from pymongo import AsyncMongoClient

from crm_customers.adapters.repository import INDEXES
from crm_platform.auth import mint_token
from crm_platform.devstack.services import SERVICES
from crm_platform.outbox import ensure_outbox_indexes

Document = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
CRM = ROOT / ".venv" / "bin" / "crm"
KAFKA = "127.0.0.1:19092"
MONGO = "mongodb://127.0.0.1:27018"
RAW_COLLECTION = "bench_raw_customers"
OWNERS = 100
DEPARTMENTS = 10
TICK = os.sysconf("SC_CLK_TCK")
SERVICE_URLS = {s.name: s.url() for s in SERVICES if s.name != "console"}
assert CREATED  # the event the watcher keeps


# --- the stack ---------------------------------------------------------------------------


class System:
    """`crm up --data-dir D` as a child process group, and what its status file says."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log = open(data_dir / "crm-up.log", "w")  # closed in stop()
        self.proc = subprocess.Popen(
            [os.fspath(CRM), "up", "--data-dir", os.fspath(data_dir)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "NO_COLOR": "1", "CRM_LOG_LEVEL": "WARNING"},
        )

    def status(self) -> dict[str, Any]:
        path = self.data_dir / "devstack" / "status.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def pids(self) -> dict[str, int]:
        children = self.status().get("children", {})
        return {name: c["pid"] for name, c in children.items() if c.get("pid")}

    def secret(self) -> str:
        return (self.data_dir / "jwt-secret").read_text().strip()

    async def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"crm up exited ({self.proc.returncode}); see {self.log.name}")
                children = self.status().get("children", {})
                if children and all(c["state"] == "running" for c in children.values()):
                    answers = await asyncio.gather(
                        *(http.get(f"{u}/readyz") for u in SERVICE_URLS.values()), return_exceptions=True
                    )
                    if all(isinstance(a, httpx.Response) and a.status_code == 200 for a in answers):
                        return
                await asyncio.sleep(1)
        raise TimeoutError(f"the stack was not ready within {timeout:g} s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU time of each process so far (s)."""
    used: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
    return used


async def store_commands(http: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """crm_store_commands_total summed over commands: (service, origin) -> count."""
    found: dict[tuple[str, str], float] = {}

    async def one(name: str, url: str) -> None:
        text = (await http.get(f"{url}/metrics")).text
        for match in re.finditer(r"^crm_store_commands_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", text, re.M):
            origin = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"])).get("origin", "?")
            found[(name, origin)] = found.get((name, origin), 0.0) + float(match["value"])

    await asyncio.gather(*(one(n, u) for n, u in SERVICE_URLS.items()))
    return found


async def outbox_backlog(http: httpx.AsyncClient) -> int:
    body = (await http.get(f"{SERVICE_URLS['customers']}/readyz")).json()
    return int(sum(v for v in body["checks"].get("outbox_pending", {}).values() if v > 0))


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    commands: dict[tuple[str, str], float]

    @classmethod
    async def take(cls, http: httpx.AsyncClient, pids: dict[str, int]) -> Snapshot:
        return cls(time.monotonic(), cpu_seconds(pids), await store_commands(http))


@dataclass
class Cost:
    """What happened between two snapshots, per create, gross and net of the idle rate."""

    creates: int
    seconds: float
    cpu_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (gross, net)
    commands: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot, creates: int, idle: Cost | None) -> Cost:
        seconds = b.at - a.at
        cost = cls(creates, seconds)
        for name, used in b.cpu.items():
            gross = (used - a.cpu.get(name, 0.0)) * 1000
            idle_ms = idle.rate_cpu(name) * seconds if idle else 0.0
            cost.cpu_ms[name] = (gross / creates, max(gross - idle_ms, 0.0) / creates)
        for key, count in b.commands.items():
            gross = count - a.commands.get(key, 0.0)
            idle_n = idle.rate_commands(key) * seconds if idle else 0.0
            cost.commands[key] = (gross / creates, max(gross - idle_n, 0.0) / creates)
        return cost

    def rate_cpu(self, name: str) -> float:  # ms per second, for an idle Cost (creates=1)
        return self.cpu_ms.get(name, (0.0, 0.0))[0] / self.seconds

    def rate_commands(self, key: tuple[str, str]) -> float:
        return self.commands.get(key, (0.0, 0.0))[0] / self.seconds

    def cpu_total(self) -> tuple[float, float]:
        return (sum(g for g, _ in self.cpu_ms.values()), sum(n for _, n in self.cpu_ms.values()))

    def commands_total(self) -> tuple[float, float]:
        return (sum(g for g, _ in self.commands.values()), sum(n for _, n in self.commands.values()))


# --- load ---------------------------------------------------------------------------------


def make_reps(secret: str) -> list[Rep]:
    reps = []
    for i in range(OWNERS):
        path = f"/hq/r{i % DEPARTMENTS // 5 + 1}/t{i % DEPARTMENTS + 1}"
        token = mint_token(
            secret_or_private_key=secret,
            user_id=f"bench-rep-{i:03d}",
            roles=["rep"],
            department_id=path.rsplit("/", 1)[-1],
            department_path=path,
        )
        reps.append(Rep(f"bench-rep-{i:03d}", path, {"Authorization": f"Bearer {token}"}))
    return reps


def bodies(run: str, start: int, count: int) -> list[Document]:
    return [payload(run, start + i) for i in range(count)]


async def settle(http: httpx.AsyncClient, timeout: float = 300) -> None:
    """Until the outbox is empty and no consumer anywhere issued a store command for 2 s."""
    deadline = time.monotonic() + timeout
    last: float | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        commands = await store_commands(http)
        consumed = sum(v for (_, origin), v in commands.items() if origin == "consumer")
        if consumed != last:
            last, quiet_since = consumed, time.monotonic()
        elif time.monotonic() - quiet_since >= 2 and await outbox_backlog(http) == 0:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError("the system did not settle")


async def closed_loop(
    http: httpx.AsyncClient,
    api: httpx.AsyncClient,
    pids: dict[str, int],
    reps: list[Rep],
    docs: list[Document],
    concurrency: int,
    idle: Cost,
) -> tuple[Run, Cost]:
    before = await Snapshot.take(http, pids)
    run = await api_creates(api, docs, reps, concurrency)
    await settle(http)
    after = await Snapshot.take(http, pids)
    return run, Cost.between(before, after, run.ok, idle)


async def sustained(
    api: httpx.AsyncClient, http: httpx.AsyncClient, reps: list[Rep], rate: float, seconds: float, watcher: EventWatcher
) -> tuple[list[float], list[int], int]:
    """Open loop at `rate`/s; returns event latencies (s), backlog samples and failures."""
    docs = bodies("存量", 30_000_000, int(rate * seconds))
    responded: dict[str, float] = {}
    failures = 0
    backlog: list[int] = []

    async def one(i: int) -> None:
        nonlocal failures
        response = await api.post("/v1/customers", json=docs[i], headers=reps[i % len(reps)].headers)
        if response.status_code == 201:
            responded[response.json()["id"]] = time.time()
        else:
            failures += 1

    async def sample() -> None:
        while True:
            backlog.append(await outbox_backlog(http))
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    tasks = []
    for i in range(len(docs)):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    got = await watcher.wait_for(list(responded), 120)
    sampler.cancel()
    latencies = [got[i].at - at for i, at in responded.items() if i in got]
    return latencies, backlog, failures + len(responded) - len(latencies)


# --- report -------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def cost_lines(cost: Cost) -> list[str]:
    lines = [f"  CPU-ms per create (gross / net of idle), over {cost.seconds:.1f} s:"]
    for name, (gross, net) in sorted(cost.cpu_ms.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"    {name:<14} {gross:7.1f} / {net:7.1f}")
    gross, net = cost.cpu_total()
    lines.append(f"    {'all':<14} {gross:7.1f} / {net:7.1f}")
    lines.append("  store commands per create (gross / net of idle), by service and origin:")
    for (service, origin), (g, n) in sorted(cost.commands.items()):
        if g >= 0.05:
            lines.append(f"    {service:<14} {origin:<10} {g:6.2f} / {n:6.2f}")
    g, n = cost.commands_total()
    lines.append(f"    {'all':<25} {g:6.2f} / {n:6.2f}")
    return lines


def run_line(label: str, run: Run) -> str:
    return (
        f"  {label}: {run.ok} ok, {len(run.failures)} failed, {run.per_second:.1f}/s,"
        f" p50 {ms(percentile(run.latencies, 50))}, p95 {ms(percentile(run.latencies, 95))}"
    )


# --- the run -------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, system: System) -> list[str]:
    await system.wait_ready()
    pids = system.pids()
    reps = make_reps(system.secret())
    out = [*header("the whole system: customer creates on the `crm up` default (durable)", durable=True)]
    out.append(f"processes: {', '.join(sorted(pids))}")
    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(MONGO, tz_aware=True, maxPoolSize=args.concurrency + 4)
    watcher = EventWatcher(KAFKA, TOPIC)
    watcher.start()
    try:
        async with (
            httpx.AsyncClient(timeout=30) as http,
            httpx.AsyncClient(base_url=SERVICE_URLS["customers"], limits=limits, timeout=60) as api,
        ):
            warm = await api_creates(api, bodies("预热", 0, 50), reps, args.concurrency)
            if warm.failures:
                raise RuntimeError(f"warm-up failed: {warm.failures[:3]}")
            await settle(http)
            start = await Snapshot.take(http, pids)
            await asyncio.sleep(10)
            idle = Cost.between(start, await Snapshot.take(http, pids), 1, None)
            out.append(
                f"idle: CPU-ms per second {idle.cpu_total()[0] / idle.seconds:.0f}, store commands per second "
                f"{idle.commands_total()[0] / idle.seconds:.1f}"
            )

            run, cost = await closed_loop(http, api, pids, reps, bodies("基准", 0, args.n), args.concurrency, idle)
            out.append(f"closed loop, {args.n} creates at concurrency {args.concurrency} (about {args.n + 50} stored):")
            out.append(run_line("API", run))
            out += cost_lines(cost)

            raw = mongo["crm_customers"][RAW_COLLECTION]
            await raw.create_indexes(INDEXES)
            await ensure_outbox_indexes(raw)
            raw_docs = [stored_document(b, reps[i % OWNERS]) for i, b in enumerate(bodies("基准", 0, args.n))]
            raw_run = await raw_inserts(raw, raw_docs, args.concurrency)
            out.append(run_line("raw insert_one", raw_run))
            out.append(f"  API / raw: {run.per_second / raw_run.per_second:.3f}")

            if args.rate:
                latencies, backlog, lost = await sustained(api, http, reps, args.rate, args.seconds, watcher)
                await settle(http)
                out.append(f"sustained {args.rate:g} creates/s for {args.seconds:g} s:")
                out.append(
                    f"  HTTP 201 -> event on Kafka: p50 {ms(percentile(latencies, 50))},"
                    f" p99 {ms(percentile(latencies, 99))}, max {ms(max(latencies, default=0))};"
                    f" not seen or failed: {lost}"
                )
                out.append(
                    f"  outbox backlog each second: first {backlog[:5]}, last {backlog[-5:]},"
                    f" max {max(backlog, default=0)}"
                )

            if args.prefill:
                began = time.monotonic()
                await prefill(mongo["crm_customers"], args.prefill, reps)
                out.append(f"prefill: {args.prefill} customers by the raw driver in {time.monotonic() - began:.0f} s")
                await settle(http)
                run_k, cost_k = await closed_loop(
                    http, api, pids, reps, bodies("基准", args.n, args.n), args.concurrency, idle
                )
                out.append(f"closed loop again with {args.prefill} more stored:")
                out.append(run_line("API", run_k))
                out += cost_lines(cost_k)
                out.append(
                    f"  flat cost: creates/s {run.per_second:.1f} -> {run_k.per_second:.1f}"
                    f" ({run.per_second / run_k.per_second:.2f}x slower);"
                    f" CPU-ms per create (net) {cost.cpu_total()[1]:.1f} -> {cost_k.cpu_total()[1]:.1f}"
                    f" ({cost_k.cpu_total()[1] / cost.cpu_total()[1]:.2f}x); store CPU-ms per create (net)"
                    f" {cost.cpu_ms.get('store', (0, 0))[1]:.1f} -> {cost_k.cpu_ms.get('store', (0, 0))[1]:.1f}"
                )
    finally:
        watcher.stop()
        await mongo.close()
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="creates in the closed-loop phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=50, help="creates per second in the sustained phase (0: skip)")
    parser.add_argument("--seconds", type=float, default=60, help="length of the sustained phase")
    parser.add_argument("--prefill", type=int, default=0, help="customers added by the raw driver, then the loop again")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="crm-system-bench-"))
    system = System(data_dir)
    failed = True
    try:
        print("\n".join(asyncio.run(measure(args, system))), flush=True)
        failed = False
    finally:
        system.stop()
        if failed or args.keep:
            print(f"(data and logs kept in {data_dir})", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
