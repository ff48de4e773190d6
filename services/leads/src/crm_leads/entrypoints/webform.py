"""The HTTP API of web-to-lead: a campaign's form key (staff) and the public post (no token)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from crm_leads.application.webform import WebFormOut, WebForms
from crm_leads.entrypoints.imports import read_limited
from crm_platform.auth import CurrentPrincipal
from crm_platform.errors import DomainError, ValidationFailed
from crm_platform.openapi import problems
from crm_platform.serving import client_address

#: A customer's website posts the form from its own origin: this endpoint only answers any origin.
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
RECEIVED = {"status": "received"}

staff = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
public = APIRouter(prefix="/v1/web-to-lead", tags=["web-to-lead"])


def _forms(request: Request) -> WebForms:
    found: WebForms = request.app.state.web_forms
    return found


@staff.post(
    "/{campaign_id}/web-form",
    status_code=201,
    response_model=WebFormOut,
    summary="Turn on (or rotate) the campaign's public web-to-lead form",
    responses=problems(409),
)
async def enable_web_form(campaign_id: str, request: Request, principal: CurrentPrincipal) -> WebFormOut:
    """A new random key, in this answer only (``key``, ``url``); an earlier key stops working."""
    return await _forms(request).enable(principal, campaign_id)


@staff.delete("/{campaign_id}/web-form", status_code=204, summary="Turn the campaign's web-to-lead form off")
async def disable_web_form(campaign_id: str, request: Request, principal: CurrentPrincipal) -> Response:
    await _forms(request).disable(principal, campaign_id)
    return Response(status_code=204)


@staff.get("/{campaign_id}/web-form", response_model=WebFormOut, summary="The campaign's web form and its counts")
async def web_form_status(campaign_id: str, request: Request) -> WebFormOut:
    """Whether it is on (never the key), and how many posts made leads, were duplicates, or bots."""
    return await _forms(request).status(campaign_id)


def _fields(request: Request, raw: bytes) -> dict[str, Any]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ValidationFailed.for_field("body", "not valid JSON") from exc
        if not isinstance(body, dict):
            raise ValidationFailed.for_field("body", "a JSON object of the form's fields")
        return body
    if kind in ("application/x-www-form-urlencoded", ""):
        try:
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
        except UnicodeDecodeError as exc:
            raise ValidationFailed.for_field("body", "the form is not UTF-8") from exc
    raise ValidationFailed.for_field("body", "send application/x-www-form-urlencoded or application/json")


@public.post(
    "/{key}",
    status_code=202,
    summary="Post a web form (public: no token; rate limited per address and key)",
    responses=problems(404, 413, 429),
    openapi_extra={
        "requestBody": {
            "content": {
                ct: {
                    "schema": {
                        "type": "object",
                        "properties": {f: {"type": "string"} for f in ("company", "name", "phone", "email", "message")},
                        "required": ["company"],
                    }
                }
                for ct in ("application/x-www-form-urlencoded", "application/json")
            }
        }
    },
)
async def web_to_lead(key: str, request: Request) -> JSONResponse:
    """``company`` and a ``phone`` or an ``email``; ``name``, ``message`` optional. 202 once taken (a lead
    in the lead pool of the campaign's department, or, told apart from it by nobody outside, a
    duplicate or a bot's post that stored nothing); 404 for an unknown key or a campaign not
    active; 422 naming the field; 429 with Retry-After."""
    settings = request.app.state.kit.settings
    try:
        fields = _fields(request, await read_limited(request, settings.web_form_max_bytes))
        await _forms(request).post(key, client_address(request, settings.trusted_proxies), fields)
    except DomainError as exc:
        exc.headers = {**exc.headers, **CORS}  # the website's script reads the problem too
        raise
    return JSONResponse(RECEIVED, status_code=202, headers=CORS)


@public.options("/{key}", include_in_schema=False)
async def web_to_lead_preflight(key: str) -> Response:
    """The browser's preflight before a JSON post from another origin."""
    return Response(status_code=204, headers=CORS)
