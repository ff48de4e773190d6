"""JWT bearer authentication and the visibility rules every service enforces.

The directory service (or an external identity provider) signs access tokens; the
services verify them locally, never calling back on a request path. HS256 with a
shared secret is the embedded default; RS256 with a PEM public key or a JWKS URL
is for production.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, Field

from crm_platform.errors import FieldError, Forbidden, Unauthorized
from crm_platform.fieldaccess import FieldPolicy
from crm_platform.settings import ServiceSettings

_BEARER = re.compile(r"^Bearer\s+(?P<token>\S+)$", re.IGNORECASE)


class Role(StrEnum):
    admin = "admin"
    manager = "manager"
    rep = "rep"
    integrator = "integrator"  # a system integration: manages its own webhook subscriptions


#: A role id as the directory names it (a slug): the built-ins above, or one an administrator defined.
ROLE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Principal(BaseModel):
    """Who is calling, as the token says.

    ``roles`` are role ids: the built-in ones (:class:`Role`, a ``StrEnum``, so ``Role.admin in
    principal.roles`` holds for ``"admin"``) or roles an administrator defined in the directory.
    What they grant is decided by the service's read copy of the role definitions
    (:mod:`crm_platform.permissions`); ``is_admin`` and ``is_manager`` still name the built-ins.
    """

    user_id: str
    name: str | None = None
    roles: frozenset[str] = Field(default_factory=frozenset)
    department_id: str | None = None
    department_path: str | None = None  # "/hq/east/team-1": ids from the root, for prefix checks
    #: Per module, the fields the caller's roles hide or make read-only (only restricted modules
    #: are listed). Filled per request from the service's role definitions (RoleBook.resolve).
    field_policies: dict[str, FieldPolicy] = Field(default_factory=dict)

    def fields(self, module: str) -> FieldPolicy:
        """What this caller may do with ``module``'s fields (unrestricted unless a role says otherwise)."""
        return self.field_policies.get(module) or FieldPolicy(module=module)

    @property
    def is_admin(self) -> bool:
        return Role.admin in self.roles

    @property
    def is_manager(self) -> bool:
        return Role.manager in self.roles

    def manages_path(self, path: str | None) -> bool:
        """True if ``path`` is this manager's department or one below it."""
        mine = self.department_path
        if not self.is_manager or not mine or not path:
            return False
        return path == mine or path.startswith(mine.rstrip("/") + "/")

    def can_see_owned(self, owner_id: str | None, department_path: str | None) -> bool:
        """Records owned by someone: admins see all, managers their subtree, reps their own."""
        return self.is_admin or owner_id == self.user_id or self.manages_path(department_path)

    def mongo_visibility(self, owner_field: str = "owner_id", path_field: str = "department_path") -> dict[str, Any]:
        """The same rule as a MongoDB filter (an anchored regex uses the index)."""
        if self.is_admin:
            return {}
        clauses: list[dict[str, Any]] = [{owner_field: self.user_id}]
        if self.is_manager and self.department_path:
            mine = self.department_path.rstrip("/")
            clauses.append({path_field: {"$regex": f"^{re.escape(mine)}(/|$)"}})
        return clauses[0] if len(clauses) == 1 else {"$or": clauses}

    def require_role(self, *roles: Role) -> None:
        if not self.roles.intersection(roles):
            wanted = " or ".join(str(r) for r in roles)
            raise Forbidden(f"This action needs the role {wanted}.")


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True) if settings.jwt_jwks_url else None
        if settings.jwt_algorithm == "HS256" and not settings.jwt_secret.get_secret_value():
            raise ValueError("CRM_JWT_SECRET must be set when CRM_JWT_ALGORITHM is HS256")
        if settings.jwt_algorithm == "RS256" and not (self._jwks or settings.jwt_public_key):
            raise ValueError("RS256 needs CRM_JWT_JWKS_URL or CRM_JWT_PUBLIC_KEY")

    async def _key(self, token: str) -> Any:
        s = self._settings
        if s.jwt_algorithm == "HS256":
            return s.jwt_secret.get_secret_value()
        if self._jwks is not None:
            # PyJWKClient caches keys; a miss fetches over HTTP, so keep it off the event loop.
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            return signing_key.key
        return s.jwt_public_key

    async def verify(self, token: str) -> Principal:
        s = self._settings
        try:
            claims = jwt.decode(
                token,
                await self._key(token),
                algorithms=[s.jwt_algorithm],
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.", headers=_challenge("invalid_token")) from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized(f"The access token is invalid: {exc}", headers=_challenge("invalid_token")) from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """The caller as a verified token describes them; a claim of the wrong shape is a 401.

    The signature only proves who issued the token, not that its claims have the shapes we
    read (an identity provider may send ``roles: 5`` or ``name: {...}``), so each claim is
    checked here rather than left to fail deeper as a 500 or a misleading 422.
    """
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise _bad_claim("sub", "must be a non-empty string")
    roles_claim = claims.get("roles", [])
    if not isinstance(roles_claim, list) or not all(isinstance(r, str) for r in roles_claim):
        raise _bad_claim("roles", "must be a list of role ids")
    malformed = [r for r in roles_claim if not ROLE_ID.match(r)]
    if malformed:
        raise _bad_claim("roles", f"names a role id that is not a slug (a-z, 0-9, '-', '_'): {malformed[0]!r}")
    # A well-formed id the service does not know (yet) is kept: it grants nothing (fail closed).
    roles = frozenset(Role(r) if r in Role.__members__ else r for r in roles_claim)
    optional: dict[str, str | None] = {}
    for claim in ("name", "dept", "dept_path"):
        value = claims.get(claim)
        if value is not None and not isinstance(value, str):
            raise _bad_claim(claim, "must be a string")
        optional[claim] = value
    return Principal(
        user_id=sub,
        name=optional["name"],
        roles=roles,
        department_id=optional["dept"],
        department_path=optional["dept_path"],
    )


def _bad_claim(claim: str, reason: str) -> Unauthorized:
    return Unauthorized(
        f"The access token's '{claim}' claim {reason}.",
        errors=[FieldError(field=claim, reason=reason, location="token")],
        headers=_challenge("invalid_token"),
    )


def _challenge(error: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="crm"' + (f', error="{error}"' if error else "")
    return {"WWW-Authenticate": value}


def mint_token(
    *,
    secret_or_private_key: str,
    user_id: str,
    roles: list[str],
    department_id: str | None = None,
    department_path: str | None = None,
    name: str | None = None,
    algorithm: str = "HS256",
    issuer: str = "crm-directory",
    audience: str = "crm",
    ttl: timedelta = timedelta(hours=8),
    now: datetime | None = None,
    key_id: str | None = None,
) -> str:
    """Sign an access token with the claims every service reads.

    ``key_id`` goes into the ``kid`` header: RS256 verifiers using a JWKS look the key up by it.
    """
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": user_id,
        "roles": roles,
        "iss": issuer,
        "aud": audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if name:
        claims["name"] = name
    if department_id:
        claims["dept"] = department_id
    if department_path:
        claims["dept_path"] = department_path
    return jwt.encode(claims, secret_or_private_key, algorithm=algorithm, headers={"kid": key_id} if key_id else None)


async def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.", headers=_challenge())
    match = _BEARER.match(header)
    if match is None:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.", headers=_challenge("invalid_request"))
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(match.group("token"))
    # The service's read copy of the role definitions adds what the token cannot say (field rules).
    book = getattr(getattr(request.app.state, "kit", None), "roles", None)
    resolve = getattr(book, "resolve", None)
    return resolve(principal) if resolve is not None else principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
