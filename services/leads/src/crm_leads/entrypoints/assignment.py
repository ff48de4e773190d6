"""The HTTP API of the lead pool's settings and assignment rules (/v1/leads/pool-settings,
/v1/leads/assignment-rules, /v1/leads/{id}/auto-assign). Included before the leads router, so
these paths are not taken for a lead id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from crm_leads.application.assignment import Assignment, AssignmentRules
from crm_leads.domain.assignment import ClaimScope, Condition, Method, PoolSettingsIn, RuleIn, RulePatch
from crm_leads.entrypoints.schemas import LeadOut, lead_out
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import etag, expected_version, versioned
from crm_platform.history import HistoryEntry
from crm_platform.openapi import problems

Document = dict[str, Any]


def assignment_rules(request: Request) -> AssignmentRules:
    found: AssignmentRules = request.app.state.assignment
    return found


App = Annotated[AssignmentRules, Depends(assignment_rules)]
router = APIRouter(prefix="/v1/leads", tags=["lead assignment"])


class PoolSettingsOut(BaseModel):
    claim_scope: ClaimScope
    updated_at: datetime
    updated_by: str | None = None
    version: int


class RuleOut(BaseModel):
    id: str
    name: str
    position: int
    department_id: str
    department_path: str
    condition: Condition
    method: Method
    users: list[str]
    capacity: int | None = None
    enabled: bool
    created_at: datetime
    created_by: str | None = None
    updated_at: datetime
    version: int


class RuleList(BaseModel):
    items: list[RuleOut]


class RunOut(BaseModel):
    examined: int
    assigned: int
    assignments: list[Assignment]


class AutoAssignOut(BaseModel):
    lead: LeadOut
    assignment: Assignment | None = None


def rule_out(doc: Document) -> RuleOut:
    return RuleOut(
        id=doc["_id"],
        name=doc["name"],
        position=int(doc["position"]),
        department_id=doc["department_id"],
        department_path=doc["department_path"],
        condition=Condition(**doc["condition"]),
        method=doc["method"],
        users=list(doc["users"]),
        capacity=doc.get("capacity"),
        enabled=bool(doc.get("enabled", True)),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
    )


def _rule(doc: Document, status: int = 200) -> JSONResponse:
    return versioned(
        rule_out(doc), doc, status, location=f"/v1/leads/assignment-rules/{doc['_id']}" if status == 201 else None
    )


def _settings(doc: Document) -> JSONResponse:
    out = PoolSettingsOut(
        claim_scope=doc["claim_scope"],
        updated_at=doc["updated_at"],
        updated_by=doc.get("updated_by"),
        version=int(doc.get("version", 0)),
    )
    return JSONResponse(out.model_dump(mode="json"), headers={"ETag": etag(out.version)})


@router.get("/pool-settings", response_model=PoolSettingsOut, summary="The lead pool's settings")
async def get_pool_settings(app: App) -> JSONResponse:
    """``claim_scope``: ``department`` (a pool lead is for its department's members and whoever's leads
    scope reaches its department) or ``company`` (for everyone with a leads scope). ETag "0": never set."""
    return _settings(await app.settings())


@router.put(
    "/pool-settings",
    response_model=PoolSettingsOut,
    summary="Change the lead pool's settings",
    responses=problems(403, 409, 412),
)
async def put_pool_settings(
    body: PoolSettingsIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """Only a caller whose ``leads`` scope is ``all`` (admins). ``If-Match`` optional ("0" before the first change)."""
    return _settings(await app.put_settings(principal, body, expected_version(request, required=False)))


@router.get("/assignment-rules", response_model=RuleList, summary="The assignment rules, in the order they are tried")
async def list_rules(app: App) -> RuleList:
    return RuleList(items=[rule_out(d) for d in await app.all_rules()])


@router.post(
    "/assignment-rules",
    status_code=201,
    response_model=RuleOut,
    summary="Add an assignment rule",
    responses=problems(403, 422),
)
async def create_rule(body: RuleIn, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """``department_id`` must be in your ``leads`` reach; every user an active directory user in its subtree."""
    return _rule(await app.create(principal, body), 201)


@router.post(
    "/assignment-rules/run",
    response_model=RunOut,
    summary="Apply the rules to the pool as it stands",
)
async def run_rules(principal: CurrentPrincipal, app: App) -> RunOut:
    """Every pool lead you see, oldest first: the first matching rule gives it to the next user with room."""
    result = await app.run(principal)
    return RunOut(examined=result.examined, assigned=len(result.assignments), assignments=result.assignments)


@router.get("/assignment-rules/{rule_id}", response_model=RuleOut, summary="One assignment rule")
async def get_rule(rule_id: str, app: App) -> JSONResponse:
    return _rule(await app.get(rule_id))


@router.patch(
    "/assignment-rules/{rule_id}",
    response_model=RuleOut,
    summary="Change an assignment rule",
    responses=problems(403, 412, 428),
)
async def patch_rule(
    rule_id: str, body: RulePatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    """``If-Match`` required: 428 without, 412 when stale."""
    return _rule(await app.update(principal, rule_id, body, expected_version(request, required=True)))


@router.delete(
    "/assignment-rules/{rule_id}", status_code=204, summary="Delete an assignment rule", responses=problems(412, 428)
)
async def delete_rule(rule_id: str, request: Request, principal: CurrentPrincipal, app: App) -> Response:
    """``If-Match`` required."""
    await app.delete(principal, rule_id, expected_version(request, required=True))
    return Response(status_code=204)


@router.get(
    "/assignment-rules/{rule_id}/history", response_model=list[HistoryEntry], summary="History of an assignment rule"
)
async def rule_history(rule_id: str, request: Request, app: App) -> list[HistoryEntry]:
    return await app.history(rule_id, request.app.state.kit.event_log)


@router.post(
    "/{lead_id}/auto-assign",
    response_model=AutoAssignOut,
    summary="Offer a pool lead to the assignment rules",
    responses=problems(409),
)
async def auto_assign(lead_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    """The first matching rule gives it to the next user with room; ``assignment`` null: it stays in the pool."""
    doc, done = await app.auto_assign_one(principal, lead_id)
    out = AutoAssignOut(lead=lead_out(doc), assignment=done)
    return versioned(out, doc)
