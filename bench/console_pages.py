"""The console's customers list page at N customers: page 1, and page 10 through "load more".

    python bench/console_pages.py [--n 100000] [--rounds 20]

Starts the embedded backend, the directory, the customers service and the console, each as a
real process (as `crm up` runs them). Writes one customer through the customers API, then fills
the store to N with the raw driver: clones of that API-written customer, each with its own id,
name, owner (20 reps of one department), tier, tags and dates, derived fields recomputed by the
service's own rules (so every sort key and match key is what the service would have written), and
each one's tag memberships (``customer_tags``) as the service writes them beside it.

Then, signed in to the console through its login form as a manager (sees the department) and as
a rep (sees their own customers and the pool), it times what the browser asks for:
`GET /customers?<filters>` (page 1: the whole page, with the filter pickers, saved views and owner
names) and `GET /customers/rows?<filters>&cursor=…` nine times (the "load more" clicks) — the
tenth answer is page 10. Each round walks all ten pages; figures are p50/p95 over the rounds,
in ms, measured at the client on loopback (server time plus well under a millisecond). Beside
them, the same walk straight on `GET /v1/customers` (the console's own translation of the query,
the person's token), alternating with the console's: the console's share is the difference.

The issue asks for under 300 ms of server time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from common import backend_only, bearer, bench_env, header, percentile
from pymongo import AsyncMongoClient

from crm_console.pages.customers.query import ListQuery
from crm_customers.adapters.tag_index import memberships_of
from crm_customers.domain import rules
from crm_platform.devstack.processes import ManagedProcess, free_port, http_status, wait_until
from crm_platform.devstack.services import SERVICES, ServiceSpec, start_service
from crm_platform.outbox import LEASE, PENDING, REV
from crm_platform.testing.backends import Backend

Document = dict[str, Any]
PASSWORD = "a long enough passphrase"
DEPARTMENT = "hq"
REPS = 20
TAGS = ["重点", "老客户", "渠道", "招投标", "续约", "高潜", "政府", "外资"]
#: A tag on one customer in 500 (0.2%, 200 at 100k): a filter whose matches are too few for a
#: walk of the department's sort order to find twenty of them soon.
RARE_TAG = "稀有"
ADMIN = bearer("bench-admin", ["admin"], f"/{DEPARTMENT}")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NEXT_ROWS = re.compile(r'hx-get="(/customers/rows\?[^"]+)"')


class Failed(Exception):
    """A walk ended by an error answer (the report counts them)."""


@contextmanager
def stack(
    backend: Backend, log_dir: Path, names: tuple[str, ...] = ("directory", "customers", "console")
) -> Iterator[dict[str, ServiceSpec]]:
    """The services ``names`` (the console last) as real processes on fresh databases; stopped after."""
    specs: dict[str, ServiceSpec] = {}
    with ExitStack() as started:
        for name in names:
            spec = next(s for s in SERVICES if s.name == name)
            spec = dataclasses.replace(spec, http_port=free_port(), database=f"bench_{name}_{uuid.uuid4().hex[:6]}")
            env = bench_env(spec, backend)
            env |= {
                "CRM_LOG_LEVEL": "WARNING",
                "CRM_MAX_CUSTOMERS_PER_REP": "1000000000",
                # Sign-in is not what is measured: cheap password hashing.
                "CRM_DIRECTORY_ARGON2_TIME_COST": "1",
                "CRM_DIRECTORY_ARGON2_MEMORY_KIB": "256",
                "CRM_DIRECTORY_ARGON2_PARALLELISM": "1",
            }
            env |= {f"CRM_CONSOLE_{n.upper()}_URL": s.url() for n, s in specs.items()}
            if name == "console":
                # Its /readyz asks every service, and not all may run here: wait for /healthz.
                process = ManagedProcess(name, [sys.executable, "-m", spec.module], log_dir / f"{name}.log", env=env)
                started.callback(process.stop)
                wait_until(
                    "console: GET /healthz",
                    lambda spec=spec: http_status(spec.url("/healthz")) == 200,
                    timeout=120,
                    process=process,
                )
            else:
                started.callback(start_service(spec, env, log_dir, timeout=180).stop)
            specs[name] = spec
        yield specs


async def people(http: httpx.AsyncClient, directory: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The department, its reps (owners of the customers) and its manager, through the directory API."""
    answer = await http.post(f"{directory}/v1/departments", json={"id": DEPARTMENT, "name": "总部"}, headers=ADMIN)
    assert answer.status_code in (201, 409), answer.text

    async def user(name: str, role: str) -> dict[str, Any]:
        body = {
            "email": f"{uuid.uuid4().hex[:10]}@example.com",
            "name": name,
            "roles": [role],
            "department_id": DEPARTMENT,
            "password": PASSWORD,
        }
        answer = await http.post(f"{directory}/v1/users", json=body, headers=ADMIN)
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    reps = [await user(f"销售{i:02d}", "rep") for i in range(REPS)]
    return reps, await user("王经理", "manager")


async def template(http: httpx.AsyncClient, customers: str, owner: dict[str, Any], mongo_url: str, db: str) -> Document:
    """One customer written through the API, read back raw once its events have left the outbox."""
    body = {"kind": "company", "name": "杭州模板科技有限公司", "tier": "A", "tags": ["重点"], "phones": ["13800000000"]}
    headers = bearer(owner["id"], ["rep"], owner["department_path"])
    answer = await http.post(f"{customers}/v1/customers", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        for _ in range(300):
            doc = await mongo[db]["customers"].find_one({"_id": answer.json()["id"]})
            if doc is not None and not doc.get("outbox"):
                return doc
            await asyncio.sleep(0.1)
    finally:
        await mongo.close()
    raise RuntimeError("the template customer's events never left its outbox")


def clone(base: Document, i: int, owners: list[dict[str, Any]], now: datetime) -> Document:
    doc = {k: v for k, v in base.items() if k not in (PENDING, LEASE)}
    owner = owners[i % len(owners)]
    created = now - timedelta(minutes=7 * i + 1)
    doc |= {
        "_id": f"fill-{i:07d}-{uuid.uuid4().hex[:6]}",
        "name": f"杭州{i:07d}号科技有限公司",
        "owner_id": owner["id"],
        "department_id": owner["department_id"],
        "department_path": owner["department_path"],
        "tier": "ABC"[i % 3],
        "tags": (list(dict.fromkeys([TAGS[i % len(TAGS)], TAGS[(i // len(TAGS)) % len(TAGS)]])) if i % 5 else [])
        + ([RARE_TAG] if i % 500 == 7 else []),
        "phones": [],
        "contacts": [],
        "created_at": created,
        "updated_at": created + timedelta(minutes=i % 5),
        "version": 1,
        REV: 1,
        "outbox": [],
    }
    if i % 50 == 0:  # 2% in the public pool (公海)
        doc |= {"owner_id": None, "in_pool": True, "pool_since": doc["updated_at"], "previous_owner_id": owner["id"]}
    return rules.refresh_derived(doc)


async def fill(mongo_url: str, db: str, base: Document, owners: list[dict[str, Any]], n: int) -> float:
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    now = datetime.now(UTC)
    started = time.perf_counter()
    try:
        collection = mongo[db]["customers"]
        for start in range(1, n, 5000):
            docs = [clone(base, i, owners, now) for i in range(start, min(n, start + 5000))]
            await collection.insert_many(docs)
            # Their tag memberships, as the service writes them with each customer.
            await mongo[db]["customer_tags"].insert_many([m for d in docs for m in memberships_of(d)])
            print(f"  filled {min(n, start + 5000)}", file=sys.stderr, flush=True)
    finally:
        await mongo.close()
    return time.perf_counter() - started


async def signed_in(console: str, email: str) -> httpx.AsyncClient:
    """A console client with a session, signed in through the login form as a browser would."""
    client = httpx.AsyncClient(base_url=console, timeout=60)
    form = await client.get("/login")
    found = CSRF.search(form.text)
    assert found, form.text[:500]
    answer = await client.post(
        "/login", data={"csrf_token": found.group(1), "email": email, "password": PASSWORD, "next": "/"}
    )
    assert answer.status_code == 303, answer.text[:500]
    return client


async def walk(client: httpx.AsyncClient, query: str, pages: int) -> list[float]:
    """Seconds for page 1 (the page) and each "load more" after it, following the page's own links."""
    timings = []
    started = time.perf_counter()
    answer = await client.get(f"/customers?{query}")
    if answer.status_code != 200:
        raise Failed(f"console {answer.status_code}")
    timings.append(time.perf_counter() - started)
    for _ in range(pages - 1):
        found = NEXT_ROWS.search(answer.text)
        if not found:
            break
        started = time.perf_counter()
        answer = await client.get(found.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
        if answer.status_code != 200:
            raise Failed(f"console {answer.status_code}")
        timings.append(time.perf_counter() - started)
    return timings


async def walk_api(
    http: httpx.AsyncClient, customers: str, headers: dict[str, str], query: str, pages: int
) -> list[float]:
    """The same walk straight on the customers API (the console's own translation of the query):
    what the console adds is the difference."""
    params = ListQuery.model_validate(dict(parse_qsl(query))).api_params()
    timings = []
    for _ in range(pages):
        started = time.perf_counter()
        answer = await http.get(f"{customers}/v1/customers", params=params, headers=headers)
        if answer.status_code != 200:  # e.g. 503: the service's store timeout; counted, not timed
            raise Failed(f"API {answer.status_code}")
        timings.append(time.perf_counter() - started)
        cursor = answer.json().get("next_cursor")
        if not cursor:
            break
        params = {**params, "cursor": cursor}
    return timings


def p50_95(values: list[float]) -> str:
    return f"{percentile(values, 50):.0f} / {percentile(values, 95):.0f}" if values else "–"


async def run(backend: Backend, specs: dict[str, ServiceSpec], args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=120) as http:
        reps, manager = await people(http, specs["directory"].url())
        base = await template(http, specs["customers"].url(), reps[0], backend.mongo_url, specs["customers"].database)
        seconds = await fill(backend.mongo_url, specs["customers"].database, base, reps, args.n)
        lines.append(f"prefill: {args.n} customers (1 through the API + clones) in {seconds:.1f} s")
    personas = {"manager /hq": manager, "rep (own + pool)": reps[3]}
    views = {
        "default (-updated_at)": "",
        "tier=A, tags_any=重点, sort -tier,name": urlencode(
            {"tier": "A", "tags_any": "重点", "s1": "tier", "d1": "desc", "s2": "name"}
        ),
        f"tags_any={RARE_TAG} (rare), sort -tier,name": urlencode(
            {"tags_any": RARE_TAG, "s1": "tier", "d1": "desc", "s2": "name"}
        ),
        "tags_all=重点,老客户, sort name": urlencode({"tags_all": "重点,老客户", "s1": "name"}),
        "q=科技, stage=prospect, sort -created_at": urlencode(
            {"q": "科技", "lifecycle_stage": "prospect", "s1": "created_at", "d1": "desc"}
        ),
    }
    lines.append(
        f"{'who':<18}{'view':<40}{'page 1 p50/p95 ms':>19}{'(API)':>12}{'page 10 p50/p95':>17}{'(API)':>12}  pages"
    )
    customers = specs["customers"].url()
    async with httpx.AsyncClient(timeout=120) as http:
        for who, person in personas.items():
            client = await signed_in(specs["console"].url(), person["email"])
            headers = bearer(person["id"], person["roles"], person["department_path"])
            try:
                for label, query in views.items():
                    with suppress(Failed):  # warm-up: caches of owner names, connections
                        await walk(client, query, 10)
                        await walk_api(http, customers, headers, query, 10)
                    firsts, tenths, api_firsts, api_tenths, reached = [], [], [], [], 0
                    failed: list[str] = []
                    for _ in range(args.rounds):  # console and API alternate: noise hits both alike
                        try:
                            timings = await walk(client, query, 10)
                            api = await walk_api(http, customers, headers, query, 10)
                        except Failed as exc:
                            failed.append(str(exc))
                            continue
                        firsts.append(timings[0] * 1000)
                        api_firsts.append(api[0] * 1000)
                        reached = len(timings)
                        if len(timings) == 10:
                            tenths.append(timings[9] * 1000)
                        if len(api) == 10:
                            api_tenths.append(api[9] * 1000)
                    lines.append(
                        f"{who:<18}{label:<40}{p50_95(firsts):>19}{p50_95(api_firsts):>12}"
                        f"{p50_95(tenths):>17}{p50_95(api_tenths):>12}  {reached}"
                        + (f"  walks failed: {len(failed)} ({', '.join(sorted(set(failed)))})" if failed else "")
                    )
                    print(lines[-1], file=sys.stderr, flush=True)
            finally:
                await client.aclose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="customers in the store")
    parser.add_argument("--rounds", type=int, default=20, help="walks of ten pages per view and person")
    args = parser.parse_args()
    lines = header(f"console: customers list page at {args.n} customers (page 1, page 10 by load more)")
    with backend_only() as (backend, log_dir), stack(backend, log_dir) as specs:
        lines += asyncio.run(run(backend, specs, args))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
