"""The lead scoring page over the leads service's ``/v1/leads/scoring/rules`` (GET, PUT with
If-Match) and ``/v1/leads/scoring/model`` (GET, ``POST .../train``), for ``leads:scoring``.

The rules are a table, one row per rule (field, condition, value, points, label) and a few empty
rows to add one; a row without a label and field is left out. The value is typed as the rule's
field and condition take it (a list for ``in``, true/false for ``exists`` and ``has_*``, a number
for counts of days and follow-ups), and the service checks the rest: its 422 names the cell
(``rules[2].value``), which the inputs are named after. A stale save is the 412 page; a training
on too little history (409) says how many converted and disqualified leads there are and are needed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from crm_console.pages.admin.access import requires
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render
from crm_platform.permissions import Permission

router = APIRouter(prefix="/leadscoring", dependencies=[Depends(requires(Permission.leads_scoring))])

FIELDS = (
    "source",
    "campaign_id",
    "region",
    "industry",
    "status",
    "has_phone",
    "has_email",
    "has_contact_name",
    "followup_count",
    "days_since_last_followup",
    "days_since_created",
)
BOOLEAN = ("has_phone", "has_email", "has_contact_name")
NUMERIC = ("followup_count", "days_since_last_followup", "days_since_created")
OPS = ("eq", "in", "exists", "gte", "lte")
BLANK_ROWS = 3
Document = dict[str, Any]


def value_text(value: Any) -> str:
    """A rule's value as its input shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def typed(field: str, op: str, text: str) -> Any:
    """The input's text as the API takes it for the field and condition (the API checks the rest)."""
    text = text.strip()
    if op == "in":
        return [part.strip() for part in re.split(r"[,，;；]+", text) if part.strip()]
    if op == "exists" or field in BOOLEAN:
        return {"true": True, "false": False, "yes": True, "no": False}.get(text.lower(), text)
    if field in NUMERIC:
        try:
            return float(text) if "." in text else int(text)
        except ValueError:
            return text
    return text


def rows_of(rules: list[Document]) -> list[dict[str, str]]:
    rows = [
        {
            "field": str(r.get("field") or ""),
            "op": str(r.get("op") or ""),
            "value": value_text(r.get("value")),
            "points": str(r.get("points", "")),
            "label": str(r.get("label") or ""),
        }
        for r in rules
    ]
    return rows + [{"field": "", "op": "", "value": "", "points": "", "label": ""} for _ in range(BLANK_ROWS)]


def form_rows(form: FormData) -> list[dict[str, str]]:
    count = int(str(form.get("count") or "0") or 0)
    return [
        {k: str(form.get(f"rules[{i}].{k}") or "").strip() for k in ("field", "op", "value", "points", "label")}
        for i in range(count)
    ]


def rules_body(rows: list[dict[str, str]]) -> tuple[list[Document], list[int]]:
    """The rule set, and for each rule its row on the form (the API's ``rules[i]`` is the i-th kept)."""
    rules: list[Document] = []
    at: list[int] = []
    for i, row in enumerate(rows):
        if not row["field"] and not row["label"]:
            continue
        points: Any = row["points"]
        try:
            points = int(points)
        except ValueError:
            pass
        rules.append(
            {
                "field": row["field"],
                "op": row["op"],
                "value": typed(row["field"], row["op"], row["value"]),
                "points": points,
                "label": row["label"],
            }
        )
        at.append(i)
    return rules, at


def cell_errors(problem: UpstreamProblem, at: list[int]) -> dict[str, str]:
    """``rules[1].op`` of the body → the input of the form's row that rule came from."""
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        found = re.match(r"^(?:body\.)?rules\[(\d+)\](?:\.(\w+))?", name)
        if found and int(found.group(1)) < len(at):
            key = f"rules[{at[int(found.group(1))]}].{found.group(2) or 'field'}"
        else:
            key = "rules"
        out.setdefault(key, reason)
    return out


async def _model(client: Api) -> Document | None:
    try:
        found: Document = await client.get("leads", "/v1/leads/scoring/model")
    except UpstreamProblem as problem:
        if problem.status != 404:
            raise
        return None
    return found


async def _page(request: Request, client: Api, status_code: int = 200, **extra: Any) -> HTMLResponse:
    rules = await client.get("leads", "/v1/leads/scoring/rules")
    context: Document = {
        "rules": rules,
        "rows": rows_of(rules.get("rules") or []),
        "model": await _model(client),
        "fields": FIELDS,
        "ops": OPS,
        "field_errors": {},
        "problem": None,
        "history_needed": None,
        "done": request.query_params.get("done", ""),
    }
    return render(request, "leadscoring/page.html", context | extra, status_code=status_code)


@router.get("", include_in_schema=False)
async def scoring_page(request: Request, client: Annotated[Api, Depends(api)]) -> HTMLResponse:
    return await _page(request, client)


@router.post("/rules", include_in_schema=False)
async def save_rules(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    form = await request.form()
    rows = form_rows(form)
    rules, at = rules_body(rows)
    version = str(form.get("version") or "0")
    try:
        await client.send(
            "leads", "PUT", "/v1/leads/scoring/rules", json={"rules": rules}, headers={"If-Match": f'"{version}"'}
        )
    except UpstreamProblem as problem:
        if problem.status != 422:
            raise  # 412: the "someone changed this; reload" page
        return await _page(request, client, 422, rows=rows, field_errors=cell_errors(problem, at), problem=problem)
    return RedirectResponse("/leadscoring?done=rules", status_code=303)


@router.post("/train", include_in_schema=False)
async def train(request: Request, client: Annotated[Api, Depends(api)]) -> Response:
    try:
        await client.send("leads", "POST", "/v1/leads/scoring/model/train")
    except UpstreamProblem as problem:
        if problem.status != 409:
            raise
        needed = problem.extensions if "needed" in problem.extensions else None
        return await _page(request, client, 409, problem=problem, history_needed=needed)
    return RedirectResponse("/leadscoring?done=trained", status_code=303)
