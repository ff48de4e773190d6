"""The lead reports page over the reporting service's ``/v1/reports/lead-funnel``,
``/v1/reports/lead-sources`` and ``/v1/reports/campaigns``: one period (from, to: the days the
leads were entered, in the user's time zone), optionally one campaign and one source, the three
reports side by side. Each report's CSV comes straight from the reporting API (``?format=csv``).

The reporting service scopes the figures itself (a rep counts their own leads, a manager their
department's); a period it refuses (to before from) is shown at the field, never as an error page.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict

from crm_console.pages.campaigns.insights import rate
from crm_console.pages.leads.routes import SOURCES, campaign_names
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api, api, render

router = APIRouter(prefix="/leadreports")

REPORTS = {"funnel": "lead-funnel", "sources": "lead-sources", "campaigns": "campaigns"}
#: The filters each report takes beyond the period (the campaign report is per campaign already).
NARROWS = {"funnel": ("campaign_id", "source"), "sources": ("campaign_id",), "campaigns": ()}
Document = dict[str, Any]


class Period(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    start: str = ""
    end: str = ""
    campaign_id: str = ""
    source: str = ""

    def params(self, report: str, timezone: str) -> dict[str, str]:
        out = {"tz": timezone}
        if self.start:
            out["from"] = self.start
        if self.end:
            out["to"] = self.end
        for name in NARROWS[report]:
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    def query(self) -> str:
        return urlencode({k: v for k, v in self.model_dump().items() if v})


def period_errors(problem: UpstreamProblem) -> dict[str, str]:
    """The service's ``from``/``to`` (maybe ``query.to``) at the page's ``start``/``end`` inputs."""
    inputs = {"from": "start", "to": "end"}
    out: dict[str, str] = {}
    for name, reason in problem.field_errors().items():
        key = name.rsplit(".", 1)[-1]
        out.setdefault(inputs.get(key, key), reason)
    return out


@router.get("", include_in_schema=False)
async def lead_reports(
    request: Request, client: Annotated[Api, Depends(api)], period: Annotated[Period, Depends()]
) -> HTMLResponse:
    context: dict[str, Any] = {
        "period": period,
        "sources": SOURCES,
        "campaigns": await campaign_names(client),
        "rate": rate,
        "field_errors": {},
        "problem": None,
    }
    reports: dict[str, Document] = {}
    for name, path in REPORTS.items():
        try:
            reports[name] = await client.get(
                "reporting", f"/v1/reports/{path}", params=period.params(name, client.session.timezone)
            )
        except UpstreamProblem as problem:
            if problem.status != 422:
                raise
            context |= {"field_errors": period_errors(problem), "problem": problem}
            return render(request, "leadreports/page.html", context | {"reports": {}}, status_code=422)
    return render(request, "leadreports/page.html", context | {"reports": reports})


@router.get("/{report}.csv", include_in_schema=False)
async def report_csv(
    report: str, client: Annotated[Api, Depends(api)], period: Annotated[Period, Depends()]
) -> Response:
    path = REPORTS.get(report)
    if path is None:
        return Response(status_code=404)
    params = period.params(report, client.session.timezone) | {"format": "csv"}
    answer = await client.send("reporting", "GET", f"/v1/reports/{path}", params=params)
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{path}.csv"'},
    )
