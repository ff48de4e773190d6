"""The inbox over the notifications service: ``GET /v1/notifications`` (newest first, cursor pages),
``POST .../{id}/read``, ``POST .../read-all``, ``GET .../unread-count`` and the email preferences
(``GET``/``PUT /v1/me/notification-preferences``).

The unread badge in the header is an htmx fragment polled every 15 s (``/inbox/badge``), and
refreshed at once when this page marks something read (the ``inbox-changed`` event). Polling
rather than server-sent events: the notifications service has no push API, so an SSE stream would
poll it anyway, while holding one connection per open tab on the console; a 15 s poll is one cheap
counter read, survives proxies and restarts, and goes through the same session and token refresh
as every other request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api, api, is_htmx, render

router = APIRouter(prefix="/inbox")

PAGE_SIZE = 20
FILTERS = ("", "unread")
# The kinds the notifications service knows (its Kind enum), in the order a person reads them.
KINDS = (
    "task_reminder",
    "task_overdue",
    "customer_assigned",
    "customer_recycle_warning",
    "lead_recycle_warning",
    "customer_released",
    "opportunity_assigned",
    "big_deal_won",
    "feedback_assigned",
    "webhook_disabled",
    "export_approval_requested",
    "export_approved",
    "export_rejected",
    "lead_assigned",
    "lead_conversion_failed",
    "quotation_approval_requested",
    "quotation_approved",
    "quotation_rejected",
    "contract_instalment_overdue",
    "ticket_assigned",
    "ticket_escalated",
    "ticket_sla_breached",
)
CHANGED = {"HX-Trigger": "inbox-changed"}


async def _page(client: Api, show: str, cursor: str) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if show == "unread":
        params["filter"] = "unread"
    if cursor:
        params["cursor"] = cursor
    page: dict[str, Any] = await client.get("notifications", "/v1/notifications", params=params)
    return page


@router.get("", include_in_schema=False)
async def inbox(
    request: Request, client: Annotated[Api, Depends(api)], show: str = "", cursor: str = ""
) -> HTMLResponse:
    show = show if show in FILTERS else ""
    page = await _page(client, show, cursor)
    unread = (await client.get("notifications", "/v1/notifications/unread-count"))["unread"]
    context = {"items": page["items"], "next_cursor": page.get("next_cursor"), "show": show, "unread": unread}
    return render(request, "inbox/list.html", context)


@router.get("/rows", include_in_schema=False)
async def rows(
    request: Request, client: Annotated[Api, Depends(api)], show: str = "", cursor: str = ""
) -> HTMLResponse:
    page = await _page(client, show if show in FILTERS else "", cursor)
    context = {"items": page["items"], "next_cursor": page.get("next_cursor"), "show": show}
    return render(request, "inbox/rows.html", context)


@router.get("/badge", include_in_schema=False)
async def badge(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    """The header's unread count (polled by base.html). A poll that fails leaves the badge empty
    rather than replacing the page the person is reading with an error page."""
    try:
        unread = (await client.get("notifications", "/v1/notifications/unread-count"))["unread"]
    except (UpstreamProblem, UpstreamUnavailable):
        return HTMLResponse("")
    return render(request, "inbox/badge.html", {"unread": unread})


@router.post("/{notification_id}/read", include_in_schema=False)
async def mark_read(request: Request, notification_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    response = await client.send("notifications", "POST", f"/v1/notifications/{notification_id}/read")
    if not is_htmx(request):
        return RedirectResponse("/inbox", status_code=303)
    return render(request, "inbox/row.html", {"n": response.json()}, headers=CHANGED)


@router.post("/read-all", include_in_schema=False)
async def mark_all_read(
    request: Request, client: Annotated[Api, Depends(api)], show: Annotated[str, Form()] = ""
) -> Response:
    await client.send("notifications", "POST", "/v1/notifications/read-all")
    return RedirectResponse("/inbox?show=unread" if show == "unread" else "/inbox", status_code=303)


@router.get("/preferences", include_in_schema=False)
async def preferences(request: Request, client: Annotated[Api, Depends(api)], saved: bool = False) -> HTMLResponse:
    current = await client.get("notifications", "/v1/me/notification-preferences")
    return render(request, "inbox/preferences.html", {"kinds": KINDS, "email": current["email"], "saved": saved})


@router.post("/preferences", include_in_schema=False)
async def save_preferences(
    request: Request, client: Annotated[Api, Depends(api)], email: Annotated[list[str] | None, Form()] = None
) -> Response:
    """Every kind is sent: a checkbox left unticked is email off (forms do not send those)."""
    chosen = set(email or [])
    body = {"email": {kind: kind in chosen for kind in KINDS}}
    await client.send("notifications", "PUT", "/v1/me/notification-preferences", json=body)
    return RedirectResponse("/inbox/preferences?saved=true", status_code=303)
