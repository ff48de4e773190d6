"""Pool recycling at scale: seed N customer clocks directly, time one scheduler run.

Starts an embedded backend (Tansu + nx-27017), builds the pool service in-process
(its outbox relay publishes the run's events to Kafka as in production), seeds N
clocks under one department rule with `--due` of them past their warning date and
`--due` past their (announced) recycling date, then times:

- the run that warns and decides them (one notice + event per customer, guarded),
- a second run with nothing left to do (the steady-state cost of a tick),
- the raw range query the run starts from, with the driver alone, for the ratio,
- a rule change followed at once by a run that uses it (no per-customer recompute on that path),
- the preview of a draft rule over all N,
- the background refresh of the stored deadlines that a rule change still triggers (nothing waits for it).

    python bench/pool_recycle.py --n 100000 --due 1000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_platform.auth import Principal, Role
from crm_platform.clock import ManualClock
from crm_platform.testing.backends import start_backend
from crm_pool.application.clocks import new_clock
from crm_pool.domain.recycling import due, schedule
from crm_pool.main import create_app
from crm_pool.settings import PoolSettings

DEPT = "/bench/sales"


def rule(now: datetime) -> dict[str, Any]:
    return {
        "_id": "bench-rule",
        "rule_id": "bench-rule",
        "name": "bench",
        "department_path": DEPT,
        "scope": DEPT,
        "enabled": True,
        "deleted": False,
        "no_interaction_days": 30,
        "no_won_days": None,
        "warn_days": 3,
        "exempt_stage_id": None,
        "exempt_tags": [],
        "cooldown_days": 7,
        "claim_scope": "department",
        "version": 1,
        "outbox_rev": 0,
        "outbox": [],
        "created_at": now,
        "created_by": "bench",
        "updated_at": now,
        "updated_by": "bench",
    }


def clocks(n: int, n_due: int, now: datetime) -> list[dict[str, Any]]:
    rules = [rule(now)]
    out = []
    for i in range(n):
        c = new_clock(f"c-{i:07d}")
        c.update(
            owner_id=f"rep-{i % 500}", department_path=f"{DEPT}/t{i % 20}", name=f"客户 {i}", rev=0, applied_events=[]
        )
        if i < n_due:  # past the warning date, not warned yet
            c["owner_since"] = now - timedelta(days=28)
        elif i < 2 * n_due:  # warned for this deadline, now due
            c["owner_since"] = now - timedelta(days=31)
        else:  # spread over the next weeks
            c["owner_since"] = now - timedelta(days=26) + timedelta(minutes=i % 30000)
        result = due(c, rules, {})
        if n_due <= i < 2 * n_due:
            c.update(warned_for=result.deadline.isoformat(), recycle_at=result.deadline)
        out.append(schedule(c, result))
    return out


async def main(args: argparse.Namespace) -> None:
    backend = start_backend()
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        settings = PoolSettings(
            kafka_bootstrap_servers=backend.kafka_bootstrap,
            mongo_url=backend.mongo_url,
            mongo_database=f"bench_pool_{uuid.uuid4().hex[:6]}",
            jwt_secret="bench-secret-0123456789-0123456789",  # type: ignore[arg-type]
            scheduler_enabled=False,
            log_level="WARNING",
            scheduler_batch_size=args.batch,
        )
        app = create_app(settings, ManualClock(now))
        async with app.router.lifespan_context(app):
            repo = app.state.repo
            await repo.rules.insert_one(rule(now))
            started = time.perf_counter()
            docs = clocks(args.n, args.due, now)
            for i in range(0, len(docs), 5000):
                await repo.clocks.insert_many(docs[i : i + 5000])
            seeded = time.perf_counter() - started

            raw = []
            for _ in range(5):
                t = time.perf_counter()
                found = [
                    c
                    async for c in repo.clocks.find(
                        {"touch_ms": {"$lte": int((now - timedelta(days=27)).timestamp() * 1000)}},
                        batch_size=args.batch,
                    )
                ]
                raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = await app.state.recycler.run(now)
            first = time.perf_counter() - t
            idle = []
            for _ in range(5):
                t = time.perf_counter()
                again = await app.state.recycler.run(now)
                idle.append(time.perf_counter() - t)
            print(
                f"pool recycling benchmark: {args.n} clocks, {args.due} to warn + {args.due} to decide, "
                f"batch {args.batch}"
            )
            print(f"  seeding (insert_many):                 {seeded:8.2f} s")
            print(
                f"  run with work: warned {report.warned}, decided {report.decided}: {first:8.3f} s "
                f"({first / max(1, report.warned + report.decided) * 1000:.2f} ms per customer handled)"
            )
            print(
                f"  idle run (nothing due), median of 5:   {statistics.median(idle) * 1000:8.1f} ms "
                f"(warned {again.warned}, decided {again.decided})"
            )
            print(
                f"  raw range query (driver), median of 5: {statistics.median(raw) * 1000:8.1f} ms "
                f"for {len(found)} docs"
            )
            # A stricter rule: the next run applies it at once (two days fewer: about 4,700 more customers due).
            await repo.rules.update_one({"_id": "bench-rule"}, {"$set": {"no_interaction_days": 28}})
            t = time.perf_counter()
            stricter = await app.state.recycler.run(now)
            print(
                f"  rule made stricter, run right after: warned {stricter.warned}, decided {stricter.decided}: "
                f"{time.perf_counter() - t:8.3f} s"
            )
            admin = Principal(user_id="bench-admin", roles=frozenset({Role.admin}), department_path="/")
            draft = {**rule(now), "rule_id": "draft", "no_interaction_days": 27}
            t = time.perf_counter()
            items = await app.state.recycler.preview(admin, now, None, 5000, draft=draft)
            print(f"  draft rule preview over all clocks ({len(items)} listed): {time.perf_counter() - t:8.3f} s")
            t = time.perf_counter()
            moved = await app.state.clocks.recompute(DEPT)
            print(f"  background refresh of stored deadlines ({moved} moved): {time.perf_counter() - t:8.2f} s")
    finally:
        backend.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
