"""Backup and restore of one service's database, consistent with its topic offsets.

A backup (``crm backup SERVICE --to DIR``) first records the end offsets of the service's
own topic and what each of its consumer groups has committed, then dumps every collection
of its database as BSON (the driver's raw bytes: dates, Decimal128, Int64 and binary keep
their types) with its index definitions, and writes ``manifest.json``: service, database,
time, code version, the offsets, and per collection its file, document count and sha256,
the manifest itself sealed by a checksum. Recording the offsets before the dump means the
dump holds at least everything up to them: a restore re-consumes from the recorded
committed offsets (idempotently) and rolls forward from the recorded end offsets.

A restore (``crm restore SERVICE --from DIR``) checks the manifest and every file, refuses
while the service answers on its URL (unless forced), reads what the service published
after the backup, decides per aggregate the topic shows at a newer version than the backup
(the service's restater, or a refusal naming them, before anything is changed), sets its
consumer groups back to the recorded offsets (impossible while a consumer of a group runs,
so this also comes before the database is touched), drops and reloads the
database and its indexes, restates the aggregates that were behind, and archives the events
published after the backup in the service's event log (the history the API shows).

Why restate rather than re-apply the published snapshot: no service's events carry its whole
stored document (a customer's own phones and emails, its contacts' details, who changed it
last, the derived keys are not in ``crm.customer.*``), so a document rebuilt from the last
event would silently mix two points in time. A restater instead writes the backup's state at
the next version after the newest one published and queues an event saying so: every read
copy downstream moves to the restored state, and the next ordinary write gets a version no
consumer has seen. What changed after the backup is lost, as with any restore, and the
aggregates concerned are listed in the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import bson
import httpx
from bson import json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from crm_platform.clock import Clock, SystemClock
from crm_platform.events import EventEnvelope
from crm_platform.kafka_offsets import (
    CommittedOffsets,
    Offsets,
    committed_offsets,
    end_offsets,
    read_between,
    set_committed_offsets,
)
from crm_platform.outbox import LEASES, PENDING, REV, epoch_ms, outbox_entries

Document = dict[str, Any]
FORMAT = 1
MANIFEST = "manifest.json"
EVENT_LOG = "event_log"
INSERT_BATCH = 1000
#: Leases are ephemeral (who publishes an outbox now): a restored one would hold the relay back.
NOT_DUMPED = (LEASES,)
RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True)
DECODED: CodecOptions[Document] = CodecOptions(document_class=dict, tz_aware=True)

#: (the backup's document or None, the newest event published about it, the version to write,
#: now) -> the document to store at that version and the events to queue with it.
Restater = Callable[[Document | None, Document, int, datetime], tuple[Document, Sequence[tuple[str, EventEnvelope]]]]


@dataclass(frozen=True)
class Restate:
    """How a service brings an aggregate of ``collection`` that the topic shows at a newer
    version than the backup to a version past it (``event_prefix``: the types of its events,
    which place an aggregate the backup does not hold at all)."""

    collection: str
    event_prefix: str
    restater: Restater | None  # None: append-only records, left as the backup had them


@dataclass(frozen=True)
class BackupTarget:
    """One service as a backup sees it: where its data and its offsets are."""

    service: str
    mongo_url: str
    database: str
    kafka_bootstrap: str
    topic: str
    source: str
    groups: dict[str, list[str]]  # consumer group -> the topics it reads
    outbox_collections: list[str]
    restates: list[Restate] = field(default_factory=list)
    url: str = ""


def target_of(app: Any) -> BackupTarget:
    """The target of a service's app (built by its ``create_app``, not started)."""
    kit = app.state.kit
    s = kit.settings
    host = "127.0.0.1" if s.http_host in ("0.0.0.0", "::", "") else s.http_host
    return BackupTarget(
        service=s.service_name,
        mongo_url=s.mongo_url,
        database=s.mongo_database,
        kafka_bootstrap=s.kafka_bootstrap_servers,
        topic=kit.topic,
        source=kit.source,
        groups={c.group_id: list(c.topics) for c in kit.consumers},
        outbox_collections=[c.name for c in kit.outbox_collections],
        restates=list(kit.restates),
        url=f"http://{host}:{s.http_port}",
    )


class BackupError(Exception):
    """A backup that cannot be taken or used as it is; nothing was changed."""


class RestoreRefused(BackupError):
    """The restore would leave something inconsistent; nothing was changed."""


def _code_version() -> str:
    try:
        return importlib.metadata.version("crm-platform")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _checksum(manifest: Document) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _index_definition(index: Mapping[str, Any]) -> Document:
    options = {k: v for k, v in index.items() if k not in ("v", "key", "ns", "name")}
    return {
        "name": index["name"],
        "key": [[k, v] for k, v in index["key"].items()],
        "options": json.loads(json_util.dumps(options)),
    }


def _index_model(definition: Document) -> IndexModel:
    options = json_util.loads(json.dumps(definition["options"]))
    return IndexModel([(k, v) for k, v in definition["key"]], name=definition["name"], **options)


# --- backup ------------------------------------------------------------------------------


async def backup(target: BackupTarget, directory: Path, clock: Clock | None = None) -> Document:
    """Dump ``target``'s database and offsets into ``directory`` (new or empty); returns the manifest."""
    _new_directory(directory)
    created_at = (clock or SystemClock()).now()
    # Offsets first: the dump that follows holds at least everything up to them.
    topic_end = await end_offsets(target.kafka_bootstrap, [target.topic])
    groups = {g: await committed_offsets(target.kafka_bootstrap, g, topics) for g, topics in target.groups.items()}
    client: AsyncMongoClient[Document] = AsyncMongoClient(target.mongo_url, tz_aware=True)
    try:
        db = client[target.database]
        collections = []
        for name in sorted(await db.list_collection_names()):
            if name.startswith("system.") or name in NOT_DUMPED:
                continue
            indexes = [_index_definition(ix) for ix in await (await db[name].list_indexes()).to_list()]
            dump = _DumpFile(directory / f"{name}.bson")
            try:
                raw_collection = cast(AsyncCollection[RawBSONDocument], db.get_collection(name, codec_options=RAW))
                async for doc in raw_collection.find({}):
                    dump.write(bytes(doc.raw))
            finally:
                dump.close()
            collections.append(
                {
                    "name": name,
                    "file": dump.path.name,
                    "documents": dump.count,
                    "sha256": dump.digest.hexdigest(),
                    "indexes": [ix for ix in indexes if ix["name"] != "_id_"],
                }
            )
    finally:
        await client.close()
    manifest: Document = {
        "format": FORMAT,
        "service": target.service,
        "database": target.database,
        "created_at": created_at.isoformat(),
        "code_version": _code_version(),
        "topic": target.topic,
        "offsets": {"topic_end": topic_end, "groups": groups},
        "outbox_collections": target.outbox_collections,
        "collections": collections,
    }
    manifest["checksum"] = _checksum(manifest)
    _write_manifest(directory, manifest)
    return manifest


class _DumpFile:
    """One collection's dump: its documents' BSON one after the other, counted and hashed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.count = 0
        self._file = path.open("wb")

    def write(self, raw: bytes) -> None:
        self._file.write(raw)
        self.digest.update(raw)
        self.count += 1

    def close(self) -> None:
        self._file.close()


def _write_manifest(directory: Path, manifest: Document) -> None:
    partial = directory / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    os.replace(partial, directory / MANIFEST)  # a manifest exists only once everything is written


def _new_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: a backup goes into a new directory")


# --- checking a backup -------------------------------------------------------------------


def read_manifest(directory: Path, service: str) -> Document:
    """The manifest of the backup in ``directory``, once it and every file it names check out."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{path} not found: {directory} is not a finished backup")
    try:
        manifest: Document = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path} is not valid JSON ({exc}): the backup is damaged") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: format {manifest.get('format')!r} is not one this version reads ({FORMAT})")
    if manifest.get("checksum") != _checksum(manifest):
        raise BackupError(f"{path}: its checksum does not match its content: the manifest was changed or damaged")
    if manifest["service"] != service:
        raise BackupError(f"{directory} is a backup of {manifest['service']!r}, not of {service!r}")
    for entry in manifest["collections"]:
        file = directory / entry["file"]
        if not file.is_file():
            raise BackupError(f"{file} is missing: the backup is incomplete")
        digest, count = hashlib.sha256(), 0
        for raw in _raw_documents(file):
            digest.update(raw)
            count += 1
        if digest.hexdigest() != entry["sha256"] or count != entry["documents"]:
            raise BackupError(
                f"{file}: {count} documents, sha256 {digest.hexdigest()[:12]}…, but the manifest says "
                f"{entry['documents']} and {entry['sha256'][:12]}…: the file was changed or damaged"
            )
    return manifest


def _raw_documents(file: Path) -> Iterator[bytes]:
    """Each BSON document of a dump file as its bytes (a truncated file raises BackupError)."""
    with file.open("rb") as f:
        while True:
            head = f.read(4)
            if not head:
                return
            size = int.from_bytes(head, "little", signed=True)
            body = f.read(size - 4) if size >= 5 else b""
            if len(head) < 4 or size < 5 or len(body) != size - 4:
                raise BackupError(f"{file}: truncated or not BSON")
            yield head + body


# --- restore -----------------------------------------------------------------------------


@dataclass
class Behind:
    """An aggregate the topic shows at a newer version than the backup holds."""

    aggregate_id: str
    collection: str | None
    backup_version: int  # 0: not in the backup (created after it)
    published_version: int
    published_type: str


@dataclass
class RestoreReport:
    database: str
    documents: dict[str, int]
    restated: list[Behind]
    archived_events: int
    offsets: dict[str, dict[str, dict[str, int]]]

    def lines(self) -> list[str]:
        out = [f"database {self.database}: " + ", ".join(f"{n} {c}" for n, c in self.documents.items())]
        for group, topics in self.offsets.items():
            out.append(f"consumer group {group} set back to {json.dumps(topics, sort_keys=True)}")
        out.append(f"{self.archived_events} events published after the backup archived in the event log")
        for b in self.restated:
            what = f"v{b.backup_version}" if b.backup_version else "not in the backup"
            out.append(
                f"restated {b.collection}/{b.aggregate_id}: {what}, published v{b.published_version} "
                f"({b.published_type}) -> v{b.published_version + 1}; changes after the backup are lost"
            )
        return out


async def service_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether something answers HTTP at ``url``/healthz (the service, or one of its replicas)."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            await client.get(f"{url.rstrip('/')}/healthz")
    except httpx.HTTPError:
        return False
    return True


def _published_after(values: list[bytes], source: str) -> list[Document]:
    events = []
    for value in values:
        try:
            event = json.loads(value)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("source") == source and isinstance(event.get("subject"), str):
            events.append(event)
    return events


def _backup_documents(directory: Path, manifest: Document, ids: set[str]) -> dict[str, tuple[str, Document]]:
    """The backup's documents of the outbox collections whose ``_id`` is in ``ids``."""
    found: dict[str, tuple[str, Document]] = {}
    for entry in manifest["collections"]:
        if entry["name"] not in manifest["outbox_collections"]:
            continue
        for raw in _raw_documents(directory / entry["file"]):
            doc = bson.decode(raw, codec_options=DECODED)
            if doc.get("_id") in ids:
                found[doc["_id"]] = (entry["name"], doc)
    return found


def _behind(
    events: list[Document], backup_docs: dict[str, tuple[str, Document]], restates: Sequence[Restate]
) -> tuple[list[Behind], dict[str, Document]]:
    latest: dict[str, Document] = {}
    for event in events:
        seen = latest.get(event["subject"])
        if seen is None or int(event.get("aggregateversion", 0)) >= int(seen.get("aggregateversion", 0)):
            latest[event["subject"]] = event
    behind = []
    for subject, event in sorted(latest.items()):
        collection, doc = backup_docs.get(subject, (None, None))
        backup_version = int(doc.get("version", 0)) if doc else 0
        published = int(event.get("aggregateversion", 0))
        if published <= backup_version:
            continue
        if collection is None:
            collection = next((r.collection for r in restates if event["type"].startswith(r.event_prefix)), None)
        behind.append(Behind(subject, collection, backup_version, published, event["type"]))
    return behind, latest


async def restore(
    target: BackupTarget,
    directory: Path,
    *,
    force: bool = False,
    clock: Clock | None = None,
    group_wait_seconds: float = 60.0,
) -> RestoreReport:
    """Restore ``target``'s database and consumer offsets from the backup in ``directory``.

    ``group_wait_seconds``: how long to wait for each consumer group to have no other member."""
    now = (clock or SystemClock()).now()
    manifest = read_manifest(directory, target.service)
    if not force and target.url and await service_answers(target.url):
        raise RestoreRefused(
            f"{target.service} answers at {target.url}/healthz: stop every replica of it first "
            "(or pass --force if what answers there is not this service's data)"
        )
    recorded: Offsets = manifest["offsets"]["topic_end"]
    now_end = await end_offsets(target.kafka_bootstrap, [target.topic])
    tail = await read_between(target.kafka_bootstrap, recorded, now_end)
    events = _published_after([r.value for r in tail], target.source)
    backup_docs = _backup_documents(directory, manifest, {e["subject"] for e in events})
    behind, latest = _behind(events, backup_docs, target.restates)
    declared = {r.collection for r in target.restates}
    unsound = [b for b in behind if b.collection not in declared]
    # Append-only records (an export's, an import's) published after the backup: nothing to restate.
    restaters = {r.collection: r.restater for r in target.restates if r.restater is not None}
    behind = [b for b in behind if b.collection in restaters]
    if unsound:
        listed = "; ".join(
            f"{b.collection or '?'}/{b.aggregate_id} (backup v{b.backup_version}, published v{b.published_version})"
            for b in unsound[:50]
        )
        raise RestoreRefused(
            f"{target.topic} shows {len(unsound)} aggregates at a newer version than the backup, and "
            f"{target.service} cannot restate them (a write would reuse a version consumers already saw): "
            f"{listed}{' …' if len(unsound) > 50 else ''}. Restore a backup taken after these writes instead "
            "(with the service stopped, it holds everything its topic shows)."
        )

    # The consumer groups first: this fails while one of their consumers runs, so a
    # service still running somewhere stops the restore before the database is touched.
    groups: dict[str, CommittedOffsets] = manifest["offsets"]["groups"]
    offsets = {}
    for group, committed in groups.items():
        try:
            offsets[group] = await set_committed_offsets(target.kafka_bootstrap, group, committed, group_wait_seconds)
        except Exception as exc:
            raise RestoreRefused(
                f"could not set consumer group {group} back ({type(exc).__name__}: {exc}); is a consumer of it "
                "still running? Nothing in the database was changed"
                + (f" (already set back: {', '.join(offsets)}; run the restore again)" if offsets else "")
            ) from exc

    client: AsyncMongoClient[Document] = AsyncMongoClient(target.mongo_url, tz_aware=True)
    try:
        db = client[target.database]
        await client.drop_database(target.database)
        documents: dict[str, int] = {}
        for entry in manifest["collections"]:
            raw_collection = cast(AsyncCollection[RawBSONDocument], db.get_collection(entry["name"], codec_options=RAW))
            batch: list[RawBSONDocument] = []
            for raw in _raw_documents(directory / entry["file"]):
                batch.append(RawBSONDocument(raw, RAW))
                if len(batch) >= INSERT_BATCH:
                    await raw_collection.insert_many(batch, ordered=True)
                    batch = []
            if batch:
                await raw_collection.insert_many(batch, ordered=True)
            if entry["indexes"]:
                await db[entry["name"]].create_indexes([_index_model(ix) for ix in entry["indexes"]])
            elif entry["documents"] == 0:
                await db.create_collection(entry["name"], check_exists=False)
            documents[entry["name"]] = entry["documents"]
        for b in behind:
            await _restate(db, b, backup_docs.get(b.aggregate_id), latest[b.aggregate_id], restaters, now)
        archived = await _archive(db, tail_events=events, topic=target.topic) if EVENT_LOG in documents else 0
    finally:
        await client.close()
    return RestoreReport(target.database, documents, behind, archived, offsets)


async def _restate(
    db: Any,
    behind: Behind,
    found: tuple[str, Document] | None,
    published: Document,
    restaters: dict[str, Restater],
    now: datetime,
) -> None:
    assert behind.collection is not None
    previous = found[1] if found else None
    version = behind.published_version + 1
    state, events = restaters[behind.collection](previous, published, version, now)
    doc = {k: v for k, v in state.items() if k not in ("outbox", REV, PENDING)}
    doc["_id"] = behind.aggregate_id
    doc["version"] = version
    doc[REV] = int((previous or {}).get(REV, 0)) + 1
    # What the backup still had to publish goes first (consumers ignore it as older), then this.
    doc["outbox"] = list((previous or {}).get("outbox") or []) + outbox_entries(events)
    if doc["outbox"]:
        doc[PENDING] = epoch_ms(now)
    await db[behind.collection].replace_one({"_id": behind.aggregate_id}, doc, upsert=True)


async def _archive(db: Any, *, tail_events: list[Document], topic: str) -> int:
    """The events published after the backup, into the event log as the relay archives them."""
    docs = []
    for event in tail_events:
        doc = {**event, "_id": event["id"], "topic": topic}
        with contextlib.suppress(TypeError, ValueError):
            doc["time"] = datetime.fromisoformat(event["time"])
        docs.append(doc)
    if not docs:
        return 0
    try:
        await db[EVENT_LOG].insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
            raise
        return len(docs) - len(exc.details.get("writeErrors", []))
    return len(docs)
