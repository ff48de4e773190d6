"""Writes of the other services: store commands per write, throughput at 1k and at N stored, list pages.

    python bench/writes_other_services.py [--n 100000] [--writes 200] [--concurrency 16] [--pages 5]

One run on one embedded backend (Tansu + nx-27017) with pipeline, interactions, directory,
pool, notifications and reporting each running as a real process (its own database), so a
write's whole cost shows: the request, the outbox relay and every consumer that reacts.

For each kind (opportunities, interactions, tasks, directory users):

* store commands per write across the system: the sum of ``crm_store_commands_total`` over
  every running service's /metrics, before and after the measured writes (once the
  consumers have settled), divided by the writes;
* writes/s through the API at the given concurrency with 1k records of that kind stored, and
  again with N stored (pre-filled with the raw driver: clones of a record the API wrote, so the
  stored shape is the service's own, each with its own name and moments and spread over
  CUSTOMERS customers and OWNERS owners), and the ratio; beside it the raw driver's insert_one of
  the same shape at the same concurrency;
* p50/p95 of list page 1 and page 10 (20 per page, default sort) with N stored, ``--concurrency``
  readers walking ten pages at once, ``--pages`` walks each.

The prefill's duration is printed, so a run can tell whether N = 100k fits its time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from common import backend_only, bearer, bench_env, header, percentile
from pymongo import AsyncMongoClient

from crm_platform.devstack.processes import free_port
from crm_platform.devstack.services import SERVICES, ServiceSpec, start_service
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed
from crm_platform.testing.fixtures import eventually

Document = dict[str, Any]
RUNNING = ("pipeline", "interactions", "directory", "pool", "notifications", "reporting")
ROOT = "bench"
DEPT = f"/{ROOT}"
REP = "rep-bench"
REP_HEADERS = bearer(REP, ["rep"], DEPT)
ADMIN_HEADERS = bearer("admin-bench", ["admin"], DEPT)
#: Counted origins: the request and the consumers reacting to its events. The relays' and the
#: schedulers' idle polls run all the time whether anything is written or not (a cost per second,
#: not per write), so they are left out: with them the total never settles.
COMMANDS = re.compile(r'^crm_store_commands_total\{[^}]*origin="(?:http|consumer)"[^}]*\} ([0-9.e+]+)$', re.MULTILINE)


@dataclasses.dataclass
class Kind:
    name: str
    service: str
    collection: str
    path: str  # POST here to write, GET here to list
    body: Callable[[int], Document]
    headers: dict[str, str]
    unique: tuple[str, ...] = ()  # fields a clone must change besides _id (unique indexes)
    #: What clone i has of its own (top-level fields, and their sort-key copies in ``s``): a real
    #: CRM's records differ in name and spread over many customers and owners, and clones that
    #: share one make every per-customer or per-owner query, and every sort on them, one tie group.
    vary: Callable[[int], Document] = lambda i: {}


#: Clone i's customer and owner: CUSTOMERS customers spread over OWNERS owners, the bench's rep
#: one of them (so the rep's lists hold N / OWNERS clones: 1,000 at N = 100k).
CUSTOMERS, OWNERS = 20_000, 100


def customer_of(i: int) -> str:
    return f"fill-customer-{i % CUSTOMERS}"


def owner_of(i: int) -> str:
    owner = i % CUSTOMERS % OWNERS
    return REP if owner == 0 else f"fill-owner-{owner}"


@contextmanager
def services(backend: Backend, log_dir: Path) -> Iterator[dict[str, ServiceSpec]]:
    specs: dict[str, ServiceSpec] = {}
    with ExitStack() as stack:
        for spec in SERVICES:
            if spec.name not in RUNNING:
                continue
            spec = dataclasses.replace(
                spec, http_port=free_port(), database=f"bench_{spec.name}_{uuid.uuid4().hex[:6]}"
            )
            env = bench_env(spec, backend)
            process = start_service(spec, env, log_dir, timeout=180)
            stack.callback(process.stop)
            specs[spec.name] = spec
        yield specs


async def system_commands(http: httpx.AsyncClient, specs: dict[str, ServiceSpec]) -> float:
    total = 0.0
    for spec in specs.values():
        text = (await http.get(spec.url("/metrics"))).text
        total += sum(float(v) for v in COMMANDS.findall(text))
    return total


async def settled(http: httpx.AsyncClient, specs: dict[str, ServiceSpec]) -> float:
    """The system's command total once it stops moving (the relays and consumers are done)."""
    last = await system_commands(http, specs)
    for _ in range(120):
        await asyncio.sleep(1.5)
        now = await system_commands(http, specs)
        if now == last:
            return now
        last = now
    return last


async def concurrently(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Seconds to run one(i) for i in range(count), at most ``concurrency`` at a time."""
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def fill(db: Any, kind: Kind, template: Document, have: int, want: int) -> int:
    """Clones of ``template`` (outbox fields dropped) until ``want`` are stored; returns ``want``."""
    base = {k: v for k, v in template.items() if not k.startswith("outbox")}
    for start in range(have, want, 5000):
        batch = []
        for i in range(start, min(want, start + 5000)):
            doc = {**base, "_id": f"fill-{i}-{uuid.uuid4().hex[:6]}"}
            own = kind.vary(i)
            doc.update(own)
            if isinstance(base.get("s"), dict) and "id" in base["s"]:
                # The sort keys' copy of the id is every list's tie-breaker: it must follow _id. And
                # the moments one second apart: clones tied on every sort key made each list page
                # sort all N ties (a cost real data, whose moments differ, does not have). Not
                # s.fire_at: the task scheduler would fire the clones' reminders.
                # Not `type(v) is int`: PyMongo decodes a BSON int64 (every epoch-ms moment) as
                # bson.Int64, so that test kept every clone's moments equal (one tie group of N).
                keys = {
                    k: v - i * 1000 if k.endswith("_at") and k != "fire_at" and isinstance(v, int) else v
                    for k, v in base["s"].items()
                }
                # The sort keys' copies of the fields this clone has of its own (names casefolded, as
                # the services store them).
                mine = {k: v.casefold() if isinstance(v, str) else v for k, v in own.items() if k in keys}
                doc["s"] = {**keys, **mine, "id": doc["_id"]}
            for name in kind.unique:
                doc[name] = f"fill-{i}-{doc[name]}"
            batch.append(doc)
        await db[kind.collection].insert_many(batch, ordered=False)
    return want


async def _created(http: httpx.AsyncClient, url: str, kind: Kind) -> bool:
    r = await http.post(url, json=kind.body(-1), headers=kind.headers)
    assert r.status_code in (201, 503), r.text
    return r.status_code == 201


async def bench_kind(
    http: httpx.AsyncClient, mongo: Any, specs: dict[str, ServiceSpec], kind: Kind, args: argparse.Namespace
) -> list[str]:
    spec = specs[kind.service]
    db = mongo[spec.database]
    url = spec.url(kind.path)

    async def write(i: int) -> None:
        r = await http.post(url, json=kind.body(i), headers=kind.headers)
        assert r.status_code == 201, r.text

    # Warm-up, and the template of the clones; retried while the store still digests the last
    # kind's backlog (a 503 is the service's store timeout, which a heavy list phase can leave).
    await eventually(lambda: _created(http, url, kind), timeout=120, interval=1.0, message=f"{kind.name}: first write")
    template = await db[kind.collection].find_one({}, sort=[("_id", 1)])
    assert template is not None
    stored = await fill(db, kind, template, 1, 1000)

    before = await settled(http, specs)
    seconds_1k = await concurrently(args.writes, args.concurrency, write)
    per_write = (await settled(http, specs) - before) / args.writes

    raw = mongo[spec.database][f"raw_{kind.collection}"]
    base = {k: v for k, v in template.items() if not k.startswith("outbox")}

    async def raw_insert(i: int) -> None:
        await raw.insert_one({**base, "_id": f"raw-{i}-{uuid.uuid4().hex[:6]}"})

    raw_seconds = await concurrently(args.writes, args.concurrency, raw_insert)

    started = time.perf_counter()
    stored = await fill(db, kind, template, stored + args.writes, args.n)
    print(f"  ({kind.name}: prefill to {args.n} took {time.perf_counter() - started:.0f} s)", flush=True)
    await settled(http, specs)
    seconds_n = await concurrently(args.writes, args.concurrency, write)

    first: list[float] = []
    tenth: list[float] = []
    failed: list[int] = []  # status of each walk that a page answered with an error (it ends there)

    async def walk(_: int) -> None:
        cursor = None
        for page in range(1, 11):
            started = time.perf_counter()
            r = await http.get(
                url, params={"limit": 20, **({"cursor": cursor} if cursor else {})}, headers=kind.headers
            )
            elapsed = (time.perf_counter() - started) * 1000
            if r.status_code != 200:
                failed.append(r.status_code)
                return
            cursor = r.json()["next_cursor"]
            if page == 1:
                first.append(elapsed)
            elif page == 10:
                tenth.append(elapsed)

    await concurrently(args.pages * args.concurrency, args.concurrency, walk)
    rate_1k, rate_n = args.writes / seconds_1k, args.writes / seconds_n
    return [
        f"{kind.name}:",
        f"  store commands per write, whole system: {per_write:.1f}",
        f"  writes/s at c={args.concurrency}: {rate_1k:.0f} with 1k stored, {rate_n:.0f} with {args.n} stored"
        f" (ratio {rate_1k / rate_n:.2f}x); raw insert_one: {args.writes / raw_seconds:.0f}/s",
        f"  list at {args.n}, c={args.concurrency}: page 1 p50 {percentile(first, 50):.0f} ms"
        f" p95 {percentile(first, 95):.0f} ms;"
        f" page 10 p50 {percentile(tenth, 50):.0f} ms p95 {percentile(tenth, 95):.0f} ms;"
        f" {len(failed)} of {args.pages * args.concurrency} walks ended in an error {sorted(set(failed))}",
    ]


async def run(backend: Backend, specs: dict[str, ServiceSpec], args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=120) as http:
        mongo: AsyncMongoClient[Document] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
        producer = AIOKafkaProducer(bootstrap_servers=backend.kafka_bootstrap)
        await producer.start()
        try:
            # The customer every opportunity and interaction is about, fed as the customers service would.
            feed = CustomerFeed(producer)
            customer = await feed.created(owner_id=REP, department_path=DEPT, contacts=["张三"])
            for name in ("pipeline", "interactions"):
                db = mongo[specs[name].database]
                await eventually(
                    lambda db=db: db["customers"].find_one({"_id": customer.id}), timeout=60, message="customer copy"
                )
            r = await http.post(
                specs["directory"].url("/v1/departments"), json={"id": ROOT, "name": "Bench"}, headers=ADMIN_HEADERS
            )
            assert r.status_code == 201, r.text
            now = datetime.now(UTC)
            kinds = [
                Kind(
                    "opportunities (pipeline)",
                    "pipeline",
                    "opportunities",
                    "/v1/opportunities",
                    lambda i: {"customer_id": customer.id, "name": f"商机 {i}", "amount": "1000.00"},
                    REP_HEADERS,
                    vary=lambda i: {"name": f"商机 {i}", "customer_id": customer_of(i), "owner_id": owner_of(i)},
                ),
                Kind(
                    "interactions (interactions)",
                    "interactions",
                    "interactions",
                    "/v1/interactions",
                    lambda i: {
                        "channel": "note",
                        "customer_id": customer.id,
                        "occurred_at": (now - timedelta(minutes=5)).isoformat(),
                        "content": f"跟进 {i}",
                    },
                    REP_HEADERS,
                    vary=lambda i: {"content": f"跟进 {i}", "customer_id": customer_of(i), "author_id": owner_of(i)},
                ),
                Kind(
                    "tasks (interactions)",
                    "interactions",
                    "tasks",
                    "/v1/tasks",
                    lambda i: {"title": f"回访 {i}", "due_at": (now + timedelta(days=2)).isoformat()},
                    REP_HEADERS,
                    vary=lambda i: {"title": f"回访 {i}", "assignee_id": owner_of(i), "created_by": owner_of(i)},
                ),
                Kind(
                    "directory users (directory, no password: argon2 is not the store)",
                    "directory",
                    "users",
                    "/v1/users",
                    lambda i: {
                        "email": f"u{i}-{uuid.uuid4().hex[:6]}@example.com",
                        "name": "张三",
                        "roles": ["rep"],
                        "department_id": ROOT,
                    },
                    ADMIN_HEADERS,
                    unique=("email",),
                    vary=lambda i: {"name": f"用户 {i}"},
                ),
            ]
            for kind in kinds:
                if args.only and args.only not in kind.collection:
                    continue
                lines += await bench_kind(http, mongo, specs, kind, args)
                print("\n".join(lines[-4:]), flush=True)
        finally:
            await producer.stop()
            await mongo.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="records of each kind for the large-store figures")
    parser.add_argument("--writes", type=int, default=200, help="measured writes per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pages", type=int, default=5, help="walks of ten list pages")
    parser.add_argument("--only", default="", help="only the kind whose collection contains this")
    args = parser.parse_args()
    lines = header("writes of pipeline, interactions and directory")
    print("\n".join(lines), flush=True)
    with backend_only() as (backend, log_dir), services(backend, log_dir) as specs:
        lines += asyncio.run(run(backend, specs, args))


if __name__ == "__main__":
    main()
