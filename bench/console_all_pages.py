"""Every page of the console at N customers: what a rep, a manager and an administrator open.

    python bench/console_all_pages.py [--n 100000] [--rounds 20]

Issue 15: every page under 300 ms of server time at 100k customers. `console_pages.py` times the
customers list in depth (filters, sorts, page 10); this one times every other page once per round,
with all eight services as real processes on one embedded backend (the same harness).

The data: the department, 20 reps and a manager through the directory API; the customers store
filled to N (one customer through the API, then clones by the raw driver, as `console_pages.py`
does). The clones were never announced as events, so the other services do not know them: the
rep persona also creates 10 customers through the API, and on them 20 opportunities, 30
follow-ups and 20 tasks, so that the kanban, the tasks, the 360 view, the timeline and the
dashboards have rows of their own. The pool holds 2% of the N customers.

Each round asks each page once per persona, signed in through the login form; p50 / p95 in ms at
the client on loopback (server time). Flags pages over 300 ms at p95.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from common import backend_only, bearer, header, percentile
from console_pages import fill, people, signed_in, stack, template

from crm_platform.devstack.services import ServiceSpec
from crm_platform.testing.backends import Backend

GOAL_MS = 300.0
ALL = ("directory", "customers", "pipeline", "interactions", "pool", "notifications", "reporting", "console")


async def until_ok(call: Any, what: str, timeout: float = 60.0) -> httpx.Response:
    """Repeat ``call()`` until it answers 2xx: a service learns of a new customer through its events."""
    deadline = time.monotonic() + timeout
    while True:
        answer: httpx.Response = await call()
        if answer.status_code < 300:
            return answer
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {answer.status_code} {answer.text[:300]}")
        await asyncio.sleep(0.3)


async def activity(http: httpx.AsyncClient, specs: dict[str, ServiceSpec], rep: dict[str, Any]) -> list[str]:
    """The rep's own customers, opportunities, follow-ups and tasks, through the APIs."""
    headers = bearer(rep["id"], rep["roles"], rep["department_path"])
    customers, pipeline, interactions = (specs[n].url() for n in ("customers", "pipeline", "interactions"))
    ids = []
    for i in range(10):
        body = {"kind": "company", "name": f"宁波{uuid.uuid4().hex[:6]}机械有限公司", "tier": "AB"[i % 2]}
        answer = await http.post(f"{customers}/v1/customers", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    close = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
    for i in range(20):
        body = {"customer_id": ids[i % 10], "name": f"设备采购 {i}", "amount": "80000", "expected_close_date": close}
        await until_ok(lambda b=body: http.post(f"{pipeline}/v1/opportunities", json=b, headers=headers), "opportunity")
    now = datetime.now(UTC)
    for i in range(30):
        body = {
            "customer_id": ids[i % 10],
            "channel": "visit",
            "occurred_at": (now - timedelta(hours=i)).isoformat(),
            "summary": f"第 {i} 次跟进",
        }
        await until_ok(lambda b=body: http.post(f"{interactions}/v1/interactions", json=b, headers=headers), "log")
    for i in range(20):
        due = (now + timedelta(hours=3 * i + 1)).isoformat()
        body = {"customer_id": ids[i % 10], "title": f"回访 {i}", "due_at": due}
        await until_ok(lambda b=body: http.post(f"{interactions}/v1/tasks", json=b, headers=headers), "task")
    return ids


async def time_pages(
    client: httpx.AsyncClient, pages: dict[str, str], rounds: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    took: dict[str, list[float]] = {label: [] for label in pages}
    failed: dict[str, str] = {}
    for path in pages.values():  # warm-up: caches of names and pickers, connections
        await client.get(path)
    for _ in range(rounds):
        for label, path in pages.items():
            started = time.perf_counter()
            answer = await client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                failed[label] = f"{answer.status_code}"
                continue
            took[label].append(elapsed)
    return took, failed


async def run(backend: Backend, specs: dict[str, ServiceSpec], args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    async with httpx.AsyncClient(timeout=120) as http:
        reps, manager = await people(http, specs["directory"].url())
        base = await template(http, specs["customers"].url(), reps[0], backend.mongo_url, specs["customers"].database)
        seconds = await fill(backend.mongo_url, specs["customers"].database, base, reps, args.n)
        lines.append(f"prefill: {args.n} customers (1 through the API + clones) in {seconds:.1f} s")
        rep = reps[3]
        mine = await activity(http, specs, rep)
        lines.append("activity: the rep's 10 customers, 20 opportunities, 30 follow-ups, 20 tasks through the APIs")
        admin = await http.post(
            f"{specs['directory'].url()}/v1/users",
            json={"email": f"{uuid.uuid4().hex[:10]}@example.com", "name": "管理员", "roles": ["admin"],
                  "department_id": "hq", "password": "a long enough passphrase"},
            headers=bearer("bench-admin", ["admin"], "/hq"),
        )  # fmt: skip
        assert admin.status_code == 201, admin.text
    await asyncio.sleep(3)  # the consumers catch up with the activity (reporting, pool, notifications)
    common = {
        "home /": "/",
        "customers list": "/customers",
        "customer 360": f"/customers/{mine[0]}",
        "customer timeline": f"/customers/{mine[0]}/timeline",
        "kanban /pipeline": "/pipeline",
        "tasks": "/tasks",
        "pool": "/pool",
        "pool: mine, days left": "/pool/mine",
        "inbox": "/inbox",
    }
    personas: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
        "rep": (rep, common),
        "manager": (manager, {**common, "dashboards": "/dashboards"}),
        "admin": (
            admin.json(),
            {
                "dashboards": "/dashboards",
                "admin: users": "/admin/users",
                "admin: departments": "/admin/departments",
                "admin: pipelines": "/admin/pipelines",
                "admin: pool rules": "/admin/pool-rules",
                "admin: webhooks": "/admin/webhooks",
            },
        ),
    }
    lines.append(f"{'who':<9}{'page':<24}{'p50 / p95 ms':>16}")
    over = total = 0
    for who, (person, pages) in personas.items():
        client = await signed_in(specs["console"].url(), person["email"])
        try:
            took, failed = await time_pages(client, pages, args.rounds)
        finally:
            await client.aclose()
        for label in pages:
            values = took[label]
            p50, p95 = (percentile(values, 50), percentile(values, 95)) if values else (float("nan"),) * 2
            flag = "!" if p95 > GOAL_MS else " "
            over += p95 > GOAL_MS
            total += 1
            note = f"  failed: {failed[label]}" if label in failed else ""
            lines.append(f"{who:<9}{label:<24}{p50:7.0f} /{p95:6.0f}{flag}{note}")
            print(lines[-1], file=sys.stderr, flush=True)
    lines.append(f"pages over {GOAL_MS:.0f} ms at p95: {over} of {total}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="customers in the store")
    parser.add_argument("--rounds", type=int, default=20, help="times each page is asked per persona")
    args = parser.parse_args()
    lines = header(f"console: every page at {args.n} customers")
    with backend_only() as (backend, log_dir), stack(backend, log_dir, ALL) as specs:
        lines += asyncio.run(run(backend, specs, args))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
