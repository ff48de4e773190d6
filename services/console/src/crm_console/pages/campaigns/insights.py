"""What the campaign page shows beyond the campaign itself: its figures from the reporting service
(``GET /v1/reports/campaigns``: leads, qualified, converted, opportunities, won amount, cost, cost
per lead, ROI) and its web-to-lead form (``/v1/campaigns/{id}/web-form``: on or off, the counts, and
the key, shown once in the answer that made it).

A service that cannot answer (an older one without the endpoint, a scope that does not reach)
leaves the section saying so rather than failing the page.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from crm_console.registry import may
from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api

Document = dict[str, Any]


async def campaign_figures(client: Api, campaign_id: str) -> Document | None:
    """The campaign's row of the campaign report (all time, asked for that campaign alone), ``{}``
    when it has no lead yet, or None when the user may not read reports (the section is left out)."""
    if not may(client.session.user, "reports:view"):
        return None
    try:
        report = await client.get("reporting", "/v1/reports/campaigns", {"campaign_id": campaign_id})
    except UpstreamProblem as problem:
        if problem.status not in (403, 404, 405, 422):
            raise
        return None
    for row in report.get("rows") or []:
        if row.get("campaign_id") == campaign_id:
            found: Document = row
            return found
    return {}


async def web_form_status(client: Api, campaign_id: str) -> Document | None:
    """On or off with its counts (never the key); None where the leads service has no web forms."""
    try:
        found: Document = await client.get("leads", f"/v1/campaigns/{campaign_id}/web-form")
    except UpstreamProblem as problem:
        if problem.status not in (403, 404, 405):
            raise
        return None
    return found


def public_url(client: Api, path: str | None) -> str:
    """The form's post address: the leads service's public address and the answer's path."""
    if not path:
        return ""
    return client.console.upstreams.urls["leads"].rstrip("/") + path


def rate(value: float | str | None) -> str:
    """0.25 or "0.2500" → "25.0%"; nothing to divide by → "—"."""
    if value is None or value == "":
        return "—"
    try:
        return f"{Decimal(str(value)) * 100:.1f}%"
    except InvalidOperation:
        return str(value)
