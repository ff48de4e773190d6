"""Creating a customer (``POST /v1/customers``), with a duplicate warning while typing (查重).

The form's fields live in the template macro ``customers/form_fields.html`` (``customer_fields``)
and the form ↔ API translation in :func:`form_values` / :func:`payload`, so the customer page's
edit form (``customers_detail``) can reuse both. Field names follow the API's (``address.city``),
so a 422's field errors land on the inputs as they are.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console import customfields, fieldrules
from crm_console.pages.customers.people import owner_names
from crm_console.pages.customers.query import KINDS, SIZES, SOURCES, STAGES, TIERS
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter()

TEXT_FIELDS = (
    "kind",
    "name",
    "uscc",
    "industry",
    "size",
    "source",
    "tier",
    "lifecycle_stage",
    "website",
    "description",
)
LIST_FIELDS = ("phones", "emails", "tags")
ADDRESS_FIELDS = ("province", "city", "district", "street")
FORM_FIELDS = TEXT_FIELDS + LIST_FIELDS + tuple(f"address.{f}" for f in ADDRESS_FIELDS)
# Lists are typed on one line: commas, Chinese commas, semicolons and 、 all separate.
_LIST_SPLIT = re.compile(r"[,，;；、\n]")


def split_list(value: str) -> list[str]:
    return [v.strip() for v in _LIST_SPLIT.split(value) if v.strip()]


def form_values(customer: dict[str, Any]) -> dict[str, str]:
    """A customer (as the API returns it) as the form's values."""
    values = {f: str(customer.get(f) or "") for f in TEXT_FIELDS}
    values |= {f: ", ".join(customer.get(f) or []) for f in LIST_FIELDS}
    address = customer.get("address") or {}
    values |= {f"address.{f}": str(address.get(f) or "") for f in ADDRESS_FIELDS}
    return values


def payload(form: Mapping[str, Any], *, for_patch: bool = False) -> dict[str, Any]:
    """The form as the API's JSON body. A create leaves blank fields out; a patch clears them
    (null, or an empty list), since the edit form shows every field."""
    body: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = value
        elif for_patch and name not in ("kind", "name"):
            body[name] = None
    for name in LIST_FIELDS:
        items = split_list(form.get(name, ""))
        if items or for_patch:
            body[name] = items
    address = {f: form[f"address.{f}"].strip() for f in ADDRESS_FIELDS if form.get(f"address.{f}", "").strip()}
    if address:
        body["address"] = address
    elif for_patch:
        body["address"] = None
    return body


def field_errors(problem: UpstreamProblem) -> dict[str, str]:
    """The 422's reasons per form field: ``phones[1]`` is shown at ``phones``."""
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        out.setdefault(re.sub(r"\[\d+\].*$", "", name), reason)
    return out


def form_context(
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    fields: list[dict[str, Any]] | None = None,
    rules: fieldrules.FormRules = fieldrules.NO_RULES,
) -> dict[str, Any]:
    return {
        "custom_rules": rules,
        "values": values,
        "custom_fields": fields or [],
        "field_errors": errors or {},
        "kinds": KINDS,
        "tiers": TIERS,
        "stages": STAGES,
        "sizes": SIZES,
        "sources": SOURCES,
    }


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: str(form.get(name) or "") for name in (*FORM_FIELDS, "idempotency_key")}


@router.get("/new", include_in_schema=False)
async def new(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    values = {"kind": "company", "lifecycle_stage": "prospect", "idempotency_key": str(uuid.uuid4())}
    fields = await customfields.definitions(client, "customers")
    rules = await fieldrules.form_rules(client, "customers")
    return render(request, "customers/new.html", form_context(values, fields=fields, rules=rules))


@router.post("/new", include_in_schema=False)
async def create(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    values: dict[str, Any] = dict(await _form(request))
    # One key per form shown: a double click or a resent form creates the customer once.
    headers = {"Idempotency-Key": values["idempotency_key"]} if values["idempotency_key"] else {}
    fields = await customfields.definitions(client, "customers")
    values |= customfields.posted(fields, await request.form())
    body = payload(values)
    custom = customfields.body(fields, values, for_patch=False)
    if custom:
        body["custom"] = custom
    try:
        answer = await client.send("customers", "POST", "/v1/customers", json=body, headers=headers)
    except UpstreamProblem as problem:
        # A 403 naming fields: a value the user's role may only read (or not see): at the field.
        if problem.status not in (409, 422) and not (problem.status == 403 and problem.errors):
            raise
        rules = await fieldrules.form_rules(client, "customers")
        context = form_context(values, field_errors(problem), fields, rules) | {"problem": problem}
        if problem.status == 409:
            context |= await duplicate_report(client, values)
        return render(request, "customers/new.html", context, status_code=problem.status)
    return RedirectResponse(f"/customers/{answer.json()['id']}?created=1", status_code=303)


async def duplicate_report(client: Api, values: Mapping[str, Any]) -> dict[str, Any]:
    """What the service's duplicate check finds for the form's name, USCC, phones and emails."""
    body: dict[str, Any] = {
        "kind": values.get("kind") or None,
        "name": values.get("name", "").strip() or None,
        "uscc": values.get("uscc", "").strip() or None,
        "phones": split_list(values.get("phones", "")),
        "emails": split_list(values.get("emails", "")),
    }
    if not (body["name"] or body["uscc"] or body["phones"] or body["emails"]):
        return {"exact": [], "similar": [], "owners": {}}
    try:
        answer = await client.send("customers", "POST", "/v1/customers/duplicate-check", json=body)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        # Half-typed: a USCC or phone not complete yet. The field's own check speaks on submit.
        return {"exact": [], "similar": [], "owners": {}}
    report: dict[str, Any] = answer.json()
    matches = report["exact"] + report["similar"]
    return {
        "exact": report["exact"],
        "similar": report["similar"][:5],
        "owners": await owner_names(client, (m.get("owner_id") for m in matches)),
    }


@router.post("/duplicates", include_in_schema=False)
async def duplicates(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    """The warning under the form (htmx, on input after a short pause)."""
    report = await duplicate_report(client, await _form(request))
    return render(request, "customers/duplicates.html", report)
