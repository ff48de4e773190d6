"""Safe retries of creates: the ``Idempotency-Key`` request header.

A client that got no answer (a timeout, a dropped connection, a 500) cannot know whether
its create was stored. Sending the same ``Idempotency-Key`` again must then give the first
outcome and never a second record, also when the service died between the write and the
response, and when two attempts race.

A separate "idempotency record" written before or after the create is not atomic with it
on our store (multi-document transactions are not, see the engineering notes), so there is
none. Instead the new record's own id is derived from (the caller, the method and path,
the key): the create's single-document insert *is* the guard. A retry finds the record
under that id (or collides on ``_id`` when it races the first attempt) and answers with it.
Keys are therefore kept as long as the records are, i.e. forever.

A hash of the request (its canonical JSON body, or its raw bytes, plus the query string)
is stored with the record in :data:`FINGERPRINT`, so the same key sent with a different
request is refused (422) rather than silently answered with an unrelated record, as Stripe
and draft-ietf-httpapi-idempotency-key-header do. A first attempt refused with a 4xx stored
nothing, so its retry is simply evaluated again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from pymongo.errors import DuplicateKeyError

from crm_platform.auth import CurrentPrincipal
from crm_platform.errors import Conflict, DomainError, FieldError, ValidationFailed

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: The stored record's field holding the fingerprint of the request that created it.
FINGERPRINT = "idempotency_fingerprint"
#: Printable ASCII, 1 to 255 characters (as Stripe accepts; the draft leaves the syntax to us).
_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_SECRET_NAME = re.compile(r"password|secret|token", re.IGNORECASE)
#: Fixed forever: changing it would change every derived id, so a retry would create again.
_NAMESPACE = uuid.UUID("5c0f6e0e-6b7a-4c61-9a53-3b1f0d7f2a10")

Document = dict[str, Any]


class KeyReused(DomainError):
    status, code, title = 422, "idempotency-key-reused", "Idempotency-Key reused with a different request"


@dataclass
class IdempotencyKey:
    """A client's key, resolved for one request: the id it names and the request's fingerprint.

    ``replayed`` is set by :meth:`replay` when the request turned out to be a retry, so the
    HTTP layer can say so (``Idempotent-Replayed: true``) without changing what use cases return.
    """

    key: str
    principal_id: str
    scope: str  # "POST /v1/customers": the same key on another route names another record
    fingerprint: str
    replayed: bool = False

    def uuid(self, part: str = "") -> uuid.UUID:
        """The deterministic id; ``part`` tells apart several records one request creates (import rows)."""
        return uuid.uuid5(_NAMESPACE, "\n".join((self.principal_id, self.scope, self.key, part)))

    @property
    def record_id(self) -> str:
        """The id of the record this request creates, in the uuid form most of our ids have."""
        return str(self.uuid())

    def stamp(self, doc: Document) -> Document:
        """Keep the request's fingerprint with the new record (in the same insert)."""
        doc[FINGERPRINT] = self.fingerprint
        return doc

    def check(self, stored: Document) -> None:
        """Refuse the request unless ``stored`` (created under this key) came from the same request."""
        if FINGERPRINT not in stored:
            # Every keyed create stores its fingerprint: this is what a purge left (a tombstone).
            raise Conflict(f"The record created with this {HEADER} no longer exists; send a new key.")
        if stored[FINGERPRINT] != self.fingerprint:
            raise KeyReused(
                f"This {HEADER} was used before with a different request; send a new key for a new request.",
                errors=[FieldError(field=HEADER, reason="used before with a different request", location="header")],
            )

    def replay(self, stored: Document) -> Document:
        """``stored`` was created under this key before: the answer, if it came from the same request."""
        self.check(stored)
        self.replayed = True
        return stored


def _without_secrets(value: Any) -> Any:
    # A plain hash of a body holding a password would let whoever reads the store guess that
    # password far faster than through its argon2 hash: secrets are left out of the comparison.
    if isinstance(value, dict):
        return {k: "(secret)" if _SECRET_NAME.search(k) else _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def fingerprint(body: bytes, content_type: str | None, query: str = "") -> str:
    """A hash of what the request asks for: JSON compared by value (key order and spacing do not matter).

    Members named like a password, secret or token are not compared: a retry that differs only
    there is taken for the same request.
    """
    canonical = body
    if body and (content_type or "").split(";")[0].strip().endswith("json"):
        try:
            parsed = _without_secrets(json.loads(body))
            canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            pass  # not JSON after all: the request fails validation and stores nothing anyway
    params = "&".join(sorted(query.split("&"))) if query else ""
    return hashlib.sha256(params.encode() + b"\n" + canonical).hexdigest()


def parse_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not _VALID_KEY.fullmatch(raw):
        raise ValidationFailed.for_field(HEADER, "must be 1 to 255 printable ASCII characters", location="header")
    return raw


async def idempotency_key(
    request: Request,
    principal: CurrentPrincipal,
    key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Makes the create safe to retry: the same key (per user and route) returns the first "
            "outcome and never creates a second record; with a different request it gets 422. 1 to 255 printable "
            "ASCII characters, e.g. a UUID. Keys are kept as long as the record (forever).",
        ),
    ] = None,
) -> IdempotencyKey | None:
    value = parse_key(key)
    if value is None:
        return None
    body = await request.body()  # already read by FastAPI for the body parameter: served from its cache
    return IdempotencyKey(
        key=value,
        principal_id=principal.user_id,
        scope=f"{request.method} {request.url.path}",
        fingerprint=fingerprint(body, request.headers.get("content-type"), request.url.query),
    )


#: Add to a creating route's parameters: ``key: IdempotencyKeyHeader``.
IdempotencyKeyHeader = Annotated[IdempotencyKey | None, Depends(idempotency_key)]


async def create_once(
    key: IdempotencyKey | None,
    load: Callable[[str], Awaitable[Document | None]],
    create: Callable[[], Awaitable[Document]],
) -> Document:
    """Run ``create`` (which must insert under ``key.record_id``) unless this key's record exists.

    ``load(record_id)`` reads the record (a service whose ids have another form derives its own
    from ``key.uuid()`` and may ignore the argument). A create that is refused for any reason
    (a duplicate, ``_id`` taken, a stale If-Match) while the record now exists lost a race with
    an earlier attempt: that is a replay too. Without a key, ``create`` runs as it always did.
    """
    if key is None:
        return await create()
    stored = await load(key.record_id)
    if stored is not None:
        return key.replay(stored)
    try:
        created = await create()
    except (DomainError, DuplicateKeyError):
        # Any refusal (a duplicate, a stale If-Match, a rule that no longer holds) while the
        # record exists means an earlier attempt with this key got there first.
        stored = await load(key.record_id)
        if stored is None:
            raise
        return key.replay(stored)
    _die_here_if_testing()
    return created


AnyResponse = TypeVar("AnyResponse", bound=Response)


def mark_replayed(response: AnyResponse, key: IdempotencyKey | None) -> AnyResponse:
    """Tell the client this answer is the first attempt's outcome, not a new record."""
    if key is not None and key.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


# The process-level test must stop a service between "stored" and "answered", the moment after
# which a client cannot tell whether its create happened. CRM_TEST_KILL_AFTER_STORES=N makes the
# process SIGKILL itself right after its N-th keyed create was stored. Unset in every deployment.
_KILL_AFTER_STORES = int(os.environ.get("CRM_TEST_KILL_AFTER_STORES", "0") or 0)
_stores = itertools.count(1)


def _die_here_if_testing() -> None:
    if _KILL_AFTER_STORES and next(_stores) >= _KILL_AFTER_STORES:
        os.kill(os.getpid(), signal.SIGKILL)
