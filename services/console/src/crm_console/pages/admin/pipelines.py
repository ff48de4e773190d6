"""Pipelines over the pipeline service: the list, a new pipeline, and one form to rename, reorder
(position numbers), add, change and remove stages with their requirements (fields to fill,
documents to attach, a manager's approval). Saved whole with ``PUT /v1/pipelines/{id}`` and If-Match."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_console.pages.admin.forms import comma_list, form_of, if_match, listed, loose, number_or_none
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/pipelines")

KINDS = ("open", "won", "lost")
REQUIRED_FIELDS = (
    "amount",
    "expected_close_date",
    "contact_ids",
    "quotation_amount",
    "products",
    "source_campaign",
    "notes",
)
NEW_ROWS = 1  # empty stage rows offered for adding
# A new pipeline starts from the stages the organisation's guides describe; the admin edits them.
TYPICAL_STAGES: tuple[dict[str, Any], ...] = (
    {"name": "初步接触", "name_en": "Initial contact", "probability": 10, "kind": "open"},
    {"name": "需求确认", "name_en": "Needs confirmed", "probability": 30, "kind": "open"},
    {"name": "方案报价", "name_en": "Proposal", "probability": 50, "kind": "open"},
    {"name": "商务谈判", "name_en": "Negotiation", "probability": 70, "kind": "open"},
    {"name": "赢单", "name_en": "Won", "probability": 100, "kind": "won"},
    {"name": "输单", "name_en": "Lost", "probability": 0, "kind": "lost"},
)


@router.get("", include_in_schema=False)
async def pipelines(request: Request, client: Annotated[Api, Depends(api)], done: str = "") -> HTMLResponse:
    items = await client.get("pipeline", "/v1/pipelines")
    return render(request, "admin/pipelines.html", {"items": items, "done": done})


def _blank_stage() -> dict[str, Any]:
    return {"stage_id": "", "name": "", "name_en": "", "probability": "", "kind": "open", "requirements": {}}


def _form(
    request: Request,
    pipeline: dict[str, Any] | None,
    values: dict[str, Any],
    done: str = "",
    problem: UpstreamProblem | None = None,
) -> HTMLResponse:
    """The form. After a refusal ``values`` holds the stages as they were sent, so the service's
    ``stages[i].name`` is row i here and each error shows at its stage."""
    stages = [*values.get("stages", []), *(_blank_stage() for _ in range(NEW_ROWS))]
    context = {
        "pipeline": pipeline,
        "values": loose(values),
        "stages": loose(stages),
        "kinds": KINDS,
        "required_fields": REQUIRED_FIELDS,
        "done": done,
        "field_errors": problem.field_errors() if problem else {},
        "problem": problem,
    }
    return render(request, "admin/pipeline_edit.html", context, status_code=problem.status if problem else 200)


def _from_form(form: dict[str, Any]) -> dict[str, Any]:
    """The PipelineIn body: stage rows in the order of their position numbers; rows without a
    name (the blank "add a stage" row) and rows ticked "remove" are left out."""
    rows = []
    count = int(form.get("stage_count", 0))
    for i in range(count):
        name = str(form.get(f"stages-{i}-name", "")).strip()
        if not name or form.get(f"stages-{i}-remove"):
            continue
        position = number_or_none(str(form.get(f"stages-{i}-position", "")))
        stage: dict[str, Any] = {
            "name": name,
            "name_en": str(form.get(f"stages-{i}-name_en", "")).strip() or None,
            "probability": number_or_none(str(form.get(f"stages-{i}-probability", ""))),
            "kind": form.get(f"stages-{i}-kind") or "open",
            "requirements": {
                "fields": listed(form.get(f"stages-{i}-fields")),
                "documents": comma_list(str(form.get(f"stages-{i}-documents", ""))),
                "approval": bool(form.get(f"stages-{i}-approval")),
            },
        }
        if form.get(f"stages-{i}-stage_id"):
            stage["stage_id"] = form[f"stages-{i}-stage_id"]
        rows.append((position if isinstance(position, int) else 1000 + i, i, stage))
    return {
        "name": str(form.get("name", "")).strip(),
        "name_en": str(form.get("name_en", "")).strip() or None,
        "stages": [stage for _, _, stage in sorted(rows, key=lambda r: (r[0], r[1]))],
    }


@router.get("/new", include_in_schema=False)
async def new_pipeline(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return _form(request, None, {"name": "", "stages": [dict(stage, requirements={}) for stage in TYPICAL_STAGES]})


@router.post("/new", include_in_schema=False)
async def create_pipeline(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    body = _from_form(await form_of(request))
    try:
        created = await client.send("pipeline", "POST", "/v1/pipelines", json=body)
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise
        return _form(request, None, body, problem=problem)
    return RedirectResponse(f"/admin/pipelines/{created.json()['id']}?done=created", status_code=303)


@router.get("/{pipeline_id}", include_in_schema=False)
async def edit_pipeline(
    request: Request, pipeline_id: str, client: Annotated[Api, Depends(api)], done: str = ""
) -> HTMLResponse:
    pipeline = await client.get("pipeline", f"/v1/pipelines/{pipeline_id}")
    return _form(request, pipeline, pipeline, done)


@router.post("/{pipeline_id}", include_in_schema=False)
async def save_pipeline(request: Request, pipeline_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    form = await form_of(request)
    body = _from_form(form)
    try:
        await client.send(
            "pipeline", "PUT", f"/v1/pipelines/{pipeline_id}", json=body, headers=if_match(form.get("version", 0))
        )
    except UpstreamProblem as problem:
        if problem.status not in (409, 422):
            raise
        pipeline = await client.get("pipeline", f"/v1/pipelines/{pipeline_id}")
        if problem.status == 409:
            problem.errors = problem.errors or [{"field": "stages", "reason": client.problem_text(problem)}]
        return _form(request, pipeline, {**body, "version": form.get("version")}, problem=problem)
    return RedirectResponse(f"/admin/pipelines/{pipeline_id}?done=saved", status_code=303)


@router.post("/{pipeline_id}/make-default", include_in_schema=False)
async def make_default(pipeline_id: str, client: Annotated[Api, Depends(api)]) -> Response:
    await client.send("pipeline", "POST", f"/v1/pipelines/{pipeline_id}/make-default")
    return RedirectResponse("/admin/pipelines?done=default", status_code=303)
