"""List views of opportunities and interactions at 50k each: the API (in-process ASGI) against one raw query.

    python bench/lists_pipeline_interactions.py [--n 50000] [--runs 7] [--warmups 2]

Starts an embedded backend, the pipeline and interactions apps in this process
(their lifespan: indexes, default pipeline, consumers, outbox relay) and seeds n
opportunities and n interactions straight into their collections with insert_many.
The documents are built by the services' own builders (crm_pipeline's
new_opportunity, crm_interactions' new_interaction), so they are shaped exactly as
the services write them: 200 owners in 20 teams under 5 regions, 2 000 customers.
The interactions service's read copy of the customers is seeded as well (a rep's
cross-customer list includes the customers the rep owns).

Each view is timed through the HTTP API (httpx over ASGI: routing, auth, the
service's queries, serialisation) beside the same logical filter, sort and limit
sent as ONE find with PyMongo (built here, independent of the service code, so the
before/after runs compare like with like). Note that on nx-27017 a raw query with a
top-level ``$or`` (visibility) is itself a full scan. API and raw runs alternate;
figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from common import BENCH_JWT_SECRET, backend_only, bearer, header, median
from fastapi import FastAPI
from pydantic import TypeAdapter
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from crm_interactions.adapters.repository import CUSTOMER_OWNER
from crm_interactions.domain import interactions as interaction_rules
from crm_interactions.domain.model import InteractionIn
from crm_interactions.main import create_app as create_interactions
from crm_interactions.settings import InteractionsSettings
from crm_pipeline.domain import opportunities as opportunity_rules
from crm_pipeline.domain import pipelines
from crm_pipeline.domain.model import OpportunityCreate
from crm_pipeline.main import create_app as create_pipeline
from crm_pipeline.settings import PipelineSettings
from crm_platform.auth import Principal, Role
from crm_platform.clock import SystemClock
from crm_platform.outbox import REV

Document = dict[str, Any]
LIMIT = 50
SEED = 20261125
REGIONS, TEAMS, OWNERS, CUSTOMERS = 5, 20, 200, 2000
SLOW_MS = 500.0
OPP_PROJECTION = {"outbox": 0, "stage_history": 0}
INT_PROJECTION = {"outbox": 0}


def team_path(team: int) -> str:
    return f"/hq/r{(team - 1) // (TEAMS // REGIONS) + 1}/t{team}"


def owner(j: int) -> Principal:
    path = team_path(j % TEAMS + 1)
    return Principal(
        user_id=f"u{j:03d}", roles=frozenset({Role.rep}), department_id=path.rsplit("/", 1)[-1], department_path=path
    )


def customer_owner(c: int) -> int:
    return c % OWNERS


def customer_id(c: int) -> str:
    return f"c{c:05d}"


def subtree(path: str) -> Document:
    return {"$regex": f"^{re.escape(path.rstrip('/'))}(/|$)"}


# --- seed ------------------------------------------------------------------------------------------


def opportunity(rng: random.Random, i: int, pipeline: Document, now: datetime, zone: Any) -> Document:
    c = rng.randrange(CUSTOMERS)
    principal = owner(customer_owner(c))
    open_stages = [s for s in pipeline["stages"] if s["kind"] == "open"]
    stage = pipelines.stage_of(pipeline, open_stages[0]["stage_id"])  # with its position, as the service reads it
    later = rng.choice(open_stages)  # where it has moved to since (moves need documents; set it as a move would)
    assert stage is not None
    close = date.today() + timedelta(days=rng.randint(-60, 180))
    data = OpportunityCreate.model_validate(
        {
            "customer_id": customer_id(c),
            "name": f"商机 {i} {rng.choice(['ERP', 'CRM', '云服务', '硬件', '咨询'])}",
            "amount": f"{rng.randint(1, 5000) * 1000}.00",
            "expected_close_date": close.isoformat() if rng.random() < 0.8 else None,
        }
    )
    created = now - timedelta(seconds=rng.uniform(60, 365 * 86400))
    doc = opportunity_rules.new_opportunity(data, principal, pipeline, stage, set(), created, zone, "CNY")
    doc["updated_at"] = created + (now - created) * rng.random()
    doc.update(stage_id=later["stage_id"], stage_name=later["name"], stage_probability=later["probability"])
    roll = rng.random()
    if roll < 0.15:
        doc["status"], doc["won_on"] = "won", doc["updated_at"].date().isoformat()
    elif roll < 0.25:
        doc["status"], doc["lost_on"] = "lost", doc["updated_at"].date().isoformat()
    opportunity_rules.refresh(doc)
    return {**doc, "version": 1, REV: 1, "outbox": []}


CHANNELS: list[Document] = [
    {"channel": "phone", "direction": "out", "duration_seconds": 300},
    {"channel": "visit", "location": "客户现场"},
    {"channel": "meeting", "attendees": ["张三"]},
    {"channel": "social", "platform": "WeChat", "content": "跟进"},
    {"channel": "note", "content": "备注"},
]
INTERACTION_IN: TypeAdapter[Any] = TypeAdapter(InteractionIn)


def interaction(rng: random.Random, i: int, now: datetime) -> Document:
    c = rng.randrange(CUSTOMERS)
    # Mostly the customer's owner logs it; sometimes a colleague.
    author = owner(customer_owner(c) if rng.random() < 0.85 else rng.randrange(OWNERS))
    occurred = now - timedelta(seconds=rng.uniform(60, 365 * 86400))
    data = INTERACTION_IN.validate_python(
        {**rng.choice(CHANNELS), "customer_id": customer_id(c), "occurred_at": occurred, "summary": f"第 {i} 次跟进"}
    )
    recorded = occurred + timedelta(hours=rng.choice([0.5, 2, 30]))
    doc = interaction_rules.new_interaction(
        str(uuid.uuid4()), data, author, recorded, late_after=timedelta(hours=24), skew=timedelta(minutes=5)
    )
    # The service keeps the customer's owner on the record (crm_interactions: CUSTOMER_OWNER).
    return {**doc, CUSTOMER_OWNER: owner(customer_owner(c)).user_id, "version": 1, REV: 1, "outbox": []}


def customer_copy(c: int, now: datetime) -> Document:
    p = owner(customer_owner(c))
    return {
        "_id": customer_id(c), "customer_id": customer_id(c), "status": "active", "name": f"客户{c}",
        "kind": "company", "owner_id": p.user_id, "department_id": p.department_id,
        "department_path": p.department_path, "in_pool": False, "locked": False, "tags": [], "tier": "B",
        "industry": "软件", "size": "21-100", "source": "website", "lifecycle_stage": "customer",
        "merged_into": None, "contact_count": 0, "created_at": now, "updated_at": now, "contacts": [],
        "contacts_complete": True, "source_version": 1,
    }  # fmt: skip


async def insert(collection: AsyncCollection[Document], docs: list[Document], batch: int = 1000) -> float:
    started = time.perf_counter()
    for i in range(0, len(docs), batch):
        await collection.insert_many(docs[i : i + batch], ordered=False)
    return time.perf_counter() - started


# --- views --------------------------------------------------------------------------------------


@dataclass
class View:
    label: str
    path: str
    principal: Principal
    params: dict[str, str]
    collection: str
    raw: Document  # the logical filter as ONE query
    sort: list[tuple[str, int]]
    page2: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.principal.user_id, [r.value for r in self.principal.roles], self.principal.department_path)


def views(pipeline_id: str, stage_id: str, owned_by_rep: list[str]) -> list[View]:
    rep = owner(17)
    mgr = Principal(user_id="mgr-r3", roles=frozenset({Role.manager}), department_id="r3", department_path="/hq/r3")
    admin = Principal(user_id="admin-1", roles=frozenset({Role.admin}))
    upd = [("s.updated_at", -1), ("_id", 1)]
    close = [("s.expected_close_date", 1), ("_id", 1)]
    occ = [("occurred_at", -1), ("_id", 1)]
    mgr_vis = {"$or": [{"owner_id": mgr.user_id}, {"department_path": subtree("/hq/r3")}]}
    cust = customer_id(17)  # owned by u017
    live = {"status": "active", "hidden": False}
    rep_i = {"$or": [{"author_id": rep.user_id}, {"customer_id": {"$in": owned_by_rep}}]}
    mgr_i = {"$or": [{"author_id": mgr.user_id}, {"author_department_path": subtree("/hq/r3")}]}
    o = "/v1/opportunities"
    i = "/v1/interactions"
    return [
        View("opp rep: default (-updated_at)", o, rep, {}, "opportunities",
             {"hidden": False, "owner_id": rep.user_id}, upd),
        View("opp rep: status=open, sort=close date", o, rep, {"status": "open", "sort": "expected_close_date"},
             "opportunities", {"hidden": False, "owner_id": rep.user_id, "status": "open"}, close),
        View("opp manager /hq/r3: default", o, mgr, {}, "opportunities", {"hidden": False, **mgr_vis}, upd),
        View("opp manager /hq/r3: default, page 2", o, mgr, {}, "opportunities", {"hidden": False, **mgr_vis}, upd,
             page2=True),
        View("opp manager /hq/r3: stage filter", o, mgr, {"pipeline_id": pipeline_id, "stage_id": stage_id},
             "opportunities", {"hidden": False, "pipeline_id": pipeline_id, "stage_id": stage_id, **mgr_vis}, upd),
        View("opp admin: default", o, admin, {}, "opportunities", {"hidden": False}, upd),
        View("opp admin: customer_id", o, admin, {"customer_id": cust}, "opportunities",
             {"hidden": False, "customer_id": cust}, upd),
        View("opp admin: status=won, total", o, admin, {"status": "won", "include_total": "true"}, "opportunities",
             {"hidden": False, "status": "won"}, upd),
        View("int rep: own customer's history", f"/v1/customers/{cust}/interactions", rep, {}, "interactions",
             {"customer_id": cust, **live}, occ),
        View("int rep: history, channel=visit", f"/v1/customers/{cust}/interactions", rep, {"channel": "visit"},
             "interactions", {"customer_id": cust, "channel": {"$in": ["visit"]}, **live}, occ),
        View("int rep: cross-customer list", i, rep, {}, "interactions", {**rep_i, **live}, occ),
        View("int manager /hq/r3: cross-customer", i, mgr, {}, "interactions", {**mgr_i, **live}, occ),
        View("int admin: author_id", i, admin, {"author_id": rep.user_id}, "interactions",
             {"author_id": rep.user_id, **live}, occ),
        View("int admin: channel=visit", i, admin, {"channel": "visit"}, "interactions",
             {"channel": {"$in": ["visit"]}, **live}, occ),
        View("int admin: default, page 2", i, admin, {}, "interactions", live, occ, page2=True),
    ]  # fmt: skip


@dataclass
class Timed:
    view: View
    api: list[float]
    raw: list[float]
    rows: int
    same: bool


async def clock(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def time_view(
    client: httpx.AsyncClient, db: Any, view: View, runs: int, warmups: int, raw_skip: int
) -> Timed:  # fmt: skip
    params = {**view.params, "limit": str(LIMIT)}
    if view.page2:
        first = await client.get(view.path, params=params, headers=view.headers)
        params["cursor"] = first.json()["next_cursor"]
    projection = OPP_PROJECTION if view.collection == "opportunities" else INT_PROJECTION
    collection = db[view.collection]

    async def api() -> Document:
        response = await client.get(view.path, params=params, headers=view.headers)
        if response.status_code != 200:
            raise RuntimeError(f"{view.label}: {response.status_code} {response.text[:300]}")
        page: Document = response.json()
        return page

    async def raw() -> list[str]:
        # The raw side skips the first page with skip(): a single query, no keyset clause.
        cursor = collection.find(view.raw, projection=projection).sort(view.sort).skip(raw_skip if view.page2 else 0)
        docs = await cursor.limit(LIMIT + 1).to_list()
        return [d["_id"] for d in docs[:LIMIT]]

    page = await api()
    ids = await raw()
    same = [item["id"] for item in page["items"]] == ids
    for _ in range(warmups):
        await api()
        await raw()
    api_t, raw_t = [], []
    for _ in range(runs):
        api_t.append(await clock(api))
        raw_t.append(await clock(raw))
    return Timed(view, api_t, raw_t, len(page["items"]), same)


# --- run ------------------------------------------------------------------------------------------


def settings(backend: Any, cls: type[Any], name: str) -> Any:
    return cls(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=backend.mongo_url,
        mongo_database=f"bench_{name}_{uuid.uuid4().hex[:8]}",
        jwt_secret=BENCH_JWT_SECRET,
        log_format="console",
        log_level="WARNING",
        consumer_group_suffix=f".bench-{uuid.uuid4().hex[:6]}",
    )


async def run(args: argparse.Namespace, backend: Any) -> list[str]:
    p_settings: PipelineSettings = settings(backend, PipelineSettings, "pipeline")
    i_settings: InteractionsSettings = settings(backend, InteractionsSettings, "interactions")
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    lines: list[str] = []
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    pipeline_app: FastAPI = create_pipeline(p_settings, SystemClock())
    interactions_app: FastAPI = create_interactions(i_settings, SystemClock())
    try:
        pdb, idb = mongo[p_settings.mongo_database], mongo[i_settings.mongo_database]
        async with (
            pipeline_app.router.lifespan_context(pipeline_app),
            interactions_app.router.lifespan_context(interactions_app),
        ):
            default = await pdb["pipelines"].find_one({"is_default": True})
            assert default is not None, "the pipeline service seeds a default pipeline at start"
            stage_id = next(s for s in default["stages"] if s["kind"] == "open")["stage_id"]
            t0 = time.perf_counter()
            opps = [opportunity(rng, k, default, now, p_settings.zone) for k in range(args.n)]
            ints = [interaction(rng, k, now) for k in range(args.n)]
            built = time.perf_counter() - t0
            t_opp = await insert(pdb["opportunities"], opps)
            t_int = await insert(idb["interactions"], ints)
            t_cust = await insert(idb["customers"], [customer_copy(c, now) for c in range(CUSTOMERS)])
            lines.append(
                f"seed:    {args.n} opportunities in {t_opp:.1f} s, {args.n} interactions in {t_int:.1f} s,"
                f" {CUSTOMERS} customer copies in {t_cust:.1f} s (build {built:.1f} s; indexes existed: made at start)"
            )
            print(lines[-1], file=sys.stderr, flush=True)
            owned = [customer_id(c) for c in range(CUSTOMERS) if customer_owner(c) == 17]
            results: list[Timed] = []
            async with (
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=pipeline_app), base_url="http://p", timeout=300
                ) as pc,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=interactions_app), base_url="http://i", timeout=300
                ) as ic,
            ):
                for view in views(default["_id"], stage_id, owned):
                    client = pc if view.collection == "opportunities" else ic
                    db = pdb if view.collection == "opportunities" else idb
                    results.append(await time_view(client, db, view, args.runs, args.warmups, LIMIT))
                    print(f"  measured: {view.label}", file=sys.stderr, flush=True)
    finally:
        await mongo.close()
    lines.append(
        f"limit={LIMIT}; median of {args.runs} runs each after {args.warmups} warm-ups, API and raw alternating"
    )
    lines.append(f"{'view':<42}{'API ms':>9}{'raw ms':>9}{'API/raw':>9}{'rows':>6}  same ids")
    for r in results:
        api_ms, raw_ms = median(r.api) * 1000, median(r.raw) * 1000
        flag = "  SLOW" if api_ms > SLOW_MS else ""
        lines.append(
            f"{r.view.label:<42}{api_ms:>9.1f}{raw_ms:>9.1f}{api_ms / raw_ms:>8.2f}x{r.rows:>6}"
            f"  {'yes' if r.same else 'NO'}{flag}"
        )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="opportunities and interactions to seed (each)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per view and side")
    parser.add_argument("--warmups", type=int, default=2, help="untimed runs per view and side first")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with backend_only() as (backend, _log_dir):
        lines = asyncio.run(run(args, backend))
    title = f"pipeline + interactions: list views at {args.n} opportunities and {args.n} interactions, API vs raw"
    print("\n".join([*header(title), *lines]), flush=True)


if __name__ == "__main__":
    main()
