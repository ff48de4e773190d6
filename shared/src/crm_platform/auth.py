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
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol

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


Scope = Literal["own", "department", "subtree", "all"]
SCOPES: tuple[Scope, ...] = ("own", "department", "subtree", "all")
"""Which records of a module a role reaches: the holder's own, their department's, their
department's and every department's below it, or all (ordered from narrowest to widest)."""

BUILTIN_SCOPES: Mapping[Role, Scope] = {
    Role.admin: "all",
    Role.manager: "subtree",
    Role.rep: "own",
    Role.integrator: "own",
}
"""The built-in roles' default data scope, the same for every module."""

#: Matches no document, through the ``_id`` index (a caller without any scope in a module).
_NOTHING: Final[dict[str, Any]] = {"_id": None}


def widest(scopes: Iterable[Scope | None]) -> Scope | None:
    """The widest of several scopes (None, "no scope at all", is narrower than ``own``)."""
    best: Scope | None = None
    for scope in scopes:
        if scope is not None and (best is None or SCOPES.index(scope) > SCOPES.index(best)):
            best = scope
    return best


class Principal(BaseModel):
    """Who is calling, as the token says, and what the service's role definitions grant them.

    ``roles`` are role ids: the built-in ones (:class:`Role`, a ``StrEnum``, so ``Role.admin in
    principal.roles`` holds for ``"admin"``) or roles an administrator defined in the directory.

    ``scopes`` (per module, the widest data scope over the caller's roles) and ``permissions``
    are resolved once per request from the service's read copy of the role definitions
    (:meth:`crm_platform.roles.RoleBook.resolve`, called by :func:`current_principal`). A
    principal built without a book (unit tests, background jobs acting as the system) leaves
    them ``None`` and falls back to the built-in roles' defaults.

    Services decide *which records* with :meth:`scope`, :meth:`can_see_owned`,
    :meth:`reaches_path` and :meth:`mongo_visibility`, and *which actions* with :meth:`holds`.
    ``is_admin`` and ``is_manager`` name the built-in roles only: a service may not decide reach
    with them (``tests/test_code_quality.py`` keeps an allow-list of the few places that are
    genuinely about the built-in role).
    """

    user_id: str
    name: str | None = None
    roles: frozenset[str] = Field(default_factory=frozenset)
    department_id: str | None = None
    department_path: str | None = None  # "/hq/east/team-1": ids from the root, for prefix checks
    scopes: dict[str, Scope] | None = None
    permissions: frozenset[str] | None = None
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

    # --- which records ------------------------------------------------------------------------

    def scope(self, module: str) -> Scope | None:
        """The caller's data scope in ``module``: the widest over their roles (None: no reach)."""
        if self.scopes is not None:
            return self.scopes.get(module)
        return widest(BUILTIN_SCOPES[Role(r)] for r in self.roles if r in Role.__members__)

    def reaches_all(self, module: str) -> bool:
        return self.scope(module) == "all"

    def reaches_beyond_own(self, module: str) -> bool:
        """True if the scope in ``module`` reaches records of others (department, subtree or all)."""
        return self.scope(module) in ("department", "subtree", "all")

    def reaches_path(self, path: str | None, module: str) -> bool:
        """True if records of department ``path`` are in the caller's scope for ``module``.

        ``department``: ``path`` is the caller's department exactly; ``subtree``: it or any
        department below it; ``all``: any (a record without a department too); ``own``: none.
        """
        scope = self.scope(module)
        if scope == "all":
            return True
        mine = (self.department_path or "").rstrip("/")
        if scope not in ("department", "subtree") or not mine or not path:
            return False
        if path.rstrip("/") == mine:
            return True
        return scope == "subtree" and path.startswith(mine + "/")

    def can_see_owned(self, owner_id: str | None, department_path: str | None, *, module: str) -> bool:
        """A record owned by someone in a department: mine, or its department is in my scope."""
        if self.scope(module) is None:
            return False
        return owner_id == self.user_id or self.reaches_path(department_path, module)

    def mongo_visibility(
        self, owner_field: str = "owner_id", path_field: str = "department_path", *, module: str
    ) -> dict[str, Any]:
        """The same rule as a MongoDB filter, index-backed on both stores.

        ``own``: owner equality; ``department``: or the department path's equality; ``subtree``:
        or an anchored regex on the path (a range scan of its index); ``all``: no condition.
        """
        scope = self.scope(module)
        if scope is None:
            return dict(_NOTHING)
        if scope == "all":
            return {}
        clauses: list[dict[str, Any]] = [{owner_field: self.user_id}]
        mine = (self.department_path or "").rstrip("/")
        if scope == "department" and mine:
            clauses.append({path_field: mine})
        elif scope == "subtree" and mine:
            clauses.append({path_field: {"$regex": f"^{re.escape(mine)}(/|$)"}})
        return clauses[0] if len(clauses) == 1 else {"$or": clauses}

    # --- which actions ------------------------------------------------------------------------

    def holds(self, permission: str) -> bool:
        """True if the caller's roles grant ``permission`` (a :class:`~crm_platform.permissions.Permission`)."""
        if self.permissions is not None:
            return permission in self.permissions
        # No book (a unit test, a background job): the built-in roles' defaults. Imported here
        # because crm_platform.permissions builds on this module.
        from crm_platform.permissions import DEFAULTS, granted

        return permission in granted(self.roles, DEFAULTS)

    def require(self, permission: str) -> None:
        """Refuse (403) unless the caller's roles grant ``permission``."""
        if not self.holds(permission):
            raise Forbidden(f"This action needs the permission {permission}.")

    def require_role(self, *roles: Role) -> None:
        if not self.roles.intersection(roles):
            wanted = " or ".join(str(r) for r in roles)
            raise Forbidden(f"This action needs the role {wanted}.")


class PrincipalResolver(Protocol):
    """What fills a request's principal with its scopes and permissions (a service's
    :class:`crm_platform.roles.RoleBook`)."""

    def resolve(self, principal: Principal) -> Principal: ...


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
    # The service's read copy of the role definitions (the kit wires one as kit.roles) decides
    # the caller's data scopes, permissions and field rules, once per request.
    kit = getattr(request.app.state, "kit", None)
    book: PrincipalResolver | None = getattr(kit, "roles", None)
    return book.resolve(principal) if book is not None else principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
