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


def matches(event_type: str, patterns: Iterable[str], *, exact_only: bool = False) -> bool:
    """Whether a subscription's patterns take ``event_type``; an ``exact_only`` type (sign-ins:
    they carry the emails people typed) only when a pattern names it exactly, never by wildcard."""
    if exact_only:
        return event_type in patterns
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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_v4, _v6 = ipaddress.IPv4Network, ipaddress.IPv6Network

# Addresses that are not globally routable, from IANA's special-purpose registries (RFC 6890
# and successors). Our own table rather than ``ipaddress.is_global``: Python's answer changes
# between versions (3.11 calls 100.64.0.0/10 neither private nor global, and ff02::1,
# ::ffff:0:0/96 and 64:ff9b:1::/48 global), and a webhook must not reach inside whatever
# Python the image happens to ship.
_NOT_GLOBAL: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_v4("0.0.0.0/8"), "unspecified ('this network')"),
    (_v4("10.0.0.0/8"), "private"),
    (_v4("100.64.0.0/10"), "shared (carrier-grade NAT, cloud metadata)"),
    (_v4("127.0.0.0/8"), "loopback"),
    (_v4("169.254.0.0/16"), "link-local"),
    (_v4("172.16.0.0/12"), "private"),
    (_v4("192.0.0.0/24"), "IETF protocol assignment"),
    (_v4("192.0.2.0/24"), "documentation"),
    (_v4("192.88.99.0/24"), "6to4 relay anycast"),
    (_v4("192.168.0.0/16"), "private"),
    (_v4("198.18.0.0/15"), "benchmarking"),
    (_v4("198.51.100.0/24"), "documentation"),
    (_v4("203.0.113.0/24"), "documentation"),
    (_v4("224.0.0.0/4"), "multicast"),
    (_v4("240.0.0.0/4"), "reserved"),  # includes the broadcast address 255.255.255.255
    (_v6("::/128"), "unspecified"),
    (_v6("::1/128"), "loopback"),
    (_v6("64:ff9b:1::/48"), "NAT64 local-use"),
    (_v6("100::/64"), "discard-only"),
    (_v6("2001::/23"), "IETF protocol assignment"),  # includes Teredo 2001::/32
    (_v6("2001:db8::/32"), "documentation"),
    (_v6("3fff::/20"), "documentation"),
    (_v6("5f00::/16"), "segment-routing"),
    (_v6("fc00::/7"), "private (unique local)"),
    (_v6("fe80::/10"), "link-local"),
    (_v6("fec0::/10"), "site-local"),
    (_v6("ff00::/8"), "multicast"),
)
_GLOBAL_UNICAST_V6 = _v6("2000::/3")  # IANA hands out global IPv6 unicast from here only
_NAT64 = _v6("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are the IPv4 destination
_IPV4_COMPATIBLE = _v6("::/96")  # deprecated ::a.b.c.d (RFC 4291 §2.5.5.1)


def _not_global(ip: IPAddress) -> str | None:
    """Why ``ip`` is not globally routable (a label), or None if it is."""
    for network, label in _NOT_GLOBAL:
        if ip.version == network.version and ip in network:
            return label
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6 and ip not in _NAT64:
        return "reserved"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """(the form, the IPv4 addresses inside) for IPv6 addresses that carry IPv4 destinations."""
    if ip in _NAT64:
        return "NAT64", [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return "6to4", [ip.sixtofour]
    if ip.teredo is not None:
        server, client = ip.teredo
        return "Teredo", [server, client]
    return None


class AddressPolicy:
    """Refuses every address that is not globally routable (private, loopback, link-local,
    shared/CGNAT, multicast, documentation, reserved, unspecified...), looking inside the IPv6
    forms that carry an IPv4 address (IPv4-mapped and -compatible, NAT64, 6to4, Teredo),
    unless everything private is allowed or the address is in an allowed network."""

    def __init__(self, allow_private: bool = False, allowed_networks: Sequence[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def _is_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.allowed)

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be called, or None if it may."""
        # A zone (fe80::1%eth0) says which interface, not where: judge the address without it.
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address):
            # ::ffff:10.0.0.1 and ::10.0.0.1 are 10.0.0.1 to the socket layer: judge the IPv4 address.
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            elif ip in _IPV4_COMPATIBLE and int(ip) > 1:
                ip = ipaddress.IPv4Address(int(ip))
        if self.allow_private or self._is_allowed(ip):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                form, inner = embedded
                for v4 in inner:
                    label = None if self._is_allowed(v4) else _not_global(v4)
                    if label:
                        return f"resolves to {ip}, a {form} address of {v4} ({label}), which webhooks may not call"
                if form != "Teredo":  # a public IPv4 inside NAT64 or 6to4 is a public destination
                    return None
        label = _not_global(ip)
        if label:
            return f"resolves to {ip} ({label}), which webhooks may not call"
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
