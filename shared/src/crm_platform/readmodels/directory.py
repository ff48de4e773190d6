"""Read copies of the directory's users and departments, fed only by ``crm.directory.v1``.

Every directory event carries the full snapshot of its user or department, so each
one replaces the copy whole, applied by ``aggregateversion``: an older or repeated
event changes nothing. Users and departments share the topic and have separate id
spaces, so they go to separate collections, by event type.

Usage in a service (e.g. notifications needs emails and languages, reporting names
and the tree)::

    directory = DirectoryReadModel(kit.db["directory_users"], kit.db["directory_departments"])
    kit.on_startup(lambda _: directory.ensure_indexes())
    kit.consume([contracts.directory.TOPIC], directory.handlers())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from crm_platform.consumer import Handler, apply_versioned
from crm_platform.contracts import directory as ev
from crm_platform.events import EventEnvelope, registry

Document = dict[str, Any]


class DirectoryReadModel:
    def __init__(self, users: AsyncCollection[Document], departments: AsyncCollection[Document]) -> None:
        self.users = users
        self.departments = departments

    async def ensure_indexes(self) -> None:
        await self.users.create_indexes(
            [
                IndexModel([("email", ASCENDING)], name="email"),
                IndexModel([("department_path", ASCENDING)], name="department_path"),
            ]
        )
        await self.departments.create_indexes([IndexModel([("path", ASCENDING)], name="path")])

    def handlers(self) -> Mapping[str, Handler]:
        """One handler per directory event type (taken from the contracts, so new types are applied too)."""
        return {t.name: self.apply for t in registry.for_topic(ev.TOPIC)}

    async def apply(self, envelope: EventEnvelope) -> None:
        await self.store(envelope)

    async def store(self, envelope: EventEnvelope) -> bool:
        """Keep the snapshot the event carries; False if the copy already had this version or a newer one."""
        if envelope.type.startswith("crm.user."):
            user = ev.UserSnapshot.model_validate(envelope.data["user"])
            return await apply_versioned(self.users, envelope, {"_id": user.user_id, **user.model_dump()})
        if envelope.type.startswith("crm.department."):
            department = ev.DepartmentSnapshot.model_validate(envelope.data["department"])
            return await apply_versioned(
                self.departments, envelope, {"_id": department.department_id, **department.model_dump()}
            )
        return False

    async def user(self, user_id: str) -> Document | None:
        return await self.users.find_one({"_id": user_id})

    async def department(self, department_id: str) -> Document | None:
        return await self.departments.find_one({"_id": department_id})
