"""The HTTP API of the audit log: search (newest first, keyset pages) and a CSV export."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_audit.application.log import AuditLog, ExportTooLarge
from crm_audit.domain.search import Search, SearchError
from crm_audit.settings import AuditSettings
from crm_platform.auth import CurrentPrincipal
from crm_platform.errors import ValidationFailed
from crm_platform.serving import client_address

router = APIRouter(prefix="/v1", tags=["audit"])
Document = dict[str, Any]
BOM = "\ufeff"
CSV_COLUMNS = [
    "entry_id",
    "at",
    "actor_id",
    "actor_name",
    "client_address",
    "action",
    "target_type",
    "target_id",
    "source",
    "event_type",
    "details",
]


class AuditFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    actor: str | None = Field(default=None, max_length=200, description="Only what this user (id) did.")
    action: str | None = Field(
        default=None, max_length=100, description="e.g. customer.merged, user.roles_changed, auth.sign_in_failed."
    )
    target_type: str | None = Field(default=None, max_length=50, description="customer, user, webhook, ...")
    target_id: str | None = Field(default=None, max_length=200, description="The record acted on.")
    address: str | None = Field(
        default=None, max_length=100, description="Only what was done from this client address (exactly as shown)."
    )
    start: datetime | None = Field(default=None, alias="from", description="From this moment (inclusive).")
    end: datetime | None = Field(default=None, alias="to", description="Before this moment (exclusive).")

    def search(self, cursor: str | None = None) -> Search:
        return Search(
            self.actor,
            self.action,
            self.target_type,
            self.target_id,
            self.start,
            self.end,
            cursor,
            client_address=self.address,
        )


class AuditPageParams(AuditFilter):
    cursor: str | None = Field(default=None, max_length=400, description="next_cursor of the previous page.")
    limit: int = Field(default=50, ge=1, le=500)


class AuditEntryOut(BaseModel):
    entry_id: str = Field(description="The id of the event it records (or of the export, for audit.exported).")
    at: datetime
    actor_id: str | None = Field(description="The user (or system:<name>) who did it; none for a failed sign-in.")
    actor_name: str | None = Field(description="The actor's name in the directory when the entry was made.")
    client_address: str | None = Field(description="Where the request came from, as its service saw it.")
    action: str
    target_type: str
    target_id: str
    source: str
    event_type: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null on the last.")


def _log(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


def _settings(request: Request) -> AuditSettings:
    settings: AuditSettings = request.app.state.settings
    return settings


Log = Annotated[AuditLog, Depends(_log)]
Settings = Annotated[AuditSettings, Depends(_settings)]


def _invalid(exc: SearchError) -> ValidationFailed:
    return ValidationFailed.for_field(exc.field, exc.reason, "query")


@router.get("/audit", summary="Search the audit log, newest first", response_model=AuditPage)
async def search(params: Annotated[AuditPageParams, Query()], audit: Log) -> AuditPage:
    try:
        page = await audit.search(params.search(params.cursor), params.limit)
    except SearchError as exc:
        raise _invalid(exc) from exc
    return AuditPage.model_validate({"items": page.items, "next_cursor": page.next_cursor})


@router.get(
    "/audit/export.csv",
    summary="Export the entries a search finds as CSV (UTF-8 with BOM); the export is audited too",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def export(
    params: Annotated[AuditFilter, Query()],
    request: Request,
    principal: CurrentPrincipal,
    audit: Log,
    settings: Settings,
) -> Response:
    try:
        rows = await audit.export(
            params.search(),
            settings.audit_export_max_rows,
            principal.user_id,
            client_address(request, settings.trusted_proxies),
        )
    except SearchError as exc:
        raise _invalid(exc) from exc
    except ExportTooLarge as exc:
        raise ValidationFailed.for_field(
            "from", f"more than {exc.limit} entries match: narrow the search (from, to, actor, action)", "query"
        ) from exc
    return Response(
        to_csv(rows).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


def to_csv(rows: list[Document]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    return BOM + out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = "" if value is None else str(value)
    # A cell a spreadsheet would run as a formula (CSV injection) is kept as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
