"""The checks every creating POST that takes an Idempotency-Key must pass, shared by the services' tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from crm_platform.idempotency import HEADER, REPLAYED_HEADER

Body = dict[str, Any]


def with_key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, HEADER: key}


def assert_same_outcome(first: httpx.Response, retry: httpx.Response) -> None:
    """The retry is the first attempt's outcome: status, body, ETag and Location, marked as a replay."""
    assert retry.status_code == first.status_code, retry.text
    assert retry.json() == first.json()
    for header in ("ETag", "Location"):
        assert retry.headers.get(header) == first.headers.get(header), header
    assert REPLAYED_HEADER not in first.headers
    assert retry.headers.get(REPLAYED_HEADER) == "true"


def assert_key_reused(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Idempotency-Key reused with a different request"
    assert problem["errors"][0]["field"] == HEADER and problem["errors"][0]["location"] == "header"


async def assert_create_is_idempotent(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    make_body: Callable[[], Body],
    count: Callable[[Body], Awaitable[int]],
    *,
    status: int = 201,
) -> httpx.Response:
    """One key: a retry, and retries racing each other, give the first outcome and one record; a
    racing first attempt is one record too; the key with another body is refused and stores nothing.

    ``make_body()`` gives a new valid body each call; ``count(body)`` counts the records it made.
    """
    body, key = make_body(), f"key-{uuid.uuid4()}"
    first = await client.post(path, json=body, headers=with_key(headers, key))
    assert first.status_code == status, first.text
    retries = await asyncio.gather(*(client.post(path, json=body, headers=with_key(headers, key)) for _ in range(3)))
    for retry in retries:
        assert_same_outcome(first, retry)
    assert await count(body) == 1

    racing_body, racing_key = make_body(), f"key-{uuid.uuid4()}"
    racing = await asyncio.gather(
        *(client.post(path, json=racing_body, headers=with_key(headers, racing_key)) for _ in range(4))
    )
    assert {r.status_code for r in racing} == {status}, [r.text for r in racing]
    assert len({r.headers.get("Location") or str(r.json()) for r in racing}) == 1
    assert sum(r.headers.get(REPLAYED_HEADER) == "true" for r in racing) == 3
    assert await count(racing_body) == 1

    other = make_body()
    assert_key_reused(await client.post(path, json=other, headers=with_key(headers, key)))
    assert await count(other) == 0
    return first


def assert_declares_key(openapi: dict[str, Any], path: str) -> None:
    parameters = openapi["paths"][path]["post"].get("parameters", [])
    assert any(p["name"] == HEADER and p["in"] == "header" for p in parameters), path
