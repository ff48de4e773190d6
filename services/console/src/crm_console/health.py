"""/healthz (the process answers) and /readyz (its session store and every service answer)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from crm_console.web import console

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    """503 naming what is missing. Services are probed on /healthz (alive), not /readyz, so one
    service's passing trouble (its broker, its lag) does not take the whole console out of rotation."""
    app = console(request)
    limit = app.settings.readiness_timeout_seconds

    async def store() -> str | None:
        try:
            await app.sessions.collection.database.command("ping")
        except Exception as exc:
            return f"store: {type(exc).__name__}"
        return None

    async def bounded(name: str, check: asyncio.Future[str | None] | asyncio.Task[str | None]) -> str | None:
        try:
            return await asyncio.wait_for(check, limit)
        except TimeoutError:
            return f"{name}: no answer within {limit} s"

    names = ["store", *app.upstreams.clients]
    checks = [asyncio.ensure_future(store())] + [
        asyncio.ensure_future(app.upstreams.reachable(name)) for name in app.upstreams.clients
    ]
    failing = [f for f in await asyncio.gather(*(bounded(n, c) for n, c in zip(names, checks, strict=True))) if f]
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
    return JSONResponse({"status": "ready"})
