"""Lead conversion across services: conversions/s, 202 -> converted, store commands and CPU per conversion.

    ip netns add bench && ip netns exec bench ip link set lo up
    ip netns exec bench .venv/bin/python bench/leads_conversion.py [--leads 100] [--concurrency 1,8]
        [--opportunity both|yes|no] [--warmup 5] [--idle 10] [--plans]

One embedded backend (Tansu memory storage + nx-27017 in memory) with the leads, customers,
pipeline and interactions services each running as a real process (its own database), so a
conversion's whole cost shows: the request, the outbox relays and the consumers that carry the
commands (``crm.lead.conversion_requested`` -> customers -> ``crm.customer.lead_linked`` -> leads
[-> ``crm.lead.conversion_progressed`` -> pipeline -> ``crm.opportunity.created`` -> leads] ->
``crm.lead.converted``) and every consumer that reacts to what was made (the leads' and the
pipeline's and interactions' copies of the customers, interactions following the lead).

For each concurrency c and each kind of conversion (customer + contact + opportunity; customer +
contact), in turn:

1. N leads created and qualified through the API at c (POST, then PATCH new -> contacted ->
   qualified with If-Match), unique company names, phones and emails, spread over 20 reps;
2. the system settles (no store write anywhere for a while), then the N conversions at c: each
   of the c workers posts ``POST /v1/leads/{id}/convert`` (202) and waits until the lead's
   ``crm.lead.converted`` is on Kafka before taking the next lead;
3. the system settles again. Printed: conversions/s (first POST to last converted); p50/p95 of
   the convert request and of 202 -> converted, and of each hop (202 -> each step's event read
   from Kafka); store commands per conversion by service, origin (http: the requests; consumer;
   relay, net of its idle polls) and command, from every service's ``crm_store_commands_total``;
   events handled per conversion by each service's consumers; CPU-ms per conversion of each
   process (/proc/<pid>/stat: services, store, broker), gross and net of the idle rate
   measured before the phases; every lead then read once through the API (``converted``, with
   its customer, contact and opportunity ids).

``--plans`` runs the conversions on a store that plans every SQL statement it executes
(``crm_platform.testing.query_plans``, the plan tests' tool) and prints, instead of figures, each
statement shape whose plan reads more than the rows it needs (a scan, a whole-index walk, a sort of
every match, a per-row subquery), by service.

"Converted" is read from the event stream, not by polling the API: 8 workers polling every 20 ms
would add some 250 GETs a second, each a store command, to the load being measured. The event is
published by the leads relay right after the write that converts the lead, so the figure is the
write's moment plus the relay's publish (milliseconds) plus the watcher's fetch (it asks the
broker to answer within 50 ms when nothing is there). The watcher's fetches cost the broker CPU,
which is in its idle rate, so the net figures leave them out.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from common import BENCH_JWT_SECRET, NO_REP_LIMIT, backend_only, bearer, header, percentile

from crm_platform.contracts import customers as cev
from crm_platform.contracts import leads as lev
from crm_platform.contracts import pipeline as pev
from crm_platform.devstack.processes import ManagedProcess, free_port
from crm_platform.devstack.services import SERVICES, ServiceSpec, service_env, start_service
from crm_platform.testing.backends import Backend
from crm_platform.testing.query_plans import Statement, TracedStore

Document = dict[str, Any]
RUNNING = ("leads", "customers", "pipeline", "interactions")
DEPARTMENT = "/bench/sales"
REPS = [bearer(f"bench-conv-rep-{i:02d}", ["rep"], DEPARTMENT) for i in range(20)]
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE = re.compile(
    r"^(?P<name>crm_store_commands_total|crm_events_consumed_total)\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
)
LABEL = re.compile(r'(\w+)="([^"]*)"')
ANSI = re.compile(r"\x1b\[[0-9;]*m")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: A statement's values, for grouping statements of one shape.
LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
#: The steps of a conversion as they appear on Kafka, in order (the opportunity's two only with one).
STEPS = (
    lev.LEAD_CONVERSION_REQUESTED.name,
    cev.LEAD_LINKED.name,
    lev.LEAD_CONVERSION_PROGRESSED.name,
    pev.OPPORTUNITY_CREATED.name,
    lev.LEAD_CONVERTED.name,
)
FAILED = (lev.LEAD_CONVERSION_FAILED.name,)
#: Longest a consumer sleeps between two attempts (settings' consumer_backoff_max_seconds): the
#: system has settled once no store write happened for longer than that.
QUIET_SECONDS = 6.0


# --- the stack ---------------------------------------------------------------------------------


@contextmanager
def services(
    backend: Backend, log_dir: Path, mongo_url: str | None = None
) -> Iterator[dict[str, tuple[ServiceSpec, ManagedProcess]]]:
    """The four services as real processes, each on a free port with a database of its own (on the
    backend's store, or on ``mongo_url``)."""
    running: dict[str, tuple[ServiceSpec, ManagedProcess]] = {}
    with ExitStack() as stack:
        for base in SERVICES:
            if base.name not in RUNNING:
                continue
            spec = dataclasses.replace(
                base, http_port=free_port(), database=f"bench_{base.name}_{uuid.uuid4().hex[:6]}"
            )
            env = service_env(
                spec,
                kafka_bootstrap=backend.kafka_bootstrap,
                mongo_url=mongo_url or backend.mongo_url,
                jwt_secret=BENCH_JWT_SECRET,
                kafka_enable_idempotence=backend.kafka_enable_idempotence,
            )
            env["CRM_MAX_CUSTOMERS_PER_REP"] = NO_REP_LIMIT
            process = start_service(spec, env, log_dir, timeout=180)
            stack.callback(process.stop)
            running[spec.name] = (spec, process)
        yield running


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


# --- what the services count ---------------------------------------------------------------------

Key = tuple[str, str, str]  # (service, origin or consumer group, command or event type)


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    commands: dict[Key, float]  # (service, origin, command)
    consumed: dict[Key, float]  # (service, group, type), outcome ok

    @classmethod
    async def take(cls, http: httpx.AsyncClient, urls: dict[str, str], pids: dict[str, int]) -> Snapshot:
        commands: dict[Key, float] = {}
        consumed: dict[Key, float] = {}

        async def one(service: str, url: str) -> None:
            text = (await http.get(f"{url}/metrics")).text
            for line in text.splitlines():
                match = SAMPLE.match(line)
                if match is None:
                    continue
                labels = dict(LABEL.findall(match["labels"]))
                if match["name"] == "crm_store_commands_total":
                    key = (service, labels.get("origin", "?"), labels.get("command", "?"))
                    commands[key] = float(match["value"])
                elif labels.get("outcome") == "ok":
                    consumed[(service, labels.get("group", "?"), labels.get("type", "?"))] = float(match["value"])

        await asyncio.gather(*(one(s, u) for s, u in urls.items()))
        return cls(time.monotonic(), cpu_seconds(pids), commands, consumed)

    def writes(self) -> float:
        """Every store command but the relays' and schedulers' polls (finds outside requests and consumers)."""
        return sum(
            v
            for (_, origin, command), v in self.commands.items()
            if origin in ("http", "consumer") or command != "find"
        )


def delta(after: dict[Key, float], before: dict[Key, float]) -> dict[Key, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


async def settled(
    http: httpx.AsyncClient, urls: dict[str, str], pids: dict[str, int], within: float = 300.0
) -> Snapshot:
    """A snapshot once no store write has happened anywhere for QUIET_SECONDS (a consumer in its
    backoff sleeps up to 5 s between attempts)."""
    deadline = time.monotonic() + within
    last = await Snapshot.take(http, urls, pids)
    while time.monotonic() < deadline:
        await asyncio.sleep(QUIET_SECONDS)
        now = await Snapshot.take(http, urls, pids)
        if now.writes() == last.writes():
            return last  # the moment the quiet began: the idle wait is not the conversions' cost
        last = now
    return last


# --- the event stream ----------------------------------------------------------------------------


class StepWatcher:
    """Reads the three topics in its own thread, from their end, keeping when each lead's step
    events arrived (epoch seconds); every partition assigned explicitly (no group, no rebalance)."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, float]] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), name="step-watcher", daemon=True)

    def __enter__(self) -> StepWatcher:
        self._thread.start()
        if not self._ready.wait(60) or self._error:
            raise RuntimeError(f"the event watcher did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def steps(self, lead_id: str) -> dict[str, float]:
        with self._lock:
            return dict(self._seen.get(lead_id, {}))

    async def ended(self, lead_id: str, within: float) -> dict[str, float]:
        """The lead's steps once it is converted or failed (or ``within`` seconds passed)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            steps = self.steps(lead_id)
            if lev.LEAD_CONVERTED.name in steps or any(f in steps for f in FAILED):
                return steps
            await asyncio.sleep(0.005)
        return self.steps(lead_id)

    async def _consume(self) -> None:
        # fetch_max_wait_ms bounds how long the broker may hold a fetch when nothing is there.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        try:
            await consumer.start()
            partitions = [tp for topic in self._topics for tp in await self._partitions(consumer, topic)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)  # resolve the end offsets now, before anything is written
            self._ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=20)
                now = time.time()
                for records in batch.values():
                    for record in records:
                        self._keep(record.value or b"", now)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        finally:
            await consumer.stop()

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
        deadline = time.monotonic() + 60
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions")
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]

    def _keep(self, value: bytes, now: float) -> None:
        event = json.loads(value)
        kind = event.get("type")
        data = event.get("data") or {}
        if kind in (*STEPS[:3], *STEPS[4:], *FAILED) and kind != cev.LEAD_LINKED.name:
            lead_id = event.get("subject")
        elif kind == cev.LEAD_LINKED.name:
            lead_id = data.get("lead_id")
        elif kind == pev.OPPORTUNITY_CREATED.name:
            lead_id = (data.get("opportunity") or {}).get("lead_id")
        else:
            return
        if lead_id:
            with self._lock:
                self._seen.setdefault(lead_id, {}).setdefault(kind, now)


# --- load ----------------------------------------------------------------------------------------


async def concurrently(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def lead_body(run: str, i: int) -> Document:
    serial = uuid.uuid4().int % 10**8
    return {
        "company_name": f"基准转化{run}贸易{i:05d}有限公司",
        "contact_name": f"联系人{i}",
        "phones": [f"+86139{serial:08d}"],
        "emails": [f"conv-{run}-{i}@bench.example.com"],
        "source": "exhibition",
        "industry": "制造",
    }


async def create_qualified(
    http: httpx.AsyncClient, leads_url: str, run: str, n: int, concurrency: int
) -> tuple[list[str], float]:
    """N leads entered and moved new -> contacted -> qualified, each by its rep."""
    ids: list[str] = [""] * n

    async def one(i: int) -> None:
        rep = REPS[i % len(REPS)]
        r = await http.post(leads_url, json=lead_body(run, i), headers=rep)
        assert r.status_code == 201, r.text
        lead_id = r.json()["id"]
        for status in ("contacted", "qualified"):
            r = await http.patch(
                f"{leads_url}/{lead_id}", json={"status": status}, headers={**rep, "If-Match": r.headers["ETag"]}
            )
            assert r.status_code == 200, r.text
        ids[i] = lead_id

    seconds = await concurrently(n, concurrency, one)
    return ids, seconds


@dataclass
class Conversions:
    opportunity: bool
    seconds: float = 0.0
    request_ms: list[float] = field(default_factory=list)  # POST .../convert until its 202
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # lead -> step -> epoch s
    accepted_at: dict[str, float] = field(default_factory=dict)  # lead -> epoch s of the 202
    failures: list[str] = field(default_factory=list)

    def converted(self) -> list[str]:
        return [i for i, s in self.steps.items() if lev.LEAD_CONVERTED.name in s]

    def after_202(self, step: str) -> list[float]:
        return [(s[step] - self.accepted_at[i]) * 1000 for i, s in self.steps.items() if step in s]


def convert_body(opportunity: bool, i: int) -> Document:
    if not opportunity:
        return {}
    return {"opportunity": {"name": f"线索商机 {i}", "amount": "50000.00", "currency": "CNY"}}


async def convert_all(
    http: httpx.AsyncClient,
    leads_url: str,
    watcher: StepWatcher,
    ids: Sequence[str],
    concurrency: int,
    opportunity: bool,
) -> Conversions:
    done = Conversions(opportunity)

    async def one(i: int) -> None:
        lead_id = ids[i]
        started = time.perf_counter()
        r = await http.post(
            f"{leads_url}/{lead_id}/convert", json=convert_body(opportunity, i), headers=REPS[i % len(REPS)]
        )
        done.accepted_at[lead_id] = time.time()
        if r.status_code != 202:
            done.failures.append(f"{lead_id}: {r.status_code} {r.text[:300]}")
            return
        done.request_ms.append((time.perf_counter() - started) * 1000)
        steps = await watcher.ended(lead_id, within=180)
        done.steps[lead_id] = steps
        if lev.LEAD_CONVERTED.name not in steps:
            done.failures.append(f"{lead_id}: not converted, steps seen {sorted(steps)}")

    done.seconds = await concurrently(len(ids), concurrency, one)
    return done


async def verify(http: httpx.AsyncClient, leads_url: str, ids: Sequence[str], opportunity: bool) -> list[str]:
    """Every lead read once through the API: converted, with what the conversion made."""
    wrong: list[str] = []
    for i, lead_id in enumerate(ids):
        lead = (await http.get(f"{leads_url}/{lead_id}", headers=REPS[i % len(REPS)])).json()
        made = lead.get("customer_id") and lead.get("contact_id") and (lead.get("opportunity_id") or not opportunity)
        if lead.get("status") != "converted" or not made:
            wrong.append(f"{lead_id}: {lead.get('status')} {lead.get('conversion')}")
    return wrong


# --- report --------------------------------------------------------------------------------------


def p(values: Sequence[float], q: float) -> str:
    return f"{percentile(values, q):.0f}" if values else "-"


def rate(before: Snapshot, after: Snapshot) -> tuple[dict[str, float], dict[Key, float]]:
    """CPU seconds per second and commands per second over an idle stretch."""
    seconds = after.at - before.at
    cpu = {k: (v - before.cpu.get(k, 0.0)) / seconds for k, v in after.cpu.items()}
    commands = {k: v / seconds for k, v in delta(after.commands, before.commands).items()}
    return cpu, commands


def cost_lines(
    n: int, before: Snapshot, after: Snapshot, idle: tuple[dict[str, float], dict[Key, float]], processes: Sequence[str]
) -> list[str]:
    seconds = after.at - before.at
    idle_cpu, idle_commands = idle
    lines = [f"cost per conversion over {seconds:.1f} s (conversions and their consumers, until settled):"]
    commands = delta(after.commands, before.commands)
    # The relays' and schedulers' polls run whether or not anything happens: their idle rate
    # over this stretch is taken off (the other origins are work caused by the conversions).
    net = {
        k: max(v - (idle_commands.get(k, 0.0) * seconds if k[1] not in ("http", "consumer") else 0.0), 0.0)
        for k, v in commands.items()
    }
    by_service: dict[str, dict[str, float]] = {}
    for (service, origin, _), v in net.items():
        by_service.setdefault(service, {})
        by_service[service][origin] = by_service[service].get(origin, 0.0) + v / n
    total = sum(net.values()) / n
    request_consumer = sum(v for k, v in net.items() if k[1] in ("http", "consumer")) / n
    lines.append(
        f"  store commands: {total:.1f} in all; requests + consumers {request_consumer:.1f} "
        "(relays and other background work net of their idle rate)"
    )
    for service in sorted(by_service):
        origins = by_service[service]
        detail = ", ".join(f"{o} {v:.2f}" for o, v in sorted(origins.items()) if v >= 0.005)
        lines.append(f"    {service:<13}{sum(origins.values()):6.2f} = {detail}")
        rows = sorted(((k, v) for k, v in net.items() if k[0] == service and v / n >= 0.05), key=lambda kv: -kv[1])
        lines.append("      " + ", ".join(f"{o}/{c} {v / n:.2f}" for (_, o, c), v in rows))
    consumed = delta(after.consumed, before.consumed)
    lines.append("  events handled per conversion, by service (consumer group: type count):")
    for service in sorted({k[0] for k in consumed}):
        rows = sorted(((k, v) for k, v in consumed.items() if k[0] == service), key=lambda kv: -kv[1])
        lines.append(f"    {service:<13}" + ", ".join(f"{g}: {t} {v / n:.2f}" for (_, g, t), v in rows))
    gross_all = net_all = 0.0
    cpu_rows = []
    for name in processes:
        used = (after.cpu.get(name, 0.0) - before.cpu.get(name, 0.0)) * 1000
        idle_ms = idle_cpu.get(name, 0.0) * seconds * 1000
        gross_all += used
        net_all += max(used - idle_ms, 0.0)
        cpu_rows.append(f"{name} {used / n:.1f} ({max(used - idle_ms, 0.0) / n:.1f})")
    lines.append(
        f"  CPU-ms per conversion, gross (net of idle): all {gross_all / n:.1f} ({net_all / n:.1f}); "
        + ", ".join(cpu_rows)
    )
    return lines


def latency_lines(run: Conversions) -> list[str]:
    n = len(run.converted())
    lines = [
        f"  {n} converted of {len(run.accepted_at)} in {run.seconds:.2f} s: {n / run.seconds:.2f} conversions/s",
        f"  POST convert -> 202: p50 {p(run.request_ms, 50)} ms, p95 {p(run.request_ms, 95)} ms",
    ]
    total = run.after_202(lev.LEAD_CONVERTED.name)
    lines.append(f"  202 -> converted (on Kafka): p50 {p(total, 50)} ms, p95 {p(total, 95)} ms, max {p(total, 100)} ms")
    hops = [s for s in STEPS if run.opportunity or s not in (STEPS[2], STEPS[3])]
    previous = "202"
    parts = []
    for step in hops:
        values = run.after_202(step)
        parts.append(f"{step.rsplit('.', 1)[1]} {p(values, 50)}/{p(values, 95)}")
        previous = step
    assert previous == lev.LEAD_CONVERTED.name
    lines.append("  202 -> each step's event, p50/p95 ms: " + ", ".join(parts))
    gaps = []
    for a, b in itertools.pairwise(hops):
        values = [(s[b] - s[a]) * 1000 for s in run.steps.values() if a in s and b in s]
        gaps.append(f"{a.rsplit('.', 1)[1]} -> {b.rsplit('.', 1)[1]} {p(values, 50)}/{p(values, 95)}")
    lines.append("  each hop, p50/p95 ms: " + "; ".join(gaps))
    if run.failures:
        lines.append(f"  FAILURES: {len(run.failures)}, first: {run.failures[0]}")
    return lines


def warnings_in_logs(log_dir: Path) -> dict[str, Tally[str]]:
    """The services' warning and error lines, per service: a consumer's retries by event type and
    error, the rest by message (ids left out, so lines of one kind count together)."""
    found: dict[str, Tally[str]] = {}
    for log in sorted(log_dir.glob("*.log")):
        tally: Tally[str] = Tally()
        for raw in log.read_text(errors="replace").splitlines():
            line = ANSI.sub("", raw)
            level = re.search(r"\[(warning|error|critical)\s*\] (.*?)(?:\s{2,}|\s\w+=|$)", line)
            if level is None:
                continue
            if "event handler failed; retrying" in line:
                kind = re.search(r"type=(\S+)", line)
                error = re.search(r"error=('[^']*'|\"[^\"]*\"|\S+)", line)
                what = f"retried {kind[1] if kind else '?'}: {error[1] if error else '?'}"
            else:
                what = f"{level[1]}: {level[2]}"
            tally[UUID.sub("<id>", what)[:140]] += 1
        if tally:
            found[log.stem] = tally
    return found


# --- the run -------------------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace, backend: Backend, running: dict[str, tuple[ServiceSpec, ManagedProcess]], log_dir: Path
) -> list[str]:
    urls = {name: spec.url() for name, (spec, _) in running.items()}
    pids = {name: process.pid for name, (_, process) in running.items()}
    broker, store = backend.processes  # the embedded backend's two processes, in this order
    pids |= {"store": store.pid, "broker": broker.pid}
    processes = [*RUNNING, "store", "broker"]
    leads_url = f"{urls['leads']}/v1/leads"
    topics = [spec.topic for name, (spec, _) in running.items() if name in ("leads", "customers", "pipeline")]
    kinds = {"both": [True, False], "yes": [True], "no": [False]}[args.opportunity]
    lines = [
        f"load:    {args.leads} leads per phase, concurrency {args.concurrency}, {len(REPS)} reps of {DEPARTMENT}; "
        f"warm-up {args.warmup} conversions with an opportunity (excluded)",
    ]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        with StepWatcher(backend.kafka_bootstrap, topics) as watcher:
            # Warm-up: every consumer group has its partitions (the pipeline's conversion group does
            # not hold up /readyz) and every code path has run once.
            ids, _ = await create_qualified(http, leads_url, "warm", args.warmup, 1)
            warm = await convert_all(http, leads_url, watcher, ids, 1, True)
            if warm.failures:
                raise RuntimeError(f"warm-up conversions failed: {warm.failures[:3]}")
            lines.append(f"warm-up: 202 -> converted {', '.join(f'{v:.0f}' for v in warm.after_202(STEPS[-1]))} ms")
            await settled(http, urls, pids)
            start = await Snapshot.take(http, urls, pids)
            await asyncio.sleep(args.idle)
            idle = rate(start, await Snapshot.take(http, urls, pids))
            idle_cpu = ", ".join(f"{k} {v * 1000:.1f}" for k, v in idle[0].items())
            lines.append(f"idle over {args.idle:g} s, CPU-ms per second: {idle_cpu}")
            for concurrency in args.concurrency:
                for opportunity in kinds:
                    what = "customer + contact + opportunity" if opportunity else "customer + contact"
                    run = f"c{concurrency}{'o' if opportunity else 'n'}{uuid.uuid4().hex[:4]}"
                    ids, created = await create_qualified(http, leads_url, run, args.leads, concurrency)
                    await settled(http, urls, pids)
                    before = await Snapshot.take(http, urls, pids)
                    done = await convert_all(http, leads_url, watcher, ids, concurrency, opportunity)
                    after = await settled(http, urls, pids)
                    wrong = await verify(http, leads_url, ids, opportunity)
                    lines += [
                        "",
                        f"--- c={concurrency}: into {what} ---",
                        f"  leads created and qualified (3 requests each) at c={concurrency}: "
                        f"{args.leads / created:.1f} leads/s",
                        *latency_lines(done),
                        *cost_lines(len(done.converted()) or 1, before, after, idle, processes),
                        f"  read back: {len(ids) - len(wrong)} of {len(ids)} converted with their ids"
                        + (f"; first wrong: {wrong[0]}" if wrong else ""),
                    ]
                    print("\n".join(lines), flush=True)
                    lines = []
    logged = warnings_in_logs(log_dir)
    lines += ["", "warnings and errors in the services' logs (whole run, warm-up included):"]
    if not logged:
        lines.append("  none")
    for service, tally in logged.items():
        lines += [f"  {service}: {count} x {what}" for what, count in tally.most_common(8)]
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100, help="leads converted per concurrency and kind")
    parser.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[1, 8], help="e.g. 1,8")
    parser.add_argument(
        "--opportunity",
        choices=("both", "yes", "no"),
        default="both",
        help="convert with an opportunity, without, both",
    )
    parser.add_argument("--warmup", type=int, default=5, help="conversions before measuring (excluded)")
    parser.add_argument(
        "--plans",
        action="store_true",
        help="instead of figures: the store's query plans of the conversions' statements",
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured (for net figures)")
    return parser.parse_args(argv)


async def plans(
    args: argparse.Namespace, store: TracedStore, running: dict[str, tuple[ServiceSpec, ManagedProcess]], bootstrap: str
) -> list[str]:
    """Every SQL statement the conversions make the store run, with the plans that read more than
    the rows they need (the plan tests' criteria: full scans, whole-index walks, sorts of every
    match, per-row subqueries), one line per statement shape."""
    urls = {name: spec.url() for name, (spec, _) in running.items()}
    leads_url = f"{urls['leads']}/v1/leads"
    topics = [spec.topic for name, (spec, _) in running.items() if name in ("leads", "customers", "pipeline")]
    databases = {spec.database: name for name, (spec, _) in running.items()}
    lines = [f"plans: {args.leads} conversions of each kind at c={args.concurrency[0]} on a traced store"]
    async with httpx.AsyncClient(timeout=120) as http:
        with StepWatcher(bootstrap, topics) as watcher:
            ids, _ = await create_qualified(http, leads_url, "warm", args.warmup, 1)
            await convert_all(http, leads_url, watcher, ids, 1, True)
            await asyncio.sleep(QUIET_SECONDS)
            runs = {}
            for opportunity in (True, False):
                ids, _ = await create_qualified(http, leads_url, f"plan{opportunity:d}", args.leads, 1)
                await asyncio.sleep(QUIET_SECONDS)
                with store.capture() as captured:
                    done = await convert_all(http, leads_url, watcher, ids, args.concurrency[0], opportunity)
                    await asyncio.sleep(QUIET_SECONDS)  # the consumers of what was made, too
                runs[opportunity] = (done, captured)
    for opportunity, (done, captured) in runs.items():
        n = len(done.converted()) or 1
        what = "customer + contact + opportunity" if opportunity else "customer + contact"
        statements = [s for s in captured.statements if s.database in databases]
        counts = Tally(databases[s.database] for s in statements)
        lines += [
            "",
            f"--- into {what}: {len(done.converted())} converted; SQL statements per conversion (idle polls "
            "included): " + ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(counts.items())),
        ]
        shapes: dict[tuple[str, str], tuple[int, Statement]] = {}
        for s in captured.scans(sorted_results=True, row_filters=True):
            if s.database not in databases:
                continue
            key = (databases[s.database], LITERAL.sub("?", s.sql))
            count, _ = shapes.get(key, (0, s))
            shapes[key] = (count + 1, s)
        distinct = {(s.database, LITERAL.sub("?", s.sql)) for s in statements}
        lines.append(f"  {len(statements)} statements planned, {len(distinct)} shapes")
        if not shapes:
            lines.append("  no statement reads more than the rows it needs")
        for (service, _), (count, s) in sorted(shapes.items(), key=lambda kv: -kv[1][0]):
            lines.append(f"  {service}: {count / n:.2f} per conversion: {s.sql[:400]}")
            lines += [f"      {line}" for line in s.plan]
    return lines


def main() -> None:
    args = parse_args()
    lines = header("lead conversion across leads, customers, pipeline and interactions")
    print("\n".join(lines), flush=True)
    with backend_only() as (backend, log_dir):
        if args.plans:
            # The store in this process, tracing every statement (crm_platform.testing.query_plans):
            # slower than nx-27017 alone, so this mode prints plans, not figures.
            store = TracedStore()
            with services(backend, log_dir, store.url) as running:
                lines = asyncio.run(plans(args, store, running, backend.kafka_bootstrap))
        else:
            with services(backend, log_dir) as running:
                lines = asyncio.run(measure(args, backend, running, log_dir))
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
