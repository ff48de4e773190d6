"""Sign-in, refresh-token rotation, sign-out.

- Unknown email and wrong password get the same answer, after the same work (an
  argon2 verification against a dummy hash), so the API does not tell which
  accounts exist.
- Failures are counted per email and per client address in MongoDB (every replica
  sees them); a blocked key gets 429 with Retry-After before its password is checked.
- A refresh token is used once: refreshing revokes it and issues its successor in
  the same family. Presenting a token that was already rotated means two parties
  hold it (one of them stole it): the whole family is revoked, so both must sign in again.
- Refresh also re-reads the user: a deactivated user, or a family that started before
  the last password change, gets nothing, even if revoking its tokens was interrupted.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel, Field

from crm_directory.adapters.credentials import RefreshTokens, SignInThrottle
from crm_directory.adapters.repository import DirectoryRepository
from crm_directory.adapters.signing import TokenSigner
from crm_directory.application.hashing import off_loop
from crm_directory.application.publishing import EventFactory
from crm_directory.application.users import Users
from crm_directory.domain.passwords import Passwords
from crm_directory.domain.throttle import ThrottlePolicy, retry_after
from crm_directory.settings import DirectorySettings
from crm_platform.auth import BUILTIN_SCOPES, Role, Scope, widest
from crm_platform.clock import Clock, as_utc
from crm_platform.contact_points import InvalidEmail, normalise_email
from crm_platform.contracts import directory as ev
from crm_platform.errors import DomainError, Forbidden, Unauthorized
from crm_platform.events import EventType
from crm_platform.outbox import epoch_ms
from crm_platform.permissions import DEFAULTS, SCOPE_MODULES

log = structlog.get_logger(__name__)
Document = dict[str, Any]
WRONG_CREDENTIALS = "The email or password is incorrect."


class TooManyAttempts(DomainError):
    status, code, title = 429, "too-many-attempts", "Too many failed sign-ins"


class SignInUnavailable(DomainError):
    status, code, title = 501, "sign-in-external", "Sign-in is done by the identity provider"


class TokenPair(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    permissions: list[str] = Field(
        default_factory=list,
        description="What the user's roles grant now, by the directory's role definitions (the console "
        "draws its menus from it; every service still checks each request itself).",
    )
    scopes: dict[str, str] = Field(
        default_factory=dict,
        description="Per module, the widest data scope of the user's roles (own, department, subtree, all).",
    )


def _challenge(error: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="crm", error="{error}"'}


class Authenticator:
    def __init__(
        self,
        repo: DirectoryRepository,
        users: Users,
        tokens: RefreshTokens,
        throttle: SignInThrottle,
        passwords: Passwords,
        signer: TokenSigner,
        settings: DirectorySettings,
        clock: Clock,
        events: EventFactory,
    ) -> None:
        self.repo = repo
        self.users = users
        self.tokens = tokens
        self.throttle = throttle
        self.passwords = passwords
        self.signer = signer
        self.clock = clock
        self.events = events
        s = settings
        self.refresh_ttl = timedelta(days=s.directory_refresh_token_days)
        common = {
            "window": s.directory_signin_window_seconds,
            "base_delay": s.directory_signin_base_delay_seconds,
            "max_delay": s.directory_signin_max_delay_seconds,
        }
        self.email_policy = ThrottlePolicy(max_failures=s.directory_signin_max_failures, **common)
        self.ip_policy = ThrottlePolicy(max_failures=s.directory_signin_max_failures_per_ip, **common)

    # --- throttling --------------------------------------------------------------------------

    def _keys(self, email: str, client_ip: str | None) -> list[tuple[str, ThrottlePolicy]]:
        keys = [(f"email:{email}", self.email_policy)]
        if client_ip:
            keys.append((f"ip:{client_ip}", self.ip_policy))
        return keys

    async def _refuse_if_blocked(self, keys: list[tuple[str, ThrottlePolicy]], now: datetime) -> None:
        waits = [w for key, _ in keys if (w := retry_after(await self.throttle.state(key), now.timestamp()))]
        if waits:
            wait = max(waits)
            raise TooManyAttempts(
                f"Too many failed sign-ins; try again in {wait} seconds.",
                extra={"retry_after": wait},
                headers={"Retry-After": str(wait)},
            )

    async def _count_failure(self, keys: list[tuple[str, ThrottlePolicy]], now: datetime) -> None:
        for key, policy in keys:
            await self.throttle.record_failure(key, now, policy)

    async def _verify(self, doc: Document | None, password: str) -> bool:
        stored = ((doc or {}).get("password") or {}).get("hash")
        return await off_loop(self.passwords.verify, stored, password)

    async def verify_current_password(self, doc: Document, password: str, client_ip: str | None) -> bool:
        """For a password change: the same throttle as sign-in, so a stolen session cannot guess."""
        keys = self._keys(doc["email"], client_ip)
        now = self.clock.now()
        await self._refuse_if_blocked(keys, now)
        if await self._verify(doc, password):
            return True
        await self._count_failure(keys, now)
        return False

    # --- sign-in ------------------------------------------------------------------------------

    async def sign_in(self, email_raw: str, password: str, client_ip: str | None) -> TokenPair:
        if not self.signer.can_sign:
            raise SignInUnavailable(
                "This directory does not issue tokens (RS256 without a private key): "
                "sign in with your organisation's identity provider."
            )
        try:
            email = normalise_email(email_raw)
        except InvalidEmail:
            # Not an address at all: nothing to enumerate, but answer like any other failure.
            email = email_raw.strip().casefold()[:254]
        now = self.clock.now()
        keys = self._keys(email, client_ip)
        await self._refuse_if_blocked(keys, now)
        user = await self.repo.user_by_email(email)
        if not await self._verify(user, password):
            await self._count_failure(keys, now)
            await self._refused(email, "invalid_credentials", client_ip)
            raise Unauthorized(WRONG_CREDENTIALS, headers=_challenge("invalid_grant"))
        assert user is not None  # verify() is False without a user
        if user.get("status") != "active":
            await self._refused(email, "deactivated", client_ip)
            raise Forbidden("This account has been deactivated; ask your administrator to reactivate it.")
        await self.throttle.reset(f"email:{email}")
        stored = user["password"]["hash"]
        if self.passwords.needs_rehash(stored):
            new_hash = await asyncio.to_thread(self.passwords.hash, password)
            await self.users.rehash(user["_id"], stored, new_hash)
        await self.repo.record_sign_in(user["_id"], now)
        data = ev.SignedIn(user_id=user["_id"], email=email, client_address=client_ip)
        await self._record(ev.SIGNED_IN, user["_id"], data, actor=user["_id"], outcome="signed_in")
        return await self._issue(user, uuid.uuid4().hex, now, now)

    # --- the sign-in events (the audit log's) ---------------------------------------------------

    async def _refused(self, email: str, reason: ev.SignInFailure, client_ip: str | None) -> None:
        """The same write for an unknown email as for a wrong password: no user named, no time told apart."""
        data = ev.SignInFailed(email=email, reason=reason, client_address=client_ip)
        await self._record(ev.SIGN_IN_FAILED, None, data, actor=None, outcome=reason)

    async def _record(
        self, event_type: EventType[Any], subject: str | None, data: BaseModel, *, actor: str | None, outcome: str
    ) -> None:
        """Store the attempt with its event in one write (the outbox); the relay publishes it."""
        attempt_id = uuid.uuid4().hex
        event = self.events(event_type, subject or attempt_id, data, 1, actor)
        state = {"_id": attempt_id, "outcome": outcome, "at_ms": epoch_ms(self.clock.now())}
        await self.repo.sign_in_store.insert(state, [event])

    async def _issue(self, user: Document, family_id: str, family_started_at: datetime, now: datetime) -> TokenPair:
        refresh = secrets.token_urlsafe(32)
        await self.tokens.store(
            refresh,
            user_id=user["_id"],
            family_id=family_id,
            family_started_at=family_started_at,
            now=now,
            expires=now + self.refresh_ttl,
        )
        return TokenPair(
            access_token=self.signer.access_token(user, now),
            expires_in=int(self.signer.ttl.total_seconds()),
            refresh_token=refresh,
            refresh_expires_in=int(self.refresh_ttl.total_seconds()),
            **await self._grants(list(user.get("roles") or [])),
        )

    async def _grants(self, role_ids: list[str]) -> dict[str, Any]:
        """The permissions and data scopes of the user's roles: each role's definition (one ``_id``
        look-up, a handful of roles per user), a built-in one not defined yet by its defaults, a
        deleted or unknown one nothing (the rule of crm_platform.roles.RoleBook)."""
        permissions: set[str] = set()
        scopes: dict[str, list[Scope | None]] = {m: [] for m in SCOPE_MODULES}
        for role_id in role_ids:
            doc = await self.repo.role(role_id)
            if doc is None:
                permissions |= {p.value for p in DEFAULTS.permissions_of(role_id)}
                builtin = BUILTIN_SCOPES[Role(role_id)] if role_id in Role.__members__ else None
                for module in SCOPE_MODULES:
                    scopes[module].append(builtin)
            elif doc.get("status", "active") == "active":
                permissions |= set(doc.get("permissions") or [])
                defined = doc.get("scopes") or {}
                for module in SCOPE_MODULES:
                    scopes[module].append(defined.get(module, "own"))
        widest_scopes = {m: widest(s) for m, s in scopes.items()}
        return {
            "permissions": sorted(permissions),
            "scopes": {m: s for m, s in widest_scopes.items() if s is not None},
        }

    # --- refresh and sign-out -------------------------------------------------------------------

    async def refresh(self, token: str) -> TokenPair:
        if not self.signer.can_sign:
            raise SignInUnavailable("This directory does not issue tokens: use your identity provider.")
        now = self.clock.now()
        claimed = await self.tokens.claim(token, now)
        if claimed is None:
            await self._explain_refused(token, now)
        assert claimed is not None
        user = await self.repo.user(claimed["user_id"])
        if user is None or user.get("status") != "active":
            await self.tokens.revoke_family(claimed["family_id"], "deactivated", now)
            raise Unauthorized(
                "The account has been deactivated; sign-in is not possible.", headers=_challenge("invalid_grant")
            )
        started = as_utc(claimed["family_started_at"])
        changed = (user.get("password") or {}).get("changed_at")
        if changed is not None and as_utc(changed) > started:
            await self.tokens.revoke_family(claimed["family_id"], "password_changed", now)
            raise Unauthorized(
                "The password has changed since this sign-in; sign in again.", headers=_challenge("invalid_grant")
            )
        return await self._issue(user, claimed["family_id"], started, now)

    async def _explain_refused(self, token: str, now: datetime) -> None:
        existing = await self.tokens.find(token)
        if existing is None:
            raise Unauthorized("The refresh token is not valid; sign in again.", headers=_challenge("invalid_grant"))
        if existing.get("revoked"):
            if existing.get("revoked_reason") == "rotated":
                # Used twice: the legitimate client and a thief both hold this family. End it for both.
                revoked = await self.tokens.revoke_family(existing["family_id"], "reuse_detected", now)
                log.warning(
                    "refresh token reused: family revoked",
                    user_id=existing["user_id"],
                    family_id=existing["family_id"],
                    revoked=revoked,
                )
            raise Unauthorized(
                "The refresh token has been revoked; sign in again.", headers=_challenge("invalid_grant")
            )
        raise Unauthorized("The refresh token has expired; sign in again.", headers=_challenge("invalid_grant"))

    async def logout(self, token: str) -> None:
        """End the sign-in this refresh token belongs to (every token of its family). Idempotent."""
        existing = await self.tokens.find(token)
        if existing is not None:
            await self.tokens.revoke_family(existing["family_id"], "logout", self.clock.now())
