"""The funnel query: one indexed read of the cohort, then the maths in domain/funnel.py.

Python over an indexed query rather than an aggregation: the embedded store's
``$sum`` of a missing field gives null and ``$dateTrunc`` a string, and the
"reached" rule needs each opportunity's whole stage history anyway.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from crm_pipeline.adapters.repository import Repository
from crm_pipeline.application.pipelines import Pipelines
from crm_pipeline.application.queries import day_range, subtree, visibility_within
from crm_pipeline.application.targets import currency_from
from crm_pipeline.domain import funnel as fn
from crm_pipeline.domain.opportunities import OPPORTUNITIES
from crm_pipeline.settings import PipelineSettings
from crm_platform.auth import Principal
from crm_platform.errors import Forbidden, ValidationFailed
from crm_platform.listing import all_of

Document = dict[str, Any]
PROJECTION = {"stage_id": 1, "status": 1, "amount_minor": 1, "currency": 1, "stage_history": 1}


async def funnel(
    repo: Repository,
    pipelines: Pipelines,
    settings: PipelineSettings,
    principal: Principal,
    *,
    pipeline_id: str | None,
    date_from: date | None,
    date_to: date | None,
    rep: str | None,
    department: str | None,
    currency_raw: str | None,
) -> tuple[Document, fn.Funnel, str]:
    currency = currency_from(currency_raw, settings.default_currency, location="query")
    if rep and department:
        raise ValidationFailed.for_field("department", "give either rep or department, not both", "query")
    if date_from and date_to and date_to < date_from:
        raise ValidationFailed.for_field("to", "must not be before 'from'", "query")
    try:
        pipeline = await pipelines.resolve(pipeline_id)
    except ValidationFailed as exc:
        raise ValidationFailed.for_field("pipeline", exc.errors[0].reason if exc.errors else str(exc), "query") from exc
    clauses: list[Document] = [{"pipeline_id": pipeline["_id"]}, {"hidden": False}]
    if date_from or date_to:
        # On the creation day's integer copy: a range on an ISO date string scans on the embedded store.
        clauses.append({"s.created_day": day_range(date_from, date_to)})
    if rep:
        if rep != principal.user_id and not principal.reaches_beyond_own(OPPORTUNITIES):
            raise Forbidden("An opportunities scope of own sees its own funnel only.")
        clauses.append({"owner_id": rep})
    if department:
        if not principal.reaches_path(department, OPPORTUNITIES):
            raise Forbidden("A department's funnel is for those whose opportunities scope reaches it.")
        clauses.append({"department_path": subtree(department)})
    visibility = visibility_within(principal, department)
    if visibility:
        clauses.append(visibility)
    cohort = await repo.opportunities_where(all_of(*clauses), projection=PROJECTION)
    return pipeline, fn.compute(pipeline, cohort, currency), currency
