"""Lead creation throughput and latency through the HTTP API, against the raw driver, on one store.

    python bench/leads_throughput.py [--n 1000] [--concurrency 1,16]

One run on the embedded default (Tansu + nx-27017, started here), the leads service as a real
process (``python -m crm_leads``), for each concurrency in turn:

(a) POST /v1/leads through httpx (a company, a contact, a phone, an email, a source; unique so the
    duplicate check passes), spread over 100 reps;
(b) PyMongo ``insert_one`` of documents of the stored shape (clones of a lead the API wrote in the
    warm-up, each with its own id, name, phone and email) into another collection with the leads'
    indexes, at the same concurrency; the ratio API/raw;
(c) store commands per create: the leads process's ``crm_store_commands_total`` (its PyMongo
    CommandListener), by origin (http: the request; relay: publishing the outbox) and command.

Warm-up writes are excluded. Lead conversion: bench/leads_conversion.py.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
from common import backend_only, bearer, fresh_database, header, one_service, percentile
from customers_throughput import Run, commands_rows, raw_inserts, run_concurrently, store_commands
from pymongo import AsyncMongoClient

from crm_leads.adapters.repository import list_indexes
from crm_platform.outbox import ensure_outbox_indexes

Document = dict[str, Any]
OWNERS = 100
RAW_COLLECTION = "bench_raw_leads"
CITIES = ["上海", "北京", "深圳", "杭州", "广州", "成都", "南京", "武汉"]
TRADES = ["精密机械", "电子科技", "物流", "软件", "医疗器械", "新材料", "食品", "纺织"]
SOURCES = ["web", "campaign", "referral", "exhibition", "cold_call", "partner"]


def reps() -> list[dict[str, str]]:
    return [bearer(f"bench-lead-rep-{i:03d}", ["rep"], f"/hq/r{i % 5 + 1}") for i in range(OWNERS)]


def body(run: str, i: int) -> Document:
    serial = abs(hash(run)) % 1000 * 100_000 + i
    return {
        "company_name": f"{CITIES[i % len(CITIES)]}{run}{TRADES[i % len(TRADES)]}{i:06d}有限公司",
        "contact_name": "王经理",
        "phones": [f"138{serial:08d}"],
        "emails": [f"lead-{run}-{i}@example.com"],
        "source": SOURCES[i % len(SOURCES)],
        "industry": TRADES[i % len(TRADES)],
    }


async def api_creates(client: httpx.AsyncClient, run: str, n: int, concurrency: int) -> Run:
    measured = Run()
    headers = reps()

    async def one(i: int) -> None:
        started = time.perf_counter()
        response = await client.post("/v1/leads", json=body(run, i), headers=headers[i % OWNERS])
        took = time.perf_counter() - started
        if response.status_code != 201:
            measured.failures.append(f"{response.status_code} {response.text[:200]}")
            return
        measured.latencies.append(took)
        measured.finished.append(time.perf_counter())

    measured.started = time.perf_counter()
    measured.elapsed = await run_concurrently(n, concurrency, one)
    return measured


def clones(template: Document, run: str, n: int) -> list[Document]:
    """The stored shape of a lead the API wrote, once per create: own id, name, phone, email."""
    out = []
    for i in range(n):
        doc = copy.deepcopy(template)
        doc["_id"] = str(uuid.uuid4())
        doc["company_name"] = f"{run}{i:06d}有限公司"
        doc["phones"] = [f"+86137{i:08d}"]
        doc["emails"] = [f"raw-{run}-{i}@example.com"]
        if isinstance(doc.get("s"), dict):
            doc["s"]["id"] = doc["_id"]
        out.append(doc)
    return out


def relay_writes(counters: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {k: v for k, v in counters.items() if k[0] == "relay" and k[1] != "find"}


async def settled(client: httpx.AsyncClient, quiet: float = 3.0, within: float = 120.0) -> dict[tuple[str, str], float]:
    """The store-command counters once the relay is done: its writes (the event log's inserts, the
    outbox removals) unchanged over ``quiet`` seconds (its idle polls are finds)."""
    deadline = time.monotonic() + within
    last = await store_commands(client)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = await store_commands(client)
        if relay_writes(now) == relay_writes(last):
            return now
        last = now
    return last


def row(label: str, run: Run) -> str:
    lat = run.latencies
    return (
        f"{label:<28}{run.ok:>6}{run.elapsed:>8.2f}{run.per_second:>9.1f}"
        f"{percentile(lat, 50) * 1000:>9.1f}{percentile(lat, 95) * 1000:>9.1f}{max(lat, default=0.0) * 1000:>9.1f}"
    )


async def measure(args: argparse.Namespace, url: str, mongo_url: str, database: str) -> str:
    lines = [
        *header("leads: create throughput, API vs raw driver, store commands per create"),
        f"load:    n={args.n} per side and concurrency, warm-up {args.warmup} (excluded); {OWNERS} reps; "
        "raw collection has the leads' indexes and the outbox's",
    ]
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True, maxPoolSize=32)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    try:
        raw = mongo[database][RAW_COLLECTION]
        await raw.create_indexes(list_indexes())
        await ensure_outbox_indexes(raw)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            warm = await api_creates(client, "预热", args.warmup, 4)
            if warm.failures:
                raise RuntimeError(f"warm-up creates failed: {warm.failures[:3]}")
            template = await mongo[database]["leads"].find_one({"deleted": False}) or await mongo[database][
                "leads"
            ].find_one({})
            assert template is not None
            template["outbox"] = template.get("outbox") or []
            await raw_inserts(raw, clones(template, "rawwarm", args.warmup), 4)
            for concurrency in args.concurrency:
                run = f"c{concurrency}"
                await asyncio.sleep(2)  # the relay has published the previous phase's events
                before = await store_commands(client)
                api = await api_creates(client, run, args.n, concurrency)
                # This phase's events published too: its relay commands count per create.
                commands = commands_rows(before, await settled(client), api.ok)
                raw_run = await raw_inserts(raw, clones(template, f"raw{run}", args.n), concurrency)
                lines += [
                    "",
                    f"concurrency {concurrency}",
                    f"{'':<28}{'ok':>6}{'secs':>8}{'ops/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}",
                    row("API POST /v1/leads", api),
                    row("raw insert_one", raw_run),
                    f"ratio API/raw: throughput {api.per_second / raw_run.per_second:.3g}x, "
                    f"p50 {percentile(api.latencies, 50) / percentile(raw_run.latencies, 50):.3g}x, "
                    f"p95 {percentile(api.latencies, 95) / percentile(raw_run.latencies, 95):.3g}x",
                    *[line.replace("customers process", "leads process") for line in commands],
                ]
                if api.failures:
                    lines.append(f"API failures: {len(api.failures)}, first: {api.failures[0]}")
    finally:
        await mongo.close()
    lines += ["", "lead conversion (POST /v1/leads/{id}/convert to converted): bench/leads_conversion.py"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="creates per side and concurrency, after the warm-up")
    parser.add_argument(
        "--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[1, 16], help="e.g. 1,16"
    )
    parser.add_argument("--warmup", type=int, default=50, help="creates before measuring (excluded)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    with backend_only() as (backend, log_dir):
        database = fresh_database("bench_leads")
        with one_service("leads", backend, log_dir, database) as url:
            print(asyncio.run(measure(args, url, backend.mongo_url, database)), flush=True)


if __name__ == "__main__":
    main()
