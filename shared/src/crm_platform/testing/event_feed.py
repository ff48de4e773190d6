"""Publish any service's events onto Kafka as that service would, for suites of consumers.

:class:`EventFeed` builds envelopes with the contracts' ``EventType.build`` and keeps a
version per aggregate (``aggregateversion`` increases per subject), so a consumer's
``apply_versioned`` sees a realistic stream; ``resend`` produces a record again (a
duplicate delivery). The snapshot builders fill the contracts' models with sane
defaults. Times: ``at('2026-11-02', '09:30')`` is a Shanghai wall-clock time in UTC.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from crm_platform.contracts import customers as cev
from crm_platform.contracts import directory as dev
from crm_platform.contracts import pipeline as pev
from crm_platform.events import EventEnvelope, EventType, registry, to_kafka

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def at(day: str, hhmm: str = "12:00") -> datetime:
    """A Shanghai wall-clock time ('2026-11-02', '12:00') as a UTC datetime."""
    local = datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return local.astimezone(UTC)


class EventFeed:
    """Publishes events as their owning services would: per-aggregate versions, contracts' envelopes."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.versions: dict[str, int] = defaultdict(int)
        self.sent: list[EventEnvelope] = []

    async def send(
        self,
        event_type: EventType[Any],
        subject: str,
        data: BaseModel,
        time: datetime,
        actor: str | None = None,
    ) -> EventEnvelope:
        self.versions[subject] += 1
        source = "/crm/" + event_type.topic.split(".")[1]
        envelope = event_type.build(
            source=source,
            subject=subject,
            data=data,
            aggregate_version=self.versions[subject],
            time=time,
            actor=actor,
        )
        await self.resend(envelope)
        return envelope

    async def resend(self, envelope: EventEnvelope) -> None:
        """Produce a record (again: a duplicate delivery when it was sent before)."""
        event_type = registry.get(envelope.type)
        assert event_type is not None
        key, value, headers = to_kafka(envelope.model_dump(mode="json"))
        await self.producer.send_and_wait(
            event_type.topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        self.sent.append(envelope)

    # --- snapshots ------------------------------------------------------------------------

    async def user(self, user_id: str, name: str, dept: str, roles: list[str] | None = None) -> EventEnvelope:
        snapshot = dev.UserSnapshot(
            user_id=user_id,
            email=f"{user_id}@example.com",
            name=name,
            roles=roles or ["rep"],
            department_id=dept.rsplit("/", 1)[-1],
            department_path=dept,
            created_at=NOW,
            updated_at=NOW,
        )
        return await self.send(dev.USER_CREATED, user_id, dev.UserCreated(user=snapshot), NOW, "admin")


def customer(
    customer_id: str,
    owner: str | None,
    dept: str,
    created: datetime,
    *,
    name: str = "客户",
    industry: str | None = None,
    region: str | None = None,
    source: str | None = None,
    tier: str | None = None,
    tags: list[str] | None = None,
    status: str = "active",
    merged_into: str | None = None,
    contacts: list[cev.ContactData] | None = None,
    updated: datetime | None = None,
) -> cev.CustomerSnapshot:
    contacts = contacts or []
    return cev.CustomerSnapshot(
        customer_id=customer_id,
        kind="company",
        name=name,
        industry=industry,
        address=cev.Address(province=region) if region else None,
        source=source,
        tier=tier,
        tags=tags or [],
        owner_id=owner,
        department_id=dept.rsplit("/", 1)[-1],
        department_path=dept,
        status=status,  # type: ignore[arg-type]
        merged_into=merged_into,
        created_at=created,
        created_by=owner,
        updated_at=updated or created,
        contact_count=len(contacts),
        contacts=[cev.ContactSummary(contact_id=c.contact_id, name=c.name) for c in contacts],
    )


def pipeline(pipeline_id: str) -> pev.PipelineSnapshot:
    stages = [
        ("s1", "线索 Lead", 1, 10, "open"),
        ("s2", "Qualify", 2, 30, "open"),
        ("s3", "Proposal", 3, 60, "open"),
        ("won", "Won", 4, 100, "won"),
        ("lost", "Lost", 5, 0, "lost"),
    ]
    return pev.PipelineSnapshot(
        pipeline_id=pipeline_id,
        name="标准销售流程",
        is_default=False,
        stages=[
            pev.StageData(stage_id=f"{pipeline_id}-{s}", name=n, position=p, probability=pr, kind=k)  # type: ignore[arg-type]
            for s, n, p, pr, k in stages
        ],
        updated_at=NOW,
    )


def pipeline_configured(*stage_ids: str, pipeline_id: str | None = None) -> EventEnvelope:
    """A ``crm.pipeline.configured`` (action "created") of a new pipeline whose open stages are
    ``stage_ids`` at positions 1, 2, … with probabilities 10, 20, …; the pipeline's id is fresh
    unless given."""
    pipeline_id = pipeline_id or f"pipe-{uuid.uuid4().hex[:8]}"
    stages = [
        pev.StageData(stage_id=s, name=s, position=i + 1, probability=10 * (i + 1), kind="open")
        for i, s in enumerate(stage_ids)
    ]
    now = datetime.now(UTC)
    snapshot = pev.PipelineSnapshot(pipeline_id=pipeline_id, name="p", is_default=False, stages=stages, updated_at=now)
    return pev.PIPELINE_CONFIGURED.build(
        source="/crm/pipeline",
        subject=pipeline_id,
        data=pev.PipelineConfigured(pipeline=snapshot, action="created"),
        aggregate_version=1,
        time=now,
        actor="admin",
    )


def opportunity(
    opp_id: str,
    customer_id: str,
    owner: str,
    dept: str,
    pipeline_id: str,
    stage: str,
    amount: str,
    created: datetime,
    entered: datetime,
    *,
    probability: int,
    status: str = "open",
    won_on: date | None = None,
    lost_on: date | None = None,
    expected_close: date | None = None,
) -> pev.OpportunitySnapshot:
    kind = {"won": "won", "lost": "lost"}.get(stage, "open")
    return pev.OpportunitySnapshot(
        opportunity_id=opp_id,
        name=f"商机 {opp_id[-4:]}",
        customer_id=customer_id,
        amount=amount,
        currency="CNY",
        probability=probability,
        expected_close_date=expected_close,
        pipeline_id=pipeline_id,
        stage_id=f"{pipeline_id}-{stage}",
        stage_name=stage,
        stage_kind=kind,  # type: ignore[arg-type]
        stage_entered_at=entered,
        status=status,  # type: ignore[arg-type]
        won_on=won_on,
        lost_on=lost_on,
        owner_id=owner,
        department_id=dept.rsplit("/", 1)[-1],
        department_path=dept,
        created_at=created,
        created_by=owner,
        updated_at=entered,
    )
