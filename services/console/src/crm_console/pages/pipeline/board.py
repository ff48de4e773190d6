"""The kanban of one pipeline over the pipeline service's public API.

Columns are the pipeline's stages (``GET /v1/pipelines``) with their count and weighted amount;
cards are its opportunities (``GET /v1/opportunities?pipeline_id=``). A card moves by drag and drop
(SortableJS) or by its "Move to…" menu; both post the same form to :func:`move`, which sends the
move with ``If-Match`` and answers with either the new board or a dialog:

* the stage's entry requirements are not met (422 ``stage-requirements-not-met``): the dialog
  lists the problem document's ``missing`` items with inputs to fill them in place, then retries;
* won or lost: the dialog asks for the reason first (and the competitor, for lost);
* someone changed the opportunity meanwhile (412) or the service refused (409): said in the dialog.

Cancelling a dialog reloads the board, so a dragged card snaps back to where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from crm_console import customfields
from crm_console.customer_names import customer_names
from crm_console.records import complete_opportunities, complete_opportunity
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, is_htmx, render

board_router = APIRouter(prefix="/pipeline")

BOARD_LIMIT = 500  # one page of the list: a board is for the deals people work on, not an archive
#: Fields a stage may require that a person can type in the dialog (the others: on the opportunity).
FILLABLE_FIELDS = {
    "amount": "text",
    "quotation_amount": "text",
    "expected_close_date": "date",
    "source_campaign": "text",
    "notes": "text",
}
REQUIREMENTS_NOT_MET = "urn:crm:problem:stage-requirements-not-met"
Document = dict[str, Any]


def stage_label(stage: Document, language: str) -> str:
    return str(stage.get("name_en") or stage["name"]) if language == "en" else str(stage["name"])


def money(total: Decimal) -> str:
    return f"{total:,.2f}"


def grouped(amount: str | None) -> str:
    """An API amount ("125000.00") with thousands separators ("125,000.00"); as given if not a number."""
    if amount is None:
        return ""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return amount
    decimals = len(amount.partition(".")[2])
    return f"{value:,.{decimals}f}"


@dataclass
class Column:
    stage: Document
    label: str
    cards: list[Document] = field(default_factory=list)
    weighted: dict[str, Decimal] = field(default_factory=dict)

    @property
    def weighted_text(self) -> str:
        if not self.weighted:
            return money(Decimal(0))
        return " + ".join(f"{money(v)} {c}" for c, v in sorted(self.weighted.items()))


def columns(pipeline: Document, opportunities: list[Document], language: str) -> list[Column]:
    by_stage: dict[str, Column] = {
        s["stage_id"]: Column(s, stage_label(s, language)) for s in sorted(pipeline["stages"], key=_position)
    }
    for opportunity in opportunities:
        column = by_stage.get(opportunity["stage"]["stage_id"])
        if column is None:  # a stage removed since: not on this board
            continue
        column.cards.append(opportunity)
        try:
            weighted = Decimal(opportunity.get("weighted_amount") or "0")
        except InvalidOperation:
            weighted = Decimal(0)
        currency = str(opportunity.get("currency") or "")
        column.weighted[currency] = column.weighted.get(currency, Decimal(0)) + weighted
    return list(by_stage.values())


def _position(stage: Document) -> int:
    return int(stage.get("position") or 0)


async def pipelines(client: Api) -> list[Document]:
    found: list[Document] = await client.get("pipeline", "/v1/pipelines")
    return found


def chosen(all_pipelines: list[Document], wanted: str | None) -> Document | None:
    by_id = {p["id"]: p for p in all_pipelines}
    if wanted and wanted in by_id:
        return by_id[wanted]
    return next((p for p in all_pipelines if p.get("is_default")), all_pipelines[0] if all_pipelines else None)


def custom_lines(definitions: list[Document], language: str) -> Any:
    """For a card: ``[(key, label, text)]`` of the custom values the opportunity holds (a field
    the user's roles hide is not in the record, so not on the card)."""

    def lines(opportunity: Document) -> list[tuple[str, str, str]]:
        values = opportunity.get("custom") or {}
        shown = customfields.shown(definitions, values)
        return [
            (
                d["key"],
                customfields.text_in(d["labels"], language),
                customfields.display(d, values[d["key"]], language, {}),
            )
            for d in shown
        ]

    return lines


def custom_labels(definitions: list[Document], language: str) -> dict[str, str]:
    """``custom.<key>`` → the field's label, for a stage requirement on a custom field."""
    return {customfields.PREFIX + d["key"]: customfields.text_in(d["labels"], language) for d in definitions}


async def board_context(request: Request, client: Api, pipeline_id: str | None) -> dict[str, Any]:
    language = client.session.language
    found = await pipelines(client)
    pipeline = chosen(found, pipeline_id)
    defaults: dict[str, Any] = {
        "money": grouped,
        "cancelled": False,
        "dialog": None,
        "moved": None,
        "focus_id": "",
        "clear_dialog": False,
        "custom_lines": lambda opportunity: [],
    }
    if pipeline is None:
        return defaults | {
            "pipelines": [],
            "pipeline": None,
            "columns": [],
            "total": 0,
            "truncated": False,
            "customer_names": {},
        }
    page = complete_opportunities(
        await client.get("pipeline", "/v1/opportunities", params={"pipeline_id": pipeline["id"], "limit": BOARD_LIMIT})
    )
    items: list[Document] = page["items"]
    definitions = await customfields.definitions(client, "opportunities", include_archived=True)
    return defaults | {
        "custom_lines": custom_lines(definitions, language),
        "pipelines": [(p["id"], stage_label(p, language)) for p in found],
        "pipeline": pipeline,
        "columns": columns(pipeline, items, language),
        "truncated": bool(page.get("next_cursor")),
        "money": grouped,
        "total": len(items),
        "customer_names": await customer_names(client, (o.get("customer_id") for o in items)),
    }


@board_router.get("", include_in_schema=False)
async def board_page(request: Request, client: Annotated[Api, Depends(api)], pipeline: str = "") -> HTMLResponse:
    context = await board_context(request, client, pipeline or None)
    return render(request, "pipeline/board.html", context)


@board_router.get("/board", include_in_schema=False)
async def board_fragment(
    request: Request, client: Annotated[Api, Depends(api)], pipeline: str = "", cancelled: str = ""
) -> HTMLResponse:
    """The board alone (htmx): after a cancelled move, so the dragged card snaps back."""
    context = await board_context(request, client, pipeline or None) | {"cancelled": bool(cancelled)}
    return render(request, "pipeline/board_fragment.html", context)


class MoveForm(BaseModel):
    """A move as the card's menu, a drag or a dialog posts it; the dialog adds what was missing."""

    model_config = ConfigDict(extra="allow")

    stage_id: str
    version: int
    pipeline_id: str = ""
    reason: str = ""
    competitor: str = ""
    request_approval: str = ""

    def extra(self, prefix: str) -> dict[str, str]:
        return {
            k[len(prefix) :]: str(v).strip()
            for k, v in (self.model_extra or {}).items()
            if k.startswith(prefix) and str(v).strip()
        }


async def move_form(request: Request) -> MoveForm:
    return MoveForm.model_validate(dict(await request.form()))


@dataclass
class Attempt:
    """Where a move stands: the opportunity's latest version, and what the dialog shows."""

    version: int
    field_errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None


async def _fill_in(client: Api, opportunity_id: str, form: MoveForm, attempt: Attempt) -> None:
    """Send what the dialog filled in (fields, documents, an approval request) before retrying."""
    path = f"/v1/opportunities/{opportunity_id}"
    fields = {k: v for k, v in form.extra("field_").items() if k in FILLABLE_FIELDS}
    if fields:
        try:
            response = await client.send("pipeline", "PATCH", path, json=fields, headers=_if_match(attempt.version))
            attempt.version = version_of(response)
        except UpstreamProblem as problem:
            if problem.status != 422:
                raise
            attempt.field_errors |= {f"field_{k}": v for k, v in problem.field_errors().items()}
    names = form.extra("docname_")
    urls = form.extra("docurl_")
    for kind in sorted(set(names) | set(urls)):
        body = {"kind": kind, "name": names.get(kind, ""), "url": urls.get(kind, "")}
        try:
            response = await client.send(
                "pipeline", "POST", f"{path}/documents", json=body, headers=_if_match(attempt.version)
            )
            attempt.version = version_of(response)
        except UpstreamProblem as problem:
            if problem.status != 422:
                raise
            for name, reason in problem.field_errors().items():
                attempt.field_errors[f"docurl_{kind}" if name == "url" else f"docname_{kind}"] = reason
    if form.request_approval:
        try:
            response = await client.send(
                "pipeline", "POST", f"{path}/approval-requests", json={"stage_id": form.request_approval}
            )
            attempt.version = version_of(response)
        except UpstreamProblem as problem:
            if problem.status not in (409, 422):
                raise
            attempt.message = client.problem_text(problem)


def version_of(response: httpx.Response) -> int:
    """The opportunity's version after a write: its ETag (also on a document's answer)."""
    return int(response.headers["ETag"].removeprefix("W/").strip('"'))


def _if_match(version: int) -> dict[str, str]:
    return {"If-Match": f'"{version}"'}


async def _send_move(client: Api, opportunity_id: str, stage: Document, form: MoveForm, version: int) -> None:
    path = f"/v1/opportunities/{opportunity_id}"
    if stage["kind"] == "won":
        await client.send("pipeline", "POST", f"{path}/win", json={"reason": form.reason}, headers=_if_match(version))
    elif stage["kind"] == "lost":
        body = {"reason": form.reason, **({"competitor": form.competitor} if form.competitor else {})}
        await client.send("pipeline", "POST", f"{path}/lose", json=body, headers=_if_match(version))
    else:
        await client.send(
            "pipeline", "POST", f"{path}/stage", json={"stage_id": stage["stage_id"]}, headers=_if_match(version)
        )


@board_router.post("/opportunities/{opportunity_id}/move", include_in_schema=False)
async def move(
    request: Request,
    opportunity_id: str,
    client: Annotated[Api, Depends(api)],
    form: Annotated[MoveForm, Depends(move_form)],
) -> Response:
    all_pipelines = await pipelines(client)
    pipeline = chosen(all_pipelines, form.pipeline_id or None)
    stage = next((s for s in (pipeline or {}).get("stages", []) if s["stage_id"] == form.stage_id), None)
    opportunity = complete_opportunity(await client.get("pipeline", f"/v1/opportunities/{opportunity_id}"))
    language = client.session.language
    dialog: dict[str, Any] = {
        "stage_labels": {s["stage_id"]: stage_label(s, language) for s in (pipeline or {}).get("stages", [])},
        "opportunity": opportunity,
        "pipeline_id": form.pipeline_id,
        "form": form,
        "stage": stage,
        "stage_name": stage_label(stage, language) if stage else form.stage_id,
        "missing": [],
        "field_errors": {},
        "message": None,
        "detail": None,
        "open_dialog": False,
        "kind": "problem",
    }
    if pipeline is None or stage is None:
        dialog["message"] = "pipeline.move.unknown_stage"
        return await _answer(request, client, form, dialog)
    attempt = Attempt(version=form.version)
    try:
        await _fill_in(client, opportunity_id, form, attempt)
    except UpstreamProblem as problem:
        if problem.status == 412:
            dialog["message"] = "pipeline.move.changed"
            return await _answer(request, client, form, dialog)
        raise
    dialog["version"] = attempt.version
    dialog["field_errors"] = attempt.field_errors
    if attempt.message:
        dialog["detail"] = attempt.message
    if stage["kind"] in ("won", "lost") and not form.reason.strip():
        dialog["kind"] = "reason"
        return await _answer(request, client, form, dialog)
    try:
        await _send_move(client, opportunity_id, stage, form, attempt.version)
    except UpstreamProblem as problem:
        if problem.status == 412:
            dialog["message"] = "pipeline.move.changed"
        elif problem.status == 422 and problem.type == REQUIREMENTS_NOT_MET:
            dialog["kind"] = "requirements"
            dialog["missing"] = distinct(problem.extensions.get("missing") or [])
        elif problem.status == 422:
            dialog["kind"] = "reason" if stage["kind"] in ("won", "lost") else "problem"
            dialog["field_errors"] |= problem.field_errors()
            dialog["detail"] = client.problem_text(problem)
        elif problem.status == 409:
            dialog["detail"] = client.problem_text(problem)
        else:
            raise
        return await _answer(request, client, form, dialog)
    moved = {"name": opportunity["name"], "stage": dialog["stage_name"]}
    if not is_htmx(request):
        return RedirectResponse(f"/pipeline?{urlencode({'pipeline': pipeline['id']})}", status_code=303)
    context = await board_context(request, client, pipeline["id"])
    context |= {"moved": moved, "focus_id": opportunity_id, "clear_dialog": True}
    return render(
        request, "pipeline/board_fragment.html", context, headers={"HX-Retarget": "#board", "HX-Reswap": "outerHTML"}
    )


def distinct(missing: list[Any]) -> list[Document]:
    """Each missing item once (a field two passed-over stages both require is filled once)."""
    seen: dict[tuple[str, str], Document] = {}
    for item in missing:
        if isinstance(item, dict):
            seen.setdefault((str(item.get("kind")), str(item.get("item"))), item)
    return list(seen.values())


async def _answer(request: Request, client: Api, form: MoveForm, dialog: dict[str, Any]) -> HTMLResponse:
    """The dialog: into the page's dialog slot (htmx), or the whole board with the dialog open."""
    dialog.setdefault("version", form.version)
    dialog["fillable"] = FILLABLE_FIELDS
    definitions = await customfields.definitions(client, "opportunities", include_archived=True)
    dialog["custom_labels"] = custom_labels(definitions, client.session.language)
    if is_htmx(request):
        return render(request, "pipeline/dialog.html", dialog)
    context = await board_context(request, client, form.pipeline_id or None)
    return render(request, "pipeline/board.html", context | dialog | {"dialog": True, "open_dialog": True})
