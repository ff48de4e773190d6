"""CSV import through the customers service's ``POST /v1/customers/import``: upload, the dry
run's report row by row (created, refused and why, duplicates), then the import for real.

Nothing is kept between the two steps on the server: the checked file travels back in the
confirmation form, with an idempotency key so a resent confirmation imports it once.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import UploadFile

from crm_console.pages.customers.people import owner_names
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, problem_text, render

router = APIRouter(prefix="/import")

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# The headers the service reads as the name column (services/customers application/transfer.py).
NAME_HEADERS = frozenset({"name", "名称", "客户名称", "公司名称"})


@dataclass
class Row:
    """One line of the file as the report shows it."""

    line: int
    name: str
    status: str = "create"  # create | error | duplicate | created
    errors: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    customer_id: str | None = None


def decode(raw: bytes) -> str:
    """As the service reads it: UTF-8 (with or without BOM), else GB18030 (Excel in China)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def file_rows(text: str) -> list[Row]:
    """The file's data lines, numbered as the service numbers them (the header is line 1)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
        name_at = next((i for i, h in enumerate(header) if h in NAME_HEADERS), 0)
        rows = []
        for values in reader:
            if any(v.strip() for v in values):
                rows.append(Row(reader.line_num, values[name_at].strip() if name_at < len(values) else ""))
    except (StopIteration, csv.Error):
        return []  # the service's 422 says what is wrong with the file
    return rows


def merge_report(rows: list[Row], report: dict[str, Any]) -> list[Row]:
    """Each line's fate from the service's report; after a real import, the new ids in line order."""
    by_line = {r.line: r for r in rows}
    for error in report.get("errors", []):
        row = by_line.setdefault(error["line"], Row(error["line"], ""))
        row.status = "error"
        row.errors.append(error)
    for duplicate in report.get("duplicates", []):
        row = by_line.setdefault(duplicate["line"], Row(duplicate["line"], duplicate.get("name", "")))
        if row.status != "error":
            row.status = "duplicate"
        row.duplicates.append(duplicate)
    ordered = sorted(by_line.values(), key=lambda r: r.line)
    if not report.get("dry_run", True):
        created = [r for r in ordered if r.status == "create"]
        for row, customer_id in zip(created, report.get("created_ids", []), strict=False):
            row.status, row.customer_id = "created", customer_id
    return ordered


async def _report_page(
    request: Request, client: Api, text: str, report: dict[str, Any], key: str, status_code: int = 200
) -> HTMLResponse:
    rows = merge_report(file_rows(text), report)
    owners = await owner_names(client, (d.get("existing_owner_id") for r in rows for d in r.duplicates))
    context = {"report": report, "rows": rows, "owners": owners, "csv_text": text, "key": key}
    return render(request, "customers/import_report.html", context, status_code=status_code)


def _upload_error(request: Request, problem: UpstreamProblem) -> HTMLResponse:
    errors = problem.field_errors()
    reason = next(iter(errors.values()), None) or problem_text(request, problem)
    return render(request, "customers/import.html", {"file_error": reason}, status_code=422)


@router.get("", include_in_schema=False)
async def upload_form(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return render(request, "customers/import.html", {"file_error": None})


@router.post("", include_in_schema=False)
async def dry_run(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    """Check the uploaded file without writing anything, and show what would happen to each line."""
    form = await request.form()
    upload = form.get("file")
    raw = await upload.read(MAX_UPLOAD_BYTES + 1) if isinstance(upload, UploadFile) else b""
    if not raw.strip():
        return render(request, "customers/import.html", {"file_error": "empty"}, status_code=422)
    if len(raw) > MAX_UPLOAD_BYTES:
        return render(request, "customers/import.html", {"file_error": "too_large"}, status_code=422)
    text = decode(raw)
    try:
        answer = await client.send(
            "customers",
            "POST",
            "/v1/customers/import",
            params={"dry_run": "true"},
            content=text.encode(),
            headers={"Content-Type": "text/csv; charset=utf-8"},
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return _upload_error(request, problem)
    return await _report_page(request, client, text, answer.json(), str(uuid.uuid4()))


@router.post("/run", include_in_schema=False)
async def run(
    request: Request,
    client: Annotated[Api, Depends(api)],
    csv_text: Annotated[str, Form()],
    key: Annotated[str, Form()],
) -> HTMLResponse:
    """Import the checked file for real (the good lines; the report says what became of each)."""
    try:
        answer = await client.send(
            "customers",
            "POST",
            "/v1/customers/import",
            params={"dry_run": "false"},
            content=csv_text.encode(),
            headers={"Content-Type": "text/csv; charset=utf-8", "Idempotency-Key": key},
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return _upload_error(request, problem)
    return await _report_page(request, client, csv_text, answer.json(), key)
