"""Sales: quotations, contracts, payments received and service tickets. Write throughput (quotations
against the raw driver), store commands per write, and list pages at N stored, on the embedded default.

    python bench/sales_throughput.py [--n 500] [--concurrency 1,16] [--prefill 50000] [--rounds 8]
                                     [--others 300]

One run on the embedded default (Tansu + nx-27017, started here), the sales service as a real
process (``python -m crm_sales``):

(a) setup: 100 customers published on ``crm.customers.v1`` as the customers service would (the
    sales service's read copy takes them; reps own them in five departments), one product with a
    CNY price list entry made through the API;
(b) for each concurrency: POST /v1/quotations (one line from the catalogue, its price resolved from
    the price list, a discount under the approval threshold) spread over the reps, against PyMongo
    ``insert_one`` of the stored shape into a collection with the quotations' indexes, and the
    sales process's store commands per create (``crm_store_commands_total``, request and relay);
(c) lists: ``GET /v1/quotations`` page 1 and page 10 (nine ``next_cursor`` hops) for a rep, a
    manager of the whole tree and an administrator, at concurrency 16, ``--rounds`` rounds, first
    with what (b) stored (about a thousand), then again after ``--prefill`` clones of a stored
    quotation were added (own id, number and sort keys, owned by the reps in turn): the ratio of
    the two is the cost of the data. A page a caller does not reach (fewer pages) shows ``nan``;
(d) the other writes at c=16, ``--others`` each, with the sales process's store commands per write:
    POST /v1/contracts (a draft for a rep's customer); POST /v1/contracts/{id}/payments on contracts
    already signed with a two-instalment plan (each payment a guarded write of the contract, spread
    over 20 contracts so some land on the same one at once); POST /v1/tickets;
(e) GET /v1/contracts and GET /v1/tickets page 1 and page 10 before and after ``--prefill`` clones
    of each, as in (c).

Warm-up writes are excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from common import backend_only, bearer, fresh_database, header, one_service, percentile
from customers_throughput import Run, commands_rows, raw_inserts, run_concurrently, store_commands
from pymongo import AsyncMongoClient

from crm_platform.outbox import ensure_outbox_indexes
from crm_platform.testing.backends import Backend
from crm_platform.testing.customer_feed import CustomerFeed, FedCustomer
from crm_sales.adapters.quotations import quotation_indexes

Document = dict[str, Any]
REPS = 100
DEPARTMENTS = [f"/hq/s{i}" for i in range(1, 6)]
RAW_COLLECTION = "bench_raw_quotations"
ADMIN = bearer("bench-sales-admin", ["admin"], "/hq")
MANAGER = bearer("bench-sales-manager", ["manager"], "/hq")


@dataclasses.dataclass(frozen=True)
class Rep:
    user_id: str
    department_path: str
    headers: dict[str, str]
    customers: list[str]


async def setup(client: httpx.AsyncClient, backend: Backend, mongo: Any, database: str) -> tuple[list[Rep], str]:
    """The reps with their customers in the service's read copy, and a product with a CNY price."""
    producer = AIOKafkaProducer(bootstrap_servers=backend.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        feed = CustomerFeed(producer, actor="bench")
        reps: list[Rep] = []
        fed: list[FedCustomer] = []
        for i in range(REPS):
            user_id, path = f"bench-sales-rep-{i:03d}", DEPARTMENTS[i % len(DEPARTMENTS)]
            customer = await feed.created(owner_id=user_id, department_path=path, name=f"报价基准客户{i:03d}有限公司")
            fed.append(customer)
            reps.append(Rep(user_id, path, bearer(user_id, ["rep"], path), [customer.id]))
    finally:
        await producer.stop()
    ids = [c.id for c in fed]
    deadline = time.monotonic() + 120
    while await mongo[database]["customers"].count_documents({"_id": {"$in": ids}}) < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the sales service's customer copy did not take the customers within 120 s")
        await asyncio.sleep(0.5)

    r = await client.post(
        "/v1/products",
        json={"sku": f"BENCH-{uuid.uuid4().hex[:8]}", "name": "数控机床保养服务", "unit": "次"},
        headers=ADMIN,
    )
    r.raise_for_status()
    product_id: str = r.json()["id"]
    today = datetime.now(UTC).date()
    r = await client.post(
        "/v1/price-lists",
        json={"name": "基准价目表", "currency": "CNY", "valid_from": str(today - timedelta(days=1))},
        headers=ADMIN,
    )
    r.raise_for_status()
    price_list = r.json()
    r = await client.put(
        f"/v1/price-lists/{price_list['id']}/entries/{product_id}", json={"unit_price": "12800.00"}, headers=ADMIN
    )
    if r.status_code >= 300:
        raise RuntimeError(f"setting the price failed: {r.status_code} {r.text[:300]}")
    return reps, product_id


def quotation(rep: Rep, product_id: str, i: int) -> Document:
    return {
        "customer_id": rep.customers[0],
        "currency": "CNY",
        "valid_until": str(date.today() + timedelta(days=30 + i % 60)),
        "notes": f"基准报价 {i}",
        "lines": [{"product_id": product_id, "quantity": str(1 + i % 7), "discount_percent": str(i % 10)}],
    }


async def api_creates(client: httpx.AsyncClient, reps: Sequence[Rep], product_id: str, n: int, c: int) -> Run:
    run = Run()

    async def one(i: int) -> None:
        rep = reps[i % len(reps)]
        started = time.perf_counter()
        response = await client.post("/v1/quotations", json=quotation(rep, product_id, i), headers=rep.headers)
        took = time.perf_counter() - started
        if response.status_code != 201:
            run.failures.append(f"{response.status_code} {response.text[:200]}")
            return
        run.latencies.append(took)
        run.finished.append(time.perf_counter())

    run.started = time.perf_counter()
    run.elapsed = await run_concurrently(n, c, one)
    return run


def clones(template: Document, n: int, start: int, reps: Sequence[Rep], prefix: str = "Q") -> list[Document]:
    """The stored shape of a record the API wrote, once per clone: its own id and number (a year no
    real number has), its sort keys following them (moments one ms apart, before the template's),
    owned by the reps in turn."""
    out = []
    old_id, old_number = template["_id"], template.get("number")
    for i in range(start, start + n):
        doc = copy.deepcopy(template)
        rep = reps[i % len(reps)]
        doc["_id"] = str(uuid.uuid4())
        doc["number"] = f"{prefix}-2099-{i:06d}"
        doc["outbox"] = []
        for field in ("owner_id", "created_by", "updated_by"):
            if field in doc:
                doc[field] = rep.user_id
        if "department_path" in doc:
            doc["department_path"] = rep.department_path
        if isinstance(doc.get("s"), dict):
            for key, value in list(doc["s"].items()):
                if value == old_id:
                    doc["s"][key] = doc["_id"]
                elif value == old_number:
                    doc["s"][key] = doc["number"]
                elif isinstance(value, int) and value > 10**12:
                    # A moment in epoch ms: one ms apart per clone, as records made over time are
                    # (identical stamps would make one tie group of the whole prefill).
                    doc["s"][key] = value - 1 - i
        out.append(doc)
    return out


async def page_times(
    client: httpx.AsyncClient, headers: dict[str, str], pages: int, rounds: int, path: str = "/v1/quotations"
) -> list[float]:
    """Seconds for page ``pages`` (following ``next_cursor``), 16 readers at once, ``rounds`` times."""
    took: list[float] = []

    async def one(_: int) -> None:
        cursor: str | None = None
        for page in range(pages):
            params = {"limit": "20", **({"cursor": cursor} if cursor else {})}
            started = time.perf_counter()
            r = await client.get(path, params=params, headers=headers)
            elapsed = time.perf_counter() - started
            if r.status_code != 200:
                raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
            if page == pages - 1:
                took.append(elapsed)
            cursor = r.json().get("next_cursor")
            if cursor is None:
                return

    await run_concurrently(16 * rounds, 16, one)
    return took


async def list_rows(
    client: httpx.AsyncClient, reps: Sequence[Rep], rounds: int, path: str = "/v1/quotations"
) -> list[str]:
    lines = [f"  {'who':<34}{'page 1 p50':>12}{'p95':>9}{'page 10 p50':>13}{'p95':>9}"]
    for label, headers in (("rep (own)", reps[0].headers), ("manager (/hq subtree)", MANAGER), ("admin (all)", ADMIN)):
        first = await page_times(client, headers, 1, rounds, path)
        tenth = await page_times(client, headers, 10, rounds, path)
        lines.append(
            f"  {label:<34}{percentile(first, 50) * 1000:>10.1f}ms{percentile(first, 95) * 1000:>7.1f}ms"
            f"{percentile(tenth, 50) * 1000:>11.1f}ms{percentile(tenth, 95) * 1000:>7.1f}ms"
        )
    return lines


async def timed(n: int, concurrency: int, call: Any) -> Run:
    """``call(i)`` (a request) n times from ``concurrency`` workers; a 2xx counts."""
    run = Run()

    async def one(i: int) -> None:
        started = time.perf_counter()
        response = await call(i)
        took = time.perf_counter() - started
        if response.status_code >= 300:
            run.failures.append(f"{response.status_code} {response.text[:200]}")
            return
        run.latencies.append(took)
        run.finished.append(time.perf_counter())

    run.started = time.perf_counter()
    run.elapsed = await run_concurrently(n, concurrency, one)
    return run


def contract_body(rep: Rep, i: int) -> Document:
    return {
        "title": f"数控机床年度保养合同 {i}",
        "customer_id": rep.customers[0],
        "amount": f"{100_000 + i % 900}.00",
        "currency": "CNY",
        "start_date": str(date.today()),
        "end_date": str(date.today() + timedelta(days=365)),
    }


def ticket_body(rep: Rep, i: int) -> Document:
    return {
        "customer_id": rep.customers[0],
        "category": "fault",
        "priority": ("urgent", "high", "normal", "low")[i % 4],
        "subject": f"设备报警 E{i % 97:02d}",
        "description": "主轴异响，需上门检修。",
    }


async def signed_contracts(client: httpx.AsyncClient, reps: Sequence[Rep], count: int) -> list[tuple[Rep, str]]:
    """``count`` contracts drafted, approved by the manager, signed, started, with a two-instalment plan."""
    made: list[tuple[Rep, str]] = []
    for i in range(count):
        rep = reps[i % len(reps)]
        r = await client.post("/v1/contracts", json=contract_body(rep, i), headers=rep.headers)
        r.raise_for_status()
        contract = r.json()
        cid, amount = contract["id"], contract["amount"]
        half = f"{int(float(amount) // 2)}.00"  # the bench's own amounts: whole yuan, no fen lost below
        rest = f"{int(amount.split('.')[0]) - int(half.split('.')[0])}.00"
        for step, body, headers in (
            ("submit", {}, rep.headers),
            ("approve", {"comment": "同意"}, MANAGER),
            ("sign", {"signed_on": str(date.today()), "signed_document": f"doc-{cid}"}, rep.headers),
            ("start", {}, rep.headers),
        ):
            r = await client.post(f"/v1/contracts/{cid}/{step}", json=body, headers=headers)
            if r.status_code >= 300:
                raise RuntimeError(f"contract {step}: {r.status_code} {r.text[:300]}")
        plan = {
            "instalments": [
                {"due_date": str(date.today() + timedelta(days=30)), "amount": half},
                {"due_date": str(date.today() + timedelta(days=90)), "amount": rest},
            ]
        }
        r = await client.put(
            f"/v1/contracts/{cid}/plan", json=plan, headers={**rep.headers, "If-Match": r.headers["etag"]}
        )
        if r.status_code >= 300:
            raise RuntimeError(f"contract plan: {r.status_code} {r.text[:300]}")
        made.append((rep, cid))
    return made


async def other_writes(client: httpx.AsyncClient, reps: Sequence[Rep], n: int) -> list[str]:
    lines = [
        "",
        f"other writes at c=16, {n} each",
        f"{'':<34}{'ok':>6}{'secs':>8}{'ops/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}",
    ]
    contracts = await signed_contracts(client, reps, 20)

    async def contract(i: int) -> httpx.Response:
        rep = reps[i % len(reps)]
        return await client.post("/v1/contracts", json=contract_body(rep, i), headers=rep.headers)

    async def payment(i: int) -> httpx.Response:
        rep, cid = contracts[i % len(contracts)]
        body = {"amount": "10.00", "received_on": str(date.today()), "method": "bank_transfer", "reference": f"B{i}"}
        return await client.post(f"/v1/contracts/{cid}/payments", json=body, headers=rep.headers)

    async def ticket(i: int) -> httpx.Response:
        rep = reps[i % len(reps)]
        return await client.post("/v1/tickets", json=ticket_body(rep, i), headers=rep.headers)

    commands: list[str] = []
    for label, call in (
        ("POST /v1/contracts", contract),
        ("POST /v1/contracts/{id}/payments", payment),
        ("POST /v1/tickets", ticket),
    ):
        await asyncio.sleep(2)
        before = await store_commands(client)
        run = await timed(n, 16, call)
        await asyncio.sleep(3)
        lines.append(row(label, run, 34))
        if run.failures:
            lines.append(f"  failures: {len(run.failures)}, first: {run.failures[0]}")
        per = commands_rows(before, await store_commands(client), run.ok)
        commands.append(f"{label}: " + per[0].split(": ", 1)[1])
    return [*lines, "store commands per write, sales process:", *[f"  {c}" for c in commands]]


def row(label: str, run: Run, width: int = 28) -> str:
    lat = run.latencies
    return (
        f"{label:<{width}}{run.ok:>6}{run.elapsed:>8.2f}{run.per_second:>9.1f}"
        f"{percentile(lat, 50) * 1000:>9.1f}{percentile(lat, 95) * 1000:>9.1f}{max(lat, default=0.0) * 1000:>9.1f}"
    )


async def measure(args: argparse.Namespace, url: str, backend: Backend, database: str) -> str:
    lines = [
        *header("sales: quotation creates, API vs raw driver, store commands per create; list pages at N"),
        f"load:    n={args.n} per side and concurrency, warm-up {args.warmup} (excluded); {REPS} reps in "
        f"{len(DEPARTMENTS)} departments; prefill {args.prefill}; list rounds {args.rounds} at c=16",
    ]
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(backend.mongo_url, tz_aware=True, maxPoolSize=32)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    try:
        raw = mongo[database][RAW_COLLECTION]
        await raw.create_indexes(quotation_indexes())
        await ensure_outbox_indexes(raw)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
            reps, product_id = await setup(client, backend, mongo, database)
            warm = await api_creates(client, reps, product_id, args.warmup, 4)
            if warm.failures:
                raise RuntimeError(f"warm-up creates failed: {warm.failures[:3]}")
            template = await mongo[database]["quotations"].find_one({})
            assert template is not None
            await raw_inserts(raw, clones(template, args.warmup, 900_000, reps), 4)
            for concurrency in args.concurrency:
                await asyncio.sleep(2)  # the relay has published the previous phase's events
                before = await store_commands(client)
                api = await api_creates(client, reps, product_id, args.n, concurrency)
                await asyncio.sleep(3)  # this phase's events published: the relay's commands count too
                commands = commands_rows(before, await store_commands(client), api.ok)
                start = 500_000 + concurrency * args.n
                raw_run = await raw_inserts(raw, clones(template, args.n, start, reps), concurrency)
                lines += [
                    "",
                    f"concurrency {concurrency}",
                    f"{'':<28}{'ok':>6}{'secs':>8}{'ops/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}",
                    row("API POST /v1/quotations", api),
                    row("raw insert_one", raw_run),
                    f"ratio API/raw: throughput {api.per_second / raw_run.per_second:.3g}x",
                    *[line.replace("customers process", "sales process") for line in commands],
                ]
                if api.failures:
                    lines.append(f"API failures: {len(api.failures)}, first: {api.failures[0]}")

            if args.others:
                lines += await other_writes(client, reps, args.others)
            collections = [("quotations", "/v1/quotations", "Q")]
            if args.others:
                collections += [("contracts", "/v1/contracts", "C"), ("tickets", "/v1/tickets", "T")]
            for name, path, _ in collections:
                stored = await mongo[database][name].estimated_document_count()
                lines += ["", f"GET {path}, {stored} stored (c=16, 20 per page)"]
                lines += await list_rows(client, reps, args.rounds, path)
            if args.prefill:
                for name, path, prefix in collections:
                    kept = await mongo[database][name].find_one({}, sort=[("_id", 1)])
                    assert kept is not None
                    for start in range(0, args.prefill, 5_000):
                        docs = clones(kept, min(5_000, args.prefill - start), start, reps, prefix)
                        await mongo[database][name].insert_many(docs, ordered=False)
                    stored = await mongo[database][name].estimated_document_count()
                    lines += ["", f"GET {path}, {stored} stored (c=16, 20 per page)"]
                    lines += await list_rows(client, reps, args.rounds, path)
    finally:
        await mongo.close()
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="creates per side and concurrency, after the warm-up")
    parser.add_argument(
        "--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[1, 16], help="e.g. 1,16"
    )
    parser.add_argument("--warmup", type=int, default=50, help="creates before measuring (excluded)")
    parser.add_argument("--prefill", type=int, default=50_000, help="quotations cloned in before the second lists")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of 16 concurrent readers per list figure")
    parser.add_argument("--others", type=int, default=300, help="contracts, payments and tickets each (0: none)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    with backend_only() as (backend, log_dir):
        database = fresh_database("bench_sales")
        with one_service("sales", backend, log_dir, database) as url:
            print(asyncio.run(measure(args, url, backend, database)), flush=True)


if __name__ == "__main__":
    main()
