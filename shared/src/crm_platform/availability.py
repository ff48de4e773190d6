"""What a service does while its data store is unreachable: fail fast, say so, recover at once.

Three pieces, all driven by :class:`~crm_platform.settings.ServiceSettings`:

- :func:`mongo_client`: a PyMongo client whose waits are bounded (server selection, connect,
  socket reads), so a request that needs the store while it is down gives up within about
  ``mongo_server_selection_timeout_ms`` instead of hanging;
- :func:`install_unavailable_handler`: such a failure becomes 503 problem+json with
  ``Retry-After`` (not a 500 with a traceback per request: during an outage every request
  fails, and a traceback each is log noise and, rendered for the console, seconds of CPU on
  the event loop that serves the other requests);
- :func:`store_unavailable`: the one test of "the store is down (or too slow), not the
  request wrong", shared by the HTTP handler and the consumers (which must retry such an
  event rather than dead-letter it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError
from pymongo.monitoring import CommandListener

from crm_platform.errors import problem_response
from crm_platform.settings import ServiceSettings

log = structlog.get_logger(__name__)
Document = dict[str, Any]

#: The PyMongo errors that mean "unreachable or out of time", whatever the request was.
UNAVAILABLE_ERRORS: tuple[type[PyMongoError], ...] = (ConnectionFailure, ExecutionTimeout, WTimeoutError)


def mongo_client(
    settings: ServiceSettings,
    event_listeners: Sequence[CommandListener] = (),
    *,
    max_pool_size: int | None = None,
    role: str = "",
) -> AsyncMongoClient[Document]:
    """The service's client: one pool, every wait on the store bounded by a setting.

    ``max_pool_size`` overrides the setting, ``role`` is added to the name the store sees.
    """
    return AsyncMongoClient(
        settings.mongo_url,
        tz_aware=True,
        appname=f"crm-{settings.service_name}{f'-{role}' if role else ''}",
        # How long an operation waits for a usable server: while the store is down, this is
        # how long a request takes to fail (then 503).
        serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
        connectTimeoutMS=settings.mongo_connect_timeout_ms,
        # A store that accepts a command and never answers (stopped, partitioned) would hold the
        # request forever: PyMongo's default is no socket timeout at all.
        socketTimeoutMS=settings.mongo_socket_timeout_ms,
        # How often a known server is checked; a server marked down is re-checked every 0.5 s
        # while operations wait for it, so this mostly bounds how soon /readyz notices an outage.
        heartbeatFrequencyMS=settings.mongo_heartbeat_frequency_ms,
        maxPoolSize=max_pool_size or settings.mongo_max_pool_size,
        event_listeners=list(event_listeners),
    )


def readiness_client(settings: ServiceSettings) -> AsyncMongoClient[Document]:
    """/readyz's own client, one connection: its ping and outbox counts do not queue behind the
    requests', relay's and consumers' work for the service's pool (2 connections on the embedded
    store). Queued there, under the store-outage test's writers, /readyz took up to its whole
    timeout (p90 0.8-1.2 s; after the store's return, once a 503 naming the store that answered
    and once an outbox count given up); on its own connection p90 0.3-0.6 s, at most 1.3 s."""
    return mongo_client(settings, max_pool_size=1, role="readiness")


def store_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the store could not be reached or did not answer in time.

    ConnectionFailure covers a refused or closed connection (AutoReconnect), no server
    within the selection timeout, a socket timeout (NetworkTimeout) and a full pool
    (WaitQueueTimeoutError); ``timeout`` is PyMongo's own flag for an operation that ran
    out of time (pymongo.timeout(), maxTimeMS).
    """
    return isinstance(exc, UNAVAILABLE_ERRORS) or (isinstance(exc, PyMongoError) and exc.timeout)


def install_unavailable_handler(app: FastAPI, retry_after_seconds: int) -> None:
    """Turn "the store is unreachable" into 503 problem+json with Retry-After, on every route."""

    async def on_store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # One line, no traceback: during an outage every request lands here.
        log.warning("data store unavailable", path=str(request.url.path), error=f"{type(exc).__name__}: {exc}")
        return problem_response(
            503,
            "store-unavailable",
            "The data store is unavailable",
            "The service cannot reach its database right now; retry after the time in Retry-After.",
            request,
            headers={"Retry-After": str(retry_after_seconds)},
        )

    # Only these classes: any other PyMongo error (a bad query, a duplicate key nobody caught)
    # is a bug, and the generic handler reports it as 500 with its traceback.
    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, on_store_unavailable)
