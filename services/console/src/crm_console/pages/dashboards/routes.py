"""Managers' dashboards over the reporting service (``/v1/reports/{funnel,forecast,activity,
distribution,quality}``): one page, five charts, the same filters (period, department subtree from
the directory's tree, the profile field of the distribution), and each chart's CSV straight from
the reporting API (``?format=csv``) through the console, with the user's token."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict

from crm_console.pages.admin.access import requires
from crm_console.pages.dashboards import charts
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, console, render, zone
from crm_platform.money import CURRENCY_EXPONENTS
from crm_platform.permissions import Permission

# Dashboards are for managers and administrators. Reps may read reports on their own work (the
# reporting service scopes them), but the team view is a manager's: the permission that marks
# that role is setting the team's targets, which the forecast chart measures.
MANAGERS = Permission.targets_set

router = APIRouter(prefix="/dashboards", dependencies=[Depends(requires(MANAGERS))])

REPORTS = ("funnel", "forecast", "activity", "distribution", "quality")
FIELDS = ("industry", "region", "city", "size", "tier", "source", "lifecycle_stage", "tag", "kind")
DEFAULT_FIELD = "industry"
#: The reports whose amounts are of one currency, the one picked (two currencies are never added up).
IN_CURRENCY = ("funnel", "forecast")


class Filters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    period: str = ""
    department: str = ""  # a department path, e.g. /hq/sales ("" = everything I may see)
    field: str = DEFAULT_FIELD
    currency: str = ""  # of the funnel's and the forecast's amounts ("" = the reporting service's default)

    def params(self, report: str, timezone: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if report != "distribution":
            out["tz"] = timezone
            if self.period:
                out["period"] = self.period
        else:
            out["field"] = self.field if self.field in FIELDS else DEFAULT_FIELD
        if self.department:
            out["department_path"] = self.department
        if self.currency and report in IN_CURRENCY:
            out["currency"] = self.currency
        return out

    def query(self) -> str:
        return urlencode({k: v for k, v in self.model_dump().items() if v})


def periods(today: date) -> list[str]:
    """The periods offered: this and last month, this and last quarter, this and last year."""
    last_month = date(today.year - (today.month == 1), (today.month - 2) % 12 + 1, 1)
    quarter = (today.month - 1) // 3 + 1
    last_quarter = (today.year, quarter - 1) if quarter > 1 else (today.year - 1, 4)
    return [
        f"{today:%Y-%m}",
        f"{last_month:%Y-%m}",
        f"{today.year}-Q{quarter}",
        f"{last_quarter[0]}-Q{last_quarter[1]}",
        f"{today.year}",
        f"{today.year - 1}",
    ]


def flatten(nodes: list[dict[str, Any]], depth: int = 0) -> list[tuple[str, str, int]]:
    """The department tree as (path, name, depth) in tree order, for an indented select."""
    out: list[tuple[str, str, int]] = []
    for node in nodes:
        out.append((node["path"], node["name"], depth))
        out.extend(flatten(node.get("children") or [], depth + 1))
    return out


@router.get("", include_in_schema=False)
async def dashboards(
    request: Request, client: Annotated[Api, Depends(api)], filters: Annotated[Filters, Depends()]
) -> HTMLResponse:
    session = client.session
    app = console(request)

    def t(key: str, **values: object) -> str:
        return app.catalogue.translate(session.language, key, **values)

    tree = await client.get("directory", "/v1/departments/tree")
    options: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for report in REPORTS:
        try:
            data = await client.get(
                "reporting", f"/v1/reports/{report}", params=filters.params(report, session.timezone)
            )
        except UpstreamProblem as problem:
            # A filter the service refuses (a department outside the manager's subtree: 403, a
            # bad period: 422) is said on the chart it concerns; the other charts still show.
            if problem.status not in (400, 403, 422):
                raise
            problems[report] = t("dashboards.outside") if problem.status == 403 else client.problem_text(problem)
            continue
        options[report] = getattr(charts, report)(data, t)
    context = {
        "filters": filters,
        "periods": periods(datetime.now(zone(session.timezone)).date()),
        "departments": flatten(tree),
        "fields": FIELDS,
        "currencies": sorted(CURRENCY_EXPONENTS),
        "reports": REPORTS,
        "options": options,
        "problems": problems,
    }
    return render(request, "dashboards/index.html", context)


@router.get("/{report}.csv", include_in_schema=False)
async def csv(report: str, client: Annotated[Api, Depends(api)], filters: Annotated[Filters, Depends()]) -> Response:
    """The reporting service's own CSV of one chart, as a download."""
    if report not in REPORTS:
        raise UpstreamProblem("console", 404, "Not Found")
    params = {**filters.params(report, client.session.timezone), "format": "csv"}
    answer = await client.send("reporting", "GET", f"/v1/reports/{report}", params=params)
    disposition = answer.headers.get("content-disposition") or f'attachment; filename="{report}.csv"'
    return Response(
        answer.content,
        media_type=answer.headers.get("content-type", "text/csv; charset=utf-8"),
        headers={"Content-Disposition": disposition},
    )
