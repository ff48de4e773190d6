"""One customer (客户 360) over the public APIs of customers, pipeline, interactions, reporting and
the directory.

Every page carries ``from`` (the query string of the list it was opened from), so previous/next
walk that list (``GET /v1/customers/{id}/neighbours`` with its filters and sort) and "back to the
list" returns to it. Actions are plain forms (they work without JavaScript; htmx only opens the
quick follow-up form in place) that redirect back to the page with a ``done`` notice. What a
service refuses (locked, not allowed, a duplicate…) is shown on the page, in the user's
language, with the service's own explanation; a stale edit (412) keeps what was typed and
offers a reload.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console import customfields, fieldrules
from crm_console.pages.customers.query import api_list_params
from crm_console.pages.customers_detail import forms, panels
from crm_console.records import complete_customer
from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api, api, render
from crm_platform.permissions import Permission

router = APIRouter(prefix="/customers")

DONE = frozenset(
    {
        "saved",
        "contact_added",
        "contact_saved",
        "contact_removed",
        "locked",
        "unlocked",
        "deleted",
        "restored",
        "copied",
        "merged",
        "logged",
        "task_created",
        "opportunity_created",
        "opportunity_saved",
    }
)
# History fields whose values are codes, and the message prefix that names each code.
ENUMS = {
    "kind": "customers_detail.kind",
    "size": "customers_detail.size",
    "source": "customers_detail.source",
    "tier": "customers_detail.tier",
    "lifecycle_stage": "customers_detail.stage",
    "role": "customers_detail.role",
    "status": "customers_detail.status",
}
REFUSALS = {403: "forbidden", 404: "not_found", 409: "conflict", 412: "changed", 422: "invalid", 423: "locked"}
# The refusals shown on the customer page: a form's (logging, a task, a contact) reopen it with what
# was typed; an action's (lock, delete, merge…) also include a stale If-Match (412). A 404 is the
# error page (the customer is gone or not the user's to see).
FORM_REFUSALS = frozenset({403, 409, 422, 423})
ACTION_REFUSALS = frozenset(REFUSALS) - {404}


# --- helpers -------------------------------------------------------------------------------


def detail_url(customer_id: str, source: str = "", **extra: str) -> str:
    query = {k: v for k, v in {"from": source, **extra}.items() if v}
    return f"/customers/{customer_id}" + (f"?{urlencode(query)}" if query else "")


def back(customer_id: str, source: str, done: str) -> RedirectResponse:
    return RedirectResponse(detail_url(customer_id, source, done=done), status_code=303)


def field_errors(problem: UpstreamProblem) -> dict[str, str]:
    """Each error under the form field it belongs to: ``phones[1]`` → ``phones``, ``phone.summary`` → ``summary``."""
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        name = re.sub(r"\[\d+\].*$", "", name)
        name = re.sub(r"^(phone|email|meeting|visit|social|note)\.", "", name)
        name = {"content": "summary", "key_points": "summary", "minutes": "summary"}.get(name, name)
        out.setdefault(name, reason)
    return out


def refusal(client: Api, problem: UpstreamProblem) -> dict[str, str]:
    """What the page says when a service refuses an action (the service's reason in the user's language)."""
    reason = REFUSALS.get(problem.status, "failed")
    return {"kind": "error", "key": f"customers_detail.refused.{reason}", "detail": client.problem_text(problem)}


async def read_customer(client: Api, customer_id: str) -> tuple[dict[str, Any], str]:
    """The customer and its ETag (sent back as If-Match when the page changes it)."""
    response = await client.send("customers", "GET", f"/v1/customers/{customer_id}")
    return complete_customer(response.json()), response.headers.get("ETag", "")


async def definitions_or_none(client: Api, module: str) -> list[dict[str, Any]]:
    """A module's definitions (archived too, for the values they left) for showing values in a
    panel; none when the owning service is down or refuses, so that panel's failure stays its own."""
    try:
        return await customfields.definitions(client, module, include_archived=True)
    except (UpstreamProblem, UpstreamUnavailable):
        return []


async def related_definitions(client: Api) -> list[list[dict[str, Any]]]:
    """The definitions (archived too) of customers, contacts, opportunities, follow-ups, tasks and
    feedback: those of the customer page's panels may fail on their own, as the panels do."""
    return list(
        await asyncio.gather(
            customfields.definitions(client, "customers", include_archived=True),
            customfields.definitions(client, "contacts", include_archived=True),
            *(definitions_or_none(client, m) for m in ("opportunities", "interactions", "tasks", "feedback")),
        )
    )


async def form_of(request: Request) -> Any:
    return await request.form()


def timezone_of(client: Api) -> str:
    return client.session.timezone


async def detail_page(
    request: Request,
    client: Api,
    customer_id: str,
    source: str,
    *,
    notice: dict[str, str] | None = None,
    status_code: int = 200,
    **forms_state: Any,
) -> HTMLResponse:
    """The 360 view; ``forms_state`` re-opens a form with what was typed and its field errors."""
    customer, etag = await read_customer(client, customer_id)
    timezone = timezone_of(client)

    async def neighbours() -> dict[str, Any]:
        try:
            found: dict[str, Any] = await client.get(
                "customers", f"/v1/customers/{customer_id}/neighbours", api_list_params(source)
            )
        except UpstreamProblem:  # a list query the service no longer accepts: no previous/next, the page still works
            return {"previous": None, "next": None}
        return found

    related, around, defined, roles_rules = await asyncio.gather(
        panels.load(client, customer_id, timezone),
        neighbours(),
        related_definitions(client),
        fieldrules.role_rules(client),
    )
    fields, contact_fields, opportunity_fields, followup_fields, task_fields, feedback_fields = defined
    custom_values = customer.get("custom") or {}
    custom_shown = customfields.shown(fields, custom_values)
    people = [customer.get("owner_id"), customer.get("created_by"), customer.get("updated_by")]
    people += [(customer.get("locked") or {}).get("by"), (customer.get("deleted") or {}).get("by")]
    people += [entry.get("actor") for entry in related["history"].items]
    people += [task.get("assignee_id") for task in related["tasks"].items]
    people += [item.get("author_id") for item in related["followups"].items]
    people += [custom_values[d["key"]] for d in custom_shown if d["type"] == "user"]
    for records, module_fields in (
        (customer.get("contacts") or [], contact_fields),
        (related["opportunities"].items, opportunity_fields),
        (related["followups"].items, followup_fields),
        (related["tasks"].items, task_fields),
        (related["feedback"].items, feedback_fields),
    ):
        for record in records:
            held = record.get("custom") or {}
            people += [held[d["key"]] for d in customfields.shown(module_fields, held) if d["type"] == "user"]
    who = await panels.names(client, people)
    language = client.session.language
    done = request.query_params.get("done", "")
    if notice is None and done in DONE:
        notice = {"kind": "ok", "key": f"customers_detail.done.{done}", "detail": ""}
    log_channel = forms_state.pop("log_channel", request.query_params.get("log", ""))
    context: dict[str, Any] = {
        "customer": customer,
        "etag": etag,
        "source": source,
        "custom": [
            {
                "key": d["key"],
                "label": customfields.text_in(d["labels"], client.session.language),
                "text": customfields.display(d, custom_values[d["key"]], client.session.language, who),
            }
            for d in custom_shown
        ],
        "list_url": "/customers" + (f"?{source}" if source else ""),
        "around": around,
        "panels": related,
        "who": who,
        "notice": notice,
        "roles": forms.ROLES,
        "channels": forms.CHANNELS,
        "log_channel": log_channel if log_channel in forms.CHANNELS else "",
        "log_values": forms_state.pop("log_values", {}),
        "log_errors": forms_state.pop("log_errors", {}),
        "now_local": forms.local_input(datetime.now(UTC), timezone),
        "due_default": forms.default_due(datetime.now(UTC), timezone),
        "contact_fields": customfields.active(contact_fields),
        "contact_lines": lambda contact: customfields.lines(contact_fields, contact.get("custom"), language, who),
        "opportunity_lines": lambda opp: customfields.lines(opportunity_fields, opp.get("custom"), language, who),
        "followup_lines": lambda item: customfields.lines(followup_fields, item.get("custom"), language, who),
        "task_lines": lambda task: customfields.lines(task_fields, task.get("custom"), language, who),
        "feedback_lines": lambda item: customfields.lines(feedback_fields, item.get("custom"), language, who),
        "followup_fields": customfields.active(followup_fields),
        "followup_rules": fieldrules.for_module(roles_rules, "interactions"),
        "task_rules": fieldrules.for_module(roles_rules, "tasks"),
        "contact_rules": fieldrules.for_module(roles_rules, "contacts"),
        "task_fields": customfields.active(task_fields),
        "contact_values": forms_state.pop("contact_values", {}),
        "contact_errors": forms_state.pop("contact_errors", {}),
        "task_values": forms_state.pop("task_values", {}),
        "task_errors": forms_state.pop("task_errors", {}),
        "detail_url": detail_url,
        "value_text": value_text,
        "enums": ENUMS,
        "open_task": forms_state.pop("open_task", False),
        "open_contact": forms_state.pop("open_contact", False),
        "may_merge": may(client.session.user, Permission("customers:merge")),
        **forms_state,
    }
    return render(request, "customers_detail/detail.html", context, status_code=status_code)


async def change_or_refusal(
    request: Request,
    client: Api,
    customer_id: str,
    source: str,
    done: str,
    change: Awaitable[Any],
    shown: Collection[int],
    form_state: Callable[[UpstreamProblem], dict[str, Any]] = lambda problem: {},
) -> Response:
    """Await ``change`` (one call to a service); then back to the page saying ``done``. A refusal
    whose status is in ``shown`` is the page again with the service's reason, and with the form
    that was sent re-opened as ``form_state(problem)`` gives it (what was typed, the field errors);
    any other refusal goes to the console's error pages."""
    try:
        await change
    except UpstreamProblem as problem:
        if problem.status not in shown:
            raise
        return await detail_page(
            request,
            client,
            customer_id,
            source,
            notice=refusal(client, problem),
            status_code=problem.status,
            **form_state(problem),
        )
    return back(customer_id, source, done)


def value_text(value: Any) -> str:
    """A history value as a person reads it: lists joined, objects as "key: value", nothing as —."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, list):
        return ", ".join(value_text(v) for v in value)
    if isinstance(value, dict):
        if "name" in value:
            return str(value["name"])
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, "", []))
    if isinstance(value, bool):
        return "✓" if value else "✗"
    return str(value)


Client = Annotated[Api, Depends(api)]


# --- the 360 view --------------------------------------------------------------------------


@router.get("/{customer_id}", include_in_schema=False)
async def detail(request: Request, customer_id: str, client: Client) -> HTMLResponse:
    return await detail_page(request, client, customer_id, request.query_params.get("from", ""))


@router.get("/{customer_id}/timeline", include_in_schema=False)
async def timeline_more(request: Request, customer_id: str, client: Client) -> HTMLResponse:
    """The timeline's next page (htmx appends it in place of the "later events" row)."""
    params = {"limit": panels.TIMELINE_SIZE, "tz": timezone_of(client), "cursor": request.query_params.get("cursor")}
    page = await client.get("reporting", f"/v1/customers/{customer_id}/timeline", params)
    context = {"customer": {"id": customer_id}, "timeline": page["items"], "next_cursor": page.get("next_cursor")}
    return render(request, "customers_detail/timeline_rows.html", context)


@router.get("/{customer_id}/log/{channel}", include_in_schema=False)
async def log_form(request: Request, customer_id: str, channel: str, client: Client) -> Response:
    """The quick follow-up form with its channel chosen (htmx puts it under the buttons)."""
    source = request.query_params.get("from", "")
    if not request.headers.get("HX-Request"):
        return RedirectResponse(detail_url(customer_id, source, log=channel) + "#quick-log", status_code=303)
    customer, _ = await read_customer(client, customer_id)
    context = {
        "customer": customer,
        "source": source,
        "channels": forms.CHANNELS,
        "log_channel": channel if channel in forms.CHANNELS else "note",
        "followup_fields": customfields.active(await definitions_or_none(client, "interactions")),
        "followup_rules": await fieldrules.form_rules(client, "interactions"),
        "log_values": {},
        "log_errors": {},
        "now_local": forms.local_input(datetime.now(UTC), timezone_of(client)),
    }
    return render(request, "customers_detail/log_form.html", context)


@router.post("/{customer_id}/log", include_in_schema=False)
async def log_interaction(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    source = str(form.get("from") or "")
    body = forms.interaction_body(customer_id, form, timezone_of(client))
    fields = await customfields.definitions(client, "interactions")
    typed = customfields.posted(fields, form)
    custom = customfields.body(fields, typed, for_patch=False)
    if custom:
        body["custom"] = custom
    return await change_or_refusal(
        request,
        client,
        customer_id,
        source,
        "logged",
        client.send("interactions", "POST", "/v1/interactions", json=body),
        FORM_REFUSALS,
        lambda problem: {
            "log_channel": body["channel"],
            "log_values": {k: str(v) for k, v in form.items()} | typed,
            "log_errors": field_errors(problem),
        },
    )


@router.post("/{customer_id}/tasks", include_in_schema=False)
async def create_task(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    source = str(form.get("from") or "")
    body = forms.task_body(customer_id, form, timezone_of(client))
    fields = await customfields.definitions(client, "tasks")
    typed = customfields.posted(fields, form)
    custom = customfields.body(fields, typed, for_patch=False)
    if custom:
        body["custom"] = custom
    return await change_or_refusal(
        request,
        client,
        customer_id,
        source,
        "task_created",
        client.send("interactions", "POST", "/v1/tasks", json=body),
        FORM_REFUSALS,
        lambda problem: {
            "task_values": {k: str(v) for k, v in form.items()} | typed,
            "task_errors": field_errors(problem),
            "open_task": True,
        },
    )


# --- editing the profile -------------------------------------------------------------------


def edit_page(
    request: Request,
    customer: dict[str, Any],
    etag: str,
    source: str,
    values: dict[str, Any],
    fields: list[dict[str, Any]],
    errors: dict[str, str] | None = None,
    notice: dict[str, str] | None = None,
    status_code: int = 200,
    rules: fieldrules.FormRules = fieldrules.NO_RULES,
) -> HTMLResponse:
    context = {
        "custom_rules": rules,
        "custom_fields": fields,
        "customer": customer,
        "etag": etag,
        "source": source,
        "values": values,
        "field_errors": errors or {},
        "notice": notice,
        "sizes": forms.SIZES,
        "sources": forms.SOURCES,
        "tiers": forms.TIERS,
        "stages": forms.STAGES,
        "detail_url": detail_url,
    }
    return render(request, "customers_detail/edit.html", context, status_code=status_code)


@router.get("/{customer_id}/edit", include_in_schema=False)
async def edit(request: Request, customer_id: str, client: Client) -> HTMLResponse:
    customer, etag = await read_customer(client, customer_id)
    source = request.query_params.get("from", "")
    fields = await customfields.definitions(client, "customers")
    values: dict[str, Any] = forms.profile_values(customer) | customfields.form_values(fields, customer.get("custom"))
    rules = await fieldrules.form_rules(client, "customers")
    return edit_page(request, customer, etag, source, values | customfields.was(values), fields, rules=rules)


@router.post("/{customer_id}/edit", include_in_schema=False)
async def save(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    source, etag, kind = str(form.get("from") or ""), str(form.get("etag") or ""), str(form.get("kind") or "")
    rules = await fieldrules.form_rules(client, "customers")
    # A field the person's roles protect had no input: not sent (sending it would be refused).
    patch = {k: v for k, v in forms.profile_patch(form, kind).items() if k not in rules.hidden | rules.read_only}
    fields = await customfields.definitions(client, "customers")
    typed = customfields.posted(fields, form)
    custom = customfields.body(fields, typed, for_patch=True)
    if custom:
        patch["custom"] = custom
    try:
        await client.send("customers", "PATCH", f"/v1/customers/{customer_id}", json=patch, headers={"If-Match": etag})
    except UpstreamProblem as problem:
        # A 403 naming fields: a value the user's role may only read (or not see) was changed: at the field.
        if problem.status not in (409, 412, 422, 423) and not (problem.status == 403 and problem.errors):
            raise
        values: dict[str, Any] = {k: str(v) for k, v in form.items()} | typed
        customer = {"id": customer_id, "kind": kind, "name": str(form.get("original_name") or "")}
        notice = refusal(client, problem)
        errors = field_errors(problem)
        return edit_page(request, customer, etag, source, values, fields, errors, notice, problem.status, rules)
    return back(customer_id, source, "saved")


# --- contacts ------------------------------------------------------------------------------


@router.post("/{customer_id}/contacts", include_in_schema=False)
async def add_contact(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    source = str(form.get("from") or "")
    fields = await customfields.definitions(client, "contacts")
    typed = customfields.posted(fields, form)
    body = forms.contact_body(form)
    custom = customfields.body(fields, typed, for_patch=False)
    if custom:
        body["custom"] = custom
    return await change_or_refusal(
        request,
        client,
        customer_id,
        source,
        "contact_added",
        client.send("customers", "POST", f"/v1/customers/{customer_id}/contacts", json=body),
        FORM_REFUSALS,
        lambda problem: {
            "contact_values": {k: str(v) for k, v in form.items()} | typed,
            "contact_errors": field_errors(problem),
            "open_contact": True,
        },
    )


def contact_page(
    request: Request,
    customer: dict[str, Any],
    etag: str,
    source: str,
    contact: dict[str, Any],
    fields: list[dict[str, Any]],
    errors: dict[str, str] | None = None,
    notice: dict[str, str] | None = None,
    status_code: int = 200,
    rules: fieldrules.FormRules = fieldrules.NO_RULES,
) -> HTMLResponse:
    """``contact``: the form's values, custom ones as ``custom.<key>`` (and ``was.custom.<key>``)."""
    context = {
        "custom_rules": rules,
        "custom_fields": fields,
        "customer": customer,
        "etag": etag,
        "source": source,
        "contact": contact,
        "roles": forms.ROLES,
        "field_errors": errors or {},
        "notice": notice,
        "detail_url": detail_url,
    }
    return render(request, "customers_detail/contact.html", context, status_code=status_code)


@router.get("/{customer_id}/contacts/{contact_id}/edit", include_in_schema=False)
async def edit_contact(request: Request, customer_id: str, contact_id: str, client: Client) -> HTMLResponse:
    customer, etag = await read_customer(client, customer_id)
    contact = next((c for c in customer.get("contacts") or [] if c["contact_id"] == contact_id), None)
    if contact is None:
        raise UpstreamProblem("customers", 404, "Not Found")
    fields = await customfields.definitions(client, "contacts")
    custom = customfields.form_values(fields, contact.get("custom"))
    values = {
        **contact,
        "phones": "\n".join(contact.get("phones") or []),
        "emails": "\n".join(contact.get("emails") or []),
        **custom,
        **customfields.was(custom),
    }
    rules = await fieldrules.form_rules(client, "contacts")
    return contact_page(request, customer, etag, request.query_params.get("from", ""), values, fields, rules=rules)


@router.post("/{customer_id}/contacts/{contact_id}", include_in_schema=False)
async def save_contact(request: Request, customer_id: str, contact_id: str, client: Client) -> Response:
    form = await form_of(request)
    source, etag = str(form.get("from") or ""), str(form.get("etag") or "")
    path = f"/v1/customers/{customer_id}/contacts/{contact_id}"
    fields = await customfields.definitions(client, "contacts")
    typed = customfields.posted(fields, form)
    rules = await fieldrules.form_rules(client, "contacts")
    # A field the person's roles protect had no input: not sent (sending it would be refused).
    body = {k: v for k, v in forms.contact_body(form).items() if k not in rules.hidden | rules.read_only}
    custom = customfields.body(fields, typed, for_patch=True)
    if custom:
        body["custom"] = custom
    try:
        await client.send("customers", "PATCH", path, json=body, headers={"If-Match": etag})
    except UpstreamProblem as problem:
        # A 403 naming fields: a value the user's role may only read (or not see) was changed: at the field.
        if problem.status not in (409, 412, 422, 423) and not (problem.status == 403 and problem.errors):
            raise
        customer = {"id": customer_id, "name": str(form.get("customer_name") or "")}
        values = {k: str(v) for k, v in form.items()} | typed
        values |= {"contact_id": contact_id, "is_primary": form.get("is_primary") == "on"}
        return contact_page(
            request,
            customer,
            etag,
            source,
            values,
            fields,
            field_errors(problem),
            refusal(client, problem),
            problem.status,
            rules,
        )
    return back(customer_id, source, "contact_saved")


@router.post("/{customer_id}/contacts/{contact_id}/remove", include_in_schema=False)
async def remove_contact(request: Request, customer_id: str, contact_id: str, client: Client) -> Response:
    form = await form_of(request)
    return await _act(
        request,
        client,
        customer_id,
        "DELETE",
        f"/contacts/{contact_id}",
        "contact_removed",
        etag=str(form.get("etag") or ""),
    )


# --- lock, delete, restore, copy, merge -----------------------------------------------------


async def _act(
    request: Request,
    client: Api,
    customer_id: str,
    method: str,
    suffix: str,
    done: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
    etag: str = "",
) -> Response:
    """One action on the customer; a refusal is shown on the page with the service's reason."""
    form = await form_of(request)
    source = str(form.get("from") or "")
    headers = {"If-Match": etag} if etag else None
    call = client.send(
        "customers", method, f"/v1/customers/{customer_id}{suffix}", json=json, params=params, headers=headers
    )
    return await change_or_refusal(request, client, customer_id, source, done, call, ACTION_REFUSALS)


@router.post("/{customer_id}/lock", include_in_schema=False)
async def lock(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    reason = forms.text(form, "reason")
    return await _act(request, client, customer_id, "POST", "/lock", "locked", json={"reason": reason})


@router.post("/{customer_id}/unlock", include_in_schema=False)
async def unlock(request: Request, customer_id: str, client: Client) -> Response:
    return await _act(request, client, customer_id, "POST", "/unlock", "unlocked")


@router.post("/{customer_id}/delete", include_in_schema=False)
async def delete(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    reason = forms.text(form, "reason")
    return await _act(
        request,
        client,
        customer_id,
        "DELETE",
        "",
        "deleted",
        params={"reason": reason} if reason else None,
        etag=str(form.get("etag") or ""),
    )


@router.post("/{customer_id}/restore", include_in_schema=False)
async def restore(request: Request, customer_id: str, client: Client) -> Response:
    return await _act(request, client, customer_id, "POST", "/restore", "restored")


@router.get("/{customer_id}/copy", include_in_schema=False)
async def copy_form(request: Request, customer_id: str, client: Client) -> HTMLResponse:
    customer, _ = await read_customer(client, customer_id)
    context = {"customer": customer, "source": request.query_params.get("from", ""), "name": "", "field_errors": {}}
    return render(request, "customers_detail/copy.html", context | {"detail_url": detail_url, "notice": None})


@router.post("/{customer_id}/copy", include_in_schema=False)
async def copy(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    source, name = str(form.get("from") or ""), forms.text(form, "name") or ""
    try:
        response = await client.send("customers", "POST", f"/v1/customers/{customer_id}/copy", json={"name": name})
    except UpstreamProblem as problem:
        if problem.status not in (403, 409, 422):
            raise
        customer, _ = await read_customer(client, customer_id)
        errors = field_errors(problem) or ({"name": client.problem_text(problem)} if problem.status == 409 else {})
        context: dict[str, Any] = {"customer": customer, "source": source, "name": name, "field_errors": errors}
        context |= {"detail_url": detail_url, "notice": refusal(client, problem)}
        return render(request, "customers_detail/copy.html", context, status_code=problem.status)
    return back(str(response.json()["id"]), "", "copied")


@router.get("/{customer_id}/merge", include_in_schema=False)
async def merge_form(request: Request, customer_id: str, client: Client) -> HTMLResponse:
    """Step 1: pick the duplicate (likely ones from the duplicate check, or search by name);
    step 2 (``?duplicate_id=``): confirm, seeing both records."""
    customer, etag = await read_customer(client, customer_id)
    source, q = request.query_params.get("from", ""), request.query_params.get("q", "").strip()
    chosen = request.query_params.get("duplicate_id", "")
    context: dict[str, Any] = {"customer": customer, "etag": etag, "source": source, "q": q, "detail_url": detail_url}
    if chosen:
        context["duplicate"] = (await read_customer(client, chosen))[0]
        return render(request, "customers_detail/merge_confirm.html", context)
    if q:
        page = await client.get("customers", "/v1/customers", {"q": q, "limit": 20})
        candidates = page["items"]
    else:
        check = {"kind": customer["kind"], "name": customer["name"], "uscc": customer.get("uscc")}
        check |= {"phones": customer.get("phones") or [], "emails": customer.get("emails") or []}
        response = await client.send("customers", "POST", "/v1/customers/duplicate-check", json=check)
        report = response.json()
        candidates = report.get("exact", []) + report.get("similar", [])
    normalised = [{**c, "id": c.get("id") or c.get("customer_id")} for c in candidates]
    context["candidates"] = [c for c in normalised if c["id"] != customer_id]
    return render(request, "customers_detail/merge.html", context)


@router.post("/{customer_id}/merge", include_in_schema=False)
async def merge(request: Request, customer_id: str, client: Client) -> Response:
    form = await form_of(request)
    duplicate_id = forms.text(form, "duplicate_id") or ""
    return await _act(
        request,
        client,
        customer_id,
        "POST",
        "/merge",
        "merged",
        json={"duplicate_id": duplicate_id},
        etag=str(form.get("etag") or ""),
    )
