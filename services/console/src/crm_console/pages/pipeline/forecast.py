"""Targets and the forecast (预测) over ``GET /v1/forecast`` and ``PUT /v1/targets/...``.

Everyone sees their own forecast for a period (target, won, weighted open pipeline, attainment) as
the pipeline service computes it. Managers and admins also see their department's and each of
their team's reps (the directory's ``GET /v1/users`` gives the team), and may set a target.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.pipeline.board import grouped
from crm_console.registry import may, reaches_beyond_own
from crm_console.sessions import SessionUser
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render, zone
from crm_platform.permissions import Permission

forecast_router = APIRouter(prefix="/pipeline")

TEAM_LIMIT = 30  # rows of one page: a team larger than this is read department by department
SET_TARGETS = Permission("targets:set")
Document = dict[str, Any]


def this_month(timezone: str) -> str:
    today = datetime.now(zone(timezone))
    return f"{today.year}-{today.month:02d}"


def sees_team(user: SessionUser) -> bool:
    """The department's and the team's forecasts: for a data scope beyond one's own over
    opportunities (what they sum) and users (who the team is)."""
    return reaches_beyond_own(user, "opportunities") and reaches_beyond_own(user, "users")


async def _forecast(client: Api, period: str, **scope: str) -> Document:
    found: Document = await client.get("pipeline", "/v1/forecast", params={"period": period, **scope})
    return found


async def _team(client: Api, department_path: str) -> list[Document]:
    department_id = department_path.rstrip("/").rsplit("/", 1)[-1]
    params: dict[str, Any] = {"active": "true", "limit": TEAM_LIMIT, "sort": "name"}
    if department_id:
        params["department_id"] = department_id
    page = await client.get("directory", "/v1/users", params=params)
    users: list[Document] = page["items"]
    return users


async def forecast_context(client: Api, period: str) -> dict[str, Any]:
    session_user = client.session.user
    assert session_user is not None  # api() only gives signed-in sessions
    mine = await _forecast(client, period)
    rows: list[dict[str, Any]] = []
    department: Document | None = None
    team: list[Document] = []
    path = session_user.department_path
    if sees_team(session_user) and path:
        department = await _forecast(client, period, department=path)
        team = [u for u in await _team(client, path) if u["id"] != session_user.id]
        figures = await asyncio.gather(*(_forecast(client, period, rep=u["id"]) for u in team))
        rows = [{"name": u["name"], "id": u["id"], "forecast": f} for u, f in zip(team, figures, strict=True)]
    return {
        "money": grouped,
        "can_set_targets": may(session_user, SET_TARGETS),
        "period": period,
        "mine": mine,
        "department": department,
        "department_path": path,
        "rows": rows,
        "team": team,
        "team_limited": len(team) >= TEAM_LIMIT - 1,
    }


@forecast_router.get("/forecast", include_in_schema=False)
async def forecast_page(
    request: Request, client: Annotated[Api, Depends(api)], period: str = "", saved: str = ""
) -> HTMLResponse:
    period = period.strip() or this_month(client.session.timezone)
    context: dict[str, Any] = {"field_errors": {}, "target": {}, "saved": saved}
    try:
        context |= await forecast_context(client, period)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        context |= {
            "period": period,
            "mine": None,
            "rows": [],
            "team": [],
            "department": None,
            "department_path": None,
            "team_limited": False,
            "can_set_targets": False,
            "money": grouped,
        }
        context["field_errors"] = {"period": problem.field_errors().get("period") or client.problem_text(problem)}
        return render(request, "pipeline/forecast.html", context, status_code=422)
    return render(request, "pipeline/forecast.html", context)


@forecast_router.post("/targets", include_in_schema=False)
async def set_target(
    request: Request,
    client: Annotated[Api, Depends(api)],
    who: Annotated[str, Form()],
    period: Annotated[str, Form()],
    amount: Annotated[str, Form()] = "",
) -> Response:
    """``who`` is ``rep:<user id>`` or ``department:<department id>``."""
    scope, _, scope_id = who.partition(":")
    target = {"who": who, "period": period.strip(), "amount": amount.strip()}
    if scope not in ("rep", "department") or not scope_id:  # not one of the form's choices
        return RedirectResponse("/pipeline/forecast", status_code=303)
    try:
        await client.send(
            "pipeline", "PUT", f"/v1/targets/{scope}/{scope_id}/{target['period']}", json={"amount": target["amount"]}
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        errors = problem.field_errors()
        if not errors:  # a path parameter (the period) or the whole request
            errors = {"period": client.problem_text(problem)}
        shown_at = {"amount": "target_amount", "period": "target_period"}  # the rest is about whom
        field_errors: dict[str, str] = {}
        for name, reason in errors.items():
            field_errors.setdefault(shown_at.get(name, "target_who"), reason)
        context: dict[str, Any] = {"target": target, "field_errors": field_errors, "saved": ""}
        shown = this_month(client.session.timezone) if "period" in errors else target["period"]
        context |= await forecast_context(client, shown)
        return render(request, "pipeline/forecast.html", context, status_code=422)
    query = urlencode({"period": target["period"], "saved": who})
    return RedirectResponse(f"/pipeline/forecast?{query}", status_code=303)
