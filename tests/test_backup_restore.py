"""Backup and restore of one service's data with its topic offsets (``crm backup`` / ``crm restore``).

The customers service end to end, served over real HTTP on the session's broker and store:
a backup taken while it runs; after it, a customer changed, one created, a directory user
consumed; a restore refused while the service answers, refused without a restater (naming the
aggregates), then done: every collection as in the backup (types kept) but for the customers
restated past what the topic shows, the consumer group back at its recorded offsets, and after
a restart the restating events published, the user consumed again and the next write accepted.
Then the reporting service (consumer only): what it consumed after the backup is consumed again.
And backups that do not check out are refused with a message naming what is wrong.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from bson import Int64
from bson.codec_options import CodecOptions

from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_platform.backup import BackupError, RestoreRefused, backup, read_manifest, restore, target_of
from crm_platform.contracts import directory, interactions, pool
from crm_platform.devstack.processes import free_port
from crm_platform.kafka import ensure_topics
from crm_platform.kafka_offsets import committed_offsets
from crm_platform.readmodels.rebuild import rebuild_read_copies
from crm_platform.replay import caught_up
from crm_platform.serving import uvicorn_config
from crm_platform.testing.backends import Backend
from crm_platform.testing.event_feed import EventFeed
from crm_platform.testing.fixtures import (
    auth,
    collecting,
    database,
    eventually,
    running,
    service_settings,
    unique,
)
from crm_reporting.main import create_app as create_reporting_app
from crm_reporting.settings import ReportingSettings

ADMIN = auth("admin-backup", ["admin"], "/hq")
DECODED: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)


@asynccontextmanager
async def served(app: Any, settings: CustomersSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app over real HTTP on its configured port (what `crm restore` looks for), consumers caught up."""
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), timeout=60, message="server started")
        assert not task.done(), "the server did not start"
        await eventually(lambda: all(c.assigned() for c in app.state.kit.consumers), timeout=60, message="assigned")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def backup_documents(directory: Path, name: str) -> dict[Any, dict[str, Any]]:
    return {d["_id"]: d for d in bson.decode_all((directory / f"{name}.bson").read_bytes(), DECODED)}


async def stored(db: Any, name: str) -> dict[Any, dict[str, Any]]:
    return {d["_id"]: d async for d in db[name].find({})}


async def create_customer(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    r = await http.post("/v1/customers", json={"kind": "company", "name": f"{unique(name)} 有限公司"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def user_copy(db: Any, user_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await db["directory_users"].find_one({"_id": user_id})
    return found


async def test_customers_backup_and_restore(backend: Backend, producer: AIOKafkaProducer, tmp_path: Path) -> None:
    bootstrap = backend.kafka_bootstrap
    await ensure_topics(bootstrap, ["crm.customers.v1", directory.TOPIC, interactions.TOPIC, pool.TOPIC])
    settings = CustomersSettings(**service_settings(backend, "customers"), http_port=free_port())
    feed = EventFeed(producer)
    dump = tmp_path / "customers-backup"
    odd_types = {
        "_id": "types",
        "when": datetime(2026, 12, 3, 8, 30, 15, 123000, tzinfo=UTC),
        "big": Int64(2**40),
        "blob": b"\x00\x01binary",  # binary subtype 0, which the driver reads back as bytes
    }

    async with (
        collecting(bootstrap, ["crm.customers.v1"]) as events,
        database(backend.mongo_url, settings.mongo_database) as db,
    ):
        app = create_customers_app(settings)
        target = target_of(app)
        async with served(app, settings) as http:
            kept = await create_customer(http, "留存")
            changed = await create_customer(http, "变更")
            await db["backup_types"].insert_one(odd_types)
            before = unique("u-before")
            await feed.user(before, "备份前", "/hq/east")
            await eventually(lambda: user_copy(db, before), message="user consumed before the backup")
            for c in (kept, changed):
                await events.wait_for(type="crm.customer.created", subject=c["id"])

            manifest = await backup(target, dump)  # online: the service keeps running

            r = await http.patch(
                f"/v1/customers/{changed['id']}", json={"tier": "B"}, headers={**ADMIN, "If-Match": '"1"'}
            )
            assert r.status_code == 200, r.text
            newer = await create_customer(http, "新建")
            # An export after the backup: its record (append-only, for the audit log) needs no restating.
            exported = await http.get("/v1/customers/export.csv", headers=ADMIN)
            assert exported.status_code == 200, exported.text
            after = unique("u-after")
            await feed.user(after, "备份后", "/hq/east")
            await eventually(lambda: user_copy(db, after), message="user consumed after the backup")
            await events.wait_for(type="crm.customer.updated", subject=changed["id"], aggregateversion=2)
            await events.wait_for(type="crm.customer.created", subject=newer["id"])
            await events.wait_for(type="crm.customer_export.created")

            with pytest.raises(RestoreRefused, match="answers at"):
                await restore(target, dump)
            assert await db["customers"].find_one({"_id": newer["id"]}) is not None  # nothing changed

        # Without a way to restate them, the customers the topic shows newer are named, nothing changes.
        with pytest.raises(RestoreRefused) as refused:
            await restore(dataclasses.replace(target, restates=[]), dump)
        assert changed["id"] in str(refused.value) and newer["id"] in str(refused.value)
        assert kept["id"] not in str(refused.value)
        assert await db["customers"].find_one({"_id": newer["id"]}) is not None

        report = await restore(target, dump)

        restated = {b.aggregate_id: b for b in report.restated}
        # The topic is the session's: another test's customers service (same source) may publish
        # in this window too, and its customers are restated as well (published after the backup,
        # not in it). Of this test's customers, exactly the two changed after the backup are.
        ours = {kept["id"], changed["id"], newer["id"]}
        assert set(restated) & ours == {changed["id"], newer["id"]}
        assert all(b.backup_version == 0 for i, b in restated.items() if i not in ours), report.restated
        assert (restated[changed["id"]].backup_version, restated[changed["id"]].published_version) == (1, 2)
        assert (restated[newer["id"]].backup_version, restated[newer["id"]].published_version) == (0, 1)
        # Every collection is the backup's, but for the restated customers and the events archived since.
        for entry in manifest["collections"]:
            name = entry["name"]
            expected, got = backup_documents(dump, name), await stored(db, name)
            if name == "customers":
                untouched = {k: v for k, v in expected.items() if k not in restated}
                assert {k: v for k, v in got.items() if k not in restated} == untouched
                assert kept["id"] in untouched
            elif name == "event_log":
                assert {k: got[k] for k in expected} == expected
            else:
                assert got == expected, name
        types = await db["backup_types"].find_one({"_id": "types"})
        assert types == odd_types
        assert isinstance(types["big"], Int64) and isinstance(types["blob"], bytes)
        assert await user_copy(db, before) is not None and await user_copy(db, after) is None
        restored_changed = await db["customers"].find_one({"_id": changed["id"]})
        assert restored_changed["version"] == 3 and restored_changed.get("tier") is None
        assert [e["envelope"]["type"] for e in restored_changed["outbox"]] == ["crm.customer.updated"]
        gone = await db["customers"].find_one({"_id": newer["id"]})
        assert gone["status"] == "purged" and gone["version"] == 2
        archived = {
            e["subject"]: e["aggregateversion"] async for e in db["event_log"].find({"topic": "crm.customers.v1"})
        }
        assert archived[newer["id"]] == 1 and report.archived_events >= 2
        # The consumer group is back where it was at the backup (where it had committed nothing: the start).
        for group, recorded in manifest["offsets"]["groups"].items():
            expected = {t: {p: 0 if o is None else o for p, o in parts.items()} for t, parts in recorded.items()}
            assert await committed_offsets(bootstrap, group, list(recorded)) == expected

        async with served(create_customers_app(settings), settings) as http:
            (update,) = await events.wait_for(
                type="crm.customer.updated", subject=changed["id"], aggregateversion=3, actor="system:restore"
            )
            assert {"field": "tier", "old": "B", "new": None} in update.event["data"]["changes"]
            await events.wait_for(type="crm.customer.purged", subject=newer["id"], aggregateversion=2)
            await eventually(lambda: user_copy(db, after), message="the user consumed again after the restore")
            r = await http.get(f"/v1/customers/{changed['id']}", headers=ADMIN)
            assert r.status_code == 200 and r.headers["etag"] == '"3"' and r.json().get("tier") is None
            r = await http.patch(
                f"/v1/customers/{changed['id']}", json={"tier": "C"}, headers={**ADMIN, "If-Match": '"3"'}
            )
            assert r.status_code == 200 and r.headers["etag"] == '"4"', r.text
            await events.wait_for(type="crm.customer.updated", subject=changed["id"], aggregateversion=4)
            assert (await http.get(f"/v1/customers/{newer['id']}", headers=ADMIN)).status_code == 404
            assert (await http.get(f"/v1/customers/{kept['id']}", headers=ADMIN)).headers["etag"] == '"1"'


async def test_reporting_restore_consumes_again_what_came_after_the_backup(
    backend: Backend, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    settings = ReportingSettings(**service_settings(backend, "reporting"))
    feed = EventFeed(producer)
    dump = tmp_path / "reporting-backup"

    async def projected(app: Any, user_id: str) -> bool:
        models = await app.state.generations.current()
        return await models.directory.users.find_one({"_id": user_id}) is not None

    before, after = unique("u-before"), unique("u-after")
    app = create_reporting_app(settings)
    target = target_of(app)
    assert target.outbox_collections == [] and target.restates == []
    async with running(app, "http://reporting.test"):
        await feed.user(before, "备份前", "/hq/west")
        await eventually(lambda: projected(app, before), message="projected before the backup")
        manifest = await backup(target, dump)
        await feed.user(after, "备份后", "/hq/west")
        await eventually(lambda: projected(app, after), message="projected after the backup")

    report = await restore(target, dump)
    assert report.restated == []
    app = create_reporting_app(settings)
    async with database(backend.mongo_url, settings.mongo_database) as db:
        for entry in manifest["collections"]:
            assert await stored(db, entry["name"]) == backup_documents(dump, entry["name"]), entry["name"]
    # Every group the service consumes with (the projection's, the role definitions') is set back.
    groups = manifest["offsets"]["groups"]
    assert len(groups) == 2 and sum(g.endswith(".roles") for g in groups) == 1, groups
    for group, recorded in groups.items():
        expected = {t: {p: 0 if o is None else o for p, o in parts.items()} for t, parts in recorded.items()}
        assert await committed_offsets(backend.kafka_bootstrap, group, list(recorded)) == expected, group
    async with running(app, "http://reporting.test"):
        assert await projected(app, before)
        await eventually(lambda: projected(app, after), message="consumed again after the restore")


async def test_a_damaged_or_foreign_backup_is_refused(backend: Backend, tmp_path: Path) -> None:
    settings = CustomersSettings(**service_settings(backend, "customers"))
    target = dataclasses.replace(target_of(create_customers_app(settings)), url="")
    async with database(backend.mongo_url, settings.mongo_database) as db:
        await db["customers"].insert_one({"_id": "c-1", "name": "甲", "version": 1})
        good = tmp_path / "good"
        await backup(target, good)
        with pytest.raises(BackupError, match="not empty"):
            await backup(target, good)

        def copy(name: str) -> Path:
            out = tmp_path / name
            out.mkdir()
            for f in good.iterdir():
                (out / f.name).write_bytes(f.read_bytes())
            return out

        flipped = copy("flipped")
        data = bytearray((flipped / "customers.bson").read_bytes())
        data[-3] ^= 0xFF
        (flipped / "customers.bson").write_bytes(bytes(data))
        with pytest.raises(BackupError, match=r"customers\.bson: 1 documents, sha256 .* changed or damaged"):
            await restore(target, flipped)

        edited = copy("edited")
        manifest = json.loads((edited / "manifest.json").read_text())
        manifest["collections"][0]["documents"] = 2
        (edited / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(BackupError, match="checksum does not match"):
            await restore(target, edited)

        (copy("missing") / "customers.bson").unlink()
        with pytest.raises(BackupError, match=r"customers\.bson is missing"):
            await restore(target, tmp_path / "missing")

        with pytest.raises(BackupError, match="a backup of 'customers', not of 'pipeline'"):
            read_manifest(good, "pipeline")
        with pytest.raises(BackupError, match="not a finished backup"):
            await restore(target, tmp_path / "nowhere")
        await db["customers"].insert_one({"_id": "c-2", "name": "乙", "version": 1})
        assert await db["customers"].count_documents({}) == 2  # every refusal left the database alone

        # Something answering on the service's URL stops a restore; --force goes past it.
        port = free_port()
        stand_in = await asyncio.start_server(_answer_200, "127.0.0.1", port)
        try:
            answering = dataclasses.replace(target, url=f"http://127.0.0.1:{port}")
            with pytest.raises(RestoreRefused, match="answers at"):
                await restore(answering, good)
            await restore(answering, good, force=True)
        finally:
            stand_in.close()
            await stand_in.wait_closed()
        assert [d["_id"] async for d in db["customers"].find({})] == ["c-1"]


async def _answer_200(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


async def test_read_copies_rebuilt_up_to_what_the_group_consumed(backend: Backend, producer: AIOKafkaProducer) -> None:
    settings = CustomersSettings(**service_settings(backend, "customers"))
    feed = EventFeed(producer)
    kept, damaged, lost, unconsumed = (unique("u") for _ in range(4))
    app = create_customers_app(settings)
    async with database(backend.mongo_url, settings.mongo_database) as db:
        async with running(app, "http://customers.test"):
            for user_id in (kept, damaged, lost):
                await feed.user(user_id, "复制", "/hq/north")
            for user_id in (kept, damaged, lost):
                await eventually(lambda u=user_id: user_copy(db, u), message="user consumed")
            await caught_up(app.state.kit.consumers, timeout=60)  # committed, not only applied
        expected = await stored(db, "directory_users")
        await feed.user(unconsumed, "未消费", "/hq/north")  # after the service stopped
        await db["directory_users"].delete_one({"_id": lost})
        await db["directory_users"].update_one({"_id": damaged}, {"$set": {"name": "损坏"}})

        kit = create_customers_app(settings).state.kit  # as `crm rebuild-copies` builds it: never started
        try:
            applied = await rebuild_read_copies(backend.kafka_bootstrap, kit.read_copies, kit.consumers)
        finally:
            await kit.mongo.close()

        assert applied["directory_users+directory_departments"] >= 3
        assert await stored(db, "directory_users") == expected
        assert await user_copy(db, unconsumed) is None  # the service consumes it when it starts
        async with running(create_customers_app(settings), "http://customers.test"):
            await eventually(lambda: user_copy(db, unconsumed), message="consumed once started")


def test_the_crm_command(backend: Backend, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from crm_platform.cli import app as crm
    from crm_platform.testing.fixtures import TEST_JWT_SECRET

    suffix = unique("cli")
    env = {
        "CRM_MONGO_URL": backend.mongo_url,
        "CRM_KAFKA_BOOTSTRAP_SERVERS": backend.kafka_bootstrap,
        "CRM_MONGO_DATABASE": f"crm_reporting_{suffix}",
        "CRM_CONSUMER_GROUP_SUFFIX": f".{suffix}",
        "CRM_HTTP_PORT": str(free_port()),
        "CRM_JWT_SECRET": TEST_JWT_SECRET,
    }
    runner = CliRunner()

    def said(result: Any) -> str:  # rich wraps long lines at the terminal's width
        return " ".join(result.output.split())

    done = runner.invoke(crm, ["backup", "reporting", "--to", str(tmp_path / "b")], env=env)
    assert done.exit_code == 0, done.output
    assert f"backed up reporting (crm_reporting_{suffix})" in said(done)
    done = runner.invoke(crm, ["restore", "reporting", "--from", str(tmp_path / "b")], env=env)
    assert done.exit_code == 0, done.output
    assert f"consumer group crm.reporting.{suffix} set back" in said(done)
    refused = runner.invoke(crm, ["restore", "pipeline", "--from", str(tmp_path / "b")], env=env)
    assert refused.exit_code == 2 and "a backup of 'reporting', not of 'pipeline'" in said(refused)
    refused = runner.invoke(crm, ["backup", "console", "--to", str(tmp_path / "c")], env=env)
    assert refused.exit_code == 2 and "not a service with a database of its own" in said(refused)
