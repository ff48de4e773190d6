"""Customers' names for cards that show a customer (the pipeline's kanban, tasks): the customer
ids of a whole page go to the customers service's ``POST /v1/customers/lookup`` in calls of up to
100 ids (sent together), instead of one request per card. A name is decoration: when the lookup
fails the cards are shown without names rather than the page failing, and a customer the user may
not see simply has no name."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api

LOOKUP_MAX = 100  # the service's bound per call


async def customer_names(client: Api, ids: Iterable[str | None]) -> dict[str, str]:
    """customer id → name, for the ids the user may see."""
    wanted = list(dict.fromkeys(i for i in ids if i))
    chunks = [wanted[i : i + LOOKUP_MAX] for i in range(0, len(wanted), LOOKUP_MAX)]
    try:
        answers = await asyncio.gather(
            *(client.send("customers", "POST", "/v1/customers/lookup", json={"ids": chunk}) for chunk in chunks)
        )
    except (UpstreamProblem, UpstreamUnavailable):
        return {}
    return {c["id"]: c["name"] for answer in answers for c in answer.json()["items"]}
