"""Create-customer throughput and latency through the HTTP API, against the raw driver, plus event latency.

    python bench/customers_throughput.py [--n 2000] [--concurrency 16]

One run, side by side on the same embedded store (nx-27017) and broker (Tansu):

(a) POST /v1/customers through httpx.AsyncClient at the given concurrency, to the
    customers service running as a real uvicorn process;
(b) PyMongo AsyncMongoClient.insert_one of documents of the same stored shape
    (built with crm_customers' own new_customer, plus the version and outbox entry
    VersionedStore.insert adds) into another collection with the same indexes,
    at the same concurrency; then the ratio API/raw;
(c) for every customer created in (a), the crm.customer.created event read by an
    aiokafka consumer in this process: receive time minus the HTTP response time,
    and receive time minus the event's own `time` attribute.

Warm-up writes (API and raw) come first and are excluded from every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from common import backend_only, bearer, fresh_database, header, percentile, service_on
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from crm_customers.adapters.repository import INDEXES
from crm_customers.domain import rules
from crm_customers.domain.model import CustomerCreate
from crm_platform.auth import Principal, Role
from crm_platform.contracts import customers as ev
from crm_platform.outbox import PENDING, REV, ensure_outbox_indexes, epoch_ms, outbox_entries

Document = dict[str, Any]
TOPIC = "crm.customers.v1"
CREATED = "crm.customer.created"
RAW_COLLECTION = "bench_raw_customers"
OWNERS = 100  # writes spread over many reps: the per-rep count query stays small, as in real use
DEPARTMENTS = 10
CITIES = ["上海", "北京", "深圳", "杭州", "广州", "成都", "南京", "武汉"]
INDUSTRIES = ["制造", "零售", "软件", "物流", "医疗", "教育", "金融", "能源"]
TAGS = ["重点", "老客户", "华东", "渠道", "招投标", "续约", "高潜", "政府"]
EVENT_DEADLINE_SECONDS = 120.0
RUN_SERIALS = {"预热": 90_000_000, "基准": 0, "存量": 50_000_000}  # warm-up and measured run: disjoint phone ranges


# --- what is written --------------------------------------------------------------


@dataclass(frozen=True)
class Rep:
    user_id: str
    department_path: str
    headers: dict[str, str]

    @property
    def principal(self) -> Principal:
        return Principal(
            user_id=self.user_id,
            roles=frozenset({Role.rep}),
            department_id=self.department_path.rsplit("/", 1)[-1],
            department_path=self.department_path,
        )


def make_reps(count: int) -> list[Rep]:
    # Tokens are signed up front: signing is the directory's cost, not the API's.
    reps = []
    for i in range(count):
        path = f"/hq/r{i % DEPARTMENTS // 5 + 1}/t{i % DEPARTMENTS + 1}"
        reps.append(Rep(f"bench-rep-{i:03d}", path, bearer(f"bench-rep-{i:03d}", ["rep"], path)))
    return reps


def payload(run: str, i: int) -> Document:
    """A realistic company; the name and phone are unique so the duplicate check passes."""
    serial = RUN_SERIALS[run] + i  # phones differ between the warm-up and the measured run too
    return {
        "kind": "company",
        "name": f"{CITIES[i % len(CITIES)]}{run}{INDUSTRIES[i % len(INDUSTRIES)]}{i:07d}有限公司",
        "phones": [f"139{serial:08d}"],
        "tags": [TAGS[i % len(TAGS)], TAGS[(i * 3 + 1) % len(TAGS)]],
        "address": {"city": CITIES[i % len(CITIES)]},
        "industry": INDUSTRIES[i % len(INDUSTRIES)],
        "tier": "A",
    }


def stored_document(body: Document, rep: Rep) -> Document:
    """What the service stores for `body` (new_customer + VersionedStore.insert's bookkeeping)."""
    now = datetime.now(UTC)
    doc = rules.new_customer(CustomerCreate.model_validate(body), rep.principal, now)
    event = ev.CUSTOMER_CREATED.build(
        source="/crm/customers",
        subject=doc["_id"],
        data=ev.CustomerCreated(customer=rules.snapshot(doc), contacts=[], via="api"),
        aggregate_version=1,
        time=now,
        actor=rep.user_id,
    )
    return {**doc, "version": 1, REV: 0, "outbox": outbox_entries([(ev.TOPIC, event)]), PENDING: epoch_ms(now)}


async def prefill(db: Any, count: int, reps: Sequence[Rep]) -> None:
    """`count` customers in the service's stored shape, with their duplicate-check keys, written
    with the raw driver (fast), so a run measures creates into a store that already holds them.
    Their events count as published (no outbox), as for customers entered long ago."""
    batch: list[Document] = []
    keys: dict[str, list[str]] = {}
    for i in range(count):
        body = payload("存量", i)
        body["phones"] = [f"136{i:08d}"]
        doc = stored_document(body, reps[i % len(reps)])
        doc.pop(PENDING)
        doc["outbox"] = []
        batch.append(doc)
        for key in rules.identity_keys(doc):
            keys.setdefault(key, []).append(doc["_id"])
        if len(batch) == 1000 or i == count - 1:
            await db["customers"].insert_many(batch, ordered=False)
            batch = []
    docs = [{"_id": k, "holders": v, "rev": 0} for k, v in keys.items()]
    for start in range(0, len(docs), 1000):
        await db["customer_keys"].insert_many(docs[start : start + 1000], ordered=False)


async def store_commands(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """crm_store_commands_total of the customers process, by (origin, command)."""
    text = (await client.get("/metrics")).text
    found: dict[tuple[str, str], float] = {}
    for match in re.finditer(r"^crm_store_commands_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        found[(labels.get("origin", ""), labels.get("command", ""))] = float(match["value"])
    return found


# --- load ----------------------------------------------------------------------------


@dataclass
class Run:
    """One timed phase: per-request latencies (s) and the wall time of the whole phase."""

    latencies: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # perf_counter() at each success, in order
    elapsed: float = 0.0
    started: float = 0.0
    failures: list[str] = field(default_factory=list)
    responded_at: dict[str, float] = field(default_factory=dict)  # customer id -> time.time() of the 201

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def per_second(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def per_second_by_quarter(self) -> list[float]:
        """Rate in each quarter of the completions: shows whether a write slows down as the collection grows."""
        marks = [self.started, *self.finished]
        quarter = len(self.finished) // 4
        if quarter == 0:
            return []
        return [quarter / (marks[(q + 1) * quarter] - marks[q * quarter]) for q in range(4)]


async def run_concurrently(jobs: int, concurrency: int, one: Any) -> float:
    """Call `one(i)` for i in range(jobs) from `concurrency` workers; return the wall time."""
    indexes = iter(range(jobs))

    async def worker() -> None:
        # One shared iterator: a worker takes the next index as soon as it is free (closed loop).
        for i in indexes:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def api_creates(
    client: httpx.AsyncClient, bodies: Sequence[Document], reps: Sequence[Rep], concurrency: int
) -> Run:
    run = Run()

    async def one(i: int) -> None:
        started = time.perf_counter()
        response = await client.post("/v1/customers", json=bodies[i], headers=reps[i % len(reps)].headers)
        took = time.perf_counter() - started
        if response.status_code != 201:
            run.failures.append(f"{response.status_code} {response.text[:200]}")
            return
        run.responded_at[response.json()["id"]] = time.time()
        run.latencies.append(took)
        run.finished.append(time.perf_counter())

    run.started = time.perf_counter()
    run.elapsed = await run_concurrently(len(bodies), concurrency, one)
    return run


async def raw_inserts(collection: AsyncCollection[Document], docs: Sequence[Document], concurrency: int) -> Run:
    run = Run()

    async def one(i: int) -> None:
        started = time.perf_counter()
        await collection.insert_one(docs[i])
        run.latencies.append(time.perf_counter() - started)
        run.finished.append(time.perf_counter())

    run.started = time.perf_counter()
    run.elapsed = await run_concurrently(len(docs), concurrency, one)
    return run


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when the consumer got it
    event_time: float  # the event's `time` attribute, as epoch seconds


class EventWatcher:
    """Reads the topic in its own thread and event loop, from the end, keeping created events by subject.

    A thread of its own so the load generator's busy event loop does not delay the
    receive timestamps; every partition is assigned explicitly (no group), so there
    is no rebalance wait.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._lock = threading.Lock()
        self._received: dict[str, Received] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), name="event-watcher", daemon=True)

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error:
            raise RuntimeError(f"the event consumer did not start: {self._error!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def received(self) -> dict[str, Received]:
        with self._lock:
            return dict(self._received)

    async def wait_for(self, ids: Sequence[str], within: float) -> dict[str, Received]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            got = self.received()
            if all(i in got for i in ids):
                break
            await asyncio.sleep(0.05)
        return self.received()

    async def _consume(self) -> None:
        # fetch_max_wait_ms bounds how long the broker may hold a fetch when nothing is there;
        # a broker that waits it out before answering would add up to that much to every figure.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        try:
            await consumer.start()
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)  # resolve the end offsets now, before anything is written
            self._ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=50)
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

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + 30
        while not consumer.partitions_for_topic(self._topic):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {self._topic} has no partitions")
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        return [TopicPartition(self._topic, p) for p in sorted(consumer.partitions_for_topic(self._topic) or [])]

    def _keep(self, value: bytes, now: float) -> None:
        event = json.loads(value)
        if event.get("type") != CREATED:
            return
        sent = datetime.fromisoformat(event["time"]).timestamp()
        with self._lock:
            self._received.setdefault(event["subject"], Received(now, sent))


# --- report ----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def latency_row(label: str, run: Run) -> str:
    lat = run.latencies
    return (
        f"{label:<26}{run.ok:>6}{run.elapsed:>8.2f}{run.per_second:>9.0f}"
        f"{ms(percentile(lat, 50))}{ms(percentile(lat, 90))}{ms(percentile(lat, 99))}{ms(max(lat, default=0.0))}"
    )


def spread_row(label: str, values: Sequence[float]) -> str:
    figures = [percentile(values, 50), percentile(values, 90), percentile(values, 99), max(values, default=0.0)]
    return f"  {label:<34}" + "".join(ms(v) for v in figures)


def commands_rows(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], creates: int) -> list[str]:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    by_origin: dict[str, float] = {}
    for (origin, _command), n in delta.items():
        by_origin[origin] = by_origin.get(origin, 0.0) + n
    per = {o: n / max(creates, 1) for o, n in sorted(by_origin.items()) if n > 0}
    detail = ", ".join(
        f"{o}/{c} {n / max(creates, 1):.2f}" for (o, c), n in sorted(delta.items()) if n / max(creates, 1) >= 0.05
    )
    return [
        f"store commands per create, customers process: {sum(per.values()):.2f} = "
        + " + ".join(f"{o} {n:.2f}" for o, n in per.items()),
        f"  by command: {detail}",
    ]


def report(
    args: argparse.Namespace, api: Run, raw: Run, got: dict[str, Received], commands: list[str] | None = None
) -> str:
    mine = [(got[cid], at) for cid, at in api.responded_at.items() if cid in got]
    after_response = [r.at - at for r, at in mine]
    after_event_time = [r.at - r.event_time for r, _ in mine]
    lines = [
        *header("customers: create throughput, API vs raw driver, event latency"),
        f"load:    n={args.n} per side, concurrency={args.concurrency}, warm-up {args.warmup} per side (excluded); "
        f"{OWNERS} reps; raw collection has the service's indexes; store prefilled with {args.prefill} customers",
        "",
        f"{'(a)/(b) creates':<26}{'ok':>6}{'secs':>8}{'ops/s':>9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}",
        latency_row("API POST /v1/customers", api),
        latency_row("raw insert_one", raw),
        f"ratio API/raw: throughput {api.per_second / raw.per_second:.3g}x, "
        f"p50 latency {percentile(api.latencies, 50) / percentile(raw.latencies, 50):.3g}x, "
        f"p99 latency {percentile(api.latencies, 99) / percentile(raw.latencies, 99):.3g}x",
        "ops/s by quarter of the run: API "
        + " / ".join(f"{r:.0f}" for r in api.per_second_by_quarter())
        + ", raw "
        + " / ".join(f"{r:.0f}" for r in raw.per_second_by_quarter()),
    ]
    if api.failures:
        lines.append(f"API failures: {len(api.failures)}, first: {api.failures[0]}")
    lines += commands or []
    lines += [
        "",
        f"(c) events {CREATED} on {TOPIC}: received {len(mine)} of {args.n} (of {api.ok} created)"
        + ("" if len(mine) == args.n else "  <-- MISSING EVENTS"),
        f"  {'':<34}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}",
        spread_row("receive - HTTP 201 received", after_response),
        spread_row("receive - event `time`", after_event_time),
    ]
    return "\n".join(lines)


# --- the run ---------------------------------------------------------------------------


async def measure(args: argparse.Namespace, base_url: str, mongo_url: str, database: str, bootstrap: str) -> str:
    reps = make_reps(OWNERS)
    warm_bodies = [payload("预热", i) for i in range(args.warmup)]
    bodies = [payload("基准", i) for i in range(args.n)]
    # Built before the clock starts: the raw side times the driver and the store only.
    raw_warm = [stored_document(b, reps[i % OWNERS]) for i, b in enumerate(warm_bodies)]
    raw_docs = [stored_document(b, reps[i % OWNERS]) for i, b in enumerate(bodies)]

    watcher = EventWatcher(bootstrap, TOPIC)
    watcher.start()
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo_url, tz_aware=True, maxPoolSize=max(args.concurrency, 10)
    )
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    try:
        if args.prefill:
            await prefill(mongo[database], args.prefill, reps)
        raw = mongo[database][RAW_COLLECTION]
        # The same indexes as the service's collection: index upkeep is the store's cost, not the API's.
        await raw.create_indexes(INDEXES)
        await ensure_outbox_indexes(raw)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
            warm = await api_creates(client, warm_bodies, reps, args.concurrency)
            if warm.failures:
                raise RuntimeError(f"warm-up creates failed: {warm.failures[:3]}")
            await raw_inserts(raw, raw_warm, args.concurrency)
            await watcher.wait_for(list(warm.responded_at), EVENT_DEADLINE_SECONDS)

            counted = await store_commands(client)
            api = await api_creates(client, bodies, reps, args.concurrency)
            # Let the relay finish before the raw phase, so it does not compete with it for CPU.
            got = await watcher.wait_for(list(api.responded_at), EVENT_DEADLINE_SECONDS)
            await asyncio.sleep(1.5)  # the relay's removal of the last published events
            commands = commands_rows(counted, await store_commands(client), api.ok)
            raw_run = await raw_inserts(raw, raw_docs, args.concurrency)
    finally:
        watcher.stop()
        await mongo.close()
    return report(args, api, raw_run, got, commands)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="creates per side (API and raw), after the warm-up")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once, both sides")
    parser.add_argument("--warmup", type=int, default=50, help="creates per side before measuring (excluded)")
    parser.add_argument("--prefill", type=int, default=0, help="customers in the store before the run (raw inserts)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with backend_only() as (backend, log_dir):
        database = fresh_database("bench_create")
        with service_on(backend, log_dir, database) as stack:
            print(
                asyncio.run(measure(args, stack.url, backend.mongo_url, database, backend.kafka_bootstrap)), flush=True
            )


if __name__ == "__main__":
    main()
