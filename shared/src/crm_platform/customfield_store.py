"""Custom field definitions in the owning service's database: the use cases and their storage.

Definitions are versioned records like any other (:class:`VersionedStore`, the event in the same
write as the change); their history is their own events. A service's writes validate against a
copy kept in memory (:meth:`CustomFields.fieldset`), so a request reads no definition: refreshed
at once by a change made through this process, and by :meth:`CustomFields.reload`, which the
service runs every ``CRM_CUSTOM_FIELDS_RELOAD_SECONDS`` in the background, so a change made
through another replica reaches this one within that time.
A field flagged ``filterable`` gets an index on where its filter looks
(:func:`~crm_platform.customfields.filter_path`: the records' ``custom.<key>``, or for a date or
money field its copy ``s.cfq_<key>``), made when the flag is set, dropped when it is cleared or
the field archived, made again at start-up if a crash came between the definition's write and
the index.
A field flagged ``sortable`` (at most :data:`~crm_platform.customfields.MAX_SORTABLE` per module)
gets the service's sort indexes. The records' copies (``s.cf_<key>`` of a sortable field,
``s.cfq_<key>`` of a filterable date or money field) are backfilled when a flag that needs them
is set, and again at start-up until the backfill is recorded done. Only modules whose service
keeps copies (it passes ``copying``) take those flags. A module whose lists also run on another
collection (customers: the tag memberships, which copy ``custom`` and ``s``) passes that
collection's index builders in ``extra_indexes``: made and dropped there with the same flags.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure

from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.consumer import apply_versioned
from crm_platform.contracts import custom_fields as ev
from crm_platform.customfields import (
    COPY_FORMAT,
    MAX_SORTABLE,
    SORT_COPY_PREFIX,
    Definition,
    DefinitionIn,
    DefinitionPatch,
    FieldSet,
    check_definition,
    copies,
    definition_id,
    filter_path,
    has_copies,
    needs_filter_copy,
)
from crm_platform.errors import Conflict, NotFound, ValidationFailed
from crm_platform.events import EventEnvelope, EventFactory
from crm_platform.history import HistoryEntry
from crm_platform.history import history as platform_history
from crm_platform.indexes import drop_replaced
from crm_platform.outbox import REV
from crm_platform.store import Change, Decide, VersionedStore

Document = dict[str, Any]
COLLECTION = "custom_fields"
#: Every module that has custom fields, and the service that owns its definitions.
MODULES = ("customers", "contacts", "opportunities", "interactions", "tasks", "feedback")
#: The attributes a change may touch, in the order history shows them.
CHANGEABLE = (
    "labels",
    "help",
    "required",
    "default",
    "validation",
    "options",
    "filterable",
    "sortable",
    "position",
)


#: The indexes of a filterable field, given the path its filter looks at.
IndexModels = Callable[[str], list[IndexModel]]
#: A module's records' copies of one field brought up to date (the definition; True: again,
#: even if recorded done): how many rewritten.
Backfill = Callable[[Document, bool], Awaitable[int]]
#: Another collection a module's lists run on (beside its records), with the indexes there of a
#: filterable field (given its filter's path) and of a sortable one (given its sort copy's path).
ExtraIndexes = tuple[AsyncCollection[Document], IndexModels, IndexModels]


def index_name(path: str) -> str:
    # Named idx_<field>: the embedded store uses a single-field index only when its name ends in _<field>.
    return f"idx_{path}"


def single_field_index(path: str) -> list[IndexModel]:
    """The default index of a filterable field: where its filter looks, alone. A service whose
    lists are scoped and sorted (customers) passes indexes that also hold the scope and the sort."""
    return [IndexModel([(path, ASCENDING)], name=index_name(path))]


# --- the records' copies ----------------------------------------------------------------------


def copier(fields: FieldSet) -> Callable[[Document], Document]:
    """What adds a record's custom field copies (:meth:`FieldSet.copies`: ``s.cf_<key>`` of the
    sortable fields, ``s.cfq_<key>`` of filterable dates and money) to its sort keys ``s``."""

    def add(doc: Document) -> Document:
        if isinstance(doc.get("s"), dict):
            doc["s"].update(fields.copies(doc.get("custom")))
        return doc

    return add


class CopyingStore(VersionedStore):
    """A :class:`VersionedStore` whose every write (create, change, a consumer's rewrite) keeps the
    record's custom field copies in step with its values, as the module's definitions stand, so
    no write can leave a copy behind its value (or a record without the copy a list sorts or
    filters on). ``fieldset``: the module's definitions (set by the service; None: no copies)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        clock: Clock,
        *,
        fieldset: Callable[[], Awaitable[FieldSet]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(collection, clock, **kwargs)
        self.fieldset = fieldset

    async def copier(self) -> Callable[[Document], Document]:
        return copier(await self.fieldset() if self.fieldset is not None else FieldSet({}))

    async def insert(self, state: Document, events: Sequence[tuple[str, EventEnvelope]]) -> Document:
        return await super().insert((await self.copier())(state), events)

    async def mutate(
        self,
        aggregate_id: str,
        decide: Decide,
        *,
        expected_version: int | None = None,
        current: Document | None = None,
    ) -> Document:
        add = await self.copier()

        async def decide_with_copies(doc: Document, version: int) -> Change:
            decided = decide(doc, version)
            change = await decided if isinstance(decided, Awaitable) else decided
            if change.state is not None:
                add(change.state)
            return change

        return await super().mutate(
            aggregate_id, decide_with_copies, expected_version=expected_version, current=current
        )


def copies_marker(definition: Document, scope: str | None = None) -> str:
    """The ``migrations`` marker of a field's backfill done: per field (within ``scope``, for a
    service whose modules could share a key), definition version and copy format."""
    where = f"{scope}:" if scope else ""
    return f"custom_copies:{where}{definition['key']}:v{definition.get('version', 1)}:f{COPY_FORMAT}"


#: A batch of a backfill's records and the ``$set`` each gets, before the batch is written.
BeforeBatch = Callable[[list[tuple[Document, Document]]], Awaitable[object]]


async def backfill_copies(
    records: AsyncCollection[Document],
    migrations: AsyncCollection[Document],
    definition: Document,
    marker: str,
    *,
    again: bool = False,
    batch_size: int = 500,
    projection: Document | None = None,
    before_batch: BeforeBatch | None = None,
) -> int:
    """Write the copies of a custom field just made sortable (``s.cf_<key>``) or filterable as a
    date or money (``s.cfq_<key>``) on every record whose copies are missing or stale, in guarded
    batches of ``batch_size``; returns how many were rewritten.

    Resumable: it skips records already right, and ``marker`` in ``migrations``
    (:func:`copies_marker`) records it done; start-up runs it again for a field without one
    (``again``: run even so, for a replica that wrote without the copy until it learned of the
    flag). Each write is guarded by the record's version and outbox revision, so a change made
    meanwhile wins (and wrote the copy itself); a later pass picks up the rest. ``before_batch``:
    what else a batch's records need first (customers: their tag memberships)."""
    if not again and await migrations.find_one({"_id": marker}) is not None:
        return 0
    key = definition["key"]
    written = 0

    async def write(batch: list[UpdateOne], pending: list[tuple[Document, Document]]) -> int:
        if before_batch is not None:
            await before_batch(pending)
        return int((await records.bulk_write(batch, ordered=False)).matched_count)

    for _ in range(5):  # again for records another writer replaced under us
        stale = 0
        batch: list[UpdateOne] = []
        pending: list[tuple[Document, Document]] = []
        async for doc in records.find({}, projection=projection or {"outbox": 0}):
            sort = doc.get("s")
            if not isinstance(sort, dict):
                continue  # not a stored record's shape (the sort keys' upgrade writes them)
            wanted = copies(definition, (doc.get("custom") or {}).get(key))
            if all(name in sort and sort[name] == v and type(sort[name]) is type(v) for name, v in wanted.items()):
                continue
            stale += 1
            guard: Document = {"_id": doc["_id"], "version": doc.get("version")}
            if REV in doc:
                guard[REV] = doc[REV]
            values = {f"s.{name}": v for name, v in wanted.items()}
            batch.append(UpdateOne(guard, {"$set": values}))
            pending.append((doc, values))
            if len(batch) >= batch_size:
                written += await write(batch, pending)
                batch, pending = [], []
        if batch:
            written += await write(batch, pending)
        if stale == 0:
            break
    with contextlib.suppress(DuplicateKeyError):  # another replica finished first
        await migrations.insert_one({"_id": marker, "documents": written})
    return written


def snapshot(doc: Document) -> ev.FieldDefinitionData:
    return ev.FieldDefinitionData(
        field_id=doc["_id"],
        module=doc["module"],
        key=doc["key"],
        type=doc["type"],
        labels=doc["labels"],
        help=doc.get("help"),
        required=bool(doc.get("required")),
        default=doc.get("default"),
        validation=doc.get("validation") or {},
        options=[ev.OptionData(**o) for o in doc.get("options") or []],
        filterable=bool(doc.get("filterable")),
        sortable=bool(doc.get("sortable")),
        position=int(doc.get("position") or 0),
        status=doc.get("status", "active"),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def _stored(fields: Document) -> Document:
    """A definition's attributes as stored: labels by language code, unset rules left out."""
    out = dict(fields)
    if out.get("validation") is not None:
        out["validation"] = {k: v for k, v in out["validation"].items() if v is not None}
    return out


class CustomFields:
    """The definitions of the modules one service owns, and the records each module's values live in."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        event_log: AsyncCollection[Document],
        records: dict[str, AsyncCollection[Document]],
        builtin: dict[str, Iterable[str]],
        clock: Clock,
        source: str,
        wake_relay: Any,
        index_models: dict[str, IndexModels] | None = None,
        topic: str | None = None,
        filterable_modules: Iterable[str] | None = None,
        sorting: dict[str, IndexModels] | None = None,
        copying: dict[str, Backfill] | None = None,
        extra_indexes: dict[str, list[ExtraIndexes]] | None = None,
    ) -> None:
        """``topic``: where this service publishes the definitions' events (its own topic; the
        contracts declare them once, on the customers topic). ``filterable_modules``: the modules
        whose lists filter on custom fields (default: all); others refuse ``filterable``.
        ``sorting``: the modules whose lists sort on custom fields, each with the indexes of a
        sortable field (given its sort copy's path); others refuse ``sortable``. ``copying``: the
        modules whose records keep copies (:func:`~crm_platform.customfields.copies`), each with
        the backfill of one field's copies; needed for ``sortable`` and for a filterable date or
        money field (the embedded store serves no index for a range on an ISO date string).
        ``extra_indexes``: per module, other collections its lists filter and sort on (customers:
        the tag memberships), each with its own builders of a filterable and of a sortable
        field's indexes, made and dropped with the flags like those on the records."""
        self.collection = collection
        self.event_log = event_log
        self.records = records
        self.builtin = {module: frozenset(names) for module, names in builtin.items()}
        self.clock = clock
        self.events = EventFactory(source, clock)
        self.store = VersionedStore(
            collection, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No custom field {i}.")
        )
        self._cache: dict[str, tuple[float, FieldSet]] = {}
        self._index_models = index_models or {}
        self._topic = topic
        self._filterable = set(self.records if filterable_modules is None else filterable_modules)
        self._sorting = sorting or {}
        self._copying = copying or {}
        self._extra_indexes = extra_indexes or {}

    def _event(self, event_type: Any, subject: str, data: Any, version: int, actor: str) -> tuple[str, EventEnvelope]:
        topic, envelope = self.events(event_type, subject, data, version, actor)
        return self._topic or topic, envelope

    def _check(self, module: str, fields: Document, previous: Document | None = None) -> None:
        check_definition(fields, self.builtin[module], previous)
        if fields.get("filterable") and module not in self._filterable:
            raise ValidationFailed.for_field("filterable", f"lists of {module} do not filter on custom fields yet")
        if fields.get("sortable") and (module not in self._sorting or module not in self._copying):
            raise ValidationFailed.for_field("sortable", f"lists of {module} do not sort on custom fields yet")
        if needs_filter_copy(fields) and module not in self._copying:
            raise ValidationFailed.for_field(
                "filterable", f"lists of {module} cannot filter on a {fields['type']} field yet"
            )

    async def _check_room(self, module: str, fields: Document, previous: Document | None = None) -> None:
        """409 when a field becoming sortable would pass the module's cap."""
        if not fields.get("sortable") or (previous is not None and previous.get("sortable")):
            return
        others = [d["key"] for d in await self.definitions(module) if d.get("sortable") and d["key"] != fields["key"]]
        if len(others) >= MAX_SORTABLE:
            raise Conflict(
                f"{module} already has {len(others)} sortable fields ({', '.join(others)}), the most allowed "
                f"is {MAX_SORTABLE}: clear sortable on one first."
            )

    @property
    def modules(self) -> list[str]:
        return list(self.records)

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes([IndexModel([("module", ASCENDING)], name="idx_module")])
        for module in self.modules:
            for definition in await self.definitions(module, include_archived=True):
                await self._sync_index(definition)

    # --- reads ---------------------------------------------------------------------------------

    async def definitions(self, module: str, *, include_archived: bool = False) -> list[Document]:
        docs = [d async for d in self.collection.find({"module": module})]
        docs.sort(key=lambda d: (d.get("position", 0), d["key"]))
        return [d for d in docs if include_archived or d.get("status") == "active"]

    async def get(self, module: str, key: str) -> Document:
        doc = await self.store.get(definition_id(module, key))
        if doc is None:
            raise NotFound(f"No custom field '{key}' in {module}.")
        return doc

    async def fieldset(self, module: str) -> FieldSet:
        """The module's definitions as writes validate against them: the copy in memory (read on
        first use, then kept fresh by :meth:`reload` and by this process's own changes)."""
        cached = self._cache.get(module)
        if cached is None:
            return await self._load(module)
        return cached[1]

    async def _load(self, module: str) -> FieldSet:
        fields = FieldSet.of(await self.definitions(module, include_archived=True))
        self._cache[module] = (time.monotonic(), fields)
        return fields

    async def reload(self) -> None:
        """Read every module's definitions again (run periodically: what other replicas changed).

        A field another replica flagged so that records keep a copy of it (sortable, or a
        filterable date or money) is backfilled again here: this replica's writes until now kept
        no such copy (the other replica's backfill may have passed them)."""
        for module in self.modules:
            before = self._cache.get(module)
            fields = await self._load(module)
            backfill = self._copying.get(module)
            if before is None or backfill is None:
                continue
            known = {(d["key"], tuple(copies(d, None))) for d in before[1].ordered() if has_copies(d)}
            try:
                for definition in fields.ordered():
                    if has_copies(definition) and (definition["key"], tuple(copies(definition, None))) not in known:
                        await backfill(dict(definition), True)
            except BaseException:
                self._cache[module] = before  # so the next reload sees the field as new, and tries again
                raise

    async def history(self, module: str, key: str) -> list[HistoryEntry]:
        return await platform_history(self.event_log, await self.get(module, key), _summary)

    # --- changes -------------------------------------------------------------------------------

    async def define(self, principal: Principal, module: str, body: DefinitionIn) -> Document:
        fields = _stored(body.model_dump(mode="json", by_alias=True))
        self._check(module, fields)
        now = self.clock.now()
        doc: Document = {
            "_id": definition_id(module, body.key),
            "module": module,
            **fields,
            "status": "active",
            "created_at": now,
            "created_by": principal.user_id,
            "updated_at": now,
            "updated_by": principal.user_id,
        }
        if await self.store.get(doc["_id"]) is not None:
            raise Conflict(f"{module} already has a field '{body.key}' (an archived field's key is not reused).")
        await self._check_room(module, fields)
        event = self._event(ev.FIELD_DEFINED, doc["_id"], ev.FieldDefined(field=snapshot(doc)), 1, principal.user_id)
        try:
            stored = await self.store.insert(doc, [event])
        except DuplicateKeyError as exc:  # defined by someone else at the same moment
            raise Conflict(f"{module} already has a field '{body.key}'.") from exc
        await self._changed(stored)
        return stored

    async def change(
        self, principal: Principal, module: str, key: str, patch: DefinitionPatch, expected_version: int | None
    ) -> Document:
        sent = patch.model_fields_set
        values = patch.model_dump(mode="json", by_alias=True)
        if values.get("sortable"):
            await self._check_room(module, {"key": key, "sortable": True}, await self.get(module, key))

        def decide(doc: Document, version: int) -> Change:
            if doc.get("status") != "active":
                raise Conflict(f"The field '{key}' is archived; archived fields do not change.")
            before = {name: doc.get(name) for name in CHANGEABLE}
            proposed = dict(doc)
            for name in CHANGEABLE:
                if name in sent:
                    proposed[name] = values[name]
            proposed = _stored(proposed)
            self._check(module, proposed, previous=doc)
            changes = [
                {"field": name, "old": before[name], "new": proposed.get(name)}
                for name in CHANGEABLE
                if proposed.get(name) != before[name]
            ]
            if not changes:
                return Change(None)
            proposed["updated_at"] = self.clock.now()
            proposed["updated_by"] = principal.user_id
            data = ev.FieldChanged(field=snapshot(proposed), changes=changes)
            return Change(proposed, [self._event(ev.FIELD_CHANGED, doc["_id"], data, version, principal.user_id)])

        doc = await self.store.mutate(definition_id(module, key), decide, expected_version=expected_version)
        await self._changed(doc)
        return doc

    async def archive(self, principal: Principal, module: str, key: str, expected_version: int | None) -> Document:
        def decide(doc: Document, version: int) -> Change:
            if doc.get("status") == "archived":
                return Change(None)
            doc["status"] = "archived"
            doc["updated_at"] = self.clock.now()
            doc["updated_by"] = principal.user_id
            data = ev.FieldArchived(field=snapshot(doc))
            return Change(doc, [self._event(ev.FIELD_ARCHIVED, doc["_id"], data, version, principal.user_id)])

        doc = await self.store.mutate(definition_id(module, key), decide, expected_version=expected_version)
        await self._changed(doc)
        return doc

    async def _changed(self, doc: Document) -> None:
        await self._load(doc["module"])
        await self._sync_index(doc)

    async def _sync_index(self, doc: Document) -> None:
        """The records' index on where the field's filter looks: there exactly while the field is
        active and filterable; the sort indexes while it is active and sortable (the same on the
        module's ``extra_indexes`` collections); the records' copies backfilled while it is active
        and keeps any."""
        module = doc["module"]
        records = self.records[module]
        models = self._index_models.get(module, single_field_index)(filter_path(doc))
        active = doc.get("status") == "active"
        await self._keep(records, models, active and bool(doc.get("filterable")))
        sort_models = self._sorting.get(module)
        sort_path = f"s.{SORT_COPY_PREFIX}{doc['key']}"
        sortable = active and bool(doc.get("sortable"))
        if sort_models is not None:
            await self._keep(records, sort_models(sort_path), sortable)
        for collection, filter_models, extra_sort_models in self._extra_indexes.get(module, []):
            await self._keep(collection, filter_models(filter_path(doc)), active and bool(doc.get("filterable")))
            await self._keep(collection, extra_sort_models(sort_path), sortable)
        backfill = self._copying.get(module)
        if backfill is not None and active and has_copies(doc):
            await backfill(doc, False)

    @staticmethod
    async def _keep(records: AsyncCollection[Document], models: list[IndexModel], wanted: bool) -> None:
        if wanted:
            await records.create_indexes(models)
            return
        # Recognised by name (MongoDB) or by fields (the embedded store names indexes itself).
        try:
            await drop_replaced(records, [], models)
        except OperationFailure:  # another replica dropped it first
            pass


def _summary(event: EventEnvelope) -> tuple[str, list[dict[str, Any]]]:
    data = event.data
    field = data.get("field") or {}
    verb = event.type.removeprefix("crm.custom_field.")
    if verb == "defined":
        return f"defined ({field.get('type')})", [{"field": "type", "old": None, "new": field.get("type")}]
    if verb == "changed":
        changes = data.get("changes") or []
        return "changed " + ", ".join(c["field"] for c in changes), changes
    if verb == "archived":
        return "archived", [{"field": "status", "old": "active", "new": "archived"}]
    return verb, []


def restater(source: str) -> Any:
    """How a restore (``crm restore``) restates a definition the topic shows newer than the backup:
    the backup's definition is kept (or, for one defined after the backup, the last one published,
    since stored values may use it), republished at a version past the topic's."""

    class _At:
        def __init__(self, now: datetime) -> None:
            self._now = now

        def now(self) -> datetime:
            return self._now

    def restate(
        restored: Document | None, published: Document, version: int, now: datetime
    ) -> tuple[Document, Sequence[tuple[str, EventEnvelope]]]:
        events = EventFactory(source, _At(now))
        if restored is None:
            field = (published.get("data") or {}).get("field") or {}
            data = ev.FieldDefinitionData.model_validate(field)
            restored = {
                "_id": data.field_id,
                **data.model_dump(mode="json", exclude={"field_id", "created_at", "updated_at"}),
                "created_at": data.created_at,
                "updated_at": data.updated_at,
            }
        state = dict(restored)
        changed = ev.FieldChanged(field=snapshot(state), changes=[])
        return state, [events(ev.FIELD_CHANGED, state["_id"], changed, version, "system:restore")]

    return restate


def definition_out(doc: Document) -> Document:
    """A stored definition as the API returns it (:class:`FieldOut`)."""
    out = {k: v for k, v in doc.items() if k in FIELD_OUT_KEYS}
    return {**out, "id": doc["_id"], "version": doc.get("version", 1)}


FIELD_OUT_KEYS = frozenset(Definition.model_fields) | {"created_at", "created_by", "updated_at", "updated_by"}


class DefinitionCopy:
    """A read copy of custom field definitions for a service that consumes them (reporting): kept
    from the ``crm.custom_field.*`` events by version, and in memory (:meth:`fieldset` reads
    nothing), reloaded by :meth:`reload` (run periodically) and updated at once by the events
    this replica applies."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._fields: dict[str, FieldSet] = {}

    async def ensure_indexes(self) -> None:
        await self.collection.create_indexes([IndexModel([("module", ASCENDING)], name="idx_module")])

    def handlers(self) -> dict[str, Any]:
        return {event_type.name: self.apply for event_type in ev.FIELD_EVENTS}

    async def apply(self, envelope: EventEnvelope) -> None:
        field = ev.FieldDefinitionData.model_validate(envelope.data["field"])
        state = {"_id": field.field_id, **field.model_dump(mode="json", exclude={"field_id"})}
        if await apply_versioned(self.collection, envelope, state):
            await self._load(field.module)

    async def _load(self, module: str) -> None:
        self._fields[module] = FieldSet.of([d async for d in self.collection.find({"module": module})])

    async def reload(self) -> None:
        for module in MODULES:  # by module: an index search each (reading the whole collection scans)
            await self._load(module)

    def fieldset(self, module: str) -> FieldSet:
        return self._fields.get(module) or FieldSet({})
