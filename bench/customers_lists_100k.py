"""List views at 100k customers: the HTTP API against the same query issued with the raw driver.

    python bench/customers_lists_100k.py [--n 100000] [--runs 20] [--warmups 3]

Seeds n realistic customers straight into a fresh database with insert_many
(documents built with crm_customers' own new_customer: 200 owners in 20
departments, 30 industries, 40 cities, tiers A/B/C, a few tags, some contacts, 2%
in the public pool), creates the service's indexes with its own repository, then
starts the customers service as a real process on that database and times typical
list views (limit=50) through GET /v1/customers, each beside the same filter, sort,
projection and limit sent with PyMongo (the filter built by the service's own
CustomerFilter.to_mongo, so the two cannot drift). API and raw runs alternate, so
noise on this shared machine hits both alike; figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from common import backend_only, bearer, fresh_database, header, median, service_on
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_customers.adapters.repository import CustomerRepository
from crm_customers.application.queries import DEFAULT_SORT, CustomerFilter
from crm_customers.domain import rules
from crm_customers.domain.model import CustomerCreate
from crm_platform.auth import Principal, Role
from crm_platform.clock import SystemClock
from crm_platform.listing import decode_cursor, keyset_filter, mongo_sort, parse_sort
from crm_platform.outbox import LEASE, PENDING, REV

Document = dict[str, Any]
SLOW_MS = 500.0
LIMIT = 50
# What the repository's find() leaves out of list rows (adapters/repository.py).
LIST_PROJECTION = {"outbox": 0, "name_grams": 0}
SEED = 20260101  # the same data every run

REGIONS = 5
TEAMS = 20  # 4 per region: /hq/r1/t1 ... /hq/r5/t20
OWNERS = 200  # 10 per team
INDUSTRIES = [
    "制造", "零售", "软件", "物流", "医疗", "教育", "金融", "能源", "建筑", "餐饮",
    "汽车", "化工", "农业", "传媒", "旅游", "地产", "电子", "纺织", "食品", "环保",
    "咨询", "法律", "广告", "安防", "通信", "家居", "体育", "航空", "船舶", "矿业",
]  # fmt: skip
CITIES = [
    ("上海", "上海"), ("北京", "北京"), ("深圳", "广东"), ("广州", "广东"), ("杭州", "浙江"), ("宁波", "浙江"),
    ("南京", "江苏"), ("苏州", "江苏"), ("无锡", "江苏"), ("成都", "四川"), ("重庆", "重庆"), ("武汉", "湖北"),
    ("长沙", "湖南"), ("西安", "陕西"), ("郑州", "河南"), ("济南", "山东"), ("青岛", "山东"), ("天津", "天津"),
    ("合肥", "安徽"), ("福州", "福建"), ("厦门", "福建"), ("南昌", "江西"), ("昆明", "云南"), ("贵阳", "贵州"),
    ("南宁", "广西"), ("海口", "海南"), ("沈阳", "辽宁"), ("大连", "辽宁"), ("长春", "吉林"), ("哈尔滨", "黑龙江"),
    ("石家庄", "河北"), ("太原", "山西"), ("呼和浩特", "内蒙古"), ("兰州", "甘肃"), ("西宁", "青海"),
    ("银川", "宁夏"), ("乌鲁木齐", "新疆"), ("拉萨", "西藏"), ("东莞", "广东"), ("佛山", "广东"),
]  # fmt: skip
TAGS = ["重点", "老客户", "渠道", "招投标", "续约", "高潜", "政府", "外资", "上市", "国企",
        "转介绍", "年框", "试用", "大客户", "价格敏感", "决策慢", "展会", "已拜访", "待回款", "VIP"]  # fmt: skip
SYLLABLES_1 = "恒华盛鑫中新宏国天金东博瑞汇泰海德嘉安永信达隆远明通和兴昌佳正康润丰百利凯"
SYLLABLES_2 = "达通宇源航联科创泽辉晟祥阳诚邦杰光伟峰益阔越腾程启鸿森旺瀚卓锐顺铭"
SIZES = ["1-20", "21-100", "101-500", "501-1000", "1000+"]
SOURCES = ["website", "inbound_call", "cold_call", "referral", "campaign", "exhibition", "partner"]
STAGES = ["lead", "prospect", "customer", "repeat_customer", "dormant", "churned"]


# --- the data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    user_id: str
    department_path: str

    @property
    def principal(self) -> Principal:
        return Principal(
            user_id=self.user_id,
            roles=frozenset({Role.rep}),
            department_id=self.department_path.rsplit("/", 1)[-1],
            department_path=self.department_path,
        )


def team_path(team: int) -> str:
    """Team 1..20 under region 1..5, four teams a region: /hq/r3/t12."""
    return f"/hq/r{(team - 1) // (TEAMS // REGIONS) + 1}/t{team}"


def make_owners() -> list[Owner]:
    return [Owner(f"u{j:03d}", team_path(j % TEAMS + 1)) for j in range(OWNERS)]


def zipf_weights(count: int) -> list[float]:
    # Real CRMs are skewed: a few industries hold most customers. 1/k puts the 5th at ~5%.
    return [1 / (k + 1) for k in range(count)]


@dataclass
class Seeded:
    """What the seed put where: the benchmark picks its filter values from it."""

    industries: Counter[str] = field(default_factory=Counter)
    tags: Counter[str] = field(default_factory=Counter)
    brands: Counter[str] = field(default_factory=Counter)


class Generator:
    def __init__(self, owners: Sequence[Owner], now: datetime) -> None:
        self.rng = random.Random(SEED)
        self.owners = owners
        self.now = now
        self.names: set[str] = set()
        self.industry_weights = zipf_weights(len(INDUSTRIES))
        self.seeded = Seeded()

    def _name(self) -> tuple[str, str]:
        # Unique after normalisation: the unique_name index is created after the seed.
        while True:
            city = self.rng.choice(CITIES)[0]
            brand = self.rng.choice(SYLLABLES_1) + self.rng.choice(SYLLABLES_2)
            trade = self.rng.choice(INDUSTRIES)
            name = f"{city}{brand}{trade}{self.rng.choice(['有限公司', '股份有限公司', '集团有限公司'])}"
            key = f"{city}{brand}{trade}"
            if key not in self.names:
                self.names.add(key)
                return name, brand

    def body(self, serial: int) -> tuple[Document, str]:
        rng = self.rng
        name, brand = self._name()
        city, province = rng.choice(CITIES)
        industry = rng.choices(INDUSTRIES, self.industry_weights)[0]
        tags = rng.sample(TAGS[:8], rng.randint(0, 2)) + rng.sample(TAGS[8:], rng.randint(0, 2))
        body: Document = {
            "kind": "company",
            "name": name,
            "industry": industry,
            "size": rng.choice(SIZES),
            "source": rng.choice(SOURCES),
            "tier": rng.choices("ABC", [20, 35, 45])[0],
            "lifecycle_stage": rng.choice(STAGES),
            "address": {"province": province, "city": city, "street": f"{brand}路{rng.randint(1, 999)}号"},
            "tags": tags,
            "phones": [f"138{serial:08d}"],
        }
        if rng.random() < 0.5:
            body["contacts"] = [{"name": f"联系人{serial}", "role": "decision_maker", "phones": [f"186{serial:08d}"]}]
        self.seeded.industries[industry] += 1
        self.seeded.tags.update(tags)
        self.seeded.brands[brand] += 1
        return body, brand

    def document(self, serial: int) -> Document:
        """One stored customer, as the service would hold it after its events were published."""
        body, _ = self.body(serial)
        owner = self.owners[serial % len(self.owners)]
        created = self.now - timedelta(seconds=self.rng.uniform(60, 730 * 86400))
        doc = rules.new_customer(CustomerCreate.model_validate(body), owner.principal, created)
        doc["updated_at"] = created + (self.now - created) * self.rng.random()
        if self.rng.random() < 0.6:
            doc["last_followed_up_at"] = doc["updated_at"]
        if self.rng.random() < 0.02:  # the public pool (公海): no owner, visible to everyone
            doc.update(owner_id=None, in_pool=True, pool_since=doc["updated_at"], previous_owner_id=owner.user_id)
        rules.refresh_derived(doc)  # the sort keys follow the dates set above
        # Published long ago: version 1, an empty outbox and no pending marker, so the relay has nothing to do.
        return {**doc, "version": 1, REV: 1, "outbox": []}


async def seed(collection: AsyncCollection[Document], n: int, batch: int) -> tuple[Seeded, float, float]:
    """Insert n customers in batches; returns what was seeded, build seconds and insert seconds."""
    generator = Generator(make_owners(), datetime.now(UTC))
    built = inserted = 0.0
    for start in range(0, n, batch):
        t0 = time.perf_counter()
        docs = [generator.document(i) for i in range(start, min(start + batch, n))]
        t1 = time.perf_counter()
        await collection.insert_many(docs, ordered=False)
        inserted += time.perf_counter() - t1
        built += t1 - t0
    return generator.seeded, built, inserted


# --- the views --------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One list view: who asks, with which query parameters, and the index it should use."""

    label: str
    principal: Principal
    params: dict[str, str]
    index: str  # the index (adapters/repository.py) a store should use for it

    @property
    def headers(self) -> dict[str, str]:
        roles = [r.value for r in self.principal.roles]
        return bearer(self.principal.user_id, roles, self.principal.department_path)

    def filters(self) -> CustomerFilter:
        fields = {k: v for k, v in self.params.items() if k in CustomerFilter.model_fields}
        return CustomerFilter.model_validate(fields)


def views(seeded: Seeded, n: int) -> list[View]:
    rep = make_owners()[17]
    rep_p = rep.principal
    manager = Principal(user_id="mgr-r3", roles=frozenset({Role.manager}), department_id="r3", department_path="/hq/r3")
    admin = Principal(user_id="admin-1", roles=frozenset({Role.admin}))
    two_tags = ",".join(t for t, _ in seeded.tags.most_common(2))
    brand = seeded.brands.most_common(1)[0][0]
    # The industry whose count is nearest 5% of n: ~5k at 100k.
    industry = min(seeded.industries, key=lambda k: abs(seeded.industries[k] - n / 20))
    return [
        View(f"rep {rep.user_id}: owner_id=me, -updated_at", rep_p, {"owner_id": rep.user_id, "sort": "-updated_at"},
             "owner_status_updated_id"),
        View(f"rep {rep.user_id}: default view (mine + pool)", rep_p, {"sort": "-updated_at"},
             "owner_status_updated_id + pool_status_updated_id"),
        View("manager /hq/r3: tier=A, -updated_at", manager, {"tier": "A", "sort": "-updated_at"},
             "dept_status_updated_id (+ pool_status_updated_id)"),
        View(f"admin: tags_all={two_tags}", admin, {"tags_all": two_tags}, "tags"),
        View(f"admin: q={brand}", admin, {"q": brand}, "name_normalised (a regex inside the name cannot use it)"),
        View("admin: sort=name, page 1", admin, {"sort": "name"}, "sort_name"),
        View("admin: sort=name, page 2 (cursor)", admin, {"sort": "name"}, "sort_name"),
        View("admin: -updated_at, page 2 (cursor)", admin, {"sort": "-updated_at"}, "idx_s.updated_at"),
        View(f"rep {rep.user_id}: default view, page 2 (cursor)", rep_p, {"sort": "-updated_at"},
             "owner_status_updated_id + pool_status_updated_id"),
        View(f"admin: industry={industry} include_total", admin, {"industry": industry, "include_total": "true"},
             f"industry ({seeded.industries[industry]} match)"),
    ]  # fmt: skip


@dataclass
class RawQuery:
    """The query the service makes for a view, sent with the driver."""

    query: Document
    sort: list[tuple[str, int]]
    count: Document | None  # the filter counted when include_total=true


def raw_query(view: View, cursor: str | None) -> RawQuery:
    # The same calls list_customers makes (application/queries.py).
    keys = parse_sort(view.params.get("sort"), rules.SORT_FIELDS, DEFAULT_SORT)
    base = view.filters().to_mongo(view.principal)
    query = {"$and": [base, keyset_filter(keys, decode_cursor(cursor, keys))]} if cursor else base
    total = base if view.params.get("include_total") == "true" else None
    return RawQuery(query, mongo_sort(keys), total)


async def run_raw(collection: AsyncCollection[Document], q: RawQuery) -> list[str]:
    # limit + 1, like the service: the extra row tells whether there is a next page.
    docs = await collection.find(q.query, projection=LIST_PROJECTION).sort(q.sort).limit(LIMIT + 1).to_list()
    if q.count is not None:
        await collection.count_documents(q.count)
    return [d["_id"] for d in docs[:LIMIT]]


async def run_api(client: httpx.AsyncClient, view: View, cursor: str | None) -> Document:
    params = {**view.params, "limit": str(LIMIT), **({"cursor": cursor} if cursor else {})}
    response = await client.get("/v1/customers", params=params, headers=view.headers)
    if response.status_code != 200:
        raise RuntimeError(f"{view.label}: {response.status_code} {response.text[:300]}")
    page: Document = response.json()
    return page


# --- timing ------------------------------------------------------------------------------


@dataclass
class Timed:
    view: View
    api: list[float]
    raw: list[float]
    rows: int
    total: int | None
    same_ids: bool
    plan: str | None = None


async def clock(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def time_view(
    client: httpx.AsyncClient, collection: AsyncCollection[Document], view: View, cursor: str | None, runs: int,
    warmups: int,
) -> Timed:  # fmt: skip
    q = raw_query(view, cursor)
    page = await run_api(client, view, cursor)
    ids = await run_raw(collection, q)
    same = [item["id"] for item in page["items"]] == ids
    for _ in range(warmups):
        await run_api(client, view, cursor)
        await run_raw(collection, q)
    api, raw = [], []
    for _ in range(runs):  # alternate, so a noisy moment hits both sides
        api.append(await clock(lambda: run_api(client, view, cursor)))
        raw.append(await clock(lambda: run_raw(collection, q)))
    return Timed(view, api, raw, len(page["items"]), page.get("total"), same)


async def explain(db: AsyncDatabase[Document], q: RawQuery) -> str:
    """The store's plan for the filter (nx-27017 explains the filter only, not the sort or limit)."""
    try:
        result = await db.command("explain", {"find": "customers", "filter": q.query}, verbosity="queryPlanner")
    except Exception as exc:  # a store without explain: say so rather than fail the run
        return f"explain failed: {exc}"
    plan = result.get("queryPlanner", {}).get("winningPlan")
    if isinstance(plan, list):  # nx-27017: SQLite's EXPLAIN QUERY PLAN rows
        return "; ".join(str(step.get("detail", step)) for step in plan)
    return json.dumps(plan, default=str)


async def relay_idle_poll(collection: AsyncCollection[Document]) -> float:
    """What the outbox relay's idle poll (once a second) costs the store at this size, in seconds."""
    now = datetime.now(UTC)
    query = {PENDING: {"$lte": now}, "$or": [{LEASE: {"$exists": False}}, {LEASE: {"$lt": now.timestamp()}}]}
    return median([await clock(lambda: collection.find(query, {"_id": 1}).sort(PENDING, 1).limit(200).to_list())
                   for _ in range(5)])  # fmt: skip


# --- report ---------------------------------------------------------------------------------


def pad(text: str, width: int) -> str:
    """Left-align in `width` terminal columns: CJK characters take two, so ljust would misalign the table."""
    shown = ""
    for char in text:
        if _columns(shown + char) > width - 1:
            break
        shown += char
    return shown + " " * (width - _columns(shown))


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def report(args: argparse.Namespace, seeding: list[str], results: list[Timed], relay_poll: float) -> str:
    lines = [*header(f"customers: list views at {args.n} customers, API vs raw driver"), *seeding, ""]
    lines.append(
        f"limit={LIMIT}; median of {args.runs} runs each after {args.warmups} warm-ups, API and raw alternating"
    )
    lines.append(f"{'view':<48}{'API ms':>9}{'raw ms':>9}{'API/raw':>8}{'rows':>6}{'total':>7}  same ids")
    for r in results:
        api_ms, raw_ms = median(r.api) * 1000, median(r.raw) * 1000
        total = "" if r.total is None else str(r.total)
        flag = "  SLOW" if max(api_ms, raw_ms) > SLOW_MS else ""
        lines.append(
            f"{pad(r.view.label, 48)}{api_ms:>9.1f}{raw_ms:>9.1f}{api_ms / raw_ms:>7.2f}x{r.rows:>6}{total:>7}"
            f"  {'yes' if r.same_ids else 'NO'}{flag}"
        )
    lines.append(f"(outbox relay's idle poll query, run every second in the service: {relay_poll * 1000:.1f} ms)")
    slow = [r for r in results if max(median(r.api), median(r.raw)) * 1000 > SLOW_MS]
    if slow:
        lines += ["", f"slower than {SLOW_MS:.0f} ms: the index each should use, and the store's plan for its filter:"]
        for r in slow:
            lines += [f"- {r.view.label}: should use {r.view.index}", f"    plan: {r.plan}"]
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------


async def prepare(mongo_url: str, database: str, n: int, batch: int) -> tuple[Seeded, list[str]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        db = client[database]
        seeded, built, inserted = await seed(db["customers"], n, batch)
        started = time.perf_counter()
        # The service's own index set, through its own repository (the relay hook is not needed here).
        repo = CustomerRepository(db, SystemClock(), lambda: None)
        await repo.ensure_indexes()
        indexed = time.perf_counter() - started
        # The tag memberships the service writes with each customer, built by its own start-up step
        # here (so the service, started next, finds them built instead of building them first).
        started = time.perf_counter()
        memberships = await repo.tags.rebuild(repo.collection, f"v1_s{rules.SORT_KEYS_VERSION}")
        tagged = time.perf_counter() - started
    finally:
        await client.close()
    total = built + inserted + indexed + tagged
    return seeded, [
        f"seed:    {n} customers in {total:.1f} s = build {built:.1f} s (new_customer) + insert_many {inserted:.1f} s"
        f" ({n / inserted:.0f} docs/s, batches of {batch}) + ensure_indexes {indexed:.1f} s"
        f" + {memberships} tag memberships {tagged:.1f} s",
    ]


async def measure(args: argparse.Namespace, base_url: str, mongo_url: str, database: str, seeded: Seeded) -> tuple[
    list[Timed], float
]:  # fmt: skip
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    results: list[Timed] = []
    try:
        db = mongo[database]
        collection = db["customers"]
        async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
            for view in views(seeded, args.n):
                cursor = None
                if "page 2" in view.label:
                    cursor = (await run_api(client, view, None))["next_cursor"]
                timed = await time_view(client, collection, view, cursor, args.runs, args.warmups)
                if max(median(timed.api), median(timed.raw)) * 1000 > SLOW_MS:
                    timed.plan = await explain(db, raw_query(view, cursor))
                results.append(timed)
                print(f"  measured: {view.label}", file=sys.stderr, flush=True)  # progress, off the result block
        relay_poll = await relay_idle_poll(collection)
    finally:
        await mongo.close()
    return results, relay_poll


def readiness(base_url: str) -> str:
    """Time one GET /readyz with no short timeout: its outbox count grows with the collection."""
    started = time.perf_counter()
    try:
        status = httpx.get(f"{base_url}/readyz", timeout=300).status_code
    except httpx.HTTPError as exc:
        return f"service: GET /readyz failed: {exc!r}"
    took = time.perf_counter() - started
    note = "  <-- longer than start_service's 2 s readiness probe allows" if took > 2 else ""
    return f"service: GET /readyz -> {status} in {took:.2f} s{note}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="customers to seed")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per view and side")
    parser.add_argument("--warmups", type=int, default=3, help="untimed runs per view and side first")
    parser.add_argument("--batch", type=int, default=1000, help="documents per insert_many")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with backend_only() as (backend, log_dir):
        database = fresh_database("bench_lists")
        seeded, seeding = asyncio.run(prepare(backend.mongo_url, database, args.n, args.batch))
        print(seeding[0], file=sys.stderr, flush=True)
        started = time.perf_counter()
        with service_on(backend, log_dir, database, wait_for_ready=False) as stack:
            seeding.append(f"service: /healthz answered {time.perf_counter() - started:.1f} s after start")
            seeding.append(readiness(stack.url))
            results, relay_poll = asyncio.run(measure(args, stack.url, backend.mongo_url, database, seeded))
        print(report(args, seeding, results, relay_poll), flush=True)


if __name__ == "__main__":
    main()
