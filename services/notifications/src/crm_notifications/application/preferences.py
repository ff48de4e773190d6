"""Per user and kind: whether a notification also comes by email."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from crm_notifications.adapters.repository import Repository
from crm_notifications.domain.kinds import DEFAULT_EMAIL, Kind
from crm_platform.clock import Clock
from crm_platform.concurrency import stale
from crm_platform.errors import Conflict

Document = dict[str, Any]


class Preferences:
    def __init__(self, repo: Repository, clock: Clock) -> None:
        self._repo = repo
        self._clock = clock

    async def email_choices(self, user_id: str) -> dict[str, bool]:
        doc = await self._repo.preferences.find_one({"_id": user_id})
        return dict((doc or {}).get("email", {}))

    async def get(self, user_id: str) -> tuple[dict[str, bool], int]:
        """Every kind with the user's choice or the default, and the version (0: never saved)."""
        doc = await self._repo.preferences.find_one({"_id": user_id})
        chosen = dict((doc or {}).get("email", {}))
        merged = {k.value: bool(chosen.get(k.value, DEFAULT_EMAIL[k])) for k in Kind}
        return merged, int((doc or {}).get("version", 0))

    async def put(self, user_id: str, email: dict[Kind, bool], expected: int | None) -> tuple[dict[str, bool], int]:
        """Replace the user's choices (kinds left out keep their current value)."""
        current = await self._repo.preferences.find_one({"_id": user_id})
        version = int((current or {}).get("version", 0))
        if expected is not None and expected != version:
            raise stale(version, expected)
        merged = {**dict((current or {}).get("email", {})), **{k.value: v for k, v in email.items()}}
        doc = {"_id": user_id, "email": merged, "version": version + 1, "updated_at": self._clock.now()}
        if current is None:
            try:
                await self._repo.preferences.insert_one(doc)
            except DuplicateKeyError as exc:
                raise Conflict("Your preferences changed meanwhile; read them again.") from exc
        else:
            result = await self._repo.preferences.replace_one({"_id": user_id, "version": version}, doc)
            if not result.matched_count:
                raise Conflict("Your preferences changed meanwhile; read them again.")
        return await self.get(user_id)
