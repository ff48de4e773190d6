"""CSV import of leads through the leads service's ``POST /v1/leads/import`` (``leads:import``):
upload a file with the options that apply to every row (campaign, source, into the lead pool), see
the dry run's report line by line (would be entered, refused and why, duplicate of which lead or
customer and whose), then confirm to enter the good lines, each linked to the lead it made.

The file travels back in the confirmation form, so the real import reads exactly what was checked.
The leads import has no idempotency key yet: a confirmation sent twice finds its own leads as
duplicates the second time, so nothing is entered twice.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData, UploadFile

from crm_console.pages.admin.access import requires
from crm_console.pages.leads.routes import SOURCES, campaign_names, display_name
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render
from crm_platform.permissions import Permission

router = APIRouter(prefix="/leadimport", dependencies=[Depends(requires(Permission.leads_import))])

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
#: The headers the leads service reads as the company column (crm_leads application/imports.py).
COMPANY_HEADERS = frozenset({"company_name", "company", "公司名称", "公司", "客户名称", "名称", "单位名称"})
OPTIONS = ("campaign_id", "source", "in_pool")
Document = dict[str, Any]


@dataclass
class Row:
    """One line of the file as the report shows it."""

    line: int
    name: str
    result: str = "ok"  # ok | created | error | duplicate
    lead_id: str | None = None
    errors: list[Document] = field(default_factory=list)
    duplicates: list[Document] = field(default_factory=list)


def decode(raw: bytes) -> str:
    """As the service reads it: UTF-8 (with or without BOM), else GB18030 (Excel in China)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def company_names(text: str) -> dict[int, str]:
    """Each data line's company, by the line number the service reports (the header is line 1)."""
    reader = csv.reader(io.StringIO(text))
    names: dict[int, str] = {}
    try:
        header = [h.strip().lower() for h in next(reader)]
        at = next((i for i, h in enumerate(header) if h in COMPANY_HEADERS), 0)
        for values in reader:
            if any(v.strip() for v in values):
                names[reader.line_num] = values[at].strip() if at < len(values) else ""
    except (StopIteration, csv.Error):
        return {}  # the service's 422 says what is wrong with the file
    return names


def report_rows(text: str, report: Document) -> list[Row]:
    names = company_names(text)
    rows = {
        int(r["line"]): Row(int(r["line"]), names.get(int(r["line"]), ""), str(r["result"]), r.get("lead_id"))
        for r in report.get("rows") or []
    }
    for error in report.get("errors") or []:
        row = rows.setdefault(int(error["line"]), Row(int(error["line"]), names.get(int(error["line"]), ""), "error"))
        row.errors.append(error)
    for duplicate in report.get("duplicates") or []:
        line = int(duplicate["line"])
        row = rows.setdefault(line, Row(line, str(duplicate.get("name") or names.get(line, "")), "duplicate"))
        row.duplicates.append(duplicate)
    return sorted(rows.values(), key=lambda r: r.line)


def options_of(form: FormData) -> dict[str, str]:
    out = {name: str(form.get(name) or "").strip() for name in OPTIONS}
    if out["in_pool"]:
        out["in_pool"] = "true"
    return {k: v for k, v in out.items() if v}


async def _form(request: Request, client: Api, status_code: int = 200, **extra: Any) -> HTMLResponse:
    context: Document = {
        "campaigns": await campaign_names(client),
        "sources": SOURCES,
        "options": {},
        "field_errors": {},
        "problem": None,
    }
    return render(request, "leadimport/upload.html", context | extra, status_code=status_code)


async def _send(client: Api, text: str, options: dict[str, str], dry_run: bool) -> Document:
    answer = await client.send(
        "leads",
        "POST",
        "/v1/leads/import",
        params={**options, "dry_run": "true" if dry_run else "false"},
        content=text.encode(),
        headers={"Content-Type": "text/csv; charset=utf-8"},
    )
    report: Document = answer.json()
    return report


async def _refused(request: Request, client: Api, problem: UpstreamProblem, options: dict[str, str]) -> HTMLResponse:
    """A file or an option the service refuses whole: at its input (``body``/``header`` at the file)."""
    errors: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        key = "file" if name in ("body", "header") else name
        errors.setdefault(key, reason)
    if not errors:
        errors["file"] = client.problem_text(problem)
    return await _form(request, client, problem.status, options=options, field_errors=errors, problem=problem)


async def _report(request: Request, client: Api, text: str, options: dict[str, str], report: Document) -> HTMLResponse:
    rows = report_rows(text, report)
    owners = {d["existing_owner_id"] for r in rows for d in r.duplicates if d.get("existing_owner_id")}
    context: Document = {
        "report": report,
        "rows": rows,
        "owners": {owner: await display_name(client, owner) for owner in sorted(owners)},
        "csv_text": text,
        "options": options,
        "failed": sum(r.result == "error" for r in rows),
        "duplicated": sum(r.result == "duplicate" for r in rows),
    }
    return render(request, "leadimport/report.html", context)


@router.get("", include_in_schema=False)
async def upload_form(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _form(request, client)


@router.post("", include_in_schema=False)
async def dry_run(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    """Check the uploaded file without writing anything, and show what would happen to each line."""
    form = await request.form()
    options = options_of(form)
    upload = form.get("file")
    raw = await upload.read(MAX_UPLOAD_BYTES + 1) if isinstance(upload, UploadFile) else b""
    reason = "leadimport.empty" if not raw.strip() else "leadimport.too_large" if len(raw) > MAX_UPLOAD_BYTES else ""
    if reason:
        message = client.console.catalogue.translate(client.session.language, reason)
        return await _form(request, client, 422, options=options, field_errors={"file": message})
    text = decode(raw)
    try:
        report = await _send(client, text, options, dry_run=True)
    except UpstreamProblem as problem:
        if problem.status not in (413, 422):
            raise
        return await _refused(request, client, problem, options)
    return await _report(request, client, text, options, report)


@router.post("/run", include_in_schema=False)
async def run(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    """Enter the checked file's good lines; the report says what became of each."""
    form = await request.form()
    options = options_of(form)
    text = str(form.get("csv_text") or "")
    try:
        report = await _send(client, text, options, dry_run=False)
    except UpstreamProblem as problem:
        if problem.status not in (413, 422):
            raise
        return await _refused(request, client, problem, options)
    return await _report(request, client, text, options, report)
