"""CSV import (with a dry run that reports every bad row and every duplicate) and CSV export."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Collection, Container, Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from crm_customers.adapters.repository import DuplicateKeys
from crm_customers.application.customers import CONTACTS, Customers
from crm_customers.application.duplicates import describe_match
from crm_customers.application.queries import CustomerFilter, list_customers
from crm_customers.domain import rules
from crm_customers.domain.fields import ensure_columns_writable, visible_columns
from crm_customers.domain.model import CustomerCreate
from crm_platform.auth import Principal
from crm_platform.contracts import customers as ev
from crm_platform.csv_import import csv_rows
from crm_platform.customfields import FieldSet, InvalidValue, from_text, to_text
from crm_platform.errors import Conflict, FieldError, ValidationFailed, field_errors_from_pydantic
from crm_platform.idempotency import IdempotencyKey
from crm_platform.listing import PageParams, or_branches
from crm_platform.outbox import epoch_ms
from crm_platform.text_input import control_character

Document = dict[str, Any]

#: CSV column -> accepted headers (English API names and the Chinese ones people type).
COLUMNS: dict[str, tuple[str, ...]] = {
    "kind": ("kind", "类型", "客户类型"),
    "name": ("name", "名称", "客户名称", "公司名称"),
    "uscc": ("uscc", "统一社会信用代码", "信用代码"),
    "industry": ("industry", "行业"),
    "size": ("size", "规模", "人员规模"),
    "source": ("source", "来源", "客户来源"),
    "tier": ("tier", "等级", "客户等级"),
    "lifecycle_stage": ("lifecycle_stage", "阶段", "客户阶段"),
    "tags": ("tags", "标签"),
    "phones": ("phones", "phone", "电话"),
    "emails": ("emails", "email", "邮箱"),
    "province": ("province", "省份"),
    "city": ("city", "城市"),
    "district": ("district", "区县"),
    "street": ("street", "地址", "详细地址"),
    "postal_code": ("postal_code", "邮编"),
    "website": ("website", "网址"),
    "description": ("description", "备注"),
    "contact_name": ("contact_name", "联系人"),
    "contact_role": ("contact_role", "联系人角色"),
    "contact_title": ("contact_title", "职务"),
    "contact_phone": ("contact_phone", "联系人电话"),
    "contact_email": ("contact_email", "联系人邮箱"),
    "owner_id": ("owner_id", "负责人"),
    "department_id": ("department_id", "部门"),
    "department_path": ("department_path", "部门路径"),
}
#: The header of a custom field's column: ``custom.<key>`` (import and export).
CUSTOM_COLUMN = "custom."
#: The header of a contact custom field's column: ``contact.custom.<key>`` (the row's contact on
#: import, the primary contact, else the first, on export).
CONTACT_CUSTOM_COLUMN = "contact.custom."
_HEADER_TO_COLUMN = {alias.lower(): column for column, aliases in COLUMNS.items() for alias in aliases}
_LIST_SPLIT = re.compile(r"[;；|,，]")


class RowError(BaseModel):
    line: int
    field: str
    reason: str


class RowDuplicate(BaseModel):
    line: int
    name: str
    matched_on: list[str]
    existing_customer_id: str | None = None
    existing_owner_id: str | None = None
    existing_status: str | None = None
    same_as_line: int | None = Field(default=None, description="The earlier line of this file it repeats.")


class ImportReport(BaseModel):
    dry_run: bool
    total_rows: int
    valid_rows: int
    imported: int
    created_ids: list[str] = []
    errors: list[RowError]
    duplicates: list[RowDuplicate]


def decode_csv(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030: Excel in China saves CSV as GBK."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise ValidationFailed.for_field("body", "the file is neither UTF-8 nor GBK/GB18030 text") from exc


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in _LIST_SPLIT.split(value) if v.strip()]


def row_to_payload(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the JSON body the create endpoint would take."""
    get = {k: (v or "").strip() for k, v in row.items()}
    # Files without a kind column (the usual 名称/电话/标签 template) hold companies: B2B is the default.
    payload: dict[str, Any] = {"kind": "company"}
    for name in (
        "kind",
        "name",
        "uscc",
        "industry",
        "size",
        "source",
        "tier",
        "lifecycle_stage",
        "website",
        "description",
        "owner_id",
        "department_id",
        "department_path",
    ):
        if get.get(name):
            payload[name] = get[name]
    for name in ("tags", "phones", "emails"):
        if get.get(name):
            payload[name] = _split_list(get[name])
    address = {k: get[k] for k in ("province", "city", "district", "street", "postal_code") if get.get(k)}
    if address:
        payload["address"] = address
    if get.get("contact_name"):
        contact: dict[str, Any] = {"name": get["contact_name"]}
        if get.get("contact_role"):
            contact["role"] = get["contact_role"]
        if get.get("contact_title"):
            contact["title"] = get["contact_title"]
        if get.get("contact_phone"):
            contact["phones"] = _split_list(get["contact_phone"])
        if get.get("contact_email"):
            contact["emails"] = _split_list(get["contact_email"])
        payload["contacts"] = [contact]
    return payload


def _filled_columns(text: str) -> list[str]:
    """The known columns that hold a value in at least one row (an empty column sets nothing)."""
    try:
        reader = csv.reader(io.StringIO(text))
        header = [_column(h, _ANY_KEY, _ANY_KEY) for h in next(reader, [])]
        filled: set[str] = set()
        for values in reader:
            filled.update(c for c, v in zip(header, values, strict=False) if c and v.strip())
    except csv.Error:
        return []  # the row-by-row reading reports where the file is unreadable
    return sorted(filled)


class _AnyKey:
    """Every key: the columns of any custom field, whether defined or not (which columns are filled)."""

    def __contains__(self, key: object) -> bool:
        return True


_ANY_KEY = _AnyKey()


def _column(header: str, custom: Container[str], contact_custom: Container[str] = ()) -> str | None:
    """A header's column: a built-in one (English or Chinese name), ``custom.<key>`` of an active
    custom field of customers or ``contact.custom.<key>`` of one of contacts (the key as defined,
    not its label: labels change, keys do not)."""
    name = header.strip()
    for prefix, keys in ((CONTACT_CUSTOM_COLUMN, contact_custom), (CUSTOM_COLUMN, custom)):
        if name.lower().startswith(prefix) and name[len(prefix) :] in keys:
            return prefix + name[len(prefix) :]
    return _HEADER_TO_COLUMN.get(name.lower())


def custom_cells(fields: FieldSet, row: dict[str, str], prefix: str = CUSTOM_COLUMN) -> dict[str, Any]:
    """A row's ``custom.<key>`` cells (``prefix``: ``contact.custom.`` for the contact's) as the
    API's ``custom`` (empty cells left out, so defaults apply); a cell that cannot be read is a
    422 naming its column."""
    out: dict[str, Any] = {}
    errors: list[FieldError] = []
    for column, text in row.items():
        if not column.startswith(prefix):
            continue
        key = column[len(prefix) :]
        try:
            value = from_text(fields.active[key], text or "")
        except InvalidValue as exc:
            errors.append(FieldError(field=column, reason=exc.reason, code=exc.code))
            continue
        if value is not None:
            out[key] = value
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    return out


def _rows(
    text: str, max_rows: int, custom: Collection[str] = (), contact_custom: Collection[str] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    known = [*COLUMNS, *(CUSTOM_COLUMN + k for k in custom), *(CONTACT_CUSTOM_COLUMN + k for k in contact_custom)]
    return csv_rows(
        text,
        lambda header: _column(header, custom, contact_custom),
        required=("name", "a 'name' (名称) column"),
        known=", ".join(known),
        max_rows=max_rows,
        too_many=lambda n: ValidationFailed.for_field("body", f"at most {n} rows per import; split the file"),
    )


def _with_contact_custom(payload: Document, cells: Document) -> None:
    """The row's ``contact.custom.<key>`` cells on the row's contact; cells without a contact
    (no ``contact_name``) are a 422 naming each column."""
    if not cells:
        return
    contacts = payload.get("contacts")
    if not contacts:
        reason = "a contact's field needs the row's contact: give contact_name (联系人)"
        errors = [FieldError(field=CONTACT_CUSTOM_COLUMN + key, reason=reason) for key in cells]
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors)
    contacts[0]["custom"] = cells


class Importer:
    def __init__(self, customers: Customers) -> None:
        self._customers = customers
        self._repo = customers.repo

    async def _contacts_custom(self, data: CustomerCreate) -> list[Document]:
        """The row's contact's custom values validated as the API does (defaults, required), each
        error naming its column, ``contact.custom.<key>``, rather than ``contacts[0].custom.<key>``."""
        try:
            return await self._customers.contacts_custom(data)
        except ValidationFailed as exc:
            inside = "contacts[0].custom."
            errors = [
                e.model_copy(update={"field": CONTACT_CUSTOM_COLUMN + e.field.removeprefix(inside)})
                if e.field.startswith(inside)
                else e
                for e in exc.errors
            ]
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors) from exc

    async def run(
        self, principal: Principal, raw: bytes, *, dry_run: bool, key: IdempotencyKey | None = None
    ) -> ImportReport:
        """Check every row and, unless ``dry_run``, import the good ones.

        With a key (ignored by a dry run, which writes nothing) the import is safe to retry: each
        row's customer id is derived from the key and the row's line, so a retry finds the rows
        an earlier attempt stored (even one killed halfway) instead of creating them again, and the
        finished report is kept under the key's id and answered to every later retry.
        """
        key = None if dry_run else key
        if key is not None and (done := await self._imports.find_one({"_id": key.record_id})) is not None:
            return ImportReport.model_validate(key.replay(done)["report"])
        text = decode_csv(raw)
        ensure_columns_writable(principal, _filled_columns(text))
        errors: list[RowError] = []
        parsed: list[tuple[int, CustomerCreate, Document]] = []
        total = 0
        now = self._customers.clock.now()
        fields = await self._customers.fieldset()
        contact_fields = await self._customers.fieldset(CONTACTS)
        max_rows = self._customers.settings.import_max_rows
        for line, row in _rows(text, max_rows, list(fields.active), list(contact_fields.active)):
            total += 1
            # The API refuses control characters in every JSON field (crm_platform.text_input);
            # a file is held to the same rule, one row error per cell.
            unclean = [
                RowError(line=line, field=column, reason=reason)
                for column, value in row.items()
                if (reason := control_character(value, multi_line=True))
            ]
            if unclean:
                errors += unclean
                continue
            try:
                payload = row_to_payload(row)
                _with_contact_custom(payload, custom_cells(contact_fields, row, CONTACT_CUSTOM_COLUMN))
                data = CustomerCreate.model_validate(payload)
                custom = fields.validate(custom_cells(fields, row))  # defaults and required, as the API
                contact_custom = await self._contacts_custom(data)  # the row's contact: as the API
                row_id = str(key.uuid(f"line {line}")) if key else None
                doc = rules.new_customer(data, principal, now, row_id, custom, contact_custom)
            except ValidationError as exc:
                errors += [
                    RowError(line=line, field=e.field, reason=e.reason)
                    for e in field_errors_from_pydantic(exc.errors())
                ]
                continue
            except ValidationFailed as exc:
                errors += [RowError(line=line, field=e.field, reason=e.reason) for e in exc.errors] or [
                    RowError(line=line, field="row", reason=exc.detail)
                ]
                continue
            except Exception as exc:  # Forbidden (owner of another department) and the like
                errors.append(RowError(line=line, field="owner_id", reason=str(exc)))
                continue
            if key is not None:
                key.stamp(doc)
            parsed.append((line, data, doc))

        duplicates, unique_rows = await self._find_duplicates(parsed)
        stored_before = await self._stored_before(unique_rows, key)
        unique_rows = [r for r in unique_rows if r[2]["_id"] not in stored_before]
        unique_rows = await self._apply_owner_limits(unique_rows, errors)
        report = ImportReport(
            dry_run=dry_run,
            total_rows=total,
            valid_rows=len(unique_rows) + len(stored_before),
            imported=0,
            errors=sorted(errors, key=lambda e: e.line),
            duplicates=duplicates,
        )
        if dry_run:
            return report
        created = sorted((line, customer_id) for customer_id, line in stored_before.items())
        for line, _data, doc in unique_rows:
            try:
                # The dry-run arithmetic above reports early; the limit holds under the owner's lease,
                # like every other way of getting a customer (creates, claims, assignments in parallel).
                async with self._repo.owner_lock(doc["owner_id"]) as holding:
                    await self._customers._check_owner_limit(holding, doc.get("department_path"))
                    await self._insert(principal, doc)
                    holding.took()
            except DuplicateKeys as exc:  # entered meanwhile by someone else: first entered owns
                hit = exc.holders[0]
                described = describe_match(doc, hit)
                report.duplicates.append(
                    RowDuplicate(
                        line=line,
                        name=doc["name"],
                        matched_on=described["matched_on"],
                        existing_customer_id=hit["_id"],
                        existing_owner_id=hit.get("owner_id"),
                        existing_status=hit.get("status"),
                    )
                )
                continue
            except Conflict as exc:
                report.errors.append(RowError(line=line, field="owner_id", reason=exc.detail))
                continue
            except DuplicateKeyError:
                if key is None or await self._repo.get(doc["_id"]) is None:
                    report.duplicates.append(
                        RowDuplicate(line=line, name=doc["name"], matched_on=["name"], existing_status="active")
                    )
                    continue
                # else: a racing attempt with the same key stored this row: imported once, by it
            created.append((line, doc["_id"]))
        created.sort()
        report.imported = len(created)
        report.created_ids = [customer_id for _, customer_id in created]
        await self._record(principal, report, key)
        return await self._keep_report(report, key)

    async def _record(self, principal: Principal, report: ImportReport, key: IdempotencyKey | None) -> None:
        """The import for the audit log: its record with crm.customer_import.completed, one write.

        With a key the id is the key's, so an attempt that dies between this and keeping the
        report, then is retried, is recorded once.
        """
        import_id = str(key.uuid("import")) if key is not None else str(uuid.uuid4())
        data = ev.CustomersImported(
            import_id=import_id,
            total_rows=report.total_rows,
            valid_rows=report.valid_rows,
            imported=report.imported,
            errors=len(report.errors),
            duplicates=len(report.duplicates),
        )
        event = self._customers.events(ev.CUSTOMERS_IMPORTED, import_id, data, 1, principal.user_id)
        state = {"_id": import_id, "by": principal.user_id, "at_ms": epoch_ms(self._customers.clock.now())}
        try:
            await self._repo.import_store.insert(state, [event])
        except DuplicateKeyError:
            pass  # recorded by an earlier attempt with the same key

    @property
    def _imports(self) -> AsyncCollection[Document]:
        """Finished keyed imports: their reports, answered to retries."""
        return self._repo.collection.database["customer_imports"]

    async def _stored_before(
        self, rows: list[tuple[int, CustomerCreate, Document]], key: IdempotencyKey | None
    ) -> dict[str, int]:
        """The rows an earlier attempt with this key stored (id -> line); refused if that was another file."""
        if key is None or not rows:
            return {}
        lines = {doc["_id"]: line for line, _, doc in rows}
        found: dict[str, int] = {}
        async for doc in self._repo.collection.find({"_id": {"$in": list(lines)}}, projection={"outbox": 0}):
            key.check(doc)  # rows of an interrupted attempt: this import goes on from there
            found[doc["_id"]] = lines[doc["_id"]]
        return found

    async def _keep_report(self, report: ImportReport, key: IdempotencyKey | None) -> ImportReport:
        if key is None:
            return report
        kept = key.stamp({"_id": key.record_id, "report": report.model_dump(mode="json")})
        kept["created_at"] = self._customers.clock.now()
        try:
            await self._imports.insert_one(kept)
        except DuplicateKeyError:
            # Two attempts with the same key finished at once: both imported the same rows (by id), once.
            stored = await self._imports.find_one({"_id": key.record_id})
            if stored is None:
                raise
            return ImportReport.model_validate(key.replay(stored)["report"])
        return report

    async def _insert(self, principal: Principal, doc: Document) -> Document:
        c = self._customers
        event = c._event(
            ev.CUSTOMER_CREATED,
            doc,
            ev.CustomerCreated(
                customer=rules.snapshot(doc), contacts=[rules.contact_data(x) for x in doc["contacts"]], via="import"
            ),
            1,
            principal.user_id,
        )
        return await self._repo.insert_new(doc, [event])

    async def _find_duplicates(
        self, parsed: list[tuple[int, CustomerCreate, Document]]
    ) -> tuple[list[RowDuplicate], list[tuple[int, CustomerCreate, Document]]]:
        duplicates: list[RowDuplicate] = []
        keep: list[tuple[int, CustomerCreate, Document]] = []
        seen: dict[str, int] = {}
        existing = await self._existing_matches([doc for _, _, doc in parsed])
        for line, data, doc in parsed:
            keys = rules.match_keys(doc)
            earlier = next((seen[k] for k in keys if k in seen), None)
            if earlier is not None:
                duplicates.append(
                    RowDuplicate(
                        line=line,
                        name=doc["name"],
                        matched_on=sorted({k.split(":", 1)[0] for k in keys if k in seen}),
                        same_as_line=earlier,
                    )
                )
                continue
            # A row an earlier attempt with the same key stored matches itself: that is no duplicate.
            hit = next((existing[k] for k in keys if k in existing and existing[k]["_id"] != doc["_id"]), None)
            if hit is not None:
                described = describe_match(doc, hit)
                duplicates.append(
                    RowDuplicate(
                        line=line,
                        name=doc["name"],
                        matched_on=described["matched_on"],
                        existing_customer_id=hit["_id"],
                        existing_owner_id=hit.get("owner_id"),
                        existing_status=hit.get("status"),
                    )
                )
                continue
            for k in keys:
                seen[k] = line
            keep.append((line, data, doc))
        return duplicates, keep

    async def _existing_matches(self, docs: list[Document]) -> dict[str, Document]:
        """Stored customers holding any key of the rows, by key (index lookups of the key documents)."""
        keys = sorted({k for d in docs for k in rules.match_keys(d)})
        found: dict[str, Document] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            for hit in await self._repo.holders_of(chunk, limit=None):
                for key in rules.identity_keys(hit) & set(chunk):
                    found.setdefault(key, hit)
        return found

    async def _apply_owner_limits(
        self, rows: list[tuple[int, CustomerCreate, Document]], errors: list[RowError]
    ) -> list[tuple[int, CustomerCreate, Document]]:
        """The rows that fit their owner's holding limit (the pool rule of the owner's department,
        else the service default); each row past it is reported, naming owner, held and limit."""
        held: dict[str, int] = {}
        keep = []
        for line, data, doc in rows:
            owner = doc["owner_id"]
            limit = await self._customers.holding_limit(doc.get("department_path"))
            if owner not in held:
                held[owner] = await self._repo.active_count_for_owner(owner)
            if held[owner] >= limit.limit:
                where = f"pool rule {limit.rule_id}" if limit.rule_id else "the service default"
                errors.append(
                    RowError(
                        line=line,
                        field="owner_id",
                        reason=f"{owner} would hold more than {limit.limit} customers "
                        f"(holds {held[owner]}; limit of {where})",
                    )
                )
                continue
            held[owner] += 1
            keep.append((line, data, doc))
        return keep


# --- export ------------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "id",
    "kind",
    "name",
    "uscc",
    "industry",
    "size",
    "source",
    "tier",
    "lifecycle_stage",
    "tags",
    "phones",
    "emails",
    "province",
    "city",
    "district",
    "street",
    "owner_id",
    "department_id",
    "in_pool",
    "locked",
    "contact_count",
    "created_at",
    "updated_at",
    "last_followed_up_at",
]
_NUMBERISH = re.compile(r"^[+-][\d\s().]+$")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    # Spreadsheet formula injection: a cell starting with = + - @ would run as a formula.
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in ("+", "-") and not _NUMBERISH.match(text)):
        text = "'" + text
    return text


def export_row(
    doc: Document,
    columns: Sequence[str] = EXPORT_COLUMNS,
    custom: Sequence[Mapping[str, Any]] = (),
    contact_custom: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """One customer as a CSV row: the built-in ``columns``, then one per custom field in ``custom``,
    then one per contact custom field in ``contact_custom`` (the primary contact's values, else
    the first contact's)."""
    address = doc.get("address") or {}
    values = {
        "id": doc["_id"],
        "contact_count": len(doc.get("contacts") or []),
        "locked": bool(doc.get("locked")),
        **{k: address.get(k) for k in ("province", "city", "district", "street")},
    }
    values_ = doc.get("custom") or {}
    contacts = doc.get("contacts") or []
    contact = next((c for c in contacts if c.get("is_primary")), contacts[0] if contacts else {})
    contact_values = contact.get("custom") or {}
    return (
        [_cell(values[c] if c in values else doc.get(c)) for c in columns]
        + [_cell(to_text(d, values_.get(d["key"])) or None) for d in custom]
        + [_cell(to_text(d, contact_values.get(d["key"])) or None) for d in contact_custom]
    )


async def record_export(
    customers: Customers, principal: Principal, filters: CustomerFilter, sort: str | None, rows: int | None = None
) -> int:
    """Record an export before its first row leaves: who, the filter, how many customers match
    (``rows`` when the caller has just counted them).

    The record and its event (``crm.customer_export.created``, for the audit log) are one write,
    like every event; an export that is cut short later is recorded all the same. Returns the rows.
    """
    rows = await count_export_rows(customers, principal, filters) if rows is None else rows
    export_id = str(uuid.uuid4())
    data = ev.CustomersExported(
        export_id=export_id,
        filter=filters.described(),  # custom.<key> filters as asked, not as the store matches them
        sort=sort,
        rows=rows,
    )
    event = customers.events(ev.CUSTOMERS_EXPORTED, export_id, data, 1, principal.user_id)
    state = {"_id": export_id, "by": principal.user_id, "rows": rows, "at_ms": epoch_ms(customers.clock.now())}
    await customers.repo.export_store.insert(state, [event])
    return rows


async def count_export_rows(customers: Customers, principal: Principal, filters: CustomerFilter) -> int:
    """How many customers the export will send, from their ids: one indexed query per alternative,
    on the tag memberships for a tag filter (as the list pages them; ``$in`` on the tags array
    reads every customer on the embedded store).

    Not the ``count`` command, which the embedded store answers by reading every customer (it
    tests ``status`` as a possible array, which no index serves); the ids come from the same
    indexes the list pages walk.
    """
    every, some = filters.tag_lists()
    if every or some:
        collection, query, field = customers.repo.tags.collection, filters.to_mongo(principal, memberships=True), "cid"
    else:
        collection, query, field = customers.repo.collection, filters.to_mongo(principal), "_id"
    ids: set[Any] = set()
    for branch in or_branches(query) or [query]:
        async for doc in collection.find(branch, projection={field: 1}):
            ids.add(doc[field])
    return len(ids)


#: Rows per store round of an export: the list's own pages, at the list's largest limit.
EXPORT_PAGE = 500


async def export_csv(
    customers: Customers, principal: Principal, filters: CustomerFilter, sort: str | None
) -> AsyncIterator[bytes]:
    """Every customer the list with these filters shows, in its order: the list's own pages (so an
    export walks the same indexes, tag filters on the tag memberships, each visibility alternative
    its own indexed query) one after another, each written out as it arrives."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = visible_columns(principal, EXPORT_COLUMNS)  # a hidden field is not exported
    policy = principal.fields("customers")
    # A column per active custom field the caller may see: custom.<key>.
    custom = [d for d in (await customers.fieldset()).ordered() if not policy.hides(CUSTOM_COLUMN + d["key"])]
    # Then one per active contact custom field the caller may see: contact.custom.<key>.
    contact_policy = principal.fields(CONTACTS)
    contact_custom = [
        d for d in (await customers.fieldset(CONTACTS)).ordered() if not contact_policy.hides(CUSTOM_COLUMN + d["key"])
    ]
    writer.writerow(
        [
            *columns,
            *(CUSTOM_COLUMN + d["key"] for d in custom),
            *(CONTACT_CUSTOM_COLUMN + d["key"] for d in contact_custom),
        ]
    )
    yield b"\xef\xbb\xbf" + buffer.getvalue().encode()  # BOM: Excel then reads UTF-8 Chinese correctly
    paging = PageParams(sort=sort, limit=EXPORT_PAGE)
    while True:
        page = await list_customers(customers.repo, principal, filters, paging)
        buffer.seek(0)
        buffer.truncate()
        for doc in page.items:
            writer.writerow(export_row(doc, columns, custom, contact_custom))
        yield buffer.getvalue().encode()
        if page.next_cursor is None:
            return
        paging = PageParams(sort=sort, limit=EXPORT_PAGE, cursor=page.next_cursor)
