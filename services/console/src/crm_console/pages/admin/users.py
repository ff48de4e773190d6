"""Users over the directory: list (search, role, active), create, change name, roles and
department (``PATCH /v1/users/{id}`` with If-Match), deactivate and reactivate, and set a new
password for someone who lost theirs (``POST /v1/users/{id}/password``: it also signs them out
everywhere)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.admin.forms import departments, form_of, if_match, listed, loose
from crm_console.pages.admin.roles import role_options
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/users")

LANGUAGES = ("zh-CN", "en")
PAGE_SIZE = 25


@router.get("", include_in_schema=False)
async def users(
    request: Request,
    client: Annotated[Api, Depends(api)],
    q: str = "",
    role: str = "",
    active: str = "",
    cursor: str = "",
) -> HTMLResponse:
    options = await role_options(client)
    known = {role_id for role_id, _ in options}
    filters = {k: v for k, v in {"q": q, "role": role if role in known else "", "active": active}.items() if v}
    params: dict[str, Any] = {**filters, "limit": PAGE_SIZE, "sort": "name"}
    if cursor:
        params["cursor"] = cursor
    page = await client.get("directory", "/v1/users", params=params)
    context = {
        "items": page["items"],
        "next_cursor": page.get("next_cursor"),
        "filters": {"q": q, "role": role, "active": active},
        "next_query": urlencode({**filters, "cursor": page.get("next_cursor") or ""}),
        "roles": options,
        "role_labels": dict(options),
    }
    return render(request, "admin/users.html", context)


async def _new_form(
    request: Request, client: Api, values: dict[str, Any], problem: UpstreamProblem | None = None
) -> HTMLResponse:
    context = {
        "values": loose(values),
        "roles": await role_options(client),
        "languages": LANGUAGES,
        "departments": await departments(client),
        "field_errors": problem.field_errors() if problem else {},
        "problem": problem,
    }
    return render(request, "admin/user_new.html", context, status_code=problem.status if problem else 200)


@router.get("/new", include_in_schema=False)
async def new_user(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _new_form(request, client, {"roles": ["rep"], "language": "zh-CN"})


@router.post("/new", include_in_schema=False)
async def create_user(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    values = {
        "email": str(form.get("email", "")).strip(),
        "name": str(form.get("name", "")).strip(),
        "phone": str(form.get("phone", "")).strip() or None,
        "language": form.get("language") or "zh-CN",
        "roles": listed(form.get("roles")),
        "department_id": form.get("department_id", ""),
        "password": str(form.get("password", "")) or None,
    }
    try:
        created = await client.send("directory", "POST", "/v1/users", json=values)
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        if problem.status == 409:  # the email is taken: say so at the email field
            problem.errors = [{"field": "email", "reason": client.problem_text(problem)}]
        return await _new_form(request, client, {**values, "password": ""}, problem)
    return RedirectResponse(f"/admin/users/{created.json()['id']}?done=created", status_code=303)


async def _edit_form(
    request: Request,
    client: Api,
    user_id: str,
    done: str = "",
    values: dict[str, Any] | None = None,
    problem: UpstreamProblem | None = None,
    failed: str = "",
) -> HTMLResponse:
    record = await client.get("directory", f"/v1/users/{user_id}")
    context = {
        "record": record,
        "values": loose(values or record),
        "roles": await role_options(client),
        "departments": await departments(client),
        "done": done,
        "field_errors": problem.field_errors() if problem else {},
        "problem": problem,
        "failed": failed,  # which form the problem belongs to: "" (the profile) or "password"
    }
    return render(request, "admin/user_edit.html", context, status_code=problem.status if problem else 200)


@router.get("/{user_id}", include_in_schema=False)
async def edit_user(
    request: Request, user_id: str, client: Annotated[Api, Depends(api)], done: str = ""
) -> HTMLResponse:
    return await _edit_form(request, client, user_id, done)


@router.post("/{user_id}", include_in_schema=False)
async def save_user(request: Request, user_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    values = {
        "name": str(form.get("name", "")).strip(),
        "roles": listed(form.get("roles")),
        "department_id": form.get("department_id", ""),
    }
    try:
        await client.send(
            "directory", "PATCH", f"/v1/users/{user_id}", json=values, headers=if_match(form.get("version", 0))
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return await _edit_form(
            request, client, user_id, values={**values, "version": form.get("version")}, problem=problem
        )
    return RedirectResponse(f"/admin/users/{user_id}?done=saved", status_code=303)


@router.post("/{user_id}/deactivate", include_in_schema=False)
async def deactivate(request: Request, user_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = {"reason": str(form.get("reason", "")).strip() or None}
    await client.send("directory", "POST", f"/v1/users/{user_id}/deactivate", json=body)
    return RedirectResponse(f"/admin/users/{user_id}?done=deactivated", status_code=303)


@router.post("/{user_id}/reactivate", include_in_schema=False)
async def reactivate(user_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    await client.send("directory", "POST", f"/v1/users/{user_id}/reactivate")
    return RedirectResponse(f"/admin/users/{user_id}?done=reactivated", status_code=303)


@router.post("/{user_id}/password", include_in_schema=False)
async def set_password(request: Request, user_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    """An administrator sets a new password (the user lost theirs); the service checks the policy
    and revokes the user's refresh tokens, so every open session of theirs ends."""
    form = await form_of(request)
    body = {"new_password": str(form.get("new_password", ""))}
    try:
        await client.send("directory", "POST", f"/v1/users/{user_id}/password", json=body)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return await _edit_form(request, client, user_id, problem=problem, failed="password")
    return RedirectResponse(f"/admin/users/{user_id}?done=password", status_code=303)
