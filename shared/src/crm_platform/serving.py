"""Serving a service over HTTP, and which client address to believe behind proxies.

Forwarded headers (X-Forwarded-For, X-Forwarded-Proto) are believed only from the proxies in
``CRM_TRUSTED_PROXIES``. uvicorn, left to itself, believes them from 127.0.0.1, so anyone
reaching a service through a local hop could choose their own address with a new
X-Forwarded-For on every request and escape per-address limits such as sign-in throttling.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import uvicorn
from starlette.requests import Request

from crm_platform.settings import ServiceSettings


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's options: host, port, keep-alive, and proxy headers from trusted proxies only."""
    trusted = list(settings.trusted_proxies)
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "log_config": None,
        "access_log": False,
        # No trusted proxy: no proxy-header middleware at all (an empty forwarded_allow_ips
        # would make uvicorn fall back to $FORWARDED_ALLOW_IPS or 127.0.0.1).
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
    }


def uvicorn_config(app: Any, settings: ServiceSettings) -> uvicorn.Config:
    """The configuration :func:`serve` runs ``app`` with (for tests that serve in-process)."""
    return uvicorn.Config(app, **uvicorn_options(settings))


def serve(app: Any, settings: ServiceSettings) -> None:
    """Run ``app`` until interrupted (what each service's ``python -m`` does); uvicorn.run keeps
    its exit status when start-up fails, which supervisors rely on."""
    uvicorn.run(app, **uvicorn_options(settings))


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in one X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:5678``)."""
    value = value.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_address(request: Request, trusted_proxies: list[str]) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
    address in X-Forwarded-For that is not a trusted proxy (uvicorn's rule, so applying it again
    after uvicorn already did changes nothing).

    Entries are read from the right: each proxy appends the address it saw, so everything left
    of the nearest untrusted entry was written by the client and proves nothing.
    """
    peer = request.client.host if request.client else None
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return ip is not None and any(ip.version == n.version and ip in n for n in networks)

    if peer is None or not trusted(_address(peer)):
        return peer
    entries = [e for value in request.headers.getlist("x-forwarded-for") for e in value.split(",") if e.strip()]
    if not entries:
        return peer
    for entry in reversed(entries):
        ip = _address(entry)
        if ip is None:
            return peer  # a garbled hop: believe no further than the proxy that handed it over
        if not trusted(ip):
            return str(ip)
    first = _address(entries[0])  # every hop is a trusted proxy: the first is the client
    return str(first) if first is not None else peer
