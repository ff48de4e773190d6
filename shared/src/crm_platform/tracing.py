"""W3C trace context carried from the HTTP request into the events it causes."""

from __future__ import annotations

import contextvars
import re
import secrets

_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
#: The client address of the request being served (through CRM_TRUSTED_PROXIES), for the events it causes.
current_client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_address", default=None)


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def accept_traceparent(header: str | None) -> str:
    """Continue the caller's trace if it sent a valid traceparent, else start one."""
    if header and _TRACEPARENT.match(header.strip()):
        trace_id = header.strip().split("-")[1]
        return f"00-{trace_id}-{secrets.token_hex(8)}-01"
    return new_traceparent()
