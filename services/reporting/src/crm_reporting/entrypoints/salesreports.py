"""The sales reports: receivables ageing and collection, contracts against targets, ticket SLA and
satisfaction, customer lifetime value (application/salesfigures.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from crm_platform.auth import CurrentPrincipal
from crm_platform.errors import ValidationFailed
from crm_reporting.application.salesfigures import (
    ageing_report,
    collection_report,
    ltv_page,
    sla_report,
    target_report,
)
from crm_reporting.domain.periods import PeriodError, named_period, to_ms
from crm_reporting.entrypoints.http import JSON_OR_CSV, Format, From, Models, SettingsDep, To, Tz, _tz
from crm_reporting.entrypoints.rendering import respond

router = APIRouter(prefix="/v1", tags=["reports"])
Currency = Annotated[str, Query(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CNY")]


def _today(request: Request) -> date:
    clock = request.app.state.kit.clock
    return clock.now().date()  # type: ignore[no-any-return]


def _range(start: date | None, end: date | None) -> tuple[date, date]:
    if start is None:
        raise ValidationFailed.for_field("from", "is required", "query")
    if end is None:
        raise ValidationFailed.for_field("to", "is required", "query")
    for name, day in (("from", start), ("to", end)):
        if not 1900 <= day.year <= 9998:
            raise ValidationFailed.for_field(name, "must be a day between the years 1900 and 9998", "query")
    if end < start:
        raise ValidationFailed.for_field("to", "must not be before from", "query")
    return start, end


@router.get(
    "/reports/receivables/ageing",
    summary="Outstanding on unpaid instalments: not yet due and 0-30/31-60/61-90/90+ days overdue",
    responses=JSON_OR_CSV,
)
async def receivables_ageing(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    currency: Currency,
    fmt: Format = None,
    as_of: Annotated[date | None, Query(description="The day ageing is counted on (default today)")] = None,
) -> Response:
    day = as_of or _today(request)
    report = await ageing_report(models, principal, day, currency)
    return respond(request, fmt, report, report["rows"], "receivables-ageing")


@router.get(
    "/reports/receivables/collection",
    summary="Per rep and department: due in the period, collected against it, rate, money received",
    responses=JSON_OR_CSV,
)
async def receivables_collection(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    currency: Currency,
    fmt: Format = None,
    start: From = None,
    end: To = None,
) -> Response:
    first, last = _range(start, end)
    report = await collection_report(models, principal, first, last, currency)
    return respond(request, fmt, report, report["rows"], "receivables-collection")


@router.get(
    "/reports/contracts/target",
    summary="Signed contract amount per rep and department against the period's targets",
    responses=JSON_OR_CSV,
)
async def contracts_target(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    settings: SettingsDep,
    currency: Currency,
    period: Annotated[str, Query(max_length=10, description="YYYY-MM, YYYY-Qn or YYYY")],
    fmt: Format = None,
) -> Response:
    try:
        p = named_period(period, _tz(None, settings))
    except PeriodError as exc:
        raise ValidationFailed.for_field(exc.field, exc.reason, "query") from exc
    report = await target_report(models, principal, p.label, p.start, p.end, currency)
    return respond(request, fmt, report, report["rows"], "contracts-target")


@router.get(
    "/reports/tickets/sla",
    summary="Tickets opened in the period: SLA attainment per priority and assignee, satisfaction",
    responses=JSON_OR_CSV,
)
async def tickets_sla(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    settings: SettingsDep,
    fmt: Format = None,
    start: From = None,
    end: To = None,
    tz: Tz = None,
) -> Response:
    first, last = _range(start, end)
    zone = _tz(tz, settings)
    end_ms = to_ms(date.fromordinal(last.toordinal() + 1), zone)
    now_ms = int(request.app.state.kit.clock.now().timestamp() * 1000)
    report = await sla_report(models, principal, to_ms(first, zone), end_ms, now_ms)
    report = {"from": first.isoformat(), "to": last.isoformat(), **report}
    return respond(request, fmt, report, report["rows"], "tickets-sla")


@router.get(
    "/reports/customers/lifetime-value",
    summary="Per customer: money received net of refunds, first and last payment, contracts; highest first",
    responses=JSON_OR_CSV,
)
async def customers_lifetime_value(
    request: Request,
    principal: CurrentPrincipal,
    models: Models,
    currency: Currency,
    fmt: Format = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=300, description="next_cursor of the page before")] = None,
) -> Response:
    if cursor is not None and not cursor.startswith(f"{currency}|"):
        raise ValidationFailed.for_field("cursor", "is not a cursor of this currency's pages", "query")
    rows, next_cursor = await ltv_page(models, principal, currency, limit, cursor)
    report = {"currency": currency, "rows": rows, "next_cursor": next_cursor}
    return respond(request, fmt, report, rows, "customers-lifetime-value")
