"""Pool rules over the pool service: list, create, change (``PATCH`` with If-Match), delete
(``DELETE`` with If-Match; the rule's history stays with the service), and before
saving, the preview (``POST /v1/pool/preview``): which customers the draft rule would warn or take
back into the public pool, and why."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.admin.forms import comma_list, departments, form_of, if_match, loose, number_or_none
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render, zone

router = APIRouter(prefix="/pool-rules")

SCOPES = ("department", "company")
PREVIEW_LIMIT = 50
DEFAULTS: dict[str, Any] = {"enabled": True, "warn_days": 3, "cooldown_days": 30, "claim_scope": "department"}


def _rule(form: dict[str, Any]) -> dict[str, Any]:
    """The RuleCreate body from the form (numbers left as typed when they are not numbers, so the
    service names the field)."""
    return {
        "name": str(form.get("name", "")).strip(),
        "enabled": bool(form.get("enabled")),
        "no_interaction_days": number_or_none(str(form.get("no_interaction_days", ""))),
        "no_won_days": number_or_none(str(form.get("no_won_days", ""))),
        "warn_days": number_or_none(str(form.get("warn_days", ""))) or 0,
        "cooldown_days": number_or_none(str(form.get("cooldown_days", ""))) or 0,
        "claim_scope": form.get("claim_scope") or "department",
        "exempt_tags": comma_list(str(form.get("exempt_tags", ""))),
        "exempt_stage_id": str(form.get("exempt_stage_id", "")).strip() or None,
        "max_held": number_or_none(str(form.get("max_held", ""))),
        "department_path": form.get("department_path") or None,
    }


def _moment(day: str, timezone: str) -> str | None:
    """A day picked in the form as the end of that day in the user's zone (ISO 8601), to look ahead."""
    try:
        picked = date.fromisoformat(day)
    except ValueError:
        return None
    return datetime.combine(picked, time(23, 59), tzinfo=zone(timezone)).isoformat()


@router.get("", include_in_schema=False)
async def rules(request: Request, client: Annotated[Api, Depends(api)], done: str = "") -> HTMLResponse:
    items = await client.get("pool", "/v1/pool/rules")
    return render(request, "admin/pool_rules.html", {"items": items, "done": done})


async def _form(
    request: Request,
    client: Api,
    rule: dict[str, Any] | None,
    values: dict[str, Any],
    done: str = "",
    problem: UpstreamProblem | None = None,
) -> HTMLResponse:
    context = {
        "rule": rule,
        "values": loose(values),
        "scopes": SCOPES,
        "departments": await departments(client),
        "done": done,
        "field_errors": problem.field_errors() if problem else {},
        "problem": problem,
    }
    return render(request, "admin/pool_rule_edit.html", context, status_code=problem.status if problem else 200)


@router.get("/new", include_in_schema=False)
async def new_rule(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _form(request, client, None, dict(DEFAULTS))


@router.post("/preview", include_in_schema=False)
async def preview(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    """The preview table (an htmx fragment under the form); field errors are shown in it too."""
    form = await form_of(request)
    body: dict[str, Any] = {"rule": _rule(form), "limit": PREVIEW_LIMIT}
    at = _moment(str(form.get("preview_at", "")), client.session.timezone)
    if at:
        body["at"] = at
    try:
        answer = await client.send("pool", "POST", "/v1/pool/preview", json=body)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        errors = {k.removeprefix("rule."): v for k, v in problem.field_errors().items()}
        return render(request, "admin/pool_preview.html", {"preview": None, "errors": errors})
    return render(request, "admin/pool_preview.html", {"preview": answer.json(), "errors": {}, "limit": PREVIEW_LIMIT})


@router.post("/new", include_in_schema=False)
async def create_rule(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    body = _rule(await form_of(request))
    try:
        created = await client.send("pool", "POST", "/v1/pool/rules", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        if problem.status == 409:
            problem.errors = problem.errors or [{"field": "department_path", "reason": client.problem_text(problem)}]
        return await _form(request, client, None, body, problem=problem)
    return RedirectResponse(f"/admin/pool-rules/{created.json()['rule_id']}?done=created", status_code=303)


@router.get("/{rule_id}", include_in_schema=False)
async def edit_rule(
    request: Request, rule_id: str, client: Annotated[Api, Depends(api)], done: str = ""
) -> HTMLResponse:
    rule = await client.get("pool", f"/v1/pool/rules/{rule_id}")
    return await _form(request, client, rule, rule, done)


@router.post("/{rule_id}", include_in_schema=False)
async def save_rule(request: Request, rule_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = _rule(form)
    patch = {k: v for k, v in body.items() if k != "department_path"}  # a rule keeps its department
    try:
        await client.send(
            "pool", "PATCH", f"/v1/pool/rules/{rule_id}", json=patch, headers=if_match(form.get("version", 0))
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        rule = await client.get("pool", f"/v1/pool/rules/{rule_id}")
        return await _form(request, client, rule, {**body, "version": form.get("version")}, problem=problem)
    return RedirectResponse(f"/admin/pool-rules/{rule_id}?done=saved", status_code=303)


@router.post("/{rule_id}/delete", include_in_schema=False)
async def delete_rule(request: Request, rule_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    try:
        await client.send("pool", "DELETE", f"/v1/pool/rules/{rule_id}", headers=if_match(form.get("version", 0)))
    except UpstreamProblem as problem:
        if problem.status not in (403, 409):  # a manager's rule outside their subtree, or a refusal: on the form
            raise
        rule = await client.get("pool", f"/v1/pool/rules/{rule_id}")
        return await _form(request, client, rule, rule, problem=problem)
    return RedirectResponse("/admin/pool-rules?done=deleted", status_code=303)
