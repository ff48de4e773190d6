"""Signing access tokens, and publishing the public key (JWKS) for RS256.

Claims come from ``crm_platform.auth.mint_token`` with the platform's settings
(``CRM_JWT_ALGORITHM``, ``CRM_JWT_ISSUER``, ``CRM_JWT_AUDIENCE``), so every service
verifies them with its unchanged ``TokenVerifier``. RS256 tokens carry the key's
``kid`` header (``PyJWKClient`` looks the key up by it).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from crm_platform.auth import mint_token
from crm_platform.settings import ServiceSettings


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_public_jwk(private_pem: str) -> dict[str, str]:
    """The public half as a JWK, with ``kid`` = its RFC 7638 thumbprint."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("CRM_DIRECTORY_JWT_PRIVATE_KEY must be an RSA private key (PEM) for RS256")
    numbers = key.public_key().public_numbers()
    required = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return {**required, "kid": kid, "use": "sig", "alg": "RS256"}


def public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class TokenSigner:
    """Mints access tokens with the configured algorithm and key."""

    def __init__(self, settings: ServiceSettings, private_key_pem: str | None, ttl: timedelta) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.ttl = ttl
        self.jwk: dict[str, str] | None = None
        if self.algorithm == "RS256":
            # Without a private key an external identity provider signs: this directory cannot.
            self._key = private_key_pem
            self.jwk = rsa_public_jwk(private_key_pem) if private_key_pem else None
        else:
            self._key = settings.jwt_secret.get_secret_value() or None

    @property
    def can_sign(self) -> bool:
        return self._key is not None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk] if self.jwk else []}

    def access_token(self, user: dict[str, Any], now: datetime) -> str:
        assert self._key is not None, "check can_sign first"
        return mint_token(
            secret_or_private_key=self._key,
            user_id=user["_id"],
            roles=list(user.get("roles") or []),
            department_id=user.get("department_id"),
            department_path=user.get("department_path"),
            name=user.get("name"),
            algorithm=self.algorithm,
            issuer=self.issuer,
            audience=self.audience,
            ttl=self.ttl,
            now=now,
            key_id=self.jwk["kid"] if self.jwk else None,
        )
