"""The audit page over the audit service: ``GET /v1/audit`` (filters ``actor``, ``action``,
``address``, ``from``/``to``; newest first; ``next_cursor`` as "more") and
``GET /v1/audit/export.csv`` with the same filters (the export is itself audited, as the person's).

The time range is typed in the person's own time zone (``datetime-local`` inputs) and sent with
that zone's offset, so the service gets an exact moment. A filter the service refuses (422) is
shown next to its field.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from crm_console.pages.admin.access import requires
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render, zone
from crm_platform.permissions import Permission

router = APIRouter(prefix="/audit", dependencies=[Depends(requires(Permission.audit_view))])

PAGE_SIZE = 50
#: The actions the audit service records, for the "what" menu (any other can be typed in the API).
ACTIONS = (
    "auth.signed_in",
    "auth.sign_in_failed",
    "user.created",
    "user.updated",
    "user.roles_changed",
    "user.deactivated",
    "user.reactivated",
    "user.password_changed",
    "department.created",
    "department.moved",
    "customer.imported",
    "customer.exported",
    "customer.export_policy_changed",
    "customer.export_requested",
    "customer.export_approved",
    "customer.export_rejected",
    "customer.export_downloaded",
    "customer.merged",
    "customer.purged",
    "webhook.subscription_created",
    "webhook.subscription_changed",
    "webhook.subscription_disabled",
    "webhook.subscription_deleted",
    "audit.exported",
)
#: Form field -> the API's parameter.
FIELDS = {"actor": "actor", "action": "action", "address": "address", "start": "from", "end": "to"}


def _moment(value: str, timezone: str) -> str | None:
    """A ``datetime-local`` value in the person's zone as an ISO moment with its offset (None: unreadable)."""
    try:
        local = datetime.fromisoformat(value)
    except ValueError:
        return None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone(timezone))
    return local.isoformat()


def api_params(values: dict[str, str], timezone: str, bad_time: str) -> tuple[dict[str, str], dict[str, str]]:
    """The API's filters from the form's values, and the fields the console itself could not read
    (``bad_time``: what to say about an unreadable moment)."""
    params: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, parameter in FIELDS.items():
        value = values.get(name, "").strip()
        if not value:
            continue
        if name in ("start", "end"):
            moment = _moment(value, timezone)
            if moment is None:
                errors[name] = bad_time
                continue
            value = moment
        params[parameter] = value
    return params, errors


def details_text(details: dict[str, Any] | None) -> str:
    """An entry's details on one line, the values as JSON (Chinese kept readable), empty ones left out."""
    shown = {k: v for k, v in (details or {}).items() if v not in (None, "", [], {})}
    return "; ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in shown.items())


def _bad_time(client: Api) -> str:
    return client.console.catalogue.translate(client.session.language, "audit.bad_time")


def _values(actor: str, action: str, address: str, start: str, end: str) -> dict[str, str]:
    return {"actor": actor, "action": action, "address": address, "start": start, "end": end}


@router.get("", include_in_schema=False)
async def audit_page(
    request: Request,
    client: Annotated[Api, Depends(api)],
    actor: str = "",
    action: str = "",
    address: str = "",
    start: str = "",
    end: str = "",
    cursor: str = "",
) -> HTMLResponse:
    values = _values(actor, action, address, start, end)
    params, field_errors = api_params(values, client.session.timezone, _bad_time(client))
    items: list[dict[str, Any]] = []
    next_cursor = None
    problem = None
    if not field_errors:
        try:
            page = await client.get(
                "audit", "/v1/audit", params={**params, "limit": PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
            )
            items, next_cursor = page["items"], page.get("next_cursor")
        except UpstreamProblem as exc:
            if exc.status != 422:
                raise
            problem = exc
            reverse = {v: k for k, v in FIELDS.items()}
            field_errors = {reverse.get(k, k): v for k, v in exc.field_errors().items()}
    filters = {k: v for k, v in values.items() if v}
    context = {
        "values": values,
        "actions": ACTIONS,
        "items": items,
        "next_cursor": next_cursor,
        "next_query": urlencode({**filters, "cursor": next_cursor or ""}),
        "export_query": urlencode(filters),
        "field_errors": field_errors,
        "problem": problem,
        "details_text": details_text,
    }
    status = 422 if field_errors else 200
    return render(request, "audit/page.html", context, status_code=status)


@router.get("/export.csv", include_in_schema=False)
async def export(
    client: Annotated[Api, Depends(api)],
    actor: str = "",
    action: str = "",
    address: str = "",
    start: str = "",
    end: str = "",
) -> Response:
    """The search as the audit service's CSV (UTF-8 with BOM); the service records the export."""
    params, errors = api_params(_values(actor, action, address, start, end), client.session.timezone, _bad_time(client))
    if errors:
        refused = [{"field": FIELDS[k], "reason": v} for k, v in errors.items()]
        raise UpstreamProblem("console", 422, "Unprocessable", "", errors=refused)
    answer = await client.send("audit", "GET", "/v1/audit/export.csv", params=params)
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": answer.headers.get("content-disposition", 'attachment; filename="audit.csv"')},
    )
