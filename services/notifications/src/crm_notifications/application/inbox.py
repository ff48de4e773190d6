"""The inbox: storing notifications once per event and recipient, and each user's view of theirs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ReplaceOne
from pymongo.errors import DuplicateKeyError

from crm_notifications.adapters.repository import Repository
from crm_notifications.application.preferences import Preferences
from crm_notifications.domain.kinds import email_wanted
from crm_notifications.domain.planning import Intent, visible_params
from crm_notifications.domain.templates import language_of, render, render_email
from crm_notifications.metrics import NOTIFICATIONS_CREATED
from crm_notifications.settings import NotificationSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.errors import NotFound
from crm_platform.listing import Page, PageParams, fetch_page
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.roles import RoleBook

Document = dict[str, Any]
# An integer sort key: keyset paging on a datetime missed rows on the embedded store (see the report).
SORT_FIELDS = {"created_at": "created_ms"}


def notification_id(event_id: str, recipient_id: str) -> str:
    """Deterministic: the same event for the same person is the same notification."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"crm-notification:{event_id}:{recipient_id}"))


class Inbox:
    def __init__(
        self,
        repo: Repository,
        directory: DirectoryReadModel,
        preferences: Preferences,
        clock: Clock,
        settings: NotificationSettings,
        roles: RoleBook | None = None,
    ) -> None:
        """``roles``: the role definitions, so a notification leaves out what its reader's roles
        hide (the recipient's roles are the directory copy's)."""
        self._repo = repo
        self._roles = roles
        self._zone = ZoneInfo(settings.display_time_zone)
        self._directory = directory
        self._preferences = preferences
        self._clock = clock
        self._s = settings

    # --- from events ---------------------------------------------------------------------------

    async def deliver(self, intents: Sequence[Intent], *, event_id: str, event_type: str) -> int:
        """Store each intent once (and queue its email when wanted); returns how many were new."""
        created = 0
        for intent in intents:
            if await self._deliver_one(intent, event_id, event_type):
                created += 1
        return created

    async def _deliver_one(self, intent: Intent, event_id: str, event_type: str) -> bool:
        user = await self._directory.user(intent.recipient_id)
        if user is not None and user.get("status") == "deactivated":
            return False  # they cannot sign in to read it
        language = language_of((user or {}).get("language"), self._s.default_language)
        title, body = render(intent.kind, language, self._params_for(intent, user), self._zone)
        now = self._clock.now()
        doc: Document = {
            "_id": notification_id(event_id, intent.recipient_id),
            "dedupe_key": f"{event_id}:{intent.recipient_id}",
            "recipient_id": intent.recipient_id,
            "kind": intent.kind.value,
            "title": title,
            "body": body,
            "language": language,
            "link": intent.link,
            "event_id": event_id,
            "event_type": event_type,
            "created_at": now,
            "created_ms": int(now.timestamp() * 1000),
            "read": False,
            "read_at": None,
        }
        try:
            await self._repo.notifications.insert_one(doc)
            new = True
            NOTIFICATIONS_CREATED.labels(intent.kind.value).inc()
        except DuplicateKeyError:
            new = False  # a redelivered event; its email job may still be missing if we crashed in between
        if user and user.get("email") and email_wanted(intent.kind, await self._preferences.email_choices(user["_id"])):
            await self._queue_email(doc, user, now.timestamp())
        return new

    def _params_for(self, intent: Intent, user: Document | None) -> dict[str, str]:
        """The intent's params as the recipient may read them; while no role restricts a field,
        as they are. For a recipient the directory copy does not know yet, what they may see is
        unknown: protected values are left out."""
        book = self._roles
        if book is None or not intent.protected or not book.restricts_fields:
            return intent.params
        if user is None:
            return visible_params(intent, lambda module, name: True)
        roles = list(user.get("roles") or [])
        return visible_params(intent, lambda module, name: book.field_policy(roles, module).hides(name))

    async def _queue_email(self, notification: Document, user: Document, now_ts: float) -> None:
        link_url = self._s.public_base_url.rstrip("/") + notification["link"]
        job = {
            "_id": notification["_id"],  # one email per notification
            "notification_id": notification["_id"],
            "recipient_id": user["_id"],
            "to": user["email"],
            "to_name": user.get("name"),
            "subject": notification["title"],
            "body": render_email(notification["title"], notification["body"], notification["language"], link_url),
            "language": notification["language"],
            "status": "pending",
            "attempts": 0,
            "last_error": "",
            "due_ts": now_ts,
            "created_at": self._clock.now(),
        }
        try:
            await self._repo.email_jobs.insert_one(job)
        except DuplicateKeyError:
            pass

    # --- a user's own inbox -------------------------------------------------------------------

    async def page(self, principal: Principal, paging: PageParams, unread_only: bool) -> Page:
        query: Document = {"recipient_id": principal.user_id}
        if unread_only:
            query["read"] = False
        return await fetch_page(
            self._repo.notifications, query, paging, sort_fields=SORT_FIELDS, default_sort="-created_at"
        )

    async def unread_count(self, principal: Principal) -> int:
        # The ids of this user's unread notifications, counted here: on the embedded store the count
        # command scans the whole collection for this filter, while a find is an indexed lookup on
        # recipient_id whose cost grows with this user's unread notifications only.
        unread = self._repo.notifications.find({"recipient_id": principal.user_id, "read": False}, {"_id": 1})
        return len(await unread.to_list())

    async def mark_read(self, principal: Principal, notification_id_: str) -> Document:
        # Someone else's notification is "not found", not "forbidden": ids reveal nothing.
        doc = await self._repo.notifications.find_one({"_id": notification_id_, "recipient_id": principal.user_id})
        if doc is None:
            raise NotFound(f"No notification with id {notification_id_}.")
        if not doc["read"]:
            doc["read"], doc["read_at"] = True, self._clock.now()
            # A whole-document replace: $set of a datetime would store a string on the embedded store.
            await self._repo.notifications.replace_one({"_id": doc["_id"], "read": False}, doc)
        return doc

    async def mark_all_read(self, principal: Principal) -> int:
        unread = [d async for d in self._repo.notifications.find({"recipient_id": principal.user_id, "read": False})]
        if not unread:
            return 0
        now = self._clock.now()
        ops = [ReplaceOne({"_id": d["_id"], "read": False}, {**d, "read": True, "read_at": now}) for d in unread]
        result = await self._repo.notifications.bulk_write(ops, ordered=False)
        return int(result.modified_count)
