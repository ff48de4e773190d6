"""The service kit: wires settings, MongoDB, the broker, the outbox relay, consumers,
health, metrics and the event catalogue into one FastAPI app.

A service creates a :class:`ServiceKit`, registers what it owns (outbox
collections, consumers, index set-up) and calls :meth:`ServiceKit.build_app` with
its routers. Everything starts in the app's lifespan and stops in reverse order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

import pymongo
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi import get_asyncapi_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_platform.auth import TokenVerifier
from crm_platform.availability import install_unavailable_handler, mongo_client, readiness_client
from crm_platform.backup import Restate, Restater
from crm_platform.clock import Clock, SystemClock
from crm_platform.consumer import EventConsumer, Handler
from crm_platform.contracts import directory as directory_events
from crm_platform.errors import install_error_handlers
from crm_platform.events import registry
from crm_platform.kafka import broker_publisher, dead_letter_topic, ensure_topics, make_broker, topic_for
from crm_platform.logging import configure_logging
from crm_platform.metrics import (
    BACKGROUND_RUNS,
    BACKGROUND_SECONDS,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    OUTBOX_PENDING,
)
from crm_platform.openapi import document_problems
from crm_platform.outbox import OutboxRelay, ensure_event_log_indexes, ensure_outbox_indexes, pending_count
from crm_platform.permissions import PUBLIC, authorize, rule_for, undeclared
from crm_platform.readiness import Missed, within
from crm_platform.readmodels.rebuild import ReadCopy
from crm_platform.roles import RoleBook
from crm_platform.serving import client_address
from crm_platform.settings import ServiceSettings
from crm_platform.storemetrics import ORIGIN, CommandCounter
from crm_platform.tasks import cancel_and_wait
from crm_platform.text_input import refuse_control_characters
from crm_platform.tracing import accept_traceparent, current_client_address, current_traceparent

log = structlog.get_logger(__name__)
Document = dict[str, Any]
StartupHook = Callable[["ServiceKit"], Awaitable[None]]
ReadCopyT = TypeVar("ReadCopyT", bound=ReadCopy)


class Background(Protocol):
    """A loop that runs while the service runs (a scheduler, a projector): started, then stopped."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Periodic:
    """Runs ``tick`` every ``interval`` seconds while the service runs (register with ``kit.background``).

    A failed tick is logged and tried again at the next one; safe with several replicas only
    if ``tick`` itself is (a guarded write per item, as the schedulers do). How it is doing
    (last run, duration, last error, stalled) shows in ``/readyz`` and in the
    ``crm_background_*`` metrics.
    """

    def __init__(self, name: str, tick: Callable[[], Awaitable[Any]], interval: float) -> None:
        self.name = name
        self._tick = tick
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.failures = 0
        self.last_started_at: datetime | None = None
        self.last_finished_at: datetime | None = None
        self.last_duration_seconds: float | None = None
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: informational (a failing scheduler does not take the API out of service)."""
        now = datetime.now(UTC)
        stalled = (
            self._task is not None
            and self.last_started_at is not None
            and self.last_finished_at is not None
            and (now - max(self.last_started_at, self.last_finished_at)).total_seconds() > 3 * self._interval + 60
        )
        return {
            "interval_seconds": self._interval,
            "runs": self.runs,
            "failures": self.failures,
            "last_started_at": self.last_started_at.isoformat() if self.last_started_at else None,
            "last_finished_at": self.last_finished_at.isoformat() if self.last_finished_at else None,
            "last_duration_seconds": self.last_duration_seconds,
            "last_error": self.last_error,
            "stalled": stalled,
        }

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _loop(self) -> None:
        while True:
            self.last_started_at = datetime.now(UTC)
            started = time.perf_counter()
            outcome = "ok"
            try:
                await self._tick()
                self.last_error = None
            except Exception as exc:
                outcome = "error"
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("periodic task failed; retrying at the next tick", task=self.name, error=str(exc))
            self.runs += 1
            self.last_duration_seconds = round(time.perf_counter() - started, 3)
            self.last_finished_at = datetime.now(UTC)
            BACKGROUND_RUNS.labels(self.name, outcome).inc()
            BACKGROUND_SECONDS.labels(self.name).observe(self.last_duration_seconds)
            await asyncio.sleep(self._interval)


class ServiceKit:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        title: str,
        description: str,
        version: str = "1.0.0",
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.title = title
        self.description = description
        self.version = version
        self.clock: Clock = clock or SystemClock()
        self.topic = topic_for(settings.service_name)
        self.source = f"/crm/{settings.service_name}"
        self.broker = make_broker(settings)
        # Counted per origin (http, relay, consumer, background) for crm_store_commands_total.
        self.mongo: AsyncMongoClient[Document] = mongo_client(settings, event_listeners=[CommandCounter()])
        self.db: AsyncDatabase[Document] = self.mongo[settings.mongo_database]
        self._readiness_mongo: AsyncMongoClient[Document] | None = None  # from start to stop
        self.event_log: AsyncCollection[Document] = self.db["event_log"]
        self.consumers: list[EventConsumer] = []
        self._outbox_collections: list[AsyncCollection[Document]] = []
        # How a restore brings an aggregate the topic shows newer than the backup past it
        # (crm_platform.backup): declared per outbox collection with restate().
        self.restates: list[Restate] = []
        # Read copies of other services' aggregates, rebuilt by `crm rebuild-copies` (read_copy()).
        self.read_copies: list[ReadCopy] = []
        self._startup_hooks: list[StartupHook] = []
        self._background: list[Background] = []
        self._readiness: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
        self._relay: OutboxRelay | None = None
        self._document_publishers()
        self.roles = RoleBook(self.db["role_definitions"])

    # --- what a service registers -------------------------------------------------

    def outbox(self, collection: AsyncCollection[Document]) -> AsyncCollection[Document]:
        """Declare a collection whose documents carry an outbox."""
        self._outbox_collections.append(collection)
        return collection

    @property
    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        return list(self._outbox_collections)

    def restate(self, collection: AsyncCollection[Document], event_prefix: str, restater: Restater | None) -> None:
        """Declare how a restore restates an aggregate of ``collection`` (an outbox collection whose
        events' types start with ``event_prefix``) that its topic shows at a newer version than the
        backup: see :mod:`crm_platform.backup`. Without one, such a restore is refused; ``None``:
        append-only records, each under an id of its own, which a restore leaves as the backup had
        them (their events were published; nothing will reuse their ids' versions)."""
        self.restates.append(Restate(collection.name, event_prefix, restater))

    def read_copy(self, model: ReadCopyT) -> ReadCopyT:
        """Declare a read copy (customers, opportunities, users) that `crm rebuild-copies` rebuilds."""
        self.read_copies.append(model)
        return model

    def on_startup(self, hook: StartupHook) -> StartupHook:
        self._startup_hooks.append(hook)
        return hook

    def background(self, component: Background) -> Background:
        """Run ``component`` once everything else runs; stop it first, before the broker and the store."""
        self._background.append(component)
        return component

    def readiness(self, name: str, probe: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Add ``probe()``'s answer to ``/readyz`` under ``name``; ``{"ready": False, ...}`` makes it 503."""
        self._readiness[name] = probe

    def consume(
        self,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        *,
        group_suffix: str = "",
        fallback: Handler | None = None,
        needed_for_readiness: bool = True,
        max_attempts: int | None = None,
    ) -> EventConsumer:
        """``max_attempts``: this group's own budget of attempts (default: the settings'), e.g. for a
        command that waits on another topic's events to arrive first."""
        s = self.settings
        consumer = EventConsumer(
            self.broker,
            group_id=f"crm.{s.service_name}{s.consumer_group_suffix}{group_suffix}",
            topics=topics,
            handlers=handlers,
            max_attempts=max_attempts or s.consumer_max_attempts,
            backoff_initial=s.consumer_backoff_initial_seconds,
            backoff_max=s.consumer_backoff_max_seconds,
            batch_size=s.consumer_batch_size,
            fallback=fallback,
            needed_for_readiness=needed_for_readiness,
        )
        self.consumers.append(consumer)
        return consumer

    def wake_relay(self) -> None:
        """Called right after a write that queued events, so they leave in milliseconds."""
        if self._relay is not None:
            self._relay.wake()

    @property
    def relay(self) -> OutboxRelay | None:
        return self._relay

    # --- the role definitions every service enforces ---------------------------------

    def _keep_role_definitions(self) -> None:
        """The read copy of the directory's roles that ``authorize`` grants from (crm_platform.roles).

        Its own consumer group on the directory's topic (``crm.<service>.roles``), so no
        service's other consumers are held up by it nor it by them; replicas share the group
        and learn what another replica applied from the collection, reloaded every
        ``roles_reload_seconds``. So a replica needs no partition of this group to serve
        (``/readyz`` does not wait for one), and the group does not cap the replicas.
        """

        async def load(_: ServiceKit) -> None:
            await self.roles.ensure_indexes()
            await self.roles.load()

        self.on_startup(load)
        self.consume([directory_events.TOPIC], self.roles.handlers(), group_suffix=".roles", needed_for_readiness=False)
        self.background(Periodic("role-definitions", self.roles.load, self.settings.roles_reload_seconds))

    # --- the event catalogue ------------------------------------------------------

    def _document_publishers(self) -> None:
        # One documented publisher per event type, so the AsyncAPI document lists each
        # type with its schema; the relay itself publishes through the broker.
        for event_type in registry.for_topic(self.topic):
            self.broker.publisher(
                self.topic,
                title=f"{self.topic}:{event_type.name}",
                description=event_type.description or event_type.name,
                schema=event_type.envelope_model(),
            )

    def asyncapi(self) -> Any:
        return AsyncAPI(
            self.broker, title=f"{self.title} events", version=self.version, description=self.description
        ).to_specification()

    # --- the app ------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        s = self.settings
        configure_logging(s.log_level, s.log_format)
        await self.mongo.admin.command("ping")
        for collection in self._outbox_collections:
            await ensure_outbox_indexes(collection)
        await ensure_event_log_indexes(self.event_log)
        for hook in self._startup_hooks:
            await hook(self)
        topics = {self.topic, *(dead_letter_topic(c.group_id) for c in self.consumers)}
        topics.update(t for c in self.consumers for t in c.topics)
        await ensure_topics(s.kafka_bootstrap_servers, sorted(topics), s.kafka_topic_partitions)
        await self.broker.start()
        self._relay = OutboxRelay(
            self._outbox_collections,
            broker_publisher(self.broker),
            self.clock,
            event_log=self.event_log,
            lease_seconds=s.outbox_lease_seconds,
            poll_seconds=s.outbox_poll_seconds,
            batch_size=s.outbox_batch_size,
            retry_max_seconds=s.outbox_retry_max_seconds,
        )
        self._relay.start()
        for component in self._background:
            component.start()
        self._readiness_mongo = readiness_client(s)
        log.info("service started", service=s.service_name, topic=self.topic)
        try:
            yield
        finally:
            await self._readiness_mongo.close()
            for component in reversed(self._background):
                await component.stop()
            await self._relay.stop()
            await self.broker.stop()
            await self.mongo.close()

    def build_app(self, routers: Sequence[APIRouter]) -> FastAPI:
        app = FastAPI(
            title=self.title,
            description=self.description,
            version=self.version,
            lifespan=self.lifespan,
            dependencies=[Depends(refuse_control_characters)],  # every route: see crm_platform.text_input
        )
        app.state.kit = self
        app.state.token_verifier = TokenVerifier(self.settings)
        self._keep_role_definitions()  # after the service's own consumers: theirs come first
        install_error_handlers(app)
        install_unavailable_handler(app, self.settings.unavailable_retry_after_seconds)
        self._install_middleware(app)
        ops = self._ops_router()
        self._check_permissions([*routers, ops])
        # Every route passes the permission table first (crm_platform.permissions): one check,
        # in one place, before any handler or application code runs.
        for router in [*routers, ops]:
            app.include_router(router, dependencies=[Depends(authorize)])
        self._document_errors(app)
        return app

    def _document_errors(self, app: FastAPI) -> None:
        """Serve the OpenAPI document with every route's error responses as problem+json."""
        service = self.settings.service_name

        def is_public(method: str, path: str) -> bool:
            return rule_for(service, method, path) == PUBLIC

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                app.openapi_schema = document_problems(FastAPI.openapi(app), is_public)
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]

    def _check_permissions(self, routers: Sequence[APIRouter]) -> None:
        routes = [
            (method, route.path)
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute)
            for method in route.methods or ()
        ]
        missing = undeclared(self.settings.service_name, routes)
        if missing:
            raise RuntimeError(
                f"Routes without a decision in crm_platform.permissions.ROUTES[{self.settings.service_name!r}]: "
                + ", ".join(missing)
            )

    def _install_middleware(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
            traceparent = accept_traceparent(request.headers.get("traceparent"))
            token = current_traceparent.set(traceparent)
            # Who asked, from where: the events this request causes carry it (the audit log's "where").
            address = current_client_address.set(client_address(request, self.settings.trusted_proxies))
            ORIGIN.set("http")  # this request's store commands count as the request's
            structlog.contextvars.bind_contextvars(request_id=request_id, traceparent=traceparent)
            started = time.perf_counter()
            try:
                response = await call_next(request)
            finally:
                current_traceparent.reset(token)
                current_client_address.reset(address)
                structlog.contextvars.unbind_contextvars("request_id", "traceparent")
            route = getattr(request.scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
            HTTP_LATENCY.labels(request.method, route).observe(elapsed)
            response.headers["x-request-id"] = request_id
            response.headers["traceparent"] = traceparent
            return response

    async def _readiness_checks(self) -> tuple[dict[str, Any], list[str]]:
        """Every /readyz check at once, under one deadline: ``readiness_timeout_seconds``.

        A check that hangs (the store killed mid-answer, the broker gone) or is slow to give up
        must not hold the probe: an orchestrator or `crm up` asks /readyz precisely while
        something is down, and needs a quick 503 that names it. The checks run side by side and
        the probe answers when the deadline comes, whatever is still running (cancelled and not
        waited for: crm_platform.readiness). Returns the checks and the names of those failing.
        """
        limit = self.settings.readiness_timeout_seconds
        # The probe's own connection (crm_platform.availability.readiness_client), not a place in
        # the queue for the service's pool behind a backlog of writes, relays and consumers.
        store = self._readiness_mongo or self.mongo

        async def ping_store() -> None:
            with pymongo.timeout(limit):
                await store.admin.command("ping")

        async def pending(collection: AsyncCollection[Document]) -> int:
            with pymongo.timeout(limit):
                return await pending_count(store[collection.database.name][collection.name])

        async def probe(run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
            with pymongo.timeout(limit):
                return await run()

        assigned = [c for c in self.consumers if c.assigned()]
        answers = await within(
            limit,
            {
                ("mongo", ""): ping_store(),
                ("kafka", ""): self.broker.ping(timeout=limit),
                **{("lag", c.group_id): c.lag() for c in assigned},
                **{("outbox", c.name): pending(c) for c in self._outbox_collections},
                **{("probe", name): probe(run) for name, run in self._readiness.items()},
            },
        )
        mongo, kafka = answers[("mongo", "")], answers[("kafka", "")]
        store_error = mongo.reason(limit) if isinstance(mongo, Missed) else None
        kafka_ok = not isinstance(kafka, Missed) and bool(kafka)
        lags: list[dict[str, int]] = [_answer(answers[("lag", c.group_id)], {}) for c in assigned]
        counts = [_answer(answers[("outbox", c.name)], -1) for c in self._outbox_collections]
        details = [
            {"ready": False, "error": answer.reason(limit)} if isinstance(answer, Missed) else answer
            for answer in (answers[("probe", name)] for name in self._readiness)
        ]
        checks: dict[str, Any] = {
            "mongo": "ok" if store_error is None else f"unreachable: {store_error}",
            "kafka": "ok" if kafka_ok else "unreachable",
        }
        failing = [name for name, ok in (("mongo", store_error is None), ("kafka", kafka_ok)) if not ok]
        lag_of = dict(zip((c.group_id for c in assigned), lags, strict=True))
        checks["consumers"] = {
            c.group_id: {"assigned": c.assigned(), "lag": lag_of.get(c.group_id, {})} for c in self.consumers
        }
        if any(c.needed_for_readiness and not c.assigned() for c in self.consumers):
            failing.append("consumers")
        checks["outbox_pending"] = {c.name: n for c, n in zip(self._outbox_collections, counts, strict=True)}
        for collection, n in zip(self._outbox_collections, counts, strict=True):
            OUTBOX_PENDING.labels(collection.name).set(n)
        checks["relay_error"] = self._relay.last_error if self._relay else "not started"
        background = {
            getattr(c, "name", type(c).__name__): c.status() for c in self._background if hasattr(c, "status")
        }
        if background:
            checks["background"] = background
        for name, detail in zip(self._readiness, details, strict=True):
            checks[name] = detail
            if detail.get("ready", True) is False:
                failing.append(name)
        return checks, failing

    def _ops_router(self) -> APIRouter:
        router = APIRouter(tags=["operations"])

        @router.get("/healthz", summary="Liveness: the process is up")
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": self.settings.service_name}

        @router.get(
            "/readyz",
            summary="Readiness: MongoDB and Kafka reachable, consumers assigned, outbox draining",
            # Not ready is the same document with status "not ready" (no problem+json: probes read it).
            responses={
                503: {"description": "Not ready", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        )
        async def readyz() -> JSONResponse:
            started = time.monotonic()
            checks, failing = await self._readiness_checks()
            body = {
                "status": "not ready" if failing else "ready",
                "failing": failing,
                "checks": checks,
                # This instance's own time for the checks (at most about the readiness timeout): a
                # client that waited much longer waited elsewhere (its own queue, the network).
                "took_seconds": round(time.monotonic() - started, 3),
            }
            return JSONResponse(body, status_code=503 if failing else 200)

        @router.get(
            "/metrics",
            summary="Prometheus metrics",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
        )
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        @router.get("/asyncapi.json", summary="The event catalogue (AsyncAPI 3.0)")
        async def asyncapi_json() -> JSONResponse:
            return JSONResponse(self.asyncapi().to_jsonable())

        @router.get("/asyncapi", summary="The event catalogue, as a page", response_class=HTMLResponse)
        async def asyncapi_html() -> HTMLResponse:
            return HTMLResponse(get_asyncapi_html(self.asyncapi(), try_it_out_path=None))

        return router


T = TypeVar("T")


def _answer(answer: Any, missed: T) -> T:
    """A check's answer, or ``missed`` if it failed or did not answer in time."""
    return missed if isinstance(answer, Missed) else cast(T, answer)
