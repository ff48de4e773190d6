"""The HTTP API of the pipeline service (/v1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from crm_pipeline.application import history as summaries
from crm_pipeline.application.funnel import funnel as compute_funnel
from crm_pipeline.application.opportunities import Opportunities
from crm_pipeline.application.pipelines import Pipelines
from crm_pipeline.application.queries import OpportunityFilter, list_opportunities
from crm_pipeline.application.targets import Forecast, Targets
from crm_pipeline.domain.lines import without_line_prices
from crm_pipeline.domain.model import (
    ApprovalIn,
    ApprovalRequestIn,
    AssignIn,
    DocumentIn,
    LoseIn,
    OpportunityCreate,
    OpportunityPatch,
    PipelineIn,
    ReopenIn,
    StageMoveIn,
    TargetIn,
    WinIn,
)
from crm_pipeline.entrypoints.schemas import (
    DocumentOut,
    FunnelOut,
    OpportunityOut,
    OpportunityPage,
    PipelineOut,
    TargetOut,
    funnel_out,
    opportunity_out,
    pipeline_out,
    target_out,
)
from crm_pipeline.settings import PipelineSettings
from crm_platform.auth import CurrentPrincipal, Principal
from crm_platform.concurrency import etag, expected_version
from crm_platform.customfields import field_name, query_filters
from crm_platform.fieldaccess import redact_history, written_fields
from crm_platform.history import HistoryEntry, history
from crm_platform.idempotency import IdempotencyKeyHeader, mark_replayed
from crm_platform.openapi import problems

Document = dict[str, Any]


@dataclass(frozen=True)
class Services:
    """What the app factory wires once; handlers get it from the app state."""

    pipelines: Pipelines
    opportunities: Opportunities
    targets: Targets
    settings: PipelineSettings


def services(request: Request) -> Services:
    found: Services = request.app.state.pipeline
    return found


Svc = Annotated[Services, Depends(services)]


def _json(body: Any, version: int, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True),
        status_code=status,
        headers={"ETag": etag(version), **(headers or {})},
    )


async def _opportunity(
    principal: Principal, svc: Services, doc: Document, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    pipeline = await svc.pipelines.repo.pipeline(doc["pipeline_id"])
    body = opportunity_out(doc, pipeline, svc.opportunities.clock.now(), detail=True)
    return JSONResponse(
        _visible(principal, body), status_code=status, headers={"ETag": etag(doc["version"]), **(headers or {})}
    )


def _visible(principal: Principal, body: OpportunityOut) -> dict[str, Any]:
    """The opportunity as this caller may see it: fields their roles hide are left out, not nulled."""
    policy = principal.fields("opportunities")
    full = body.model_dump(mode="json", by_alias=True)
    shown = policy.redact(full)
    if policy.hides("amount"):  # the lines stay, without their prices (redact took them whole)
        shown["lines"] = without_line_prices(full)["lines"]
    return shown


#: List filter -> the opportunity field it reads; sort key -> the field it orders by.
_FILTER_FIELD = {
    "amount_min": "amount",
    "amount_max": "amount",
    "expected_close_from": "expected_close_date",
    "expected_close_to": "expected_close_date",
    "source_campaign": "source_campaign",
}
_SORT_FIELD = {
    "amount": "amount",
    "weighted_amount": "weighted_amount",
    "probability": "probability",
    "expected_close_date": "expected_close_date",
}


def _ensure_query_visible(principal: Principal, filters: OpportunityFilter, sort: str | None) -> None:
    """Refuse (403 ``field-hidden``) a filter or sort on a field the caller's roles hide (a custom
    field's filter is on ``custom.<key>``)."""
    policy = principal.fields("opportunities")
    given = [name for name, value in filters.model_dump().items() if value is not None]
    policy.ensure_visible([_FILTER_FIELD[n] for n in given if n in _FILTER_FIELD], "filter")
    policy.ensure_visible([field_name(key) for key in filters.custom], "filter")
    keys = [part.strip().lstrip("+-") for part in (sort or "").split(",") if part.strip()]
    policy.ensure_visible([_SORT_FIELD[k] for k in keys if k in _SORT_FIELD], "sort")
    # A custom field's sort key is the field itself (custom.<key>).
    policy.ensure_visible([k for k in keys if k.startswith("custom.")], "sort")


def _ensure_writable(principal: Principal, body: BaseModel, *, creating: bool) -> None:
    """Refuse (403 ``field-read-only``) a create or patch that sets fields the caller's roles protect."""
    written = written_fields(body.model_dump(exclude_unset=True), creating=creating)
    if getattr(body, "amount_follows_lines", None):
        written.append("amount")  # the amount becomes the lines' total
    principal.fields("opportunities").ensure_writable(written)


# --- pipelines ---------------------------------------------------------------------------------

pipelines_router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])


@pipelines_router.get("", response_model=list[PipelineOut], summary="Every pipeline with its stages in order")
async def list_pipelines(principal: CurrentPrincipal, svc: Svc) -> list[PipelineOut]:
    return [pipeline_out(d) for d in await svc.pipelines.list()]


@pipelines_router.post(
    "",
    status_code=201,
    response_model=PipelineOut,
    summary="Configure a new pipeline (admins)",
    responses=problems(409),
)
async def create_pipeline(body: PipelineIn, principal: CurrentPrincipal, svc: Svc) -> JSONResponse:
    doc = await svc.pipelines.create(principal, body)
    return _json(pipeline_out(doc), doc["version"], 201, {"Location": f"/v1/pipelines/{doc['_id']}"})


@pipelines_router.get("/{pipeline_id}", response_model=PipelineOut, summary="One pipeline")
async def get_pipeline(pipeline_id: str, principal: CurrentPrincipal, svc: Svc) -> JSONResponse:
    doc = await svc.pipelines.get(pipeline_id)
    return _json(pipeline_out(doc), doc["version"])


@pipelines_router.put(
    "/{pipeline_id}",
    response_model=PipelineOut,
    summary="Rename, reorder, add, change or remove stages (admins; If-Match)",
    description="Stages keep their stage_id, so opportunities are untouched; a stage in use cannot be removed (409).",
    responses=problems(409, 412, 428),
)
async def put_pipeline(
    pipeline_id: str, body: PipelineIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.pipelines.update(principal, pipeline_id, body, expected_version(request, required=True))
    return _json(pipeline_out(doc), doc["version"])


@pipelines_router.post(
    "/{pipeline_id}/make-default",
    response_model=PipelineOut,
    summary="Make this the default pipeline (admins)",
    responses=problems(409),
)
async def make_default(pipeline_id: str, principal: CurrentPrincipal, svc: Svc) -> JSONResponse:
    doc = await svc.pipelines.make_default(principal, pipeline_id)
    return _json(pipeline_out(doc), doc["version"])


@pipelines_router.get(
    "/{pipeline_id}/history",
    response_model=list[HistoryEntry],
    summary="Every configuration change: who, when, old, new",
)
async def pipeline_history(
    pipeline_id: str, request: Request, principal: CurrentPrincipal, svc: Svc
) -> list[HistoryEntry]:
    doc = await svc.pipelines.get(pipeline_id)
    return await history(request.app.state.kit.event_log, doc, summaries.summarise)


# --- opportunities -------------------------------------------------------------------------------

router = APIRouter(prefix="/v1/opportunities", tags=["opportunities"])


class ListParams(OpportunityFilter):
    model_config = ConfigDict(extra="forbid")

    sort: str | None = Field(
        default=None,
        description="Up to four keys, '-' for descending: e.g. expected_close_date,-amount; a sortable custom "
        "field as custom.<key>.",
    )
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=500)
    include_total: bool = False


@router.post(
    "",
    status_code=201,
    response_model=OpportunityOut,
    summary="Create an opportunity for a customer you can see",
    responses=problems(409),
)
async def create_opportunity(
    body: OpportunityCreate, principal: CurrentPrincipal, svc: Svc, key: IdempotencyKeyHeader
) -> JSONResponse:
    _ensure_writable(principal, body, creating=True)
    doc = await svc.opportunities.create(principal, body, key)
    return mark_replayed(
        await _opportunity(principal, svc, doc, 201, {"Location": f"/v1/opportunities/{doc['_id']}"}), key
    )


@router.get(
    "", response_model=OpportunityPage, summary="List opportunities: filters, sort on up to four keys, cursor pages"
)
async def list_(
    params: Annotated[ListParams, Query()], request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    """Filters combine with AND; ``custom.<key>=<value>`` filters on a custom field flagged
    ``filterable`` (a number or date also ``<low>..<high>``, either end left open; money as
    ``1000..5000 CNY``); ``sort=custom.<key>`` (or ``-custom.<key>``) on one flagged ``sortable``."""
    filters = OpportunityFilter.model_validate(params.model_dump(include=set(OpportunityFilter.model_fields)))
    fieldset = await svc.pipelines.fieldset()
    custom = query_filters(fieldset, request.query_params.multi_items())
    filters = filters.with_custom(fieldset, custom).with_sorts(fieldset, params.sort)
    _ensure_query_visible(principal, filters, params.sort)
    page = await list_opportunities(
        svc.opportunities.repo,
        principal,
        filters,
        sort=params.sort,
        cursor=params.cursor,
        limit=params.limit,
        with_total=params.include_total,
        default_currency=svc.settings.default_currency,
    )
    pipelines = await svc.opportunities.repo.pipelines_by_id({d["pipeline_id"] for d in page.items})
    now = svc.opportunities.clock.now()
    items = [_visible(principal, opportunity_out(d, pipelines.get(d["pipeline_id"]), now)) for d in page.items]
    return JSONResponse({"items": items, "next_cursor": page.next_cursor, "total": page.total})


@router.get(
    "/{opportunity_id}",
    response_model=OpportunityOut,
    summary="One opportunity, its stage history and what the next stage needs",
)
async def get_opportunity(opportunity_id: str, principal: CurrentPrincipal, svc: Svc) -> JSONResponse:
    doc, _ = await svc.opportunities.get(principal, opportunity_id)
    return await _opportunity(principal, svc, doc)


@router.patch(
    "/{opportunity_id}",
    response_model=OpportunityOut,
    summary="Change fields (If-Match); probability: null resets it to the stage's default",
    responses=problems(409, 412, 428),
)
async def patch_opportunity(
    opportunity_id: str, body: OpportunityPatch, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    _ensure_writable(principal, body, creating=False)
    doc = await svc.opportunities.update(principal, opportunity_id, body, expected_version(request, required=True))
    return await _opportunity(principal, svc, doc)


@router.get(
    "/{opportunity_id}/history",
    response_model=list[HistoryEntry],
    summary="Field-level history: who, when, old and new",
)
async def opportunity_history(
    opportunity_id: str, request: Request, principal: CurrentPrincipal, svc: Svc
) -> list[HistoryEntry]:
    doc, _ = await svc.opportunities.get(principal, opportunity_id)
    entries = await history(request.app.state.kit.event_log, doc, summaries.summarise)
    return redact_history(entries, principal.fields("opportunities"))


@router.post(
    "/{opportunity_id}/stage",
    response_model=OpportunityOut,
    summary="Move to another open stage; 422 lists every missing requirement",
    responses=problems(409, 412),
)
async def move_stage(
    opportunity_id: str, body: StageMoveIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.move(
        principal, opportunity_id, body.stage_id, expected_version(request, required=False)
    )
    return await _opportunity(principal, svc, doc)


@router.post(
    "/{opportunity_id}/win",
    response_model=OpportunityOut,
    summary="Won (签约): final until reopened; the won stage's requirements apply",
    responses=problems(409, 412),
)
async def win(
    opportunity_id: str, body: WinIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.win(principal, opportunity_id, body.reason, expected_version(request, required=False))
    return await _opportunity(principal, svc, doc)


@router.post(
    "/{opportunity_id}/lose",
    response_model=OpportunityOut,
    summary="Lost (输单), with a reason and the competitor: final until reopened",
    responses=problems(409, 412),
)
async def lose(
    opportunity_id: str, body: LoseIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.lose(
        principal, opportunity_id, body.reason, body.competitor, expected_version(request, required=False)
    )
    return await _opportunity(principal, svc, doc)


@router.post(
    "/{opportunity_id}/reopen",
    response_model=OpportunityOut,
    summary="Reopen a won (managers) or lost opportunity into an open stage",
    responses=problems(409, 412),
)
async def reopen(
    opportunity_id: str, body: ReopenIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.reopen(
        principal, opportunity_id, body.reason, body.stage_id, expected_version(request, required=False)
    )
    return await _opportunity(principal, svc, doc)


@router.post(
    "/{opportunity_id}/assign",
    response_model=OpportunityOut,
    summary="Give the opportunity to another owner (managers within their subtree, admins)",
    responses=problems(409, 412),
)
async def assign(
    opportunity_id: str, body: AssignIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.assign(principal, opportunity_id, body, expected_version(request, required=False))
    return await _opportunity(principal, svc, doc)


@router.post(
    "/{opportunity_id}/documents",
    status_code=201,
    response_model=DocumentOut,
    summary="Attach a document (by kind: requirements, proposal, quotation, contract ...)",
    responses=problems(409, 412),
)
async def add_document(
    opportunity_id: str, body: DocumentIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc, document = await svc.opportunities.add_document(
        principal, opportunity_id, body, expected_version(request, required=False)
    )
    return _json(DocumentOut.model_validate(document), doc["version"], 201)


@router.delete(
    "/{opportunity_id}/documents/{document_id}",
    response_model=OpportunityOut,
    summary="Detach a document",
    responses=problems(409, 412),
)
async def remove_document(
    opportunity_id: str, document_id: str, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.remove_document(
        principal, opportunity_id, document_id, expected_version(request, required=False)
    )
    return await _opportunity(principal, svc, doc)


@router.post(
    "/{opportunity_id}/approval-requests",
    response_model=OpportunityOut,
    summary="Ask the department's managers to approve a stage that requires it",
    responses=problems(409),
)
async def request_approval(
    opportunity_id: str, body: ApprovalRequestIn, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.request_approval(principal, opportunity_id, body)
    return await _opportunity(principal, svc, doc)


@router.post(
    "/{opportunity_id}/approvals",
    response_model=OpportunityOut,
    summary="Approve (or reject) a stage's approval requirement (the department's managers)",
    responses=problems(409, 412),
)
async def decide_approval(
    opportunity_id: str, body: ApprovalIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.opportunities.decide_approval(
        principal, opportunity_id, body, expected_version(request, required=False)
    )
    return await _opportunity(principal, svc, doc)


# --- targets, forecast, funnel ---------------------------------------------------------------------

reports_router = APIRouter(prefix="/v1", tags=["targets and reports"])
Scope = Literal["rep", "department"]


@reports_router.put(
    "/targets/{scope}/{scope_id}/{period}",
    response_model=TargetOut,
    summary="Set a target (目标) for a rep or a department and a month (2026-11), quarter (2026-Q4) or year (2026)",
    responses=problems(409, 412),
)
async def put_target(
    scope: Scope, scope_id: str, period: str, body: TargetIn, request: Request, principal: CurrentPrincipal, svc: Svc
) -> JSONResponse:
    doc = await svc.targets.set(principal, scope, scope_id, period, body, expected_version(request, required=False))
    return _json(target_out(doc), doc["version"])


@reports_router.get("/targets/{scope}/{scope_id}/{period}", response_model=TargetOut, summary="One target")
async def get_target(scope: Scope, scope_id: str, period: str, principal: CurrentPrincipal, svc: Svc) -> JSONResponse:
    doc = await svc.targets.get(principal, scope, scope_id, period)
    return _json(target_out(doc), doc["version"])


@reports_router.get(
    "/targets/{scope}/{scope_id}/{period}/history",
    response_model=list[HistoryEntry],
    summary="Every change of a target: who, when, old and new amount",
)
async def target_history(
    scope: Scope, scope_id: str, period: str, request: Request, principal: CurrentPrincipal, svc: Svc
) -> list[HistoryEntry]:
    doc = await svc.targets.get(principal, scope, scope_id, period)
    return await history(request.app.state.kit.event_log, doc, summaries.summarise)


@reports_router.get("/targets", response_model=list[TargetOut], summary="Targets of a year that you may see")
async def list_targets(
    principal: CurrentPrincipal,
    svc: Svc,
    year: Annotated[int, Query(ge=2000, le=2100)],
    department: Annotated[str | None, Query(pattern=r"^/")] = None,
    scope: Scope | None = None,
) -> list[TargetOut]:
    return [target_out(d) for d in await svc.targets.list(principal, year, department, scope)]


@reports_router.get(
    "/forecast",
    response_model=Forecast,
    summary="Target vs won and probability-weighted open pipeline for a period (预测)",
)
async def forecast(
    principal: CurrentPrincipal,
    svc: Svc,
    period: Annotated[str, Query(description="2026-11, 2026-Q4 or 2026")],
    rep: Annotated[str | None, Query(description="A rep's user id (default: you).")] = None,
    department: Annotated[
        str | None, Query(pattern=r"^/", description="A department path: it and its subtree.")
    ] = None,
    currency: Annotated[str | None, Query(description="Default CNY; other currencies are counted apart.")] = None,
) -> Forecast:
    # The forecast is made of amounts: a caller who may not see them gets none of it.
    principal.fields("opportunities").ensure_visible(["amount"], "forecast")
    return await svc.targets.forecast(principal, period, rep, department, currency)


@reports_router.get(
    "/funnel", response_model=FunnelOut, summary="The sales funnel (销售漏斗) of opportunities created in a period"
)
async def funnel(
    principal: CurrentPrincipal,
    svc: Svc,
    pipeline: Annotated[str | None, Query(description="Pipeline id (default: the default pipeline).")] = None,
    date_from: Annotated[date | None, Query(alias="from", description="Created on or after this day.")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Created on or before this day.")] = None,
    rep: str | None = None,
    department: Annotated[str | None, Query(pattern=r"^/")] = None,
    currency: str | None = None,
) -> FunnelOut | JSONResponse:
    found, figures, code = await compute_funnel(
        svc.opportunities.repo,
        svc.pipelines,
        svc.settings,
        principal,
        pipeline_id=pipeline,
        date_from=date_from,
        date_to=date_to,
        rep=rep,
        department=department,
        currency_raw=currency,
    )
    body = funnel_out(found, figures, code, date_from=date_from, date_to=date_to, rep=rep, department=department)
    if principal.fields("opportunities").hides("amount"):
        # Counts and conversion stay; each stage's sum of amounts is left out.
        stages = [s.model_dump(mode="json", exclude={"amount", "other_currencies"}) for s in body.stages]
        return JSONResponse({**body.model_dump(mode="json", by_alias=True), "stages": stages})
    return body
