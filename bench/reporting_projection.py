"""How fast the reporting projection absorbs the event stream, and its end-to-end lag.

Starts an embedded backend (Tansu + nx-27017) and the reporting service in-process,
then measures, on a realistic mix of events from five services (per customer: created,
updated, three interactions, a task, an opportunity created, two stage moves and a
won or lost; plus users, a pipeline and targets):

1. absorption: N events are produced to the topics first, then the service starts with
   a new consumer group and reads them all; events/s = N / time until the last is applied;
2. lag under load: events produced at a steady rate (``--rate``, below the absorption
   rate) for ``--seconds``; p50/p99 of (time the projection applied an event - its time);
3. the reports' response times over what was absorbed (one request each, in-process).

    python bench/reporting_projection.py --events 20000 --rate 150 --seconds 20
    python bench/reporting_projection.py --customers 20000 --seconds 0   # 20k customers, ~200k events

Each report is timed ``--repeat`` times (default 3) and the median shown.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from common import backend_only, header, percentile

from crm_platform.auth import mint_token
from crm_platform.clock import SystemClock
from crm_platform.contracts import customers as cev
from crm_platform.contracts import interactions as iev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope, EventType, to_kafka
from crm_platform.testing.event_feed import customer, opportunity, pipeline
from crm_reporting.adapters.readmodels import Generations, ReadModels
from crm_reporting.application.lag import LagTracker
from crm_reporting.application.projection import Projection
from crm_reporting.main import create_app
from crm_reporting.settings import ReportingSettings

SECRET = "bench-secret-for-local-benchmarks-only-0123456789"
DEPT = "/bench/sales"
PID = "bench-pipeline"
REPS = [f"rep-{i}" for i in range(20)]
INDUSTRIES = ["制造业", "零售", "金融", "教育", "医疗"]
CHANNELS: tuple[iev.Channel, ...] = ("phone", "visit", "email")


def envelope(event_type: EventType[Any], subject: str, data: Any, version: int, when: datetime) -> EventEnvelope:
    return event_type.build(
        source="/crm/bench", subject=subject, data=data, aggregate_version=version, time=when, actor="bench"
    )


def customer_story(n: int, when: datetime) -> list[tuple[str, EventEnvelope]]:
    """About ten events about one customer, as the customers, interactions and pipeline services publish them."""
    rep = REPS[n % len(REPS)]
    dept = f"{DEPT}/team-{n % 4}"
    cid, oid, tid = f"c-{n}-{uuid.uuid4().hex[:6]}", f"o-{n}-{uuid.uuid4().hex[:6]}", f"t-{n}"
    snap = customer(cid, rep, dept, when, industry=INDUSTRIES[n % 5], region="广东", tier="AB"[n % 2], source="展会")
    out: list[tuple[str, EventEnvelope]] = [
        (cev.TOPIC, envelope(cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap), 1, when)),
        (
            cev.TOPIC,
            envelope(
                cev.CUSTOMER_UPDATED,
                cid,
                cev.CustomerUpdated(customer=snap, changes=[cev.FieldChange(field="tier", old="B", new="A")]),
                2,
                when,
            ),
        ),
    ]
    for k in range(3):
        iid = f"i-{n}-{k}-{uuid.uuid4().hex[:6]}"
        i = iev.InteractionSnapshot(
            interaction_id=iid,
            channel=CHANNELS[k],
            customer_id=cid,
            author_id=rep,
            author_department_path=dept,
            occurred_at=when,
            recorded_at=when,
            recorded_late=False,
            updated_at=when,
        )
        data = iev.InteractionLogged(
            interaction_id=iid, customer_id=cid, author_id=rep, channel=i.channel, occurred_at=when, interaction=i
        )
        out.append((iev.TOPIC, envelope(iev.INTERACTION_LOGGED, iid, data, 1, when)))
    task = iev.TaskSnapshot(
        task_id=tid, title="回访", due_at=when + timedelta(days=3), assignee_id=rep, assignee_department_path=dept,
        created_by=rep, customer_id=cid, created_at=when, updated_at=when,
    )  # fmt: skip
    out.append((iev.TOPIC, envelope(iev.TASK_CREATED, tid, iev.TaskCreated(task=task), 1, when)))
    o = opportunity(oid, cid, rep, dept, PID, "s1", f"{10000 + n}.00", when, when, probability=10,
                    expected_close=date(2026, 12, 15))  # fmt: skip
    out.append((pev.TOPIC, envelope(pev.OPPORTUNITY_CREATED, oid, pev.OpportunityCreated(opportunity=o), 1, when)))
    for v, (frm, to) in enumerate((("s1", "s2"), ("s2", "s3"), ("s3", "won" if n % 3 else "lost")), start=2):
        status = {"won": "won", "lost": "lost"}.get(to, "open")
        snap_o = opportunity(oid, cid, rep, dept, PID, to, f"{10000 + n}.00", when, when, probability=50,
                             status=status, won_on=when.date() if to == "won" else None,
                             lost_on=when.date() if to == "lost" else None)  # fmt: skip
        move = pev.StageMove(from_stage_id=f"{PID}-{frm}", from_stage_name=frm, to_stage_id=f"{PID}-{to}",
                             to_stage_name=to, moved_by=rep, moved_at=when,
                             time_in_previous_stage_seconds=86400.0 * (1 + n % 9))  # fmt: skip
        if to == "won":
            data_o: Any = pev.OpportunityWon(opportunity=snap_o, move=move, reason="ok")
            kind: Any = pev.OPPORTUNITY_WON
        elif to == "lost":
            data_o, kind = pev.OpportunityLost(opportunity=snap_o, move=move, reason="budget"), pev.OPPORTUNITY_LOST
        else:
            data_o, kind = pev.StageChanged(opportunity=snap_o, move=move), pev.OPPORTUNITY_STAGE_CHANGED
        out.append((pev.TOPIC, envelope(kind, oid, data_o, v, when)))
    return out


async def produce(producer: AIOKafkaProducer, batch: list[tuple[str, EventEnvelope]]) -> None:
    futures = []
    for topic, env in batch:
        key, value, headers = to_kafka(env.model_dump(mode="json"))
        futures.append(
            await producer.send(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
        )
    await asyncio.gather(*futures)


async def wait_applied(app: Any, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while app.state.lag.applied < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"applied {app.state.lag.applied} of {count}")
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    lines = header("reporting projection: absorption and end-to-end lag")
    with backend_only() as (backend, _logs):
        producer = AIOKafkaProducer(bootstrap_servers=backend.kafka_bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            settings = ReportingSettings(
                kafka_bootstrap_servers=backend.kafka_bootstrap,
                mongo_url=backend.mongo_url,
                mongo_database=f"bench_reporting_{uuid.uuid4().hex[:6]}",
                jwt_secret=SECRET,  # type: ignore[arg-type]
                log_level="WARNING",
            )
            now = datetime.now(UTC)
            default = pipeline(PID).model_copy(update={"is_default": True})
            configured = pev.PipelineConfigured(pipeline=default, action="created")
            setup = [(pev.TOPIC, envelope(pev.PIPELINE_CONFIGURED, PID, configured, 1, now))]
            events = list(setup)
            n = 0
            while (n < args.customers) if args.customers else (len(events) < args.events):
                events += customer_story(n, now)
                n += 1
            from crm_platform.kafka import ensure_topics

            await ensure_topics(
                backend.kafka_bootstrap, [cev.TOPIC, iev.TOPIC, pev.TOPIC], settings.kafka_topic_partitions
            )
            t = time.perf_counter()
            for i in range(0, len(events), 2000):
                await produce(producer, events[i : i + 2000])
            produced = time.perf_counter() - t

            app = create_app(settings)
            async with app.router.lifespan_context(app):
                started = time.perf_counter()
                await wait_applied(app, len(events), timeout=3600)
                absorbed = time.perf_counter() - started
                # Phase 2: a steady stream below capacity; lag = applied - event time.
                app.state.lag.reset()
                paced = 0
                m = n
                t0 = time.perf_counter()
                lags: list[float] = []
                while time.perf_counter() - t0 < args.seconds:
                    story = customer_story(m, datetime.now(UTC))
                    m += 1
                    for topic, _env in story:
                        await produce(producer, [(topic, _env)])
                        paced += 1
                        await asyncio.sleep(1 / args.rate)
                if paced:
                    await wait_applied(app, paced, timeout=600)
                    lags = app.state.lag.recent()
                # Side by side: the projection's own writes, without Kafka and the consumer around them.
                raw_models = ReadModels(app.state.kit.db, 999)
                await raw_models.ensure_indexes()
                projection = Projection(Generations(app.state.kit.db, pinned=999), LagTracker(SystemClock()))
                sample = events[: min(len(events), 3000)]
                t = time.perf_counter()
                for _topic, env in sample:
                    await projection.apply_to(raw_models, env)
                raw_rate = len(sample) / (time.perf_counter() - t)
                # Phase 3: the reports over what was absorbed.
                token = mint_token(secret_or_private_key=SECRET, user_id="boss", roles=["admin"],
                                   department_id="bench", department_path="/bench")  # fmt: skip
                timings: dict[str, float] = {}
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://r", timeout=600,
                    headers={"Authorization": f"Bearer {token}"},
                ) as client:  # fmt: skip
                    month = f"{now:%Y-%m}"
                    for name, url in (
                        ("funnel", f"/v1/reports/funnel?period={month}"),
                        ("forecast", f"/v1/reports/forecast?period={month}"),
                        ("activity", f"/v1/reports/activity?period={month}"),
                        ("distribution", "/v1/reports/distribution?field=industry"),
                        ("quality", f"/v1/reports/quality?period={month}"),
                        ("timeline", "/v1/customers/" + events[1][1].subject + "/timeline"),
                    ):
                        runs = []
                        for _ in range(args.repeat):
                            t = time.perf_counter()
                            r = await client.get(url)
                            assert r.status_code == 200, (name, r.text)
                            runs.append(time.perf_counter() - t)
                        timings[name] = statistics.median(runs)
        finally:
            await producer.stop()
    lines += [
        f"events: {len(events)} ({n} customer stories of ~{len(events) // max(n, 1)} events, 5 event sources)",
        f"  produce (pipelined, acks=all):          {len(events) / produced:10.0f} events/s",
        f"  absorbed by the projection (cold start): {len(events) / absorbed:10.0f} events/s "
        f"({absorbed:.1f} s, includes the ~5 s consumer-group assignment)",
        f"  the projection alone (same code, no Kafka; {len(sample)} events): {raw_rate:6.0f} events/s",
        (
            f"  steady stream {args.rate}/s for {args.seconds} s: {paced} events; end-to-end lag "
            f"p50 {percentile(lags, 50) * 1000:.0f} ms, p99 {percentile(lags, 99) * 1000:.0f} ms, "
            f"max {max(lags) * 1000:.0f} ms"
            if lags
            else "  steady stream: skipped (--seconds 0)"
        ),
        f"  reports over the absorbed data (in-process, median of {args.repeat}):",
        *(f"    {k:<13} {v * 1000:8.0f} ms" for k, v in timings.items()),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=0, help="seed this many customer stories (~10 events each)")
    parser.add_argument("--repeat", type=int, default=3, help="requests per report; the median is shown")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s of the steady stream")
    parser.add_argument("--seconds", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
