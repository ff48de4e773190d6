"""Roles over the directory (``/v1/roles``, permission ``roles:manage``): list, define a role, change
what it grants (``PATCH`` with If-Match) and delete one nobody holds.

A role is the permissions it grants (``module:action``, as check boxes grouped by module), per
module the data scope it reaches (own, department, department and below, all) and per module
the fields it hides or makes read-only (field-level permissions). Custom fields' rules
(``custom.<key>``) set through the API are kept as they are when the form saves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.admin.access import requires
from crm_console.pages.admin.forms import form_of, if_match, listed, loose
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render
from crm_platform.fieldaccess import PROTECTED_FIELDS
from crm_platform.permissions import SCOPE_MODULES, SCOPES, Permission

router = APIRouter(prefix="/roles", dependencies=[Depends(requires(Permission.roles_manage))])

ACCESS = ("write", "read", "hidden")


def permission_groups() -> list[tuple[str, list[str]]]:
    """Every permission, grouped by its module (the part before the colon), in declaration order."""
    groups: dict[str, list[str]] = {}
    for permission in Permission:
        groups.setdefault(permission.value.split(":", 1)[0], []).append(permission.value)
    return list(groups.items())


def field_groups() -> list[tuple[str, list[str]]]:
    return [(module, sorted(fields)) for module, fields in PROTECTED_FIELDS.items()]


def role_label(role: Mapping[str, Any], language: str) -> str:
    names = role.get("names") or {}
    return str(names.get(language) or names.get("en") or role.get("id"))


async def role_options(client: Api) -> list[tuple[str, str]]:
    """The defined roles as (id, name in the user's language): for the user forms and filters."""
    found: list[dict[str, Any]] = await client.get("directory", "/v1/roles")
    return [(r["id"], role_label(r, client.session.language)) for r in found]


def _body(form: dict[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The role body from the form; custom-field rules the form does not show are kept."""
    fields: dict[str, dict[str, str]] = {}
    stored: Mapping[str, Mapping[str, str]] = (current or {}).get("fields") or {}
    for module, names in field_groups():
        chosen = {name: form.get(f"field:{module}:{name}") for name in names}
        rules = {name: access for name, access in chosen.items() if access in ("hidden", "read")}
        kept = {k: v for k, v in stored.get(module, {}).items() if k.startswith("custom.")}
        if rules or kept:
            fields[module] = {**kept, **rules}
    return {
        "names": {"zh-CN": str(form.get("name_zh", "")).strip(), "en": str(form.get("name_en", "")).strip()},
        "description": str(form.get("description", "")).strip() or None,
        "permissions": listed(form.get("permissions")),
        "scopes": {m: str(form[f"scope:{m}"]) for m in SCOPE_MODULES if form.get(f"scope:{m}")},
        "fields": fields,
    }


def _form_errors(problem: UpstreamProblem) -> dict[str, str]:
    """The service's field names as the form's: names.en → name_en, scopes.pool → scope:pool,
    fields.customers.phones → field:customers:phones, permissions[3] → permissions."""
    out: dict[str, str] = {}
    for field, reason in problem.field_errors().items():
        if field.startswith("names."):
            key = "name_zh" if field.endswith("zh-CN") else "name_en"
        elif field.startswith("scopes."):
            key = "scope:" + field.removeprefix("scopes.")
        elif field.startswith("fields."):
            key = "field:" + field.removeprefix("fields.").replace(".", ":", 1)
        elif field.startswith("permissions"):
            key = "permissions"
        else:
            key = field
        out.setdefault(key, reason)
    return out


def _values(role: Mapping[str, Any]) -> dict[str, Any]:
    """A role as the form's values."""
    names = role.get("names") or {}
    values: dict[str, Any] = {
        "id": role.get("id"),
        "version": role.get("version"),
        "name_zh": names.get("zh-CN"),
        "name_en": names.get("en"),
        "description": role.get("description"),
        "permissions": list(role.get("permissions") or []),
    }
    for module, scope in (role.get("scopes") or {}).items():
        values[f"scope:{module}"] = scope
    for module, rules in (role.get("fields") or {}).items():
        for name, access in rules.items():
            values[f"field:{module}:{name}"] = access
    return values


async def _form(
    request: Request,
    role: Mapping[str, Any] | None,
    values: dict[str, Any],
    done: str = "",
    problem: UpstreamProblem | None = None,
) -> HTMLResponse:
    context = {
        "role": role,
        "values": loose(values),
        "permission_groups": permission_groups(),
        "scope_modules": SCOPE_MODULES,
        "scopes": SCOPES,
        "field_groups": field_groups(),
        "access": ACCESS,
        "done": done,
        "field_errors": _form_errors(problem) if problem else {},
        "problem": problem,
    }
    return render(request, "admin/role_edit.html", context, status_code=problem.status if problem else 200)


@router.get("", include_in_schema=False)
async def roles(request: Request, client: Annotated[Api, Depends(api)], done: str = "") -> HTMLResponse:
    items = await client.get("directory", "/v1/roles")
    language = client.session.language
    rows = [{**r, "label": role_label(r, language)} for r in items]
    return render(request, "admin/roles.html", {"items": rows, "done": done})


@router.get("/new", include_in_schema=False)
async def new_role(request: Request) -> HTMLResponse:
    return await _form(request, None, {"permissions": ["account:self"]})


@router.post("/new", include_in_schema=False)
async def create_role(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = {"id": str(form.get("id", "")).strip(), **_body(form, None)}
    try:
        created = await client.send("directory", "POST", "/v1/roles", json=body)
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        return await _form(request, None, {**form, "permissions": body["permissions"]}, problem=problem)
    return RedirectResponse(f"/admin/roles/{created.json()['id']}?done=created", status_code=303)


@router.get("/{role_id}", include_in_schema=False)
async def edit_role(
    request: Request, role_id: str, client: Annotated[Api, Depends(api)], done: str = ""
) -> HTMLResponse:
    role = await client.get("directory", f"/v1/roles/{role_id}")
    return await _form(request, role, _values(role), done)


@router.post("/{role_id}", include_in_schema=False)
async def save_role(request: Request, role_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    role = await client.get("directory", f"/v1/roles/{role_id}")
    body = _body(form, role)
    try:
        await client.send(
            "directory", "PATCH", f"/v1/roles/{role_id}", json=body, headers=if_match(form.get("version", 0))
        )
    except UpstreamProblem as problem:
        if problem.status not in (409, 412, 422):
            raise
        values = {**form, "permissions": body["permissions"], "version": form.get("version")}
        return await _form(request, role, values, problem=problem)
    return RedirectResponse(f"/admin/roles/{role_id}?done=saved", status_code=303)


@router.post("/{role_id}/delete", include_in_schema=False)
async def delete_role(request: Request, role_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    try:
        await client.send("directory", "DELETE", f"/v1/roles/{role_id}", headers=if_match(form.get("version", 0)))
    except UpstreamProblem as problem:
        if problem.status not in (409, 412):  # held by users, built in, or changed meanwhile: on the form
            raise
        role = await client.get("directory", f"/v1/roles/{role_id}")
        return await _form(request, role, _values(role), problem=problem)
    return RedirectResponse("/admin/roles?done=deleted", status_code=303)
