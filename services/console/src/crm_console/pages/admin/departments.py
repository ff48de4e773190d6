"""Departments over the directory, as the tree people think in: create under a parent, rename
(``PATCH`` with If-Match, the version read from the flat list), move under another parent, delete
an empty one (the directory refuses, with 409 and why, while users or sub-departments are in it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.admin.forms import flatten, form_of, if_match, loose
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/departments")


async def _page(
    request: Request,
    client: Api,
    done: str = "",
    values: dict[str, Any] | None = None,
    problem: UpstreamProblem | None = None,
    failed: str = "",
) -> HTMLResponse:
    tree = await client.get("directory", "/v1/departments/tree")
    versions: dict[str, int] = {}
    params: dict[str, Any] = {"limit": 200}
    while True:  # every department's version, for If-Match on rename
        page = await client.get("directory", "/v1/departments", params=params)
        versions |= {d["id"]: d["version"] for d in page["items"]}
        if not page.get("next_cursor"):
            break
        params["cursor"] = page["next_cursor"]
    context = {
        "tree": tree,
        "flat": flatten(tree),
        "versions": versions,
        "done": done,
        "values": loose(values or {}),
        "field_errors": problem.field_errors() if problem else {},
        "problem": problem,
        "failed": failed,  # which form the problem belongs to: "create" or a department id
    }
    return render(request, "admin/departments.html", context, status_code=problem.status if problem else 200)


@router.get("", include_in_schema=False)
async def tree(request: Request, client: Annotated[Api, Depends(api)], done: str = "") -> HTMLResponse:
    return await _page(request, client, done)


@router.post("", include_in_schema=False)
async def create(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = {
        "name": str(form.get("name", "")).strip(),
        "id": str(form.get("id", "")).strip() or None,
        "parent_id": form.get("parent_id") or None,
    }
    try:
        await client.send("directory", "POST", "/v1/departments", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        if problem.status == 409:
            problem.errors = [{"field": "id", "reason": client.problem_text(problem)}]
        return await _page(request, client, values=body, problem=problem, failed="create")
    return RedirectResponse("/admin/departments?done=created", status_code=303)


@router.post("/{department_id}/rename", include_in_schema=False)
async def rename(request: Request, department_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = {"name": str(form.get("name", "")).strip()}
    try:
        await client.send(
            "directory",
            "PATCH",
            f"/v1/departments/{department_id}",
            json=body,
            headers=if_match(form.get("version", 0)),
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return await _page(request, client, problem=problem, failed=department_id)
    return RedirectResponse("/admin/departments?done=renamed", status_code=303)


@router.post("/{department_id}/move", include_in_schema=False)
async def move(request: Request, department_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    try:
        await client.send(
            "directory",
            "POST",
            f"/v1/departments/{department_id}/move",
            json={"parent_id": form.get("parent_id") or None},
        )
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        problem.errors = problem.errors or [{"field": "parent_id", "reason": client.problem_text(problem)}]
        return await _page(request, client, problem=problem, failed=department_id)
    return RedirectResponse("/admin/departments?done=moved", status_code=303)


@router.post("/{department_id}/delete", include_in_schema=False)
async def delete(request: Request, department_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    try:
        await client.send(
            "directory", "DELETE", f"/v1/departments/{department_id}", headers=if_match(form.get("version", 0))
        )
    except UpstreamProblem as problem:
        if problem.status != 409:  # not empty: shown at the department, with the service's reason
            raise
        return await _page(request, client, problem=problem, failed=department_id)
    return RedirectResponse("/admin/departments?done=deleted", status_code=303)
