"""Server-side sessions in the console's own database (collection ``sessions``).

The cookie holds only a random id; the tokens the directory issued stay here. A session before
sign-in (``user`` is None) carries the CSRF token of the login form and the chosen language; signing
in replaces it with a new one (a new id, so an id planted before sign-in is worth nothing after).
Expiry: ``expires_at`` (a TTL index on real MongoDB) and a check on every read, since whether the
embedded store runs TTL expiry is unverified.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


@dataclass
class SessionUser:
    id: str
    name: str
    email: str
    roles: list[str]
    department_path: str | None = None
    # What the roles grant by the directory's role definitions, as the token answer said at
    # sign-in (and each refresh); None in a session stored before the directory sent them.
    permissions: list[str] | None = None
    scopes: dict[str, str] | None = None


@dataclass
class Session:
    id: str
    csrf: str
    language: str
    timezone: str
    expires_at: datetime
    user: SessionUser | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    access_expires_at: float = 0.0  # epoch seconds

    @property
    def signed_in(self) -> bool:
        return self.user is not None and self.refresh_token is not None


def _from_doc(doc: Document) -> Session:
    user = doc.get("user")
    expires = doc["expires_at"]
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return Session(
        id=doc["_id"],
        csrf=doc["csrf"],
        language=doc["language"],
        timezone=doc["timezone"],
        expires_at=expires,
        user=SessionUser(**user) if user else None,
        access_token=doc.get("access_token"),
        refresh_token=doc.get("refresh_token"),
        access_expires_at=float(doc.get("access_expires_at") or 0),
    )


class SessionStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db["sessions"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("expires_at", ASCENDING)], name="ttl_expires_at", expireAfterSeconds=0)

    async def create(
        self,
        *,
        language: str,
        timezone: str,
        lifetime: timedelta,
        user: SessionUser | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        access_expires_at: float = 0.0,
    ) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            language=language,
            timezone=timezone,
            expires_at=datetime.now(UTC) + lifetime,
            user=user,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=access_expires_at,
        )
        await self.collection.insert_one(
            {
                "_id": session.id,
                "csrf": session.csrf,
                "language": language,
                "timezone": timezone,
                "expires_at": session.expires_at,
                "user": user.__dict__ if user else None,
                "access_token": access_token,
                "refresh_token": refresh_token,
                "access_expires_at": access_expires_at,
                "refresh_lease_until": 0.0,
            }
        )
        return session

    async def get(self, session_id: str) -> Session | None:
        doc = await self.collection.find_one({"_id": session_id})
        if doc is None:
            return None
        session = _from_doc(doc)
        if session.expires_at <= datetime.now(UTC):
            await self.delete(session_id)
            return None
        return session

    async def update(self, session_id: str, **fields: Any) -> None:
        await self.collection.update_one({"_id": session_id}, {"$set": fields})

    async def delete(self, session_id: str) -> None:
        await self.collection.delete_one({"_id": session_id})

    async def claim_refresh(self, session_id: str, lease_seconds: float) -> bool:
        """Only one request (of any replica) refreshes a session's tokens at a time: the directory
        rotates refresh tokens and treats a second use of a spent one as theft, ending the sign-in."""
        now = time.time()
        claimed = await self.collection.find_one_and_update(
            {"_id": session_id, "refresh_lease_until": {"$lt": now}},
            {"$set": {"refresh_lease_until": now + lease_seconds}},
        )
        return claimed is not None

    async def store_tokens(self, session_id: str, access_token: str, refresh_token: str, expires_in: float) -> None:
        await self.update(
            session_id,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=time.time() + expires_in,
            refresh_lease_until=0.0,
        )
