"""A restore's store commands are index lookups on the embedded store (its SQLite query plans).

The backup reads every document of every collection, which is its job (one plain read per
collection, no filter); what a restore sends besides loading the documents back (the restated
aggregates by ``_id``, the event log's inserts) must not grow with the collection. The
database holds enough rows that SQLite would rather scan than use a bad index.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from crm_platform.backup import BackupTarget, Restate, backup, restore
from crm_platform.events import EventEnvelope, define, to_kafka
from crm_platform.kafka import ensure_topics
from crm_platform.testing.backends import Backend
from crm_platform.testing.query_plans import TracedStore

ROWS = 300


class Noted(BaseModel):
    note: str


NOTED = define("crm.backupplan.noted", Noted, "crm.backupplan.v1")


def noted(subject: str, version: int, note: str) -> EventEnvelope:
    return NOTED.build(
        source="/crm/backupplan",
        subject=subject,
        data=Noted(note=note),
        aggregate_version=version,
        time=datetime.now(UTC),
        actor="t",
    )


def restate(
    restored: dict[str, Any] | None, published: dict[str, Any], version: int, now: datetime
) -> tuple[dict[str, Any], Sequence[tuple[str, EventEnvelope]]]:
    state = dict(restored or {"_id": published["subject"], "note": None})
    return state, [(NOTED.topic, noted(published["subject"], version, f"restored: {state['note']}"))]


async def test_restore_sends_index_lookups_only(
    backend: Backend, traced_store: TracedStore, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    topic = f"crm.backupplan{uuid.uuid4().hex[:6]}.v1"
    await ensure_topics(backend.kafka_bootstrap, [topic])
    name = f"plans_backup_{uuid.uuid4().hex[:8]}"
    target = BackupTarget(
        service="backupplan",
        mongo_url=traced_store.url,
        database=name,
        kafka_bootstrap=backend.kafka_bootstrap,
        topic=topic,
        source="/crm/backupplan",
        groups={},
        outbox_collections=["things"],
        restates=[Restate("things", "crm.backupplan.", restate)],
    )
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(traced_store.url, tz_aware=True)
    try:
        db = client[name]
        await db["things"].insert_many([{"_id": f"t-{i}", "note": f"n{i}", "version": 1} for i in range(ROWS)])
        await db["things"].create_index("note", name="idx_note")
        await db["event_log"].insert_many([{"_id": f"e-{i}", "subject": f"t-{i}"} for i in range(ROWS)])
        await backup(target, tmp_path / "b")
        # After the backup: t-7 changed (v2) and t-new created, as the topic shows.
        for envelope in (noted("t-7", 2, "changed"), noted("t-new", 1, "created")):
            key, value, headers = to_kafka(envelope.model_dump(mode="json"))
            await producer.send_and_wait(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])

        with traced_store.capture() as capture:
            report = await restore(target, tmp_path / "b")

        assert {b.aggregate_id for b in report.restated} == {"t-7", "t-new"}
        assert report.archived_events == 2
        seven = await db["things"].find_one({"_id": "t-7"})
        assert seven is not None and seven["version"] == 3 and seven["note"] == "n7"
        assert [e["envelope"]["data"]["note"] for e in seven["outbox"]] == ["restored: n7"]
        assert await db["things"].count_documents({}) == ROWS + 1
        statements = capture.on(name)
        assert statements, "nothing was recorded: the capture did not see the store"
        scans = [s for s in statements if s.full_scans or s.index_walks or s.row_filters]
        assert not scans, "statements that scan:\n" + "\n".join(s.describe() for s in scans)
    finally:
        await client.drop_database(name)
        await client.close()
