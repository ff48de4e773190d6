"""Refresh tokens and failed-sign-in counters in MongoDB (shared by every replica).

Refresh tokens are stored only as their SHA-256 (a random 256-bit token needs no
slow hash: it cannot be guessed, only stolen), with the user, the family (one
sign-in and all its rotations) and the expiry. Times that queries compare are
epoch seconds, which compare the same on every store; datetimes are kept beside
them for people and for the TTL index.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_directory.adapters.repository import drop_indexes_named
from crm_directory.domain.throttle import ThrottlePolicy, ThrottleState, after_failure, expires_at
from crm_platform.errors import Conflict
from crm_platform.listing import count

Document = dict[str, Any]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokens:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db["refresh_tokens"]

    async def ensure_indexes(self) -> None:
        await drop_indexes_named(self.collection, ("user_id", "family_id"))  # renamed: see repository.py
        await self.collection.create_index([("user_id", ASCENDING)], name="idx_user_id")
        await self.collection.create_index([("family_id", ASCENDING)], name="idx_family_id")
        # Expired tokens are useless, also for reuse detection: let MongoDB drop them a day later.
        await self.collection.create_index([("expires_at", ASCENDING)], name="ttl", expireAfterSeconds=86400)

    async def store(
        self,
        token: str,
        *,
        user_id: str,
        family_id: str,
        family_started_at: datetime,
        now: datetime,
        expires: datetime,
    ) -> None:
        await self.collection.insert_one(
            {
                "_id": token_hash(token),
                "user_id": user_id,
                "family_id": family_id,
                "family_started_at": family_started_at,
                "issued_at": now,
                "expires_at": expires,
                "expires_ts": expires.timestamp(),
                "revoked": False,
                "revoked_reason": "",
                "revoked_ts": 0.0,
            }
        )

    async def claim(self, token: str, now: datetime) -> Document | None:
        """Revoke a live token as "rotated" and return it; None if it is unknown, revoked or expired.

        One conditional update: of two requests presenting the same token, exactly one gets it.
        """
        return await self.collection.find_one_and_update(
            {"_id": token_hash(token), "revoked": False, "expires_ts": {"$gt": now.timestamp()}},
            {"$set": {"revoked": True, "revoked_reason": "rotated", "revoked_ts": now.timestamp()}},
            return_document=ReturnDocument.BEFORE,
        )

    async def find(self, token: str) -> Document | None:
        return await self.collection.find_one({"_id": token_hash(token)})

    async def revoke_family(self, family_id: str, reason: str, now: datetime) -> int:
        result = await self.collection.update_many(
            {"family_id": family_id, "revoked": False},
            {"$set": {"revoked": True, "revoked_reason": reason, "revoked_ts": now.timestamp()}},
        )
        return result.modified_count

    async def revoke_user(self, user_id: str, reason: str, now: datetime) -> int:
        result = await self.collection.update_many(
            {"user_id": user_id, "revoked": False},
            {"$set": {"revoked": True, "revoked_reason": reason, "revoked_ts": now.timestamp()}},
        )
        return result.modified_count

    async def live_count(self, user_id: str, now: datetime) -> int:
        return await count(
            self.collection, {"user_id": user_id, "revoked": False, "expires_ts": {"$gt": now.timestamp()}}
        )


class SignInThrottle:
    """Failure counters, one document per key, written with a guarded replace (several replicas)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db["signin_throttle"]

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("expires_at", ASCENDING)], name="ttl", expireAfterSeconds=0)

    async def state(self, key: str) -> ThrottleState:
        doc = await self.collection.find_one({"_id": key})
        return _state(doc)

    async def record_failure(self, key: str, now: datetime, policy: ThrottlePolicy) -> ThrottleState:
        ts = now.timestamp()
        for _ in range(20):
            doc = await self.collection.find_one({"_id": key})
            new = after_failure(_state(doc), ts, policy)
            body = {
                "_id": key,
                **asdict(new),
                "rev": int((doc or {}).get("rev", 0)) + 1,
                "expires_at": now + timedelta(seconds=expires_at(new, policy) - ts),
            }
            if doc is None:
                try:
                    await self.collection.insert_one(body)
                    return new
                except DuplicateKeyError:
                    continue
            result = await self.collection.replace_one({"_id": key, "rev": doc["rev"]}, body)
            if result.matched_count:
                return new
        raise Conflict("Too many simultaneous sign-in attempts for this account; retry in a moment.")

    async def reset(self, key: str) -> None:
        await self.collection.delete_one({"_id": key})


def _state(doc: Document | None) -> ThrottleState:
    if doc is None:
        return ThrottleState()
    return ThrottleState(
        failures=int(doc.get("failures", 0)),
        window_started_at=float(doc.get("window_started_at", 0.0)),
        last_failure_at=float(doc.get("last_failure_at", 0.0)),
        blocked_until=float(doc.get("blocked_until", 0.0)),
        strikes=int(doc.get("strikes", 0)),
    )
