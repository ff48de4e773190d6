"""Token verification (HS256, RS256 via a real JWKS endpoint) and the visibility rules."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crm_platform.auth import Principal, Role, TokenVerifier, mint_token
from crm_platform.errors import Forbidden, Unauthorized
from crm_platform.settings import ServiceSettings

SECRET = "unit-test-secret-0123456789abcdef0123"


def hs_settings(**kw: object) -> ServiceSettings:
    return ServiceSettings(jwt_secret=SECRET, **kw)  # type: ignore[arg-type]


async def test_hs256_token_round_trip():
    token = mint_token(
        secret_or_private_key=SECRET, user_id="u1", roles=["manager"], department_id="east", department_path="/hq/east"
    )
    p = await TokenVerifier(hs_settings()).verify(token)
    assert p.user_id == "u1" and p.roles == {Role.manager} and p.department_path == "/hq/east"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": timedelta(seconds=-5)}, "expired"),
        ({"audience": "someone-else"}, "invalid"),
        ({"issuer": "evil"}, "invalid"),
        ({"secret_or_private_key": "another-secret-0123456789abcdef0123"}, "invalid"),
    ],
)
async def test_bad_tokens_are_refused(kwargs, message):
    args = {"secret_or_private_key": SECRET, "user_id": "u1", "roles": ["rep"]} | kwargs
    with pytest.raises(Unauthorized, match=message):
        await TokenVerifier(hs_settings()).verify(mint_token(**args))


async def test_a_role_id_that_is_not_a_slug_is_refused():
    with pytest.raises(Unauthorized, match="not a slug"):
        await TokenVerifier(hs_settings()).verify(
            mint_token(secret_or_private_key=SECRET, user_id="u1", roles=["God Mode"])
        )


async def test_role_ids_are_kept_as_the_token_names_them():
    """A defined role (or one no service knows yet, which then grants nothing) is carried as its id;
    the built-in ones still answer is_admin / is_manager."""
    token = mint_token(secret_or_private_key=SECRET, user_id="u1", roles=["key-account", "manager"])
    p = await TokenVerifier(hs_settings()).verify(token)
    assert p.roles == {"key-account", "manager"} and p.is_manager and not p.is_admin


def test_hs256_needs_a_secret():
    with pytest.raises(ValueError, match="CRM_JWT_SECRET"):
        TokenVerifier(ServiceSettings())


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", key
    server.shutdown()


async def test_rs256_tokens_verified_against_a_jwks_url(jwks_server):
    url, key = jwks_server
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    now = datetime.now(UTC)
    token = jwt.encode(
        {
            "sub": "idp-user",
            "roles": ["admin"],
            "iss": "corp-idp",
            "aud": "crm",
            "exp": now + timedelta(minutes=5),
            "iat": now,
        },
        pem,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    verifier = TokenVerifier(ServiceSettings(jwt_algorithm="RS256", jwt_jwks_url=url, jwt_issuer="corp-idp"))
    principal = await verifier.verify(token)
    assert principal.user_id == "idp-user" and principal.is_admin
    forged = jwt.encode(
        {"sub": "x", "iss": "corp-idp", "aud": "crm", "exp": now + timedelta(minutes=5)}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized):
        await verifier.verify(forged)


def test_visibility_rules():
    rep = Principal(user_id="r1", roles=frozenset({Role.rep}), department_path="/hq/east")
    manager = Principal(user_id="m1", roles=frozenset({Role.manager}), department_path="/hq/east")
    admin = Principal(user_id="a1", roles=frozenset({Role.admin}))
    assert rep.can_see_owned("r1", "/hq/east", module="customers") and not rep.can_see_owned(
        "r2", "/hq/east", module="customers"
    )
    assert manager.can_see_owned("r2", "/hq/east/team-1", module="customers") and manager.can_see_owned(
        "r2", "/hq/east", module="customers"
    )
    assert not manager.can_see_owned("r2", "/hq/eastern", module="customers"), "a prefix must stop at a path boundary"
    assert not manager.can_see_owned("r2", "/hq/west", module="customers")
    assert admin.can_see_owned("anyone", None, module="customers")
    assert rep.mongo_visibility(module="customers") == {"owner_id": "r1"}
    assert manager.mongo_visibility(module="customers") == {
        "$or": [{"owner_id": "m1"}, {"department_path": {"$regex": "^/hq/east(/|$)"}}]
    }
    assert admin.mongo_visibility(module="customers") == {}
    with pytest.raises(Forbidden):
        rep.require_role(Role.admin, Role.manager)
