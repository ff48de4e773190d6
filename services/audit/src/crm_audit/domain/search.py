"""A search of the audit log as a store query: equality filters plus one range on the sort key."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_audit.domain.entries import bound

Document = dict[str, Any]
_KEY = re.compile(r"^\d{15}:[^\s]{1,200}$")


class SearchError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Search:
    actor_id: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    cursor: str | None = None
    client_address: str | None = None  # from where: the client address the owning service saw

    def filters(self) -> Document:
        """What the search asked for, as an export's entry records it."""
        out: Document = {
            "actor_id": self.actor_id,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "client_address": self.client_address,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }
        return {k: v for k, v in out.items() if v is not None}

    def query(self) -> Document:
        """The store query; raises SearchError naming the parameter at fault."""
        if self.start is not None and self.start.tzinfo is None:
            raise SearchError("from", "give a time zone (e.g. 2026-11-20T08:00:00+08:00 or ...Z)")
        if self.end is not None and self.end.tzinfo is None:
            raise SearchError("to", "give a time zone (e.g. 2026-11-20T08:00:00+08:00 or ...Z)")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise SearchError("to", "must be after from")
        query: Document = {}
        for name in ("actor_id", "action", "target_type", "target_id", "client_address"):
            value = getattr(self, name)
            if value is not None:
                query[name] = value
        key_range: Document = {}
        if self.start is not None:
            key_range["$gte"] = bound(self.start)
        uppers = [u for u in (bound(self.end) if self.end else None, decode_cursor(self.cursor)) if u is not None]
        if uppers:
            key_range["$lt"] = min(uppers)
        if key_range:
            query["k"] = key_range
        return query


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        key = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise SearchError("cursor", "not a cursor this API gave (use next_cursor as it came)") from exc
    if not _KEY.match(key):
        raise SearchError("cursor", "not a cursor this API gave (use next_cursor as it came)")
    return key
