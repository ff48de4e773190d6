"""Webhook rules without I/O: event-type patterns, signatures, retry schedule, address policy."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import random
import re
import secrets
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from crm_platform.errors import ValidationFailed

_PATTERN = re.compile(r"^[a-z0-9_.*?\[\]!-]+$")
SECRET_PREFIX = "whsec_"


def valid_patterns(patterns: Sequence[str]) -> list[str]:
    """Event type patterns as given, checked: non-empty, fnmatch characters only, no duplicates."""
    if not patterns:
        raise ValidationFailed.for_field("event_types", "name at least one event type or pattern, e.g. crm.customer.*")
    out: list[str] = []
    for i, p in enumerate(patterns):
        if not _PATTERN.match(p):
            raise ValidationFailed.for_field(
                f"event_types[{i}]", "use lower-case event types with * ? [] wildcards, e.g. crm.customer.*"
            )
        if p not in out:
            out.append(p)
    return out


def matches(event_type: str, patterns: Iterable[str]) -> bool:
    # fnmatchcase: event types are lower-case and the match must not depend on the OS.
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` with the subscription's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def next_delay(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Delay before attempt ``attempt + 1``: exponential with "equal jitter" (half fixed, half random),
    so receivers coming back from an outage are not hit by every retry at the same instant."""
    base = min(maximum, initial * float(2 ** max(attempt - 1, 0)))
    return base / 2 + (rng or random).uniform(0, base / 2)


# --- where we may send ------------------------------------------------------------------------------


class AddressPolicy:
    """Refuses private, loopback, link-local, multicast, reserved and unspecified addresses,
    unless everything private is allowed or the address is in an allowed network."""

    def __init__(self, allow_private: bool = False, allowed_networks: Sequence[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be called, or None if it may."""
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if self.allow_private or any(ip in n for n in self.allowed):
            return None
        for label, hit in (
            ("loopback", ip.is_loopback),
            ("link-local", ip.is_link_local),
            ("multicast", ip.is_multicast),
            ("unspecified", ip.is_unspecified),
            ("private", ip.is_private),
            ("reserved", ip.is_reserved),
        ):
            if hit:
                return f"resolves to a {label} address ({ip}), which webhooks may not call"
        return None


def url_shape(url: str) -> tuple[str, int]:
    """(host, port) of a webhook URL, or a 422 naming ``url``: http(s) only, a host, no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationFailed.for_field("url", f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed.for_field("url", "only http and https URLs can receive webhooks")
    if not parts.hostname:
        raise ValidationFailed.for_field("url", "the URL has no host")
    if parts.username or parts.password:
        raise ValidationFailed.for_field("url", "put no credentials in the URL; deliveries are signed instead")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)
