"""CSV import of leads, with a dry run that reports every bad row and every duplicate.

The report has the customers import's shape (``crm_customers.application.transfer``): totals,
``errors`` (line, field, reason), ``duplicates`` (line, what matched, who holds it, or the earlier
line of the same file), plus ``rows``: each line's result. A real import enters each good row
through :meth:`Leads.create`, the API's own path (keys, the duplicate check, ``crm.lead.created``
with ``via: import``), and records the import with one ``crm.lead_import.completed``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from crm_leads.application.leads import Leads
from crm_leads.domain import leads as rules
from crm_leads.domain.model import LeadIn, LeadSource
from crm_platform.auth import Principal
from crm_platform.contracts import leads as ev
from crm_platform.csv_import import csv_rows
from crm_platform.errors import DomainError, Duplicate, FieldError, ValidationFailed, field_errors_from_pydantic
from crm_platform.sortkeys import epoch_ms
from crm_platform.text_input import control_character

Document = dict[str, Any]

#: CSV column -> accepted headers (the API's names and the Chinese ones people type).
COLUMNS: dict[str, tuple[str, ...]] = {
    "company_name": ("company_name", "company", "公司名称", "公司", "客户名称", "名称", "单位名称"),
    "contact_name": ("contact_name", "contact", "联系人", "姓名"),
    "phones": ("phones", "phone", "电话", "手机", "联系电话"),
    "emails": ("emails", "email", "邮箱", "电子邮箱", "电子邮件"),
    "source": ("source", "来源", "线索来源"),
    "campaign_id": ("campaign_id", "campaign", "市场活动", "活动"),
    "region": ("region", "地区", "区域"),
    "industry": ("industry", "行业"),
    "notes": ("notes", "备注"),
}
_HEADER_TO_COLUMN = {alias.lower(): column for column, aliases in COLUMNS.items() for alias in aliases}
_LIST_SPLIT = re.compile(r"[;；|,，]")


class TooLarge(DomainError):
    status, code, title = 413, "too-large", "The request is too large"


class RowError(BaseModel):
    line: int
    field: str
    reason: str


class RowDuplicate(BaseModel):
    line: int
    name: str
    matched_on: list[str] = Field(description="The row's fields that matched: company_name, phones[0], emails[0]...")
    existing_lead_id: str | None = None
    existing_customer_id: str | None = None
    existing_owner_id: str | None = Field(default=None, description="None: in the lead pool or the public pool.")
    same_as_line: int | None = Field(default=None, description="The earlier line of this file it repeats.")


class RowResult(BaseModel):
    line: int
    result: Literal["ok", "created", "error", "duplicate"] = Field(
        description="ok: would be created (dry run); created; error; duplicate."
    )
    lead_id: str | None = None


class ImportReport(BaseModel):
    dry_run: bool
    import_id: str | None = Field(default=None, description="The import's record (a real import only).")
    total_rows: int
    valid_rows: int
    imported: int
    created_ids: list[str] = []
    errors: list[RowError]
    duplicates: list[RowDuplicate]
    rows: list[RowResult] = []


class ImportOptions(BaseModel):
    """What applies to every row: a row's own 市场活动/来源 cell wins over these."""

    campaign_id: str | None = None
    source: LeadSource | None = None
    in_pool: bool = False


def decode_csv(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030: Excel in China saves CSV as GBK."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise ValidationFailed.for_field("body", "the file is neither UTF-8 nor GBK/GB18030 text") from exc


def _rows(text: str, max_rows: int) -> Iterator[tuple[int, dict[str, str]]]:
    return csv_rows(
        text,
        lambda header: _HEADER_TO_COLUMN.get(header.strip().lower()),
        required=("company_name", "a 'company_name' (公司名称) column"),
        known=f"{', '.join(COLUMNS)} (or their Chinese names)",
        max_rows=max_rows,
        too_many=_too_many,
    )


def _too_many(max_rows: int) -> TooLarge:
    reason = f"at most {max_rows} rows per import; split the file"
    return TooLarge(f"body: {reason}", errors=[FieldError(field="body", reason=reason)], extra={"max_rows": max_rows})


def row_to_payload(row: dict[str, str], options: ImportOptions) -> dict[str, Any]:
    """A CSV row as the body ``POST /v1/leads`` would take, with the import's options filled in."""
    get = {k: (v or "").strip() for k, v in row.items()}
    payload: dict[str, Any] = {"in_pool": options.in_pool}
    if options.campaign_id:
        payload["campaign_id"] = options.campaign_id
    if options.source is not None:
        payload["source"] = options.source.value
    for name in ("company_name", "contact_name", "source", "campaign_id", "region", "industry", "notes"):
        if get.get(name):
            payload[name] = get[name]
    for name in ("phones", "emails"):
        if get.get(name):
            payload[name] = [v.strip() for v in _LIST_SPLIT.split(get[name]) if v.strip()]
    return payload


def _duplicate(line: int, name: str, errors: list[FieldError]) -> RowDuplicate:
    """A row refused by the duplicate check: what matched and who holds it (the first holder)."""
    first = errors[0].params or {}
    return RowDuplicate(
        line=line,
        name=name,
        matched_on=[e.field for e in errors],
        existing_lead_id=str(first["lead_id"]) if "lead_id" in first else None,
        existing_customer_id=str(first["customer_id"]) if "customer_id" in first else None,
        existing_owner_id=str(first.get("owner_id") or "") or None,
    )


class Importer:
    def __init__(self, leads: Leads, max_rows: int) -> None:
        self._leads = leads
        self._repo = leads.repo
        self._max_rows = max_rows

    async def run(self, principal: Principal, raw: bytes, options: ImportOptions, *, dry_run: bool) -> ImportReport:
        """Check every row and, unless ``dry_run``, enter the good ones."""
        await self._leads.check_campaign(options.campaign_id)  # the whole import's campaign: 422 up front
        text = decode_csv(raw)
        errors: list[RowError] = []
        duplicates: list[RowDuplicate] = []
        results: dict[int, RowResult] = {}
        good: list[tuple[int, LeadIn]] = []
        seen: dict[str, int] = {}
        campaigns: dict[str, str | None] = {}  # campaign id -> why it is refused (None: fine)
        total = 0
        for line, row in _rows(text, self._max_rows):
            total += 1
            row_errors = [
                RowError(line=line, field=column, reason=reason)
                for column, value in row.items()
                if (reason := control_character(value, multi_line=column == "notes"))
            ]
            data: LeadIn | None = None
            if not row_errors:
                try:
                    data = LeadIn.model_validate(row_to_payload(row, options))
                except ValidationError as exc:
                    row_errors = [
                        RowError(line=line, field=e.field, reason=e.reason)
                        for e in field_errors_from_pydantic(exc.errors())
                    ]
            if data is not None and data.campaign_id is not None:
                if data.campaign_id not in campaigns:
                    try:
                        await self._leads.check_campaign(data.campaign_id)
                        campaigns[data.campaign_id] = None
                    except ValidationFailed as exc:
                        campaigns[data.campaign_id] = exc.errors[0].reason
                if (reason := campaigns[data.campaign_id]) is not None:
                    row_errors.append(RowError(line=line, field="campaign_id", reason=reason))
            if row_errors or data is None:
                errors += row_errors
                results[line] = RowResult(line=line, result="error")
                continue
            keys = rules.keys_of(rules.new_lead("import-row", data, principal, self._leads.clock.now()))
            repeated = {k: seen[k] for k in keys if k in seen}
            if repeated:
                duplicates.append(
                    RowDuplicate(
                        line=line,
                        name=data.company_name,
                        matched_on=sorted(keys[k] for k in repeated),
                        same_as_line=min(repeated.values()),
                    )
                )
                results[line] = RowResult(line=line, result="duplicate")
                continue
            for key in keys:
                seen[key] = line
            held = await self._leads._duplicates(keys, None)  # index lookups of the key documents
            if held:
                duplicates.append(_duplicate(line, data.company_name, held))
                results[line] = RowResult(line=line, result="duplicate")
                continue
            good.append((line, data))
            results[line] = RowResult(line=line, result="ok")
        report = ImportReport(
            dry_run=dry_run,
            total_rows=total,
            valid_rows=len(good),
            imported=0,
            errors=errors,
            duplicates=duplicates,
        )
        if not dry_run:
            await self._enter(principal, good, report, results)
        report.rows = [results[line] for line in sorted(results)]
        report.duplicates.sort(key=lambda d: d.line)
        report.errors.sort(key=lambda e: e.line)
        if not dry_run:
            await self._record(principal, report, options)
        return report

    async def _enter(
        self, principal: Principal, good: list[tuple[int, LeadIn]], report: ImportReport, results: dict[int, RowResult]
    ) -> None:
        """Each good row through the API's create path; a row someone entered meanwhile is a duplicate."""
        for line, data in good:
            try:
                doc = await self._leads.create(principal, data, via="import")
            except Duplicate as exc:
                report.duplicates.append(_duplicate(line, data.company_name, exc.errors))
                results[line] = RowResult(line=line, result="duplicate")
                continue
            except ValidationFailed as exc:  # the campaign was cancelled meanwhile, and the like
                report.errors += [RowError(line=line, field=e.field, reason=e.reason) for e in exc.errors]
                results[line] = RowResult(line=line, result="error")
                continue
            report.created_ids.append(doc["_id"])
            results[line] = RowResult(line=line, result="created", lead_id=doc["_id"])
        report.imported = len(report.created_ids)

    async def _record(self, principal: Principal, report: ImportReport, options: ImportOptions) -> None:
        """The import for the audit log: its record with ``crm.lead_import.completed``, one write."""
        import_id = str(uuid.uuid4())
        data = ev.LeadsImported(
            import_id=import_id,
            total_rows=report.total_rows,
            valid_rows=report.valid_rows,
            imported=report.imported,
            errors=len(report.errors),
            duplicates=len(report.duplicates),
            campaign_id=options.campaign_id,
        )
        event = self._leads.event(ev.LEADS_IMPORTED, import_id, data, 1, principal.user_id)
        state = {"_id": import_id, "by": principal.user_id, "at_ms": epoch_ms(self._leads.clock.now())}
        await self._repo.import_store.insert(state, [event])
        report.import_id = import_id
