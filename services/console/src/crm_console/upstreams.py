"""The services' public HTTP APIs, one ``httpx.AsyncClient`` per service.

Every failure becomes one of two exceptions the pages and the error handlers understand:
:class:`UpstreamUnavailable` (the service cannot be reached, or says it is unavailable) and
:class:`UpstreamProblem` (it answered with a problem+json document, RFC 9457).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from crm_console.observability import UPSTREAM_LATENCY
from crm_platform.tracing import current_client_address

# A service that answers these is there but cannot serve now: the person gets the "unavailable" page.
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})


class UpstreamUnavailable(Exception):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


@dataclass
class UpstreamProblem(Exception):
    """A problem+json answer (or any error answer, read as one)."""

    service: str
    status: int
    title: str = ""
    detail: str | None = None
    type: str = "about:blank"
    errors: list[dict[str, Any]] = field(default_factory=list)
    # The document's other members (RFC 9457 extensions), e.g. the pipeline's ``missing`` list or
    # the ``owner_id`` of a 409 on a pool claim: pages that can show them better read them here.
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.service}: {self.status} {self.title}")

    @classmethod
    def from_response(cls, service: str, response: httpx.Response) -> UpstreamProblem:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        return cls(
            service=service,
            status=response.status_code,
            title=str(body.get("title") or response.reason_phrase),
            detail=body.get("detail"),
            type=str(body.get("type") or "about:blank"),
            errors=errors,
            extensions={k: v for k, v in body.items() if k not in _STANDARD_MEMBERS},
        )

    def field_errors(self) -> dict[str, str]:
        """Reason per field name (``q``, ``address.city``), for showing each next to its input."""
        out: dict[str, str] = {}
        for error in self.errors:
            name = str(error.get("field") or "")
            if name and name not in out:
                out[name] = str(error.get("reason") or "")
        return out


class Upstreams:
    """One client per service, created at start-up and closed at shutdown."""

    def __init__(self, urls: dict[str, str], timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.urls = urls
        self.clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport) for name, url in urls.items()
        }

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send one request (a JSON body, or raw ``content`` such as a CSV file); raises
        :class:`UpstreamUnavailable` when the service cannot answer."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        # The console is a proxy for the person: the services see their address (sign-in
        # throttling per address, the audit log's "from where") when they trust the console's
        # address in CRM_TRUSTED_PROXIES; otherwise they ignore this and see the console's.
        address = current_client_address.get()
        if address:
            sent["X-Forwarded-For"] = address
        started = time.perf_counter()
        try:
            response = await self.clients[service].request(
                method, path, params=params, json=json, content=content, headers=sent
            )
        except httpx.TimeoutException as exc:
            UPSTREAM_LATENCY.labels(service, method, "timeout").observe(time.perf_counter() - started)
            raise UpstreamUnavailable(service, f"no answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            UPSTREAM_LATENCY.labels(service, method, "unreachable").observe(time.perf_counter() - started)
            raise UpstreamUnavailable(service, f"cannot connect ({type(exc).__name__})") from exc
        UPSTREAM_LATENCY.labels(service, method, str(response.status_code)).observe(time.perf_counter() - started)
        if response.status_code in UNAVAILABLE_STATUSES:
            raise UpstreamUnavailable(service, f"answered {response.status_code}")
        return response

    async def reachable(self, service: str) -> str | None:
        """None if the service's /healthz answers 200, else why not (for /readyz)."""
        try:
            response = await self.clients[service].get("/healthz")
        except httpx.HTTPError as exc:
            return f"{service}: {type(exc).__name__}"
        return None if response.status_code == 200 else f"{service}: /healthz answered {response.status_code}"
