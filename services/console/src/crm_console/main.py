"""The console's app factory: sessions in its own database, one HTTP client per service, the core
pages (sign-in, preferences, health) and every page group found in ``crm_console.pages``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jinja2
import structlog
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from crm_console import auth, errors, health, observability
from crm_console.i18n import Catalogue
from crm_console.registry import PageGroup, discover
from crm_console.sessions import SessionStore
from crm_console.settings import ConsoleSettings
from crm_console.upstreams import Upstreams
from crm_console.web import Console, csrf_protect
from crm_platform.logging import configure_logging
from crm_platform.tasks import cancel_and_wait

HERE = Path(__file__).parent
log = structlog.get_logger(__name__)


def template_environment(groups: list[PageGroup]) -> jinja2.Environment:
    """Core templates by name (``base.html``), a group's as ``<group>/<file>`` (``customers/list.html``)."""
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(HERE / "templates"),
            jinja2.PrefixLoader({g.name: jinja2.FileSystemLoader(g.templates) for g in groups}),
        ]
    )
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def catalogue_for(groups: list[PageGroup]) -> Catalogue:
    catalogue = Catalogue()
    catalogue.load("core", HERE / "messages.json")
    for group in groups:
        if group.messages.exists():
            catalogue.load(group.name, group.messages)
    return catalogue


def create_app(
    settings: ConsoleSettings | None = None, upstream_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    settings = settings or ConsoleSettings()
    configure_logging(settings.log_level, settings.log_format)
    groups = discover()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongo_url,
            tz_aware=True,
            serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
            connectTimeoutMS=settings.mongo_connect_timeout_ms,
        )
        sessions = SessionStore(client[settings.mongo_database])
        upstreams = Upstreams(settings.upstream_urls(), settings.console_upstream_timeout_seconds, upstream_transport)
        # The store may be down at start-up: the console still serves (its pages say what is
        # missing) and builds the sessions' indexes as soon as the store answers.
        indexing = asyncio.create_task(_ensure_indexes_when_reachable(sessions), name="console-session-indexes")
        app.state.console = Console(
            settings=settings,
            sessions=sessions,
            upstreams=upstreams,
            catalogue=catalogue_for(groups),
            templates=template_environment(groups),
            groups=groups,
        )
        try:
            yield
        finally:
            await cancel_and_wait(indexing)
            await upstreams.aclose()
            await client.close()

    # CSRF on the whole app: any request that is not GET/HEAD/OPTIONS needs the session's token.
    app = FastAPI(
        title="CRM console",
        lifespan=lifespan,
        dependencies=[Depends(csrf_protect)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(auth.router)
    for group in groups:
        app.include_router(group.router)
    errors.install(app)
    observability.install(app, list(settings.trusted_proxies))
    return app


async def _ensure_indexes_when_reachable(sessions: SessionStore, first_pause: float = 1.0) -> None:
    pause = first_pause
    while True:
        try:
            await sessions.ensure_indexes()
            return
        except PyMongoError as exc:
            log.warning("session indexes not built yet; retrying", error=f"{type(exc).__name__}: {exc}", retry_in=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
