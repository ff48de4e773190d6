"""The HTTP API of the lead CSV import (POST /v1/leads/import)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from crm_leads.application.imports import Importer, ImportOptions, ImportReport, TooLarge
from crm_leads.application.leads import Leads
from crm_platform.auth import CurrentPrincipal
from crm_platform.errors import FieldError, ValidationFailed, field_errors_from_pydantic
from crm_platform.openapi import problems

router = APIRouter(prefix="/v1/leads", tags=["leads"])


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 naming the limit as soon as it passes ``limit`` bytes
    (never read whole into memory first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> TooLarge:
    reason = f"at most {limit} bytes"
    return TooLarge(f"body: {reason}", errors=[FieldError(field="body", reason=reason)], extra={"max_bytes": limit})


async def _file_and_options(request: Request, raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """The CSV and the options: a multipart form (``file`` plus form fields) or the CSV as the body
    (options in the query). Query values count in both cases; form fields win."""
    options: dict[str, Any] = {k: v for k, v in request.query_params.items() if k in ImportOptions.model_fields}
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return raw, options
    request._body = raw  # the form is parsed from what was read (within the limit), not read again
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ValidationFailed.for_field("file", "send the CSV as the form's 'file' field")
    options.update({k: v for k, v in form.items() if k in ImportOptions.model_fields and isinstance(v, str)})
    return await upload.read(), options


@router.post(
    "/import",
    response_model=ImportReport,
    summary="Import leads from CSV; dry_run=true (the default) reports bad rows and duplicates without writing",
    responses=problems(413),
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "campaign_id": {"type": "string"},
                            "source": {"type": "string"},
                            "in_pool": {"type": "boolean"},
                        },
                        "required": ["file"],
                    }
                },
            },
            "required": True,
        }
    },
)
async def import_leads(request: Request, principal: CurrentPrincipal, dry_run: bool = True) -> ImportReport:
    """The CSV as the body (``Content-Type: text/csv``) or as the ``file`` field of a form. UTF-8 (with
    or without BOM) or GB18030 (Excel). ``campaign_id``, ``source``, ``in_pool`` (query or form fields)
    apply to every row; a row's own 市场活动/来源 cell wins."""
    leads: Leads = request.app.state.leads
    settings = request.app.state.kit.settings
    raw, values = await _file_and_options(request, await read_limited(request, settings.import_max_bytes))
    if not raw.strip():
        raise ValidationFailed.for_field("body", "send the CSV file as the body (text/csv) or a form's 'file' field")
    try:
        options = ImportOptions.model_validate(values)
    except ValidationError as exc:
        errors = field_errors_from_pydantic(exc.errors(), "query")
        raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in errors), errors=errors) from exc
    return await Importer(leads, settings.import_max_rows).run(principal, raw, options, dry_run=dry_run)
