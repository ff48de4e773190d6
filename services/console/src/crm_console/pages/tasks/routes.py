"""My follow-up tasks over the interactions service's task views (``GET /v1/tasks?view=``):
due today, overdue, this week (in the user's time zone). Completing or rescheduling a task answers
with the list as it now is, so the change shows at once (htmx swaps the list; without JavaScript
the page reloads)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console import customfields
from crm_console.customer_names import customer_names
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, is_htmx, render, zone

router = APIRouter(prefix="/tasks")

View = Literal["today", "overdue", "week"]
VIEWS: tuple[View, ...] = ("today", "overdue", "week")
PAGE_SIZE = 100
Document = dict[str, Any]


def local_input(value: str, timezone: str) -> str:
    """An API timestamp as a ``datetime-local`` input's value in the user's zone."""
    moment = datetime.fromisoformat(value)
    return moment.astimezone(zone(timezone)).strftime("%Y-%m-%dT%H:%M")


async def _tasks(client: Api, view: View) -> list[Document]:
    params = {"view": view, "scope": "mine", "status": "open", "tz": client.session.timezone, "limit": PAGE_SIZE}
    page = await client.get("interactions", "/v1/tasks", params=params)
    items: list[Document] = page["items"]
    return items


async def _list_context(client: Api, view: View) -> dict[str, Any]:
    tz = client.session.timezone
    items = await _tasks(client, view)
    language = client.session.language
    try:
        fields = await customfields.definitions(client, "tasks", include_archived=True)
    except UpstreamProblem:  # the list itself came back: its custom values are only extra lines
        fields = []
    return {
        "task_lines": lambda task: customfields.lines(fields, task.get("custom"), language),
        "view": view,
        "views": VIEWS,
        "items": items,
        "due_inputs": {task["id"]: local_input(task["due_at"], tz) for task in items},
        "customer_names": await customer_names(client, (task.get("customer_id") for task in items)),
        "done": None,
        "rescheduled": None,
        "problem_task": None,
        "message": None,
        "field_errors": {},
    }


@router.get("", include_in_schema=False)
async def tasks_page(request: Request, client: Annotated[Api, Depends(api)], view: str = "today") -> HTMLResponse:
    chosen: View = view if view in VIEWS else "today"
    return render(request, "tasks/page.html", await _list_context(client, chosen))


async def _after_change(
    request: Request, client: Api, view: View, changes: dict[str, Any], status_code: int = 200
) -> Response:
    if not is_htmx(request) and status_code == 200:
        return RedirectResponse(f"/tasks?{urlencode({'view': view})}", status_code=303)
    context = await _list_context(client, view) | changes
    template = "tasks/list.html" if is_htmx(request) else "tasks/page.html"
    return render(request, template, context, status_code=status_code)


def _view(value: str) -> View:
    return value if value in VIEWS else "today"


@router.post("/{task_id}/complete", include_in_schema=False)
async def complete(
    request: Request,
    task_id: str,
    client: Annotated[Api, Depends(api)],
    version: Annotated[int, Form()],
    title: Annotated[str, Form()] = "",
    view: Annotated[str, Form()] = "today",
) -> Response:
    try:
        await client.send("interactions", "POST", f"/v1/tasks/{task_id}/complete", headers=_if_match(version))
    except UpstreamProblem as problem:
        if problem.status not in (409, 412):
            raise
        message = "tasks.changed" if problem.status == 412 else "tasks.refused"
        return await _after_change(request, client, _view(view), {"message": message, "problem_task": task_id})
    return await _after_change(request, client, _view(view), {"done": title})


@router.post("/{task_id}/reschedule", include_in_schema=False)
async def reschedule(
    request: Request,
    task_id: str,
    client: Annotated[Api, Depends(api)],
    version: Annotated[int, Form()],
    due_at: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    view: Annotated[str, Form()] = "today",
) -> Response:
    chosen = _view(view)
    try:
        local = datetime.fromisoformat(due_at).replace(tzinfo=zone(client.session.timezone))
    except ValueError:
        errors = {"due_at": "tasks.bad_date"}
        return await _after_change(request, client, chosen, {"field_errors": errors, "problem_task": task_id}, 422)
    body = {"due_at": local.isoformat()}
    try:
        await client.send(
            "interactions", "POST", f"/v1/tasks/{task_id}/reschedule", json=body, headers=_if_match(version)
        )
    except UpstreamProblem as problem:
        if problem.status == 422:
            reason = problem.field_errors().get("due_at") or client.problem_text(problem)
            changes = {"field_errors": {"due_at": reason}, "problem_task": task_id}
            return await _after_change(request, client, chosen, changes, 422)
        if problem.status not in (409, 412):
            raise
        message = "tasks.changed" if problem.status == 412 else "tasks.refused"
        return await _after_change(request, client, chosen, {"message": message, "problem_task": task_id})
    when = local.strftime("%Y-%m-%d %H:%M")
    return await _after_change(request, client, chosen, {"rescheduled": {"title": title, "when": when}})


def _if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}
