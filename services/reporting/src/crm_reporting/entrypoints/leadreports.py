"""The lead and campaign reports: /v1/reports/campaigns, /v1/reports/lead-sources, /v1/reports/lead-funnel."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from crm_platform.auth import CurrentPrincipal, Principal
from crm_platform.contracts import leads as lev
from crm_platform.errors import ValidationFailed
from crm_reporting.application.leadfigures import LeadFilter, campaign_report, funnel_report, source_report
from crm_reporting.domain.periods import to_ms
from crm_reporting.entrypoints.http import JSON_OR_CSV, Format, From, Models, SettingsDep, To, Tz, _tz
from crm_reporting.entrypoints.rendering import respond

router = APIRouter(prefix="/v1", tags=["reports"])
Department = Annotated[
    str | None, Query(max_length=500, pattern=r"^/", description="A department subtree (the leads' department)")
]
CampaignId = Annotated[str | None, Query(max_length=200, description="Only the leads of this campaign")]
Source = Annotated[str | None, Query(max_length=200, description="Only the leads of this source")]
Channel = Annotated[lev.CampaignChannel | None, Query(description="Only the leads of campaigns of this channel")]


def _filter(
    principal: Principal,
    settings: SettingsDep,
    start: date | None,
    end: date | None,
    tz: str | None,
    department: str | None,
    campaign_id: str | None = None,
    source: str | None = None,
    channel: str | None = None,
) -> LeadFilter:
    zone = _tz(tz, settings)
    for name, day in (("from", start), ("to", end)):
        if day is not None and not 1900 <= day.year <= 9998:
            raise ValidationFailed.for_field(name, "must be a day between the years 1900 and 9998", "query")
    if start is not None and end is not None and end < start:
        raise ValidationFailed.for_field("to", "must not be before from", "query")
    end_ms = None if end is None else to_ms(date.fromordinal(end.toordinal() + 1), zone)
    return LeadFilter(
        principal,
        0 if start is None else to_ms(start, zone),
        end_ms,
        department,
        campaign_id,
        source,
        channel,
    ).check()


def _amounts(principal: Principal) -> bool:
    # Won amounts are opportunities' amounts: left out for a caller whose roles hide them.
    return not principal.fields("opportunities").hides("amount")


@router.get(
    "/reports/campaigns",
    summary="Per campaign: leads, qualified, converted, opportunities, won, cost, cost per lead, ROI",
    responses=JSON_OR_CSV,
)
async def campaigns(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    settings: SettingsDep,
    fmt: Format = None,
    start: From = None,
    end: To = None,
    tz: Tz = None,
    channel: Channel = None,
    campaign_id: CampaignId = None,
    department: Department = None,
) -> Response:
    f = _filter(principal, settings, start, end, tz, department, channel=channel, campaign_id=campaign_id)
    report = await campaign_report(models, f, _amounts(principal))
    return respond(request, fmt, report, report["rows"], "campaigns")


@router.get("/reports/lead-sources", summary="The campaign report's columns per lead source", responses=JSON_OR_CSV)
async def lead_sources(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    settings: SettingsDep,
    fmt: Format = None,
    start: From = None,
    end: To = None,
    tz: Tz = None,
    campaign_id: CampaignId = None,
    department: Department = None,
) -> Response:
    f = _filter(principal, settings, start, end, tz, department, campaign_id=campaign_id)
    report = await source_report(models, f, _amounts(principal))
    return respond(request, fmt, report, report["rows"], "lead-sources")


@router.get(
    "/reports/lead-funnel",
    summary="Lead -> qualified -> customer -> opportunity -> won: counts and rates",
    responses=JSON_OR_CSV,
)
async def lead_funnel(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    settings: SettingsDep,
    fmt: Format = None,
    start: From = None,
    end: To = None,
    tz: Tz = None,
    campaign_id: CampaignId = None,
    source: Source = None,
    department: Department = None,
) -> Response:
    f = _filter(principal, settings, start, end, tz, department, campaign_id=campaign_id, source=source)
    report = await funnel_report(models, f, _amounts(principal))
    return respond(request, fmt, report, report["rows"], "lead-funnel")
