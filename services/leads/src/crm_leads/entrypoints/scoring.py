"""The HTTP API of lead scoring (/v1/leads/scoring/..., /v1/leads/{id}/score)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from crm_leads.application.scoring import Scoring
from crm_leads.domain.scoring import ModelScore, Rule, RulesIn, RulesScore
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import etag, expected_version
from crm_platform.history import HistoryEntry
from crm_platform.openapi import problems

Document = dict[str, Any]


def scoring(request: Request) -> Scoring:
    found: Scoring = request.app.state.scoring
    return found


App = Annotated[Scoring, Depends(scoring)]
router = APIRouter(prefix="/v1/leads", tags=["lead scoring"])


def _moment(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class RulesOut(BaseModel):
    rules: list[Rule]
    version: int = Field(description="0 until rules are first set.")
    updated_by: str | None = None
    updated_at: datetime | None = None


def rules_out(doc: Document) -> RulesOut:
    return RulesOut(
        rules=[Rule.model_validate(r) for r in doc.get("rules") or []],
        version=int(doc.get("version", 0)),
        updated_by=doc.get("updated_by"),
        updated_at=_moment(doc.get("updated_at_ms")),
    )


class ModelOut(BaseModel):
    feature_names: list[str]
    coefficients: list[float] = Field(description="One per feature, in log-odds (positive: towards converted).")
    intercept: float
    classes: list[str]
    samples: dict[str, int] = Field(description="Leads trained on: converted and disqualified.")
    cv_auc: float = Field(description="Cross-validated ROC AUC (0.5: no better than chance).")
    cv_accuracy: float
    folds: int
    trained_at: datetime | None
    trained_by: str | None
    version: int


class ScoreOut(BaseModel):
    score: int = Field(description="0..100: the rules' score, or with a model the mean of it and the probability in %.")
    rules: RulesScore
    model: ModelScore | None = Field(description="null while no model is trained.")
    computed_at: datetime


@router.get("/scoring/rules", response_model=RulesOut, summary="The lead scoring rules")
async def get_rules(response: Response, app: App) -> RulesOut:
    doc = await app.rules()
    response.headers["ETag"] = etag(int(doc.get("version", 0)))
    return rules_out(doc)


@router.put(
    "/scoring/rules",
    response_model=RulesOut,
    summary="Replace the lead scoring rules (If-Match required)",
    responses=problems(412, 422, 428),
)
async def put_rules(
    body: RulesIn, request: Request, response: Response, principal: CurrentPrincipal, app: App
) -> RulesOut:
    """Each rule: a condition on a lead's fact (``field``, ``op``, ``value``) and its ``points``, with a
    ``label`` shown as the reason. ``If-Match``: the ETag of ``GET`` (``"0"`` before rules are first set).
    Leads are re-scored in the background."""
    doc = await app.put_rules(principal, body, expected_version(request, required=True))
    response.headers["ETag"] = etag(int(doc["version"]))
    return rules_out(doc)


@router.get("/scoring/rules/history", response_model=list[HistoryEntry], summary="Every change of the scoring rules")
async def rules_history(request: Request, app: App) -> list[HistoryEntry]:
    return await app.rules_history(request.app.state.kit.event_log)


def model_out(doc: Document) -> ModelOut:
    return ModelOut(
        **{k: doc[k] for k in ModelOut.model_fields if k not in ("trained_at", "version")},
        trained_at=_moment(doc.get("trained_at_ms")),
        version=int(doc["version"]),
    )


@router.get("/scoring/model", response_model=ModelOut, summary="The trained scoring model", responses=problems(404))
async def get_model(app: App) -> ModelOut:
    return model_out(await app.model())


@router.post(
    "/scoring/model/train",
    response_model=ModelOut,
    summary="Train the scoring model on the organisation's converted and disqualified leads",
    responses=problems(409),
)
async def train_model(principal: CurrentPrincipal, app: App) -> ModelOut:
    """409 while the history is too small (the problem says how many of each there are and how many
    are needed). Leads are re-scored in the background."""
    return model_out(await app.train(principal))


@router.get(
    "/{lead_id}/score", response_model=ScoreOut, summary="A lead's score, with the reasons", responses=problems(404)
)
async def lead_score(lead_id: str, principal: CurrentPrincipal, app: App) -> ScoreOut:
    score, by_rules, by_model, now = await app.score(principal, lead_id)
    return ScoreOut(score=score, rules=by_rules, model=by_model, computed_at=now)
