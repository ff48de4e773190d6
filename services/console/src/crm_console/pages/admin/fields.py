"""Custom fields per module (``fields:manage``) over the owning service's ``/v1/fields/<module>``:
the list (archived ones too), define one, change it (``PATCH`` with If-Match) and archive it
(``DELETE`` with If-Match; stored values stay on the records). The service checks every rule and
names what it refuses (``labels.en``, ``validation.max``, ``options[1].key``...), shown at the input.

Options are typed one per line, ``key | 中文 | English``, with ``| inactive`` (or ``| 停用``) at the
end of one new writes may no longer pick; the default as a CSV cell takes it (``150000 CNY``,
``true``, ``a;b`` for a multi-choice).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.customfields import MODULE_SERVICE, definitions
from crm_console.pages.admin.access import requires
from crm_console.pages.admin.forms import comma_list, form_of, if_match, loose, number_or_none
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render
from crm_platform.customfields import FIELD_TYPES, InvalidValue, from_text, to_text
from crm_platform.permissions import Permission

router = APIRouter(prefix="/fields", dependencies=[Depends(requires(Permission.fields_manage))])

MODULES = tuple(MODULE_SERVICE)
CHOICE_TYPES = ("choice", "multi_choice")
INACTIVE = {"inactive", "停用", "off"}
TEXT_RULES = ("pattern",)
NUMBER_RULES = ("max_length", "decimals")
DECIMAL_RULES = ("min", "max")


def _module(module: str) -> str:
    if module not in MODULE_SERVICE:
        raise UpstreamProblem("console", 404, "Not Found")
    return module


def _path(module: str, key: str = "") -> str:
    return f"/v1/fields/{module}" + (f"/{key}" if key else "")


def options_text(options: list[dict[str, Any]]) -> str:
    """The options as the form's lines."""
    lines = []
    for option in options:
        labels = option.get("labels") or {}
        line = f"{option['key']} | {labels.get('zh-CN', '')} | {labels.get('en', '')}"
        lines.append(line + ("" if option.get("active", True) else " | inactive"))
    return "\n".join(lines)


def parse_options(text: str) -> list[dict[str, Any]]:
    """``key | 中文 | English [| inactive]`` per line; a short line is sent as it is, for the service
    to name what it lacks."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = [p.strip() for p in re.split(r"[|｜]", line)]
        if not any(parts):
            continue
        labels = {"zh-CN": parts[1] if len(parts) > 1 else "", "en": parts[2] if len(parts) > 2 else ""}
        option: dict[str, Any] = {"key": parts[0], "labels": labels}
        if len(parts) > 3 and parts[3].lower() in INACTIVE:
            option["active"] = False
        out.append(option)
    return out


def form_values(doc: dict[str, Any]) -> dict[str, Any]:
    """A definition as the form's inputs."""
    labels, help_ = doc.get("labels") or {}, doc.get("help") or {}
    rules = doc.get("validation") or {}
    values: dict[str, Any] = {
        "key": doc["key"],
        "type": doc["type"],
        "labels.zh-CN": labels.get("zh-CN", ""),
        "labels.en": labels.get("en", ""),
        "help.zh-CN": help_.get("zh-CN") or "",
        "help.en": help_.get("en") or "",
        "required": doc.get("required", False),
        "filterable": doc.get("filterable", False),
        "position": doc.get("position", 0),
        "default": to_text(doc, doc.get("default")),
        "options": options_text(doc.get("options") or []),
        "validation.currencies": ", ".join(rules.get("currencies") or []),
        "version": doc.get("version"),
    }
    for rule in (*TEXT_RULES, *NUMBER_RULES, *DECIMAL_RULES):
        values[f"validation.{rule}"] = "" if rules.get(rule) is None else str(rules[rule])
    return values


def definition_body(form: dict[str, Any], type_: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as the API's definition (without key and type), and errors the console itself
    finds (a default it cannot read as the type's value)."""
    validation: dict[str, Any] = {}
    for rule in TEXT_RULES + DECIMAL_RULES:
        text = str(form.get(f"validation.{rule}", "")).strip()
        if text:
            validation[rule] = text
    for rule in NUMBER_RULES:
        number = number_or_none(str(form.get(f"validation.{rule}", "")))
        if number is not None:
            validation[rule] = number
    currencies = comma_list(str(form.get("validation.currencies", "")).upper())
    if currencies:
        validation["currencies"] = currencies
    help_ = {lang: str(form.get(f"help.{lang}", "")).strip() or None for lang in ("zh-CN", "en")}
    body: dict[str, Any] = {
        "labels": {lang: str(form.get(f"labels.{lang}", "")).strip() for lang in ("zh-CN", "en")},
        "help": help_ if any(help_.values()) else None,
        "required": bool(form.get("required")),
        "filterable": bool(form.get("filterable")),
        "position": number_or_none(str(form.get("position", ""))) or 0,
        "validation": validation,
        "options": parse_options(str(form.get("options", ""))),
        "default": None,
    }
    errors: dict[str, str] = {}
    default = str(form.get("default", ""))
    if type_ in FIELD_TYPES:
        try:
            body["default"] = from_text({"type": type_}, default)
        except InvalidValue as exc:
            errors["default"] = exc.reason
    return body, errors


def shown_errors(problem: UpstreamProblem) -> dict[str, str]:
    """Each refusal at its input: ``options[1].key`` at ``options``, ``validation.currencies[0]`` at its list."""
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        out.setdefault(re.sub(r"\[\d+\].*$", "", name), reason)
    return out


async def _form(
    request: Request,
    module: str,
    field: dict[str, Any] | None,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    problem: UpstreamProblem | None = None,
    done: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "module": module,
        "modules": MODULES,
        "field": field,
        "values": loose(values),
        "types": FIELD_TYPES,
        "field_errors": errors or {},
        "problem": problem,
        "done": done,
    }
    return render(request, "admin/field_edit.html", context, status_code=status_code)


@router.get("", include_in_schema=False)
async def fields(
    request: Request, client: Annotated[Api, Depends(api)], module: str = "customers", done: str = ""
) -> HTMLResponse:
    module = _module(module)
    items = await definitions(client, module, include_archived=True)
    context = {"module": module, "modules": MODULES, "items": items, "done": done}
    return render(request, "admin/fields.html", context)


@router.get("/new/{module}", include_in_schema=False)
async def new_field(request: Request, module: str) -> HTMLResponse:
    return await _form(request, _module(module), None, {"type": "text", "position": 0})


@router.post("/new/{module}", include_in_schema=False)
async def define(request: Request, module: str, client: Annotated[Api, Depends(api)]) -> Response:
    module = _module(module)
    form = await form_of(request)
    type_ = str(form.get("type", ""))
    body, errors = definition_body(form, type_)
    values = {**form, "required": bool(form.get("required")), "filterable": bool(form.get("filterable"))}
    if errors:
        return await _form(request, module, None, values, errors, status_code=422)
    body |= {"key": str(form.get("key", "")).strip(), "type": type_}
    try:
        await client.send(MODULE_SERVICE[module], "POST", _path(module), json=body)
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        if problem.status == 409:  # a key in use (archived fields' keys too)
            problem.errors = problem.errors or [{"field": "key", "reason": client.problem_text(problem)}]
        return await _form(request, module, None, values, shown_errors(problem), problem, status_code=problem.status)
    return RedirectResponse(f"/admin/fields/{module}/{body['key']}?done=created", status_code=303)


@router.get("/{module}/{key}", include_in_schema=False)
async def edit_field(
    request: Request, module: str, key: str, client: Annotated[Api, Depends(api)], done: str = ""
) -> HTMLResponse:
    module = _module(module)
    field = await client.get(MODULE_SERVICE[module], _path(module, key))
    return await _form(request, module, field, form_values(field), done=done)


@router.post("/{module}/{key}", include_in_schema=False)
async def change(request: Request, module: str, key: str, client: Annotated[Api, Depends(api)]) -> Response:
    module = _module(module)
    form = await form_of(request)
    field = await client.get(MODULE_SERVICE[module], _path(module, key))
    body, errors = definition_body(form, field["type"])
    values = {
        **form,
        "key": key,
        "type": field["type"],
        "required": bool(form.get("required")),
        "filterable": bool(form.get("filterable")),
    }
    if errors:
        return await _form(request, module, field, values, errors, status_code=422)
    if field["type"] not in CHOICE_TYPES and not body["options"]:
        body.pop("options")
    try:
        await client.send(
            MODULE_SERVICE[module], "PATCH", _path(module, key), json=body, headers=if_match(form.get("version", 0))
        )
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        return await _form(request, module, field, values, shown_errors(problem), problem, status_code=problem.status)
    return RedirectResponse(f"/admin/fields/{module}/{key}?done=saved", status_code=303)


@router.post("/{module}/{key}/archive", include_in_schema=False)
async def archive(request: Request, module: str, key: str, client: Annotated[Api, Depends(api)]) -> Response:
    module = _module(module)
    form = await form_of(request)
    await client.send(MODULE_SERVICE[module], "DELETE", _path(module, key), headers=if_match(form.get("version", 0)))
    return RedirectResponse(f"/admin/fields?module={module}&done=archived", status_code=303)
