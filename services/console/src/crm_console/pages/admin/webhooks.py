"""Webhooks over the notifications service: subscriptions (create, change the receiver URL, event
types and description with If-Match, enable or disable), each with
its deliveries (every attempt's status code and error) and the replay of a dead delivery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.admin.forms import comma_list, form_of, if_match, loose
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/webhooks")

STATUSES = ("", "pending", "delivered", "dead")
PAGE_SIZE = 50


async def _list(
    request: Request,
    client: Api,
    done: str = "",
    values: dict[str, Any] | None = None,
    problem: UpstreamProblem | None = None,
) -> HTMLResponse:
    page = await client.get("notifications", "/v1/webhooks", params={"limit": 100})
    context = {
        "items": page["items"],
        "done": done,
        "values": loose(values or {"event_types": "crm.*"}),
        "field_errors": problem.field_errors() if problem else {},
        "problem": problem,
    }
    return render(request, "admin/webhooks.html", context, status_code=problem.status if problem else 200)


def _fields(form: Any) -> dict[str, Any]:
    """A subscription's URL, event types and description as the form gives them (create and edit)."""
    return {
        "url": str(form.get("url", "")).strip(),
        "event_types": comma_list(str(form.get("event_types", ""))),
        "description": str(form.get("description", "")).strip() or None,
    }


@router.get("", include_in_schema=False)
async def webhooks(request: Request, client: Annotated[Api, Depends(api)], done: str = "") -> HTMLResponse:
    return await _list(request, client, done)


@router.post("", include_in_schema=False)
async def create(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = {**_fields(form), "enabled": True}
    event_types = body["event_types"]
    try:
        created = (await client.send("notifications", "POST", "/v1/webhooks", json=body)).json()
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return await _list(request, client, values={**body, "event_types": ", ".join(event_types)}, problem=problem)
    # The signing secret is shown once, on this answer (the service never returns it again).
    return await _detail(request, client, created["id"], secret=created.get("secret"))


async def _detail(
    request: Request,
    client: Api,
    subscription_id: str,
    status: str = "",
    done: str = "",
    secret: str | None = None,
    values: dict[str, Any] | None = None,
    problem: UpstreamProblem | None = None,
) -> HTMLResponse:
    hook = await client.get("notifications", f"/v1/webhooks/{subscription_id}")
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if status in STATUSES and status:
        params["status"] = status
    deliveries = await client.get("notifications", f"/v1/webhooks/{subscription_id}/deliveries", params=params)
    context = {
        "hook": hook,
        "deliveries": deliveries["items"],
        "status": status,
        "statuses": STATUSES,
        "done": done,
        "secret": secret,
        "values": loose(values or {**hook, "event_types": ", ".join(hook["event_types"])}),
        "field_errors": problem.field_errors() if problem else {},
        "problem": problem,
    }
    return render(request, "admin/webhook.html", context, status_code=problem.status if problem else 200)


@router.get("/{subscription_id}", include_in_schema=False)
async def detail(
    request: Request, subscription_id: str, client: Annotated[Api, Depends(api)], status: str = "", done: str = ""
) -> HTMLResponse:
    return await _detail(request, client, subscription_id, status, done)


@router.get("/{subscription_id}/deliveries/{delivery_id}", include_in_schema=False)
async def delivery(
    request: Request, subscription_id: str, delivery_id: str, client: Annotated[Api, Depends(api)]
) -> HTMLResponse:
    hook = await client.get("notifications", f"/v1/webhooks/{subscription_id}")
    found = await client.get("notifications", f"/v1/webhooks/{subscription_id}/deliveries/{delivery_id}")
    return render(request, "admin/delivery.html", {"hook": hook, "delivery": found})


@router.post("/{subscription_id}/deliveries/{delivery_id}/replay", include_in_schema=False)
async def replay(subscription_id: str, delivery_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    await client.send("notifications", "POST", f"/v1/webhooks/{subscription_id}/deliveries/{delivery_id}/replay")
    return RedirectResponse(f"/admin/webhooks/{subscription_id}?done=replayed", status_code=303)


@router.post("/{subscription_id}/enabled", include_in_schema=False)
async def set_enabled(request: Request, subscription_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = {"enabled": form.get("enabled") == "true"}
    await client.send(
        "notifications", "PATCH", f"/v1/webhooks/{subscription_id}", json=body, headers=if_match(form.get("version", 0))
    )
    return RedirectResponse(f"/admin/webhooks/{subscription_id}?done=saved", status_code=303)


@router.post("/{subscription_id}/edit", include_in_schema=False)
async def edit(request: Request, subscription_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = _fields(form)
    event_types = body["event_types"]
    try:
        await client.send(
            "notifications",
            "PATCH",
            f"/v1/webhooks/{subscription_id}",
            json=body,
            headers=if_match(form.get("version", 0)),
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        values = {**body, "event_types": ", ".join(event_types), "version": form.get("version")}
        return await _detail(request, client, subscription_id, values=values, problem=problem)
    return RedirectResponse(f"/admin/webhooks/{subscription_id}?done=saved", status_code=303)
