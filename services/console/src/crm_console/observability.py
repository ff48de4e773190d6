"""The console's /metrics: its pages' requests and latency, as every service reports its own.

The counters are the platform's (``crm_http_requests_total``, ``crm_http_request_seconds``, labelled
by the route's path template, never the raw URL), so one dashboard reads the console like the
services; ``crm_console_upstream_seconds`` adds how long the console waited on each service.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from crm_platform.metrics import HTTP_LATENCY, HTTP_REQUESTS
from crm_platform.serving import client_address
from crm_platform.tracing import current_client_address

UPSTREAM_LATENCY = Histogram(
    "crm_console_upstream_seconds",
    "How long a console request waited on one call to a service",
    ["service", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, trusted_proxies: list[str]) -> None:
    """Count every request by method, route template and status, and time it; keep the person's
    address for the calls the request makes to the services."""

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        # The person's address, as the console sees it through its own trusted proxies: forwarded
        # to the services with every call this request makes (crm_console.upstreams).
        address = current_client_address.set(client_address(request, trusted_proxies))
        try:
            response = await call_next(request)
        finally:
            current_client_address.reset(address)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        return response
