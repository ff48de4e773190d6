"""The HTTP API of the reporting service: /v1/reports/*, the customer timeline, /v1/admin/*."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from crm_platform import money
from crm_platform.auth import CurrentPrincipal, Principal
from crm_platform.errors import ValidationFailed
from crm_platform.openapi import problems
from crm_platform.permissions import Permission
from crm_reporting.adapters.readmodels import Generations, ReadModels
from crm_reporting.adapters.rebuild_lease import RebuildLease
from crm_reporting.application.contributions import DISTRIBUTION_FIELDS
from crm_reporting.application.lag import LagTracker
from crm_reporting.application.reports import Reports, timeline
from crm_reporting.application.scope import Scope
from crm_reporting.domain.periods import Bucket, Period, PeriodError, resolve_period
from crm_reporting.entrypoints import fields
from crm_reporting.entrypoints.rendering import respond
from crm_reporting.settings import ReportingSettings

router = APIRouter(prefix="/v1", tags=["reports"])
admin = APIRouter(prefix="/v1/admin", tags=["operations"])
Document = dict[str, Any]
Format = Annotated[Literal["json", "csv"] | None, Query(alias="format", description="csv: a CSV download")]
# Every report answers JSON, or CSV with ?format=csv: both go into its OpenAPI document.
JSON_OR_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}
OwnerId = Annotated[str | None, Query(max_length=200, description="Only this rep's figures")]
DepartmentPath = Annotated[str | None, Query(max_length=500, pattern=r"^/", description="A department subtree")]
PeriodName = Annotated[
    str | None, Query(max_length=10, description="YYYY-MM, YYYY-Qn or YYYY; or give from/to (default: this month)")
]
From = Annotated[date | None, Query(alias="from")]
To = Annotated[date | None, Query(alias="to", description="Inclusive")]
Tz = Annotated[str | None, Query(max_length=64, description="IANA time zone of the buckets (default Asia/Shanghai)")]
Currency = Annotated[
    str | None,
    Query(
        max_length=3,
        description="ISO 4217 code of the amounts (default CNY, the setting CRM_DEFAULT_CURRENCY): opportunities "
        "in another currency are not added in",
    ),
]


def _settings(request: Request) -> ReportingSettings:
    settings: ReportingSettings = request.app.state.settings
    return settings


def _reports(request: Request) -> Reports:
    reports: Reports = request.app.state.reports
    return reports


async def _models(request: Request) -> ReadModels:
    generations: Generations = request.app.state.generations
    return await generations.current()


Models = Annotated[ReadModels, Depends(_models)]
ReportsDep = Annotated[Reports, Depends(_reports)]
SettingsDep = Annotated[ReportingSettings, Depends(_settings)]


def _currency(code: str | None, settings: ReportingSettings) -> str:
    try:
        return money.currency_code(code or settings.default_currency)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field("currency", str(exc), "query") from exc


def _tz(name: str | None, settings: ReportingSettings) -> ZoneInfo:
    try:
        return ZoneInfo(name or settings.default_time_zone)
    # OSError: "Asia" names a directory of tzdata, not a zone (it was a 500).
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValidationFailed.for_field("tz", "not a known IANA time zone", "query") from exc


def _period(request: Request, name: str | None, start: date | None, end: date | None, tz: ZoneInfo) -> Period:
    today = request.app.state.kit.clock.now().astimezone(tz).date()
    try:
        return resolve_period(name, start, end, tz, today)
    except PeriodError as exc:
        raise ValidationFailed.for_field(exc.field, exc.reason, "query") from exc


def _scope(principal: Principal, owner_id: str | None, department_path: str | None) -> Scope:
    return Scope.check(principal, owner_id, department_path)


@router.get(
    "/reports/funnel",
    summary="Sales funnel per stage of a pipeline",
    responses={**JSON_OR_CSV, **problems(404)},  # 404: an unknown pipeline_id
)
async def funnel(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    reports: ReportsDep,
    settings: SettingsDep,
    fmt: Format = None,
    period: PeriodName = None,
    start: From = None,
    end: To = None,
    tz: Tz = None,
    owner_id: OwnerId = None,
    department_path: DepartmentPath = None,
    pipeline_id: Annotated[str | None, Query(max_length=200, description="Default: the default pipeline")] = None,
    currency: Currency = None,
    custom_field: Annotated[
        str | None,
        Query(
            max_length=80,
            description="custom.<key> of an active choice, multi_choice, user or boolean custom field of "
            "opportunities: adds by_custom_field, one row per value (each option of a multi_choice; (none) "
            "without a value) with open_count/open_amount now and won/won_amount/lost in the period; the "
            "CSV download holds those rows. 422 for an unknown, archived or other type of field",
        ),
    ] = None,
) -> Response:
    fields.ensure_group_visible(principal, "opportunities", custom_field)
    group = reports.group_by("opportunities", custom_field, "custom_field") if custom_field else None
    scope = _scope(principal, owner_id, department_path)
    p = _period(request, period, start, end, _tz(tz, settings))
    cur = _currency(currency, settings)
    report = fields.funnel(await reports.funnel(models, scope, p, pipeline_id, group, cur), principal)
    rows = report["by_custom_field"]["rows"] if group is not None else report["rows"]
    return respond(request, fmt, report, rows, "funnel")


@router.get(
    "/reports/forecast",
    summary="Targets, won amount and weighted open pipeline per rep and department",
    responses=JSON_OR_CSV,
)
async def forecast(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    reports: ReportsDep,
    settings: SettingsDep,
    fmt: Format = None,
    period: PeriodName = None,
    tz: Tz = None,
    owner_id: OwnerId = None,
    department_path: DepartmentPath = None,
    currency: Currency = None,
) -> Response:
    fields.ensure_forecast_visible(principal)
    scope = _scope(principal, owner_id, department_path)
    p = _period(request, period, None, None, _tz(tz, settings))
    report = await reports.forecast(models, scope, p, _currency(currency, settings))
    return respond(request, fmt, report, report["rows"], "forecast")


ActivitySection = Literal[
    "interactions",
    "new_customers",
    "not_followed_up",
    "not_followed_up_per_rep",
    "overdue_tasks",
    "interactions_by_field",
    "interactions_by_field_per_rep",
    "tasks_by_field",
    "tasks_by_field_per_rep",
]


def _group_param(module: str, counted: str) -> Any:
    return Query(
        max_length=80,
        description=f"custom.<key> of an active choice, multi_choice, user or boolean custom field of {module}: "
        f"adds {module}_by_field ({counted} in the period per value; each option of a multi_choice, (none) "
        f"without a value) and {module}_by_field_per_rep. 422 for an unknown, archived or other type of field",
    )


@router.get(
    "/reports/activity",
    summary="Interactions per rep, channel and day/week/month; follow-up status",
    responses=JSON_OR_CSV,
)
async def activity(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    reports: ReportsDep,
    settings: SettingsDep,
    fmt: Format = None,
    period: PeriodName = None,
    start: From = None,
    end: To = None,
    tz: Tz = None,
    owner_id: OwnerId = None,
    department_path: DepartmentPath = None,
    bucket: Annotated[Bucket, Query()] = "day",
    stale_days: Annotated[int, Query(ge=1, le=3650, description="N: not followed up for N days")] = 14,
    section: Annotated[ActivitySection, Query(description="The table a CSV download holds")] = "interactions",
    interaction_field: Annotated[
        str | None, _group_param("interactions", "active interactions by occurrence and author")
    ] = None,
    task_field: Annotated[str | None, _group_param("tasks", "tasks not deleted by creation and assignee")] = None,
) -> Response:
    fields.ensure_group_visible(principal, "interactions", interaction_field)
    fields.ensure_group_visible(principal, "tasks", task_field)
    by_interaction = (
        reports.group_by("interactions", interaction_field, "interaction_field") if interaction_field else None
    )
    by_task = reports.group_by("tasks", task_field, "task_field") if task_field else None
    if section not in ("interactions", "new_customers", "not_followed_up", "not_followed_up_per_rep", "overdue_tasks"):
        needed = "interaction_field" if section.startswith("interactions") else "task_field"
        if (by_interaction if needed == "interaction_field" else by_task) is None:
            raise ValidationFailed.for_field("section", f"{section} needs {needed}", "query")
    scope = _scope(principal, owner_id, department_path)
    zone = _tz(tz, settings)
    p = _period(request, period, start, end, zone)
    now = request.app.state.kit.clock.now()
    report = await reports.activity(models, scope, p, bucket, stale_days, now, by_interaction, by_task)
    return respond(request, fmt, report, report[section], f"activity-{section}")


@router.get(
    "/reports/distribution",
    summary="Active customers by a profile field, with chart-ready series",
    responses=JSON_OR_CSV,
)
async def distribution(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    reports: ReportsDep,
    field: Annotated[
        str,
        Query(
            max_length=60,
            description=f"A profile field ({', '.join(DISTRIBUTION_FIELDS)}) or custom.<key> of a choice, "
            "multi-choice or boolean custom field of customers",
        ),
    ],
    fmt: Format = None,
    owner_id: OwnerId = None,
    department_path: DepartmentPath = None,
) -> Response:
    fields.ensure_distribution_visible(principal, field)
    scope = _scope(principal, owner_id, department_path)
    report = await reports.distribution(models, scope, field)
    return respond(request, fmt, report, report["rows"], f"distribution-{field}")


@router.get("/reports/quality", summary="Data quality and adoption KPIs per rep and overall", responses=JSON_OR_CSV)
async def quality(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    reports: ReportsDep,
    settings: SettingsDep,
    fmt: Format = None,
    period: PeriodName = None,
    start: From = None,
    end: To = None,
    tz: Tz = None,
    owner_id: OwnerId = None,
    department_path: DepartmentPath = None,
) -> Response:
    scope = _scope(principal, owner_id, department_path)
    p = _period(request, period, start, end, _tz(tz, settings))
    report = fields.other_quality(fields.quality(await reports.quality(models, scope, p), principal), principal)
    return respond(request, fmt, report, [*report["rows"], report["overall"]], "quality")


@router.get(
    "/customers/{customer_id}/timeline", summary="Every event about one customer, in time order", responses=JSON_OR_CSV
)
async def customer_timeline(
    request: Request,
    customer_id: str,
    principal: CurrentPrincipal,
    models: Models,
    settings: SettingsDep,
    fmt: Format = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    tz: Tz = None,
) -> Response:
    report = fields.timeline(
        await timeline(models, Scope(principal), customer_id, limit, cursor, _tz(tz, settings)), principal
    )
    return respond(request, fmt, report, report["items"], f"timeline-{customer_id}")


# --- operations --------------------------------------------------------------------------


@admin.get("/lag", summary="Projection lag: consumer lag in messages and end-to-end lag in seconds")
async def lag(request: Request, principal: CurrentPrincipal) -> Document:
    principal.require(Permission.system_operate)
    tracker: LagTracker = request.app.state.lag
    consumers = {}
    for c in request.app.state.kit.consumers:
        consumers[c.group_id] = {"assigned": c.assigned(), "lag": await c.lag() if c.assigned() else {}}
    generations: Generations = request.app.state.generations
    return {"end_to_end": tracker.summary(), "consumers": consumers, "generation": await generations.active()}


@admin.post(
    "/rebuild",
    status_code=202,
    summary="Rebuild the read models from the topics, then switch to them",
    responses=problems(409),
)
async def start_rebuild(request: Request, principal: CurrentPrincipal) -> JSONResponse:
    principal.require(Permission.system_operate)
    from crm_reporting.main import rebuild  # the app factory imports this module

    state = request.app.state
    # One rebuild at a time on every replica (and the command line): 409 naming the one running.
    lease = await RebuildLease.acquire(state.kit.db)
    state.rebuild_task = asyncio.create_task(
        rebuild(state.settings, state.kit.clock, live=state.generations, lease=lease)
    )
    return JSONResponse({"status": "running", "rebuild": lease.holder}, status_code=202)


@admin.get("/rebuild", summary="The rebuild running on any replica, else the last one started here")
async def rebuild_status(request: Request, principal: CurrentPrincipal) -> Document:
    principal.require(Permission.system_operate)
    task: asyncio.Task[Any] | None = request.app.state.rebuild_task
    elsewhere = await RebuildLease.running(request.app.state.kit.db)
    if task is None or (task.done() and elsewhere is not None):
        # Started on another replica or by the command line: what the lease says.
        return {"status": "running", "rebuild": elsewhere["holder"]} if elsewhere else {"status": "none"}
    if not task.done():
        return {"status": "running"}
    if task.exception() is not None:
        return {"status": "failed", "error": str(task.exception())}
    result = task.result()
    return {"status": "done", **result.__dict__}
