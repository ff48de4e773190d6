"""The HTTP API of the pool service (/v1/pool)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from crm_platform.auth import CurrentPrincipal
from crm_platform.clock import as_utc
from crm_platform.concurrency import etag, expected_version
from crm_platform.history import HistoryEntry
from crm_platform.openapi import problems
from crm_platform.permissions import Permission
from crm_pool.application.rebuilds import Rebuilds
from crm_pool.application.recycler import Recycler
from crm_pool.application.rules import Rules
from crm_pool.domain.model import DraftPreviewIn, RuleCreate, RulePatch
from crm_pool.entrypoints.schemas import (
    LeadPreviewItem,
    MyCustomer,
    MyCustomers,
    Preview,
    PreviewItem,
    RebuildOut,
    RuleOut,
    RunOut,
    rule_out,
)

router = APIRouter(prefix="/v1/pool", tags=["pool"])
Document = dict[str, Any]


def _rules(request: Request) -> Rules:
    rules: Rules = request.app.state.rules
    return rules


def _recycler(request: Request) -> Recycler:
    recycler: Recycler = request.app.state.recycler
    return recycler


RulesService = Annotated[Rules, Depends(_rules)]
RecyclerService = Annotated[Recycler, Depends(_recycler)]


def _respond(doc: Document, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        rule_out(doc).model_dump(mode="json"),
        status_code=status,
        headers={"ETag": etag(doc["version"]), **(headers or {})},
    )


@router.post(
    "/rules",
    status_code=201,
    response_model=RuleOut,
    summary="Create a recycling and claim rule (global or per department)",
    responses=problems(409),
)
async def create_rule(body: RuleCreate, principal: CurrentPrincipal, rules: RulesService) -> JSONResponse:
    doc = await rules.create(principal, body)
    return _respond(doc, 201, {"Location": f"/v1/pool/rules/{doc['_id']}"})


@router.get(
    "/rules",
    response_model=list[RuleOut],
    summary="The rules you may see (admins: all; managers: those applying to their subtree)",
)
async def list_rules(principal: CurrentPrincipal, rules: RulesService, include_deleted: bool = False) -> list[RuleOut]:
    return [rule_out(d) for d in await rules.list_rules(principal, include_deleted)]


@router.get("/rules/{rule_id}", response_model=RuleOut, summary="One rule, with its ETag")
async def get_rule(rule_id: str, principal: CurrentPrincipal, rules: RulesService) -> JSONResponse:
    return _respond(await rules.get(principal, rule_id))


@router.patch(
    "/rules/{rule_id}",
    response_model=RuleOut,
    summary="Change a rule (If-Match required)",
    responses=problems(409, 412, 428),
)
async def update_rule(
    rule_id: str, body: RulePatch, request: Request, principal: CurrentPrincipal, rules: RulesService
) -> JSONResponse:
    return _respond(await rules.update(principal, rule_id, body, expected_version(request, required=True)))


@router.delete(
    "/rules/{rule_id}",
    response_model=RuleOut,
    summary="Delete a rule (If-Match required); its history stays",
    responses=problems(409, 412, 428),
)
async def delete_rule(rule_id: str, request: Request, principal: CurrentPrincipal, rules: RulesService) -> JSONResponse:
    return _respond(await rules.delete(principal, rule_id, expected_version(request, required=True)))


@router.get(
    "/rules/{rule_id}/history",
    response_model=list[HistoryEntry],
    summary="Every change of the rule: who, when, old and new",
)
async def rule_history(
    rule_id: str, request: Request, principal: CurrentPrincipal, rules: RulesService
) -> list[HistoryEntry]:
    return await rules.history(principal, rule_id, request.app.state.kit.event_log)


@router.get(
    "/preview", response_model=Preview, summary="Which customers would be warned or recycled at a moment, and why"
)
async def preview(
    principal: CurrentPrincipal,
    recycler: RecyclerService,
    at: Annotated[datetime | None, Query(description="The moment (ISO 8601); default: now.")] = None,
    department: Annotated[str | None, Query(description="Only this department subtree.")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Preview:
    moment = as_utc(at) if at is not None else recycler.clock.now()
    items = await recycler.preview(principal, moment, department, limit)
    leads = await recycler.leads.preview(principal, moment, department, limit) if recycler.leads else []
    return Preview(
        at=moment,
        department=department,
        items=[PreviewItem.model_validate(i) for i in items],
        leads=[LeadPreviewItem.model_validate(i) for i in leads],
    )


@router.post(
    "/preview",
    response_model=Preview,
    summary="Preview a rule before saving it: who it would warn or recycle at a moment, and why",
    description="The draft takes the place of the rule of its department (or of the global rule) for this "
    "preview only; nothing is stored and no event is published. Managers draft rules for their subtree.",
)
async def preview_draft(body: DraftPreviewIn, principal: CurrentPrincipal, recycler: RecyclerService) -> Preview:
    Rules.ensure_may_manage(principal, body.rule.department_path)
    moment = as_utc(body.at) if body.at is not None else recycler.clock.now()
    draft = {**body.rule.model_dump(), "rule_id": "draft", "deleted": False}
    items = await recycler.preview(principal, moment, body.rule.department_path, body.limit, draft=draft)
    leads = []
    if recycler.leads is not None:
        leads = await recycler.leads.preview(principal, moment, body.rule.department_path, body.limit, draft=draft)
    return Preview(
        at=moment,
        department=body.rule.department_path,
        items=[PreviewItem.model_validate(i) for i in items],
        leads=[LeadPreviewItem.model_validate(i) for i in leads],
    )


@router.get(
    "/my-customers",
    response_model=MyCustomers,
    summary="Your customers, soonest to be recycled first, with the days left",
)
async def my_customers(
    principal: CurrentPrincipal, recycler: RecyclerService, limit: Annotated[int, Query(ge=1, le=5000)] = 1000
) -> MyCustomers:
    return MyCustomers(items=[MyCustomer.model_validate(i) for i in await recycler.my_customers(principal, limit)])


@router.post(
    "/run",
    response_model=RunOut,
    summary="Run the recycling now (admins); safe while the scheduler runs elsewhere",
)
async def run(principal: CurrentPrincipal, recycler: RecyclerService) -> RunOut:
    principal.require(Permission.system_operate)
    now = recycler.clock.now()
    report = await recycler.run(now)
    return RunOut(
        at=now,
        warned=report.warned,
        decided=report.decided,
        skipped=report.skipped,
        paused=report.paused,
        leads_warned=report.leads_warned,
        leads_decided=report.leads_decided,
    )


def _rebuilds(request: Request) -> Rebuilds:
    rebuilds: Rebuilds = request.app.state.rebuilds
    return rebuilds


RebuildsService = Annotated[Rebuilds, Depends(_rebuilds)]


@router.post(
    "/rebuilds",
    status_code=202,
    response_model=RebuildOut,
    summary="Rebuild every customer clock from the topics (admins); runs in the background",
    description="Resets the clocks and replays the customers, pipeline and interactions topics from the beginning "
    "under a new consumer group. One rebuild at a time (409 names the running one); the scheduler skips its runs "
    "until it ends. Follow it at the Location given.",
    responses=problems(409),
)
async def start_rebuild(principal: CurrentPrincipal, rebuilds: RebuildsService) -> JSONResponse:
    principal.require(Permission.system_operate)
    job = await rebuilds.begin(principal.user_id)
    return JSONResponse(
        RebuildOut.model_validate(job).model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/pool/rebuilds/{job['rebuild_id']}"},
    )


@router.get("/rebuilds/{rebuild_id}", response_model=RebuildOut, summary="A rebuild's status (admins)")
async def get_rebuild(rebuild_id: str, principal: CurrentPrincipal, rebuilds: RebuildsService) -> RebuildOut:
    principal.require(Permission.system_operate)
    return RebuildOut.model_validate(await rebuilds.get(rebuild_id))
