"""What every service's HTTP layer answers to input it cannot use: problem+json, never a bare 500
or a reset connection.

The app is a real ServiceKit app (its error handlers, middleware and auth) served by a real
uvicorn on a free port, so keep-alive behaviour is uvicorn's own; no lifespan runs, since
these routes touch neither MongoDB nor Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from crm_platform.auth import CurrentPrincipal
from crm_platform.logging import configure_logging
from crm_platform.permissions import PUBLIC, declare
from crm_platform.service import ServiceKit
from crm_platform.settings import ServiceSettings
from crm_platform.testing.fixtures import eventually

SECRET = "unit-test-secret-0123456789abcdef0123"
PROBLEM = "application/problem+json"


class Note(BaseModel):
    name: str
    text: str = ""
    contacts: list[dict[str, str]] = []


def _app() -> FastAPI:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("a bug")

    @router.get("/fine")
    async def fine() -> dict[str, str]:
        return {"status": "fine"}

    @router.post("/things/{thing_id}")
    async def put_thing(thing_id: str, note: Note, q: str | None = None) -> dict[str, Any]:
        return {"thing_id": thing_id, "name": note.name, "text": note.text}

    @router.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"user_id": principal.user_id, "roles": sorted(principal.roles)}

    settings = ServiceSettings(service_name="httpcheck", jwt_secret=SECRET)  # type: ignore[arg-type]
    # Test routes: the platform's checks (errors, tokens, control characters) come before any permission.
    declare(
        settings.service_name, {k: PUBLIC for k in ("GET /boom", "GET /fine", "GET /me", "POST /things/{thing_id}")}
    )
    return ServiceKit(settings, title="http check", description="error handling").build_app([router])


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[str]:
    # What the kit's lifespan would do: structlog's default console renderer draws the 500's
    # traceback with every local variable, which takes seconds.
    configure_logging("WARNING", "json")
    app = _app()
    # lifespan="off": the kit's lifespan would connect to MongoDB and Kafka, which these routes do not use.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10, message="uvicorn started")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await app.state.kit.mongo.close()


async def test_an_unhandled_error_is_a_problem_and_closes_the_connection_cleanly(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        before = await client.get("/fine")
        assert before.status_code == 200 and before.headers.get("connection") != "close"
        failed = await client.get("/boom")
        assert failed.status_code == 500
        assert failed.headers["content-type"].startswith(PROBLEM)
        assert failed.headers["connection"] == "close"
        assert failed.json()["type"] == "urn:crm:problem:internal" and "a bug" not in failed.text
        # The client took the hint and opens a new connection: the next request just works.
        after = await client.get("/fine")
        assert after.status_code == 200


def _token(**claims: Any) -> str:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "sub": "u1",
        "roles": ["rep"],
        "iss": "crm-directory",
        "aud": "crm",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ({"roles": 5}, "roles"),
        ({"roles": "admin"}, "roles"),  # a string is iterable: it must not become roles a, d, m, i, n
        ({"roles": [1, 2]}, "roles"),
        ({"roles": ["God Mode"]}, "roles"),
        ({"name": {"first": "Ann"}}, "name"),
        ({"dept_path": 7}, "dept_path"),
    ],
)
async def test_a_signed_token_with_claims_of_the_wrong_shape_is_a_401(
    served: str, claims: dict[str, Any], field: str
) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        r = await client.get("/me", headers={"Authorization": f"Bearer {_token(**claims)}"})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert [(e["field"], e["location"]) for e in r.json()["errors"]] == [(field, "token")]


async def test_a_well_formed_token_still_works(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        r = await client.get("/me", headers={"Authorization": f"Bearer {_token(roles=['rep', 'manager'])}"})
    assert r.status_code == 200 and r.json() == {"user_id": "u1", "roles": ["manager", "rep"]}


@pytest.mark.parametrize(
    ("path", "params", "body", "expected"),
    [
        ("/things/t1", {}, {"name": "Acme\u0000 Ltd"}, [("name", "body", "U+0000")]),
        ("/things/t1", {}, {"name": "Acme\u001b[31m"}, [("name", "body", "U+001B")]),
        ("/things/t1", {}, {"name": "ok", "text": "x\u007f"}, [("text", "body", "U+007F")]),
        ("/things/t1", {}, {"name": "ok", "contacts": [{"n": "a"}, {"n": "b\u0007"}]}, [("contacts[1].n", "body", "")]),
        ("/things/t1", {}, {"name": "ok", "contacts": [{"n\u0000": "a"}]}, [("contacts[0]", "body", "member name")]),
        ("/things/t1", {"q": "a\tb"}, {"name": "ok"}, [("q", "query", "U+0009")]),
        ("/things/t1", {"q": "a\u0000"}, {"name": "ok"}, [("q", "query", "U+0000")]),
        ("/things/t%00x", {}, {"name": "ok"}, [("thing_id", "path", "U+0000")]),
        (
            "/things/t%0Ax",
            {"q": "\u0001"},
            {"name": "\u0002"},
            [("thing_id", "path", ""), ("q", "query", ""), ("name", "body", "")],
        ),
    ],
)
async def test_control_characters_are_refused_naming_the_field(
    served: str, path: str, params: dict[str, str], body: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        r = await client.post(path, params=params, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    errors = r.json()["errors"]
    assert [(e["field"], e["location"]) for e in errors] == [(f, loc) for f, loc, _ in expected]
    assert all(reason in e["reason"] for e, (_, _, reason) in zip(errors, expected, strict=True))


async def test_line_breaks_and_tabs_stay_allowed_in_body_text(served: str) -> None:
    text = "line one\r\nline two\n\tindented"
    async with httpx.AsyncClient(base_url=served) as client:
        r = await client.post("/things/t1", json={"name": "Acme 有限公司", "text": text}, params={"q": "fine"})
        # A raw body without a content type is read as JSON by FastAPI: checked all the same.
        raw = await client.post("/things/t1", content=b'{"name": "a\\u0000"}')
    assert r.status_code == 200, r.text
    assert r.json() == {"thing_id": "t1", "name": "Acme 有限公司", "text": text}
    assert raw.status_code == 422 and raw.json()["errors"][0]["field"] == "name"


async def test_a_validation_error_says_its_kind_and_limits_for_machines(served: str) -> None:
    """Beside the English reason: ``code`` (pydantic's error type) and ``params`` (its limits),
    which a client (the console) turns into its own words in another language."""
    async with httpx.AsyncClient(base_url=served) as client:
        missing = await client.post("/things/t1", json={"text": "x"})
        wrong = await client.post("/things/t1", json={"name": "ok", "contacts": "not a list"})
    assert missing.status_code == 422 and missing.headers["content-type"].startswith(PROBLEM)
    assert missing.json()["errors"] == [
        {"field": "name", "reason": "Field required", "location": "body", "code": "missing"}
    ]
    assert wrong.json()["errors"][0] | {"reason": ""} == {
        "field": "contacts",
        "reason": "",
        "location": "body",
        "code": "list_type",
    }
