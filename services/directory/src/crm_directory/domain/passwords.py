"""Passwords: the policy people must meet, and argon2id hashing.

Hashing is CPU work, not I/O, so it lives here; the application runs it in a
worker thread so that one sign-in does not stall every other request.
"""

from __future__ import annotations

import secrets
import string
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from crm_platform.errors import FieldError, ValidationFailed

MAX_LENGTH = 1024  # argon2 takes any length; a cap keeps a 10 MB "password" from costing a hash


def policy_violations(password: str, email: str | None, min_length: int) -> list[str]:
    """Every rule the password breaks, in words a person can act on (empty: acceptable)."""
    reasons: list[str] = []
    if len(password) < min_length:
        reasons.append(f"must be at least {min_length} characters long (it has {len(password)})")
    if len(password) > MAX_LENGTH:
        reasons.append(f"must be at most {MAX_LENGTH} characters long")
    if password and not password.strip():
        reasons.append("must not be only spaces")
    if email and unicodedata.normalize("NFKC", password).strip().casefold() == email.casefold():
        reasons.append("must not be your email address")
    return reasons


def ensure_acceptable(password: str, email: str | None, min_length: int, field: str = "password") -> None:
    reasons = policy_violations(password, email, min_length)
    if reasons:
        raise ValidationFailed(
            f"{field}: {'; '.join(reasons)}", errors=[FieldError(field=field, reason=r) for r in reasons]
        )


def generate_password(length: int = 20) -> str:
    """A random password for a first administrator (printed once, never stored in clear)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        # At least one letter and one digit, so it reads as a password to people and to policies elsewhere.
        if any(c.isalpha() for c in candidate) and any(c.isdigit() for c in candidate):
            return candidate


@dataclass(frozen=True)
class Argon2Parameters:
    time_cost: int
    memory_kib: int
    parallelism: int


class Passwords:
    """argon2id with the configured parameters, and a dummy hash for unknown accounts."""

    def __init__(self, parameters: Argon2Parameters) -> None:
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost, memory_cost=parameters.memory_kib, parallelism=parameters.parallelism
        )
        # Verified against when the email is unknown (or the user has no password), so that
        # "no such account" costs the same time as "wrong password": no account enumeration.
        self.dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self.dummy_hash, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
