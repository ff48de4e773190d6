"""Access tokens: claims the platform verifies, RS256 with a kid = the key's RFC 7638 thumbprint."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crm_directory.adapters.signing import TokenSigner, public_pem, rsa_public_jwk
from crm_platform.auth import TokenVerifier
from crm_platform.settings import ServiceSettings

SECRET = "unit-test-secret-0123456789abcdef0123"
USER = {
    "_id": "u-1",
    "name": "王五",
    "roles": ["manager", "rep"],
    "department_id": "sh-team-1",
    "department_path": "/hq/east/sh-team-1",
}


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def test_hs256_tokens_carry_every_claim_and_pass_the_platform_verifier():
    settings = ServiceSettings(jwt_secret=SECRET)  # type: ignore[arg-type]
    signer = TokenSigner(settings, None, timedelta(minutes=15))
    now = datetime.now(UTC).replace(microsecond=0)
    token = signer.access_token(USER, now)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="crm", issuer="crm-directory")
    assert claims["sub"] == "u-1" and claims["name"] == "王五"
    assert claims["roles"] == ["manager", "rep"]
    assert claims["dept"] == "sh-team-1" and claims["dept_path"] == "/hq/east/sh-team-1"
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"]
    principal = await TokenVerifier(settings).verify(token)
    assert principal.reaches_path("/hq/east/sh-team-1/sub", "customers")
    assert signer.jwks() == {"keys": []}


def test_the_kid_is_the_rfc7638_thumbprint_of_the_public_key():
    pem = rsa_pem()
    jwk = rsa_public_jwk(pem)
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":")).encode()
    assert jwk["kid"] == base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    # PyJWT reads the same key back from the JWK.
    public = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
    assert public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode() == public_pem(pem)


async def test_rs256_tokens_name_their_key_and_verify_with_the_public_key():
    pem = rsa_pem()
    settings = ServiceSettings(jwt_algorithm="RS256", jwt_public_key=public_pem(pem))
    signer = TokenSigner(settings, pem, timedelta(minutes=15))
    token = signer.access_token(USER, datetime.now(UTC))
    assert jwt.get_unverified_header(token)["kid"] == signer.jwks()["keys"][0]["kid"]
    principal = await TokenVerifier(settings).verify(token)
    assert principal.user_id == "u-1" and principal.department_path == "/hq/east/sh-team-1"


def test_rs256_without_a_private_key_cannot_sign():
    settings = ServiceSettings(jwt_algorithm="RS256", jwt_jwks_url="http://idp.example/jwks")
    assert not TokenSigner(settings, None, timedelta(minutes=15)).can_sign
