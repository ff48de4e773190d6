"""Every sort the customers list offers, page 1 and page 10, at 100k customers and 16 readers.

    python bench/customers_sorts_100k.py [--n 100000] [--concurrency 16] [--walks 16] [--pages 10]
        [--limit 20] [--sorts name,-tier]

Issue 13 point 4: lists at 100k on the embedded store, concurrency 16, p95 <= 150 ms for page 1
and page 10 of every sort the API offers. Seeds the same realistic 100k customers as
`customers_lists_100k.py` (its generator: 200 owners in 20 teams of 5 regions, skewed industries,
2% in the pool), starts the customers service as a real process, then for each sort key the API
offers (`rules.SORT_FIELDS`), ascending and descending, and for each of three scopes (an admin:
everything; a region's manager: a department subtree; a rep: their own customers and the pool),
runs `--walks` walks of `--pages` pages (`GET /v1/customers?sort=…&limit=…`, then the
`next_cursor`), `--concurrency` at a time. Prints p50/p95 of page 1 and of page `--pages` per
(scope, sort), flags those over 150 ms, and a summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from common import backend_only, bearer, fresh_database, header, percentile, service_on
from customers_lists_100k import make_owners, prepare
from pymongo import AsyncMongoClient

from crm_customers.adapters.repository import LIST_PROJECTION
from crm_customers.domain import rules
from crm_platform.auth import Principal, Role

GOAL_MS = 150.0
Document = dict[str, Any]


@dataclass(frozen=True)
class Scope:
    label: str
    principal: Principal

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.principal.user_id, [r.value for r in self.principal.roles], self.principal.department_path)


def scopes() -> list[Scope]:
    rep = make_owners()[17].principal
    manager = Principal(user_id="mgr-r3", roles=frozenset({Role.manager}), department_id="r3", department_path="/hq/r3")
    admin = Principal(user_id="admin-1", roles=frozenset({Role.admin}))
    return [Scope("admin (all)", admin), Scope("manager /hq/r3", manager), Scope(f"rep {rep.user_id}", rep)]


@dataclass
class Walked:
    scope: str
    sort: str
    first: list[float] = field(default_factory=list)  # seconds, page 1 of each walk
    last: list[float] = field(default_factory=list)  # seconds, the last page of each walk
    short: int = 0  # walks that ran out of rows before the last page
    errors: list[str] = field(default_factory=list)


async def walk(client: httpx.AsyncClient, scope: Scope, sort: str, pages: int, limit: int, into: Walked) -> None:
    cursor: str | None = None
    for page in range(1, pages + 1):
        params = {"sort": sort, "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        started = time.perf_counter()
        response = await client.get("/v1/customers", params=params, headers=scope.headers)
        took = time.perf_counter() - started
        if response.status_code != 200:
            into.errors.append(f"page {page}: {response.status_code} {response.text[:120]}")
            return
        if page == 1:
            into.first.append(took)
        if page == pages:
            into.last.append(took)
        cursor = response.json().get("next_cursor")
        if cursor is None and page < pages:
            into.short += 1
            return


async def measure(base_url: str, sorts: Sequence[str], args: argparse.Namespace) -> list[Walked]:
    results: list[Walked] = []
    gate = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        for scope in scopes():
            for sort in sorts:
                walked = Walked(scope.label, sort)

                async def one(scope: Scope = scope, sort: str = sort, walked: Walked = walked) -> None:
                    async with gate:
                        await walk(client, scope, sort, args.pages, args.limit, walked)

                await walk(client, scope, sort, 1, args.limit, Walked("warm-up", sort))
                await asyncio.gather(*(one() for _ in range(args.walks)))
                results.append(walked)
                print(f"  measured: {scope.label} sort={sort}", file=sys.stderr, flush=True)
    return results


async def raw_floor(mongo_url: str, database: str, args: argparse.Namespace) -> list[str]:
    """The store's own cost at the same concurrency, through the raw driver: a ``find_one`` by ``_id``
    (one command, the cheapest there is) and the admin's page 1 by name as the service sends it (one
    indexed ``find`` of limit + 1 rows, the list's projection), ``walks * pages`` of each, 16 at a time.
    A page through the API can be no faster than its commands are here."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True, maxPoolSize=args.concurrency)
    try:
        customers = client[database]["customers"]
        ids = [d["_id"] async for d in customers.find({}, {"_id": 1}).limit(2000)]
        gate = asyncio.Semaphore(args.concurrency)
        rounds = args.walks * args.pages

        async def timed(call: Any) -> list[float]:
            took: list[float] = []

            async def one(i: int) -> None:
                async with gate:
                    started = time.perf_counter()
                    await call(i)
                    took.append(time.perf_counter() - started)

            await asyncio.gather(*(one(i) for i in range(rounds)))
            return took

        async def by_id(i: int) -> None:
            await customers.find_one({"_id": ids[(i * 7919) % len(ids)]})

        async def page(i: int) -> None:
            query = customers.find({"status": "active"}, LIST_PROJECTION).sort([("s.name", 1), ("s.id", 1)])
            await query.limit(args.limit + 1).to_list()

        lines = []
        for label, call in (("find_one by _id", by_id), ("admin page 1 by name, one find", page)):
            await timed(call)  # warm
            took = await timed(call)
            lines.append(f"raw driver, {label}: p50 {ms(took, 0.5):.0f} / p95 {ms(took, 0.95):.0f} ms")
        return lines
    finally:
        await client.close()


def ms(values: list[float], q: float) -> float:
    return percentile(values, q * 100) * 1000 if values else float("nan")


def report(args: argparse.Namespace, seeding: list[str], results: list[Walked]) -> str:
    lines = [*header(f"customers list, every sort, {args.n} customers, {args.concurrency} readers"), *seeding]
    lines.append(
        f"{args.walks} walks of {args.pages} pages of {args.limit} per (scope, sort), {args.concurrency} at a time;"
        f" p50 / p95 in ms; '!' over {GOAL_MS:.0f} ms at p95"
    )
    lines.append(f"{'scope':<16} {'sort':<22} {'page 1':>17} {f'page {args.pages}':>17}  notes")
    over = 0
    for r in results:
        p1 = (ms(r.first, 0.5), ms(r.first, 0.95))
        pn = (ms(r.last, 0.5), ms(r.last, 0.95))
        flag1 = "!" if p1[1] > GOAL_MS else " "
        flagn = "!" if pn[1] > GOAL_MS else " "
        over += (p1[1] > GOAL_MS) + (pn[1] > GOAL_MS)
        notes = []
        if r.short:
            notes.append(f"{r.short} walks ended early")
        if r.errors:
            notes.append(f"{len(r.errors)} errors, first: {r.errors[0]}")
        lines.append(
            f"{r.scope:<16} {r.sort:<22} {p1[0]:7.0f} /{p1[1]:6.0f}{flag1} {pn[0]:7.0f} /{pn[1]:6.0f}{flagn}  "
            + "; ".join(notes)
        )
    lines.append(f"over the goal: {over} of {2 * len(results)} (scope, sort, page) figures")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="customers to seed")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--walks", type=int, default=16, help="walks per (scope, sort)")
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--limit", type=int, default=20, help="rows per page (the console's page size)")
    parser.add_argument("--batch", type=int, default=1000, help="documents per insert_many while seeding")
    parser.add_argument("--sorts", default="", help="comma-separated sorts (default: every key, both directions)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    sorts = [s for s in args.sorts.split(",") if s] or [d + k for k in rules.SORT_FIELDS for d in ("", "-")]
    with backend_only() as (backend, log_dir):
        database = fresh_database("bench_sorts")
        _, seeding = asyncio.run(prepare(backend.mongo_url, database, args.n, args.batch))
        print(seeding[0], file=sys.stderr, flush=True)
        with service_on(backend, log_dir, database, wait_for_ready=False) as stack:
            results = asyncio.run(measure(stack.url, sorts, args))
            floor = asyncio.run(raw_floor(backend.mongo_url, database, args))
        print(report(args, seeding, results), flush=True)
        print("\n".join(floor), flush=True)


if __name__ == "__main__":
    main()
