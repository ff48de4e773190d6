"""An opportunity's form: new (from the customer page) and edit (from the customer page's panel or
a board card), with the opportunities' custom fields (the pipeline service's
``GET /v1/fields/opportunities``) next to the name, amount, expected close date and notes.

A refused save (422, or a 403 naming the fields the user's roles protect) is the form again with
each reason at its input (``custom.<key>`` as the service names it) and what was typed kept. The
edit form sends only what the person changed (``was.<name>`` holds what it showed), so a field the
user's role may only read never refuses the save. A stale form (412) is the console's "someone
changed this" page. A save goes back to the customer page, which says what was done.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console import customfields, fieldrules
from crm_console.records import complete_opportunity
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

opportunity_router = APIRouter(prefix="/pipeline/opportunities")
Client = Annotated[Api, Depends(api)]
#: The standard fields the form edits (typed as text; empty is "not set").
FIELDS = ("name", "amount", "expected_close_date", "notes")


def _shown(field_errors: dict[str, str], status: int) -> bool:
    return status in (409, 422, 423) or (status == 403 and bool(field_errors))


def standard_values(opportunity: dict[str, Any]) -> dict[str, str]:
    return {name: "" if opportunity.get(name) is None else str(opportunity[name]) for name in FIELDS}


def posted(form: Any) -> dict[str, str]:
    """The standard inputs as typed, and (edit form) what it showed before them."""
    return {n: str(form.get(n) or "").strip() for name in FIELDS for n in (name, customfields.WAS + name)}


def create_body(customer_id: str, values: dict[str, Any], custom: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"customer_id": customer_id}
    body |= {name: values[name] or None for name in FIELDS if values[name] or name == "name"}
    if custom:
        body["custom"] = custom
    return body


def patch_body(
    values: dict[str, Any], custom: dict[str, Any], rules: fieldrules.FormRules = fieldrules.NO_RULES
) -> dict[str, Any]:
    """Only what changed from what the form showed (empty clears it); a field the person's roles
    protect had no input, so it is not sent."""
    protected = rules.hidden | rules.read_only
    body: dict[str, Any] = {
        name: values[name] or None
        for name in FIELDS
        if name not in protected and values[name] != values.get(customfields.WAS + name, "")
    }
    if custom:
        body["custom"] = custom
    return body


def form_page(
    request: Request,
    *,
    customer_id: str,
    opportunity: dict[str, Any] | None,
    fields: list[dict[str, Any]],
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    refused: str = "",
    status_code: int = 200,
    rules: fieldrules.FormRules = fieldrules.NO_RULES,
) -> HTMLResponse:
    context = {
        "custom_rules": rules,
        "editing": opportunity is not None,
        "customer_id": customer_id,
        "opportunity": opportunity,
        "custom_fields": fields,
        "values": values,
        "field_errors": errors or {},
        "refused": refused,
    }
    return render(request, "pipeline/opportunity_form.html", context, status_code=status_code)


def back_to_customer(customer_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/customers/{customer_id}?done={done}#opportunities", status_code=303)


@opportunity_router.get("/new", include_in_schema=False)
async def new(request: Request, client: Client, customer_id: str) -> HTMLResponse:
    fields = await customfields.definitions(client, "opportunities")
    values: dict[str, Any] = dict.fromkeys(FIELDS, "") | customfields.form_values(fields, {})
    rules = await fieldrules.form_rules(client, "opportunities")
    return form_page(request, customer_id=customer_id, opportunity=None, fields=fields, values=values, rules=rules)


@opportunity_router.post("/new", include_in_schema=False)
async def create(request: Request, client: Client) -> Response:
    form = await request.form()
    customer_id = str(form.get("customer_id") or "")
    fields = await customfields.definitions(client, "opportunities")
    typed = posted(form) | customfields.posted(fields, form)
    body = create_body(customer_id, typed, customfields.body(fields, typed, for_patch=False))
    try:
        await client.send("pipeline", "POST", "/v1/opportunities", json=body)
    except UpstreamProblem as problem:
        errors = problem.field_errors()
        if not _shown(errors, problem.status):
            raise
        return form_page(
            request,
            customer_id=customer_id,
            opportunity=None,
            fields=fields,
            values=typed,
            errors=errors,
            refused=client.problem_text(problem),
            status_code=problem.status,
            rules=await fieldrules.form_rules(client, "opportunities"),
        )
    return back_to_customer(customer_id, "opportunity_created")


@opportunity_router.get("/{opportunity_id}/edit", include_in_schema=False)
async def edit(request: Request, opportunity_id: str, client: Client) -> HTMLResponse:
    response = await client.send("pipeline", "GET", f"/v1/opportunities/{opportunity_id}")
    opportunity = complete_opportunity(response.json()) | {"etag": response.headers.get("ETag", "")}
    fields = await customfields.definitions(client, "opportunities")
    values: dict[str, Any] = standard_values(opportunity) | customfields.form_values(fields, opportunity.get("custom"))
    values |= customfields.was(values) | {customfields.WAS + n: v for n, v in standard_values(opportunity).items()}
    return form_page(
        request,
        customer_id=opportunity["customer_id"],
        opportunity=opportunity,
        fields=fields,
        values=values,
        rules=await fieldrules.form_rules(client, "opportunities"),
    )


@opportunity_router.post("/{opportunity_id}/edit", include_in_schema=False)
async def save(request: Request, opportunity_id: str, client: Client) -> Response:
    form = await request.form()
    customer_id, etag = str(form.get("customer_id") or ""), str(form.get("etag") or "")
    fields = await customfields.definitions(client, "opportunities")
    typed = posted(form) | customfields.posted(fields, form)
    rules = await fieldrules.form_rules(client, "opportunities")
    body = patch_body(typed, customfields.body(fields, typed, for_patch=True), rules)
    try:
        await client.send(
            "pipeline", "PATCH", f"/v1/opportunities/{opportunity_id}", json=body, headers={"If-Match": etag}
        )
    except UpstreamProblem as problem:
        errors = problem.field_errors()
        if not _shown(errors, problem.status):
            raise
        shown = {"id": opportunity_id, "name": str(form.get("original_name") or ""), "etag": etag}
        return form_page(
            request,
            customer_id=customer_id,
            opportunity=shown,
            fields=fields,
            values=typed,
            errors=errors,
            refused=client.problem_text(problem),
            status_code=problem.status,
            rules=rules,
        )
    return back_to_customer(customer_id, "opportunity_saved")
