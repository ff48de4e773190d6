"""Many customers by id: one ``POST /v1/customers/lookup`` against a request per customer.

    python bench/customers_lookup.py [--n 2000] [--fill 0] [--ids 100] [--rounds 15]

What a kanban board of 100 cards costs to name its customers. Starts the embedded backend and
the customers service as a real process, creates N customers through the API (one rep), adds
``--fill`` clones of one of them with the raw driver (own id and name, no outbox, so the
collection is large without hours of API writes), then alternates, round after round, over the
same ``--ids`` random ids of the whole collection:

- ``lookup``: one ``POST /v1/customers/lookup`` (the service reads the ids in one ``$in`` on ``_id``);
- ``get x1``: ``GET /v1/customers/{id}`` one after another (a page asking per card);
- ``get x8``: the same GETs, 8 in flight (a page asking per card, in parallel);
- ``raw _id``: the raw driver's ``find_one({_id})`` per id, 8 in flight (the shape the lookup had first);
- ``raw $in``: the raw driver's ``find({_id: {$in: ids}})`` (the service's floor: the store's
  ``WHERE _id IN (...)``, a search of the ``_id`` index).

Prints the median and p95 per way in ms, and each median's ratio to ``lookup``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from common import backend_only, bearer, fresh_database, header, median, percentile, service_on
from pymongo import AsyncMongoClient

from crm_platform.outbox import LEASE, PENDING


async def bounded(calls: list[Callable[[], Awaitable[Any]]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def run(args: argparse.Namespace) -> None:
    with backend_only() as (backend, log_dir), service_on(backend, log_dir, fresh_database("bench_lookup")) as stack:
        headers = bearer("bench-rep", ["rep"], "/hq/bench")
        async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=60) as client:
            ids: list[str] = []
            started = time.perf_counter()
            for i in range(args.n):
                body = {"kind": "company", "name": f"看板客户{i:06d}有限公司"}
                answer = await client.post("/v1/customers", json=body)
                assert answer.status_code == 201, answer.text
                ids.append(answer.json()["id"])
            print(f"created {args.n} customers through the API in {time.perf_counter() - started:.1f} s")

            mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
            collection = mongo[stack.database]["customers"]
            if args.fill:
                started = time.perf_counter()
                template = await collection.find_one({"_id": ids[0]})
                assert template is not None
                skipped = {PENDING, LEASE, "unique_name", "unique_uscc"}
                base = {k: v for k, v in template.items() if k not in skipped} | {"outbox": []}
                for start in range(0, args.fill, 5000):
                    batch = [
                        base | {"_id": f"fill-{i:07d}", "name": f"填充客户{i:07d}有限公司"}
                        for i in range(start, min(args.fill, start + 5000))
                    ]
                    await collection.insert_many(batch)
                    ids += [doc["_id"] for doc in batch]
                print(f"filled {args.fill} clones with the raw driver in {time.perf_counter() - started:.1f} s")
            rng = random.Random(7)

            async def lookup(chosen: list[str]) -> None:
                answer = await client.post("/v1/customers/lookup", json={"ids": chosen})
                assert answer.status_code == 200 and len(answer.json()["items"]) == len(chosen), answer.text

            async def get_one(customer_id: str) -> None:
                answer = await client.get(f"/v1/customers/{customer_id}")
                assert answer.status_code == 200, answer.text

            async def get_serial(chosen: list[str]) -> None:
                for customer_id in chosen:
                    await get_one(customer_id)

            async def get_parallel(chosen: list[str]) -> None:
                await bounded([lambda c=c: get_one(c) for c in chosen], 8)  # type: ignore[misc]

            async def raw_id(chosen: list[str]) -> None:
                await bounded([lambda c=c: collection.find_one({"_id": c}) for c in chosen], 8)  # type: ignore[misc]

            async def raw_in(chosen: list[str]) -> None:
                found = await collection.find({"_id": {"$in": chosen}}).to_list()
                assert len(found) == len(chosen)

            ways: dict[str, Callable[[list[str]], Awaitable[None]]] = {
                "lookup": lookup,
                "get x1": get_serial,
                "get x8": get_parallel,
                "raw _id": raw_id,
                "raw $in": raw_in,
            }
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                chosen = rng.sample(ids, args.ids)
                for name, way in ways.items():
                    started = time.perf_counter()
                    await way(chosen)
                    times[name].append((time.perf_counter() - started) * 1000)
            await mongo.close()

    base = median(times["lookup"])
    print(f"{args.ids} ids out of {args.n + args.fill}, {args.rounds} rounds, the ways alternating within each round")
    print(f"{'way':<10} {'p50 ms':>9} {'p95 ms':>9} {'p50 / lookup':>13}")
    for name, values in times.items():
        print(f"{name:<10} {median(values):>9.1f} {percentile(values, 95):>9.1f} {median(values) / base:>12.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="customers in the store")
    parser.add_argument("--fill", type=int, default=0, help="clones added with the raw driver")
    parser.add_argument("--ids", type=int, default=100, help="ids per board (the lookup's bound is 100)")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print("\n".join(header("customers lookup")))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
