"""A lead's score as the leads service explains it (``GET /v1/leads/{id}/score``), for the lead page.

The service computes it afresh: the rules' points with the label of each matching rule and, once a
model is trained, the model's probability and the features that pushed it most. A service without
scoring (404/405), or a lead the caller may not see, leaves the section out rather than failing the page.
"""

from __future__ import annotations

from typing import Any

from crm_console.upstreams import UpstreamProblem
from crm_console.web import Api

#: What the list can be ordered by, passed on as the API's ``sort`` ("" is its default, newest first).
SORTS = ("", "-score", "score")


async def lead_score(client: Api, lead_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await client.get("leads", f"/v1/leads/{lead_id}/score")
    except UpstreamProblem as problem:
        if problem.status not in (403, 404, 405):
            raise
        return None
    return found


def percent(probability: float | None) -> str:
    """0.4321 → "43.2%"."""
    return "" if probability is None else f"{probability * 100:.1f}%"
