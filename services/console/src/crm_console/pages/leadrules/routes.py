"""The lead pool's assignment rules over the leads service's ``/v1/leads/assignment-rules``
(``leads:rules``): the list in the order the rules are tried, a new rule, one rule's edit form
(``PATCH`` with If-Match; stale: the 412 page) and its deletion (If-Match).

A rule's users are user ids, comma-separated (no person picker yet); the service checks they are
active users in the rule's department scope and names the one at fault (``users[1]``), shown at the
users input like every other refusal at its own input.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from crm_console.pages.admin.access import requires
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render
from crm_platform.permissions import Permission

router = APIRouter(prefix="/leadrules", dependencies=[Depends(requires(Permission.leads_rules))])

CONDITION_FIELDS = ("any", "region", "industry", "source", "campaign_id")
METHODS = ("round_robin", "least_loaded")
Document = dict[str, Any]


def split(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\n,，;；]+", text or "") if part.strip()]


def number(text: str) -> int | str | None:
    """An integer input: empty is none, a non-number goes as typed (the service names it)."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def rule_body(form: FormData) -> Document:
    field = str(form.get("condition.field") or "any")
    body: Document = {
        "name": str(form.get("name") or "").strip(),
        "department_id": str(form.get("department_id") or "").strip(),
        "condition": {"field": field, "values": split(str(form.get("condition.values") or ""))},
        "method": str(form.get("method") or "round_robin"),
        "users": split(str(form.get("users") or "")),
        "capacity": number(str(form.get("capacity") or "")),
        "enabled": bool(form.get("enabled")),
    }
    position = number(str(form.get("position") or ""))
    if position is not None:
        body["position"] = position
    return body


def rule_values(rule: Document) -> dict[str, str]:
    condition = rule.get("condition") or {}
    return {
        "name": str(rule.get("name") or ""),
        "position": str(rule.get("position", "")),
        "department_id": str(rule.get("department_id") or ""),
        "condition.field": str(condition.get("field") or "any"),
        "condition.values": ", ".join(condition.get("values") or []),
        "method": str(rule.get("method") or "round_robin"),
        "users": ", ".join(rule.get("users") or []),
        "capacity": "" if rule.get("capacity") is None else str(rule["capacity"]),
        "enabled": "1" if rule.get("enabled", True) else "",
    }


def input_errors(problem: UpstreamProblem) -> dict[str, str]:
    """``users[1]`` → users, ``condition`` → its values: each refusal at the form's input."""
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        key = name.split("[", 1)[0].removeprefix("body.")
        if key == "condition":
            key = "condition.values"
        out.setdefault(key, reason)
    return out


def _base() -> Document:
    return {"condition_fields": CONDITION_FIELDS, "methods": METHODS, "field_errors": {}, "problem": None}


async def _list(request: Request, client: Api, status_code: int = 200, **extra: Any) -> HTMLResponse:
    rules = await client.get("leads", "/v1/leads/assignment-rules")
    # The person's own department (a path of department ids) as the new rule's default scope.
    user = client.session.user
    department = ((user.department_path if user else None) or "").rstrip("/").rsplit("/", 1)[-1]
    context = _base() | {
        "rules": rules.get("items") or [],
        "values": {"enabled": "1", "position": "100", "department_id": department},
        "done": request.query_params.get("done", ""),
    }
    return render(request, "leadrules/list.html", context | extra, status_code=status_code)


@router.get("", include_in_schema=False)
async def rules_page(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _list(request, client)


@router.post("", include_in_schema=False)
async def create_rule(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    try:
        await client.send("leads", "POST", "/v1/leads/assignment-rules", json=rule_body(form))
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        values = {k: str(v) for k, v in form.items()}
        return await _list(
            request, client, problem.status, values=values, field_errors=input_errors(problem), problem=problem
        )
    return RedirectResponse("/leadrules?done=created", status_code=303)


async def _edit(request: Request, client: Api, rule_id: str, status_code: int = 200, **extra: Any) -> HTMLResponse:
    rule = await client.get("leads", f"/v1/leads/assignment-rules/{rule_id}")
    context = _base() | {"rule": rule, "values": rule_values(rule)}
    return render(request, "leadrules/edit.html", context | extra, status_code=status_code)


@router.get("/{rule_id}", include_in_schema=False)
async def edit_page(request: Request, rule_id: str, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _edit(request, client, rule_id)


@router.post("/{rule_id}", include_in_schema=False)
async def change_rule(request: Request, rule_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    headers = {"If-Match": f'"{form.get("version") or ""}"'}
    try:
        await client.send(
            "leads", "PATCH", f"/v1/leads/assignment-rules/{rule_id}", json=rule_body(form), headers=headers
        )
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise  # 412: the "someone changed this; reload" page
        values = {k: str(v) for k, v in form.items()}
        return await _edit(
            request, client, rule_id, problem.status, values=values, field_errors=input_errors(problem), problem=problem
        )
    return RedirectResponse("/leadrules?done=saved", status_code=303)


@router.post("/{rule_id}/delete", include_in_schema=False)
async def delete_rule(request: Request, rule_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    headers = {"If-Match": f'"{form.get("version") or ""}"'}
    await client.send("leads", "DELETE", f"/v1/leads/assignment-rules/{rule_id}", headers=headers)
    return RedirectResponse("/leadrules?done=deleted", status_code=303)
