"""The campaign's web-to-lead form, for ``campaigns:manage`` holders: turn it on or rotate its key
(the key and the URL to post to shown on this answer only, as the API gives them once), turn it off."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.campaigns.insights import public_url
from crm_console.pages.campaigns.routes import _detail, router
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api


@router.post("/{campaign_id}/web-form", include_in_schema=False)
async def enable_web_form(request: Request, campaign_id: str, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    try:
        answer = (await client.send("leads", "POST", f"/v1/campaigns/{campaign_id}/web-form")).json()
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        return await _detail(request, client, campaign_id, problem.status, problem=problem, form="web_form")
    # Shown on this answer only: the service never returns the key again.
    new_key = {"key": answer.get("key"), "url": public_url(client, answer.get("url"))}
    return await _detail(request, client, campaign_id, web_form_new=new_key, done="web_form_on")


@router.post("/{campaign_id}/web-form/disable", include_in_schema=False)
async def disable_web_form(request: Request, campaign_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    try:
        await client.send("leads", "DELETE", f"/v1/campaigns/{campaign_id}/web-form")
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        return await _detail(request, client, campaign_id, problem.status, problem=problem, form="web_form")
    return RedirectResponse(f"/campaigns/{campaign_id}?done=web_form_off", status_code=303)
