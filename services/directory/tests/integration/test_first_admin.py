"""The first administrator: from settings on first start (printed once), and from the CLI."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from crm_directory.__main__ import cli
from crm_directory.main import create_app
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, eventually, unique

from ..conftest import directory_settings_for, random_ip

PASSWORD_LINE = re.compile(r"Password \(shown once[^)]*\): (?P<password>\S+)")


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/token", json={"email": email, "password": password}, headers={"X-Forwarded-For": random_ip()}
    )


class Started:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://first.test")


@pytest.fixture
async def start(backend: Backend) -> AsyncIterator[Any]:
    """start(**settings) runs an app's start-up (lifespan) and keeps it running until the test ends."""
    stack: list[Any] = []

    async def starter(**overrides: Any) -> Started:
        app = create_app(directory_settings_for(backend, **overrides))
        context = app.router.lifespan_context(app)
        await context.__aenter__()
        stack.append(context)
        return Started(app)

    yield starter
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


async def test_the_first_start_creates_the_admin_from_settings_and_prints_the_password_once(start, capsys):
    database = f"crm_directory_{unique('boot').replace('-', '_')}"
    email = f"{unique('it')}@example.com"
    first = await start(mongo_database=database, directory_bootstrap_admin_email=email)
    out = capsys.readouterr().out
    match = PASSWORD_LINE.search(out)
    assert match, out
    password = match.group("password")
    r = await sign_in(first.client, email, password)
    assert r.status_code == 200, r.text
    me = await first.client.get("/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert (me.json()["roles"], me.json()["department_path"]) == (["admin"], "/hq")
    # A second start (or another replica) finds an admin: nothing created, nothing printed.
    await start(mongo_database=database, directory_bootstrap_admin_email=email)
    assert "Password" not in capsys.readouterr().out


async def test_the_last_active_admin_cannot_be_deactivated_or_demoted(start, capsys):
    database = f"crm_directory_{unique('last').replace('-', '_')}"
    email = f"{unique('it')}@example.com"
    app = await start(mongo_database=database, directory_bootstrap_admin_email=email)
    capsys.readouterr()
    client, someone = app.client, auth(unique("ops"), ["admin"], "/hq")
    [admin] = (await client.get("/v1/users", params={"role": "admin"}, headers=someone)).json()["items"]
    r = await client.post(f"/v1/users/{admin['id']}/deactivate", headers=someone)
    assert r.status_code == 409 and "last active user who may manage roles" in r.json()["detail"]
    r = await client.patch(
        f"/v1/users/{admin['id']}", json={"roles": ["manager"]}, headers={**someone, "If-Match": '"1"'}
    )
    assert r.status_code == 409
    second = {"email": f"{unique('it2')}@example.com", "name": "Second", "roles": ["admin"], "department_id": "hq"}
    assert (await client.post("/v1/users", json=second, headers=someone)).status_code == 201
    assert (await client.post(f"/v1/users/{admin['id']}/deactivate", headers=someone)).status_code == 200


def _invoke(args: list[str], env: dict[str, str], stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli, args, env=env, input=stdin)


async def test_the_cli_creates_an_admin_with_a_generated_or_given_password(backend, start):
    database = f"crm_directory_{unique('cli').replace('-', '_')}"
    env = {"CRM_MONGO_URL": backend.mongo_url, "CRM_MONGO_DATABASE": database}
    email = f"{unique('root')}@example.com"
    # The CLI runs its own event loop: in a thread, as it would in its own process.
    result = await asyncio.to_thread(
        _invoke, ["create-admin", "--email", email, "--name", "IT 管理员", "--department-path", "/corp/it"], env
    )
    assert result.exit_code == 0, result.output
    password = PASSWORD_LINE.search(result.output).group("password")  # type: ignore[union-attr]
    assert "department /corp/it" in result.output
    duplicate = await asyncio.to_thread(_invoke, ["create-admin", "--email", email.upper(), "--name", "x"], env)
    assert duplicate.exit_code == 1 and "already has the email" in duplicate.output
    given = f"{unique('given')}@example.com"
    stdin = await asyncio.to_thread(
        _invoke, ["create-admin", "--email", given, "--name", "Ops", "--password-stdin"], env, "a chosen passphrase\n"
    )
    assert stdin.exit_code == 0 and "Password" not in stdin.output
    weak = await asyncio.to_thread(
        _invoke,
        ["create-admin", "--email", f"{unique('w')}@example.com", "--name", "W", "--password-stdin"],
        env,
        "short\n",
    )
    assert weak.exit_code == 1 and "at least 10 characters" in weak.output
    # The CLI only wrote: its events wait in the outbox ...
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(backend.mongo_url, tz_aware=True)
    try:
        pending = await mongo[database]["users"].count_documents({"outbox_pending_ms": {"$exists": True}})
    finally:
        await mongo.close()
    assert pending == 2
    # ... until the service starts on that database: it signs both in and its relay publishes them.
    app = await start(mongo_database=database)
    assert (await sign_in(app.client, email, password)).status_code == 200
    assert (await sign_in(app.client, given, "a chosen passphrase")).status_code == 200
    tree = (await app.client.get("/v1/departments/tree", headers=auth("u", ["rep"]))).json()
    assert tree[0]["id"] == "corp" and tree[0]["children"][0]["path"] == "/corp/it"
    directory = app.app.state.directory

    async def published() -> bool:
        return await app.app.state.kit.event_log.count_documents({"type": "crm.user.created"}) == 2

    await eventually(published, message="the CLI's events published by the service's relay")
    assert await directory.repo.users.count_documents({"outbox_pending_ms": {"$exists": True}}) == 0
