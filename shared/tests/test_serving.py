"""Which client address a service believes: the peer's, unless the peer is a trusted proxy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from starlette.requests import Request

from crm_platform.serving import client_address, uvicorn_config, uvicorn_options
from crm_platform.settings import ServiceSettings
from crm_platform.testing.fixtures import eventually


def request(peer: str, *forwarded_for: str) -> Request:
    headers = [(b"x-forwarded-for", v.encode()) for v in forwarded_for]
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        ("127.0.0.1", ["6.6.6.6"], [], "127.0.0.1"),  # the default: nobody's header is believed
        ("10.0.0.5", ["6.6.6.6"], ["127.0.0.1"], "10.0.0.5"),  # not from a trusted proxy
        ("127.0.0.1", ["6.6.6.6"], ["127.0.0.1"], "6.6.6.6"),
        ("10.1.2.3", ["198.51.7.7"], ["10.0.0.0/8"], "198.51.7.7"),
        # The client's own entries come first and are skipped: the nearest untrusted hop counts.
        ("10.1.2.3", ["6.6.6.6, 198.51.7.7"], ["10.0.0.0/8"], "198.51.7.7"),
        ("10.1.2.3", ["6.6.6.6, 198.51.7.7, 10.9.9.9"], ["10.0.0.0/8"], "198.51.7.7"),  # two proxies
        ("10.1.2.3", ["6.6.6.6", "198.51.7.7"], ["10.0.0.0/8"], "198.51.7.7"),  # the header twice
        ("10.1.2.3", ["198.51.7.7:4711"], ["10.0.0.0/8"], "198.51.7.7"),
        ("10.1.2.3", ["[2001:db8::7]:4711"], ["10.0.0.0/8"], "2001:db8::7"),
        ("10.1.2.3", ["10.8.8.8"], ["10.0.0.0/8"], "10.8.8.8"),  # every hop trusted: the first is the client
        ("10.1.2.3", [], ["10.0.0.0/8"], "10.1.2.3"),
        ("10.1.2.3", ["6.6.6.6, not-an-address"], ["10.0.0.0/8"], "10.1.2.3"),  # garbled: the proxy it is
        ("::1", ["6.6.6.6"], ["::1"], "6.6.6.6"),
    ],
)
def test_client_address(peer: str, forwarded_for: list[str], trusted: list[str], expected: str) -> None:
    assert client_address(request(peer, *forwarded_for), trusted) == expected


def test_uvicorn_believes_forwarded_headers_only_from_the_configured_proxies() -> None:
    default = uvicorn_config(object(), ServiceSettings())
    assert default.proxy_headers is False  # uvicorn's own default trusts 127.0.0.1
    proxied = uvicorn_config(object(), ServiceSettings(trusted_proxies=["10.0.0.0/8", "::1"]))
    assert proxied.proxy_headers is True and proxied.forwarded_allow_ips == ["10.0.0.0/8", "::1"]


def test_trusted_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
    assert ServiceSettings().trusted_proxies == ["10.0.0.0/8", "::1"]
    monkeypatch.setenv("CRM_TRUSTED_PROXIES", '["192.168.0.0/16"]')
    assert ServiceSettings().trusted_proxies == ["192.168.0.0/16"]
    monkeypatch.setenv("CRM_TRUSTED_PROXIES", "proxy.internal")
    with pytest.raises(ValueError, match=r"proxy\.internal"):
        ServiceSettings()


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_an_idle_connection_outlives_the_clients_own_idle_expiry() -> None:
    """A connection idle for longer than uvicorn's default keep-alive (5 s, the same as httpx's
    expiry) is still open: a client reusing it does not meet a dropped request (a store-outage run
    saw an httpx.ReadError when both sides timed the same connection out at once)."""
    settings = ServiceSettings(http_port=0)
    assert uvicorn_config(object(), settings).timeout_keep_alive == 75
    server = uvicorn.Server(uvicorn.Config(_hello, **{**uvicorn_options(settings), "lifespan": "off"}))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=10, message="uvicorn started")
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(2):
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"hello"), timeout=5)
            assert head.startswith(b"HTTP/1.1 200")
            await asyncio.sleep(6)  # past uvicorn's default; the server must not have closed it
        writer.close()
    finally:
        server.should_exit = True
        await task
