"""An HTTP client that connects only to addresses the caller has already checked.

Checking a webhook URL's addresses and then letting the HTTP client resolve the name again
leaves a window (DNS rebinding): the name can answer a public address to the check and
``127.0.0.1`` to the connection. So the delivery resolves once, checks every address, and
sends the request with the addresses pinned: the client's network backend connects to a
pinned address instead of resolving the name, while everything above the socket still uses
the URL's host name, so the ``Host`` header, TLS SNI and certificate verification are for
the name, as they would be without the pin.

A connection is only ever opened to a pinned (checked) address; with no pin for the host the
backend refuses to connect. Pooled keep-alive connections are keyed by host name, so one
reused later goes to the address checked when it was opened.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore
import httpx

# (the host as httpcore sees it, the checked addresses in the order to try them), for the
# request being sent in this task.
_PIN: ContextVar[tuple[str, tuple[str, ...]] | None] = ContextVar("crm_webhook_pin", default=None)


@contextmanager
def pinned(url: str, addresses: Sequence[str]) -> Iterator[None]:
    """Within the block, a connection to ``url``'s host goes to ``addresses`` (tried in order) only."""
    if not addresses:
        raise ValueError("pin at least one address")
    # httpcore hands the backend the host as httpx encodes it (IDNA, lower case, no brackets).
    host = httpx.URL(url).raw_host.decode("ascii")
    token = _PIN.set((host, tuple(addresses)))
    try:
        yield
    finally:
        _PIN.reset(token)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the pinned address of the host instead of resolving its name."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PIN.get()
        if pin is None or pin[0] != host:
            raise httpcore.ConnectError(f"{host} has no checked address to connect to; not connecting")
        failure: Exception | None = None
        for address in pin[1]:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the next checked address, as a resolver's caller would
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with the pinning network backend underneath.

    httpx does not take a network backend as an argument, so the connection pool it built is
    replaced by one with the same settings and our backend.
    """

    def __init__(self, verify: ssl.SSLContext | bool = True, limits: httpx.Limits = httpx.Limits()) -> None:
        super().__init__(verify=verify, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            # trust_env here only means SSL_CERT_FILE / SSL_CERT_DIR: an operator's CA bundle still counts.
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(),
        )


def pinned_client(timeout: float, headers: dict[str, str], verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A client for sending to checked addresses only (see :func:`pinned`).

    No redirects (a receiver must not bounce us to an address the check refused) and no proxy
    from the environment (``trust_env=False``): an HTTP(S)_PROXY would make the proxy, not us,
    resolve the name again.
    """
    return httpx.AsyncClient(
        transport=PinnedTransport(verify=verify),
        timeout=timeout,
        follow_redirects=False,
        headers=headers,
        trust_env=False,
    )
