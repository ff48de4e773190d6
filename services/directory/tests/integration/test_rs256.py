"""RS256: the directory signs with its private key and publishes the public key at /.well-known/jwks.json;
the platform's TokenVerifier, given only that URL, accepts the tokens it issues.

The directory runs under uvicorn on a free port here, so the JWKS is fetched over real HTTP.
A second directory, with RS256 and no private key, plays a service fed by an external
identity provider (the first directory stands in for the IdP): it accepts the IdP's
tokens, takes users through the idempotent PUT, and refuses to sign anyone in.
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crm_directory.adapters.signing import TokenSigner
from crm_directory.main import create_app
from crm_platform.auth import TokenVerifier
from crm_platform.devstack.processes import LOOPBACK, free_port
from crm_platform.settings import ServiceSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, eventually, unique

from ..conftest import directory_settings_for, random_ip

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
async def rs256_directory(backend: Backend, private_pem: str) -> AsyncIterator[str]:
    settings = directory_settings_for(
        backend, jwt_algorithm="RS256", jwt_secret="", directory_jwt_private_key=private_pem
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=LOOPBACK, port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), timeout=30, message="uvicorn started")
    assert not task.done(), task.exception()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        await task


def admin_token(private_pem: str, user_id: str = "it-admin") -> str:
    settings = ServiceSettings(jwt_algorithm="RS256", jwt_public_key="unused")
    user = {"_id": user_id, "roles": ["admin"], "department_id": None, "department_path": None}
    return TokenSigner(settings, private_pem, timedelta(minutes=5)).access_token(user, datetime.now(UTC))


async def test_tokens_it_signs_verify_against_its_jwks_url(rs256_directory: str, private_pem: str):
    base = rs256_directory
    async with httpx.AsyncClient(base_url=base) as http:
        jwks = (await http.get("/.well-known/jwks.json")).json()
        [key] = jwks["keys"]
        assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig") and key["kid"]
        admin = {"Authorization": f"Bearer {admin_token(private_pem)}"}
        root = unique("org")
        r = await http.post("/v1/departments", json={"id": root, "name": "Org"}, headers=admin)
        assert r.status_code == 201, r.text
        body = {"email": f"{unique('rs')}@example.com", "name": "RS", "roles": ["manager"], "department_id": root}
        r = await http.post("/v1/users", json={**body, "password": PASSWORD}, headers=admin)
        assert r.status_code == 201, r.text
        user = r.json()
        r = await http.post(
            "/v1/auth/token",
            json={"email": body["email"], "password": PASSWORD},
            headers={"X-Forwarded-For": random_ip()},
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": key["kid"], "typ": "JWT"}
        # Another service knows only the URL.
        verifier = TokenVerifier(ServiceSettings(jwt_algorithm="RS256", jwt_jwks_url=f"{base}/.well-known/jwks.json"))
        principal = await verifier.verify(token)
        assert (principal.user_id, principal.department_path, principal.is_manager) == (
            user["id"],
            f"/{root}",
            True,
        )
        me = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["id"] == user["id"]
        # An HS256 token (say, signed with a leaked test secret) is not accepted.
        forged = jwt.encode(
            {"sub": "x", "roles": ["admin"], "iss": "crm-directory", "aud": "crm", "exp": 2**31},
            TEST_JWT_SECRET,
            algorithm="HS256",
        )
        assert (await http.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401


async def test_with_an_external_identity_provider_users_are_synced_and_sign_in_is_refused(
    backend: Backend, rs256_directory: str, private_pem: str
):
    settings = directory_settings_for(
        backend, jwt_algorithm="RS256", jwt_secret="", jwt_jwks_url=f"{rs256_directory}/.well-known/jwks.json"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://idp-fed.test") as http:
            admin = {"Authorization": f"Bearer {admin_token(private_pem, 'sync-job')}"}
            root = unique("org")
            assert (
                await http.post("/v1/departments", json={"id": root, "name": "Org"}, headers=admin)
            ).status_code == 201
            subject = unique("idp-sub")
            body: dict[str, Any] = {
                "email": f"{subject}@corp.example.com",
                "name": "From the IdP",
                "roles": ["rep"],
                "department_id": root,
            }
            r = await http.put(f"/v1/users/{subject}", json=body, headers=admin)
            assert r.status_code == 201 and r.json()["id"] == subject
            assert (await http.put(f"/v1/users/{subject}", json=body, headers=admin)).headers["etag"] == '"1"'
            refused = await http.post("/v1/auth/token", json={"email": body["email"], "password": PASSWORD})
            assert refused.status_code == 501 and "identity provider" in refused.json()["detail"]
            assert (await http.get("/.well-known/jwks.json")).json() == {"keys": []}
