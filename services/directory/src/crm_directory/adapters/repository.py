"""The directory's collections: users and departments (aggregates, written through the
versioned store with their outbox), sign-in bookkeeping, and the tree lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crm_directory.domain import departments as dept_rules
from crm_directory.domain import users as user_rules
from crm_platform.availability import store_unavailable
from crm_platform.clock import Clock, as_utc
from crm_platform.errors import Conflict, NotFound
from crm_platform.leases import release_in_background, release_soon
from crm_platform.listing import count
from crm_platform.retention import ensure_record_index, purge_records
from crm_platform.sortkeys import upgrade_sort_keys
from crm_platform.store import VersionedStore

Document = dict[str, Any]


def _sort_indexes(prefixes: dict[str, list[tuple[str, int]]], keys: dict[str, str]) -> list[IndexModel]:
    """An index per sort key behind each visibility prefix of a list, so page N of a big list walks
    an index in order instead of sorting every match."""
    return [
        IndexModel([*prefix, (field, ASCENDING)], name=f"{name}_{key}" if prefix else f"idx_{field}")
        for key, field in keys.items()
        for name, prefix in prefixes.items()
        if prefix or field not in ("email", "s.updated_at")  # those two stand on their own below
    ]


# Single-field indexes are named idx_<field>: the embedded store uses one only when its name
# ends in _<field> (a naming choice that costs nothing on MongoDB). Sort keys are never null.
USER_INDEXES = [
    # Case-insensitive uniqueness: emails are stored lower-cased.
    IndexModel([("email", ASCENDING)], name="email", unique=True, sparse=True),
    # Lists: everyone (admin), a department subtree (manager), by status, in every sort offered.
    *_sort_indexes(
        {
            "all": [],
            "department_path": [("department_path", ASCENDING)],
            "status": [("status", ASCENDING)],
        },
        {"name": "s.name", "created_at": "s.created_at", "updated_at": "s.updated_at", "email": "email"},
    ),
    IndexModel([("status", ASCENDING), ("department_path", ASCENDING)], name="status_department_path"),
    IndexModel([("department_id", ASCENDING)], name="idx_department_id"),
    IndexModel([("status", ASCENDING)], name="idx_status"),
    IndexModel([("roles", ASCENDING)], name="idx_roles"),
    IndexModel([("language", ASCENDING)], name="idx_language"),
    IndexModel([("s.id", ASCENDING)], name="idx_s.id"),
    IndexModel([("s.updated_at", DESCENDING)], name="idx_s.updated_at"),  # as it was: MongoDB keeps names
]

DEPARTMENT_INDEXES = [
    IndexModel([("status", ASCENDING), ("path", ASCENDING)], name="status_path"),
    IndexModel([("parent_id", ASCENDING)], name="idx_parent_id"),
    IndexModel([("path", ASCENDING)], name="idx_path"),
    IndexModel([("status", ASCENDING)], name="idx_status"),
    IndexModel([("manager_id", ASCENDING)], name="idx_manager_id"),
    *_sort_indexes(
        {"all": [], "status": [("status", ASCENDING)]},
        {"name": "s.name", "created_at": "s.created_at", "updated_at": "s.updated_at"},
    ),
    IndexModel([("s.id", ASCENDING)], name="idx_s.id"),
]

#: Earlier names (MongoDB refuses the same keys under a second name, so they go first), and the
#: date-keyed sort indexes that went with the datetime sort keys.
LEGACY_USER_INDEXES = (
    "department_id",
    "roles",
    "sort_name",
    "sort_created",
    "sort_updated",
    "department_path_name",
    "status_name",
)
LEGACY_DEPARTMENT_INDEXES = ("parent_id", "path", "manager_id", "sort_name")
PUBLIC_PROJECTION = {"outbox": 0, "password": 0}
ROLE_INDEXES = [IndexModel([("status", ASCENDING)], name="idx_status")]
ROLE_HOLDER_INDEXES = [IndexModel([("role_id", ASCENDING)], name="idx_role_id")]


class DirectoryRepository:
    def __init__(self, db: AsyncDatabase[Document], clock: Clock, wake_relay: Callable[[], None]) -> None:
        self.users: AsyncCollection[Document] = db["users"]
        self.departments: AsyncCollection[Document] = db["departments"]
        self.sign_ins: AsyncCollection[Document] = db["sign_ins"]
        # One record per sign-in attempt that makes an event (signed in, refused): the outbox
        # the event leaves from, for the audit log. Never read by the API.
        self.sign_in_events: AsyncCollection[Document] = db["sign_in_events"]
        self.tree_jobs: AsyncCollection[Document] = db["tree_jobs"]
        self.locks: AsyncCollection[Document] = db["locks"]
        self.roles: AsyncCollection[Document] = db["roles"]
        self.role_holders: AsyncCollection[Document] = db["role_holders"]
        self._clock = clock
        self.user_store = VersionedStore(
            self.users, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No user with id {i}.")
        )
        self.sign_in_store = VersionedStore(self.sign_in_events, clock, wake_relay=wake_relay)
        self.department_store = VersionedStore(
            self.departments, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No department with id {i}.")
        )
        self.role_store = VersionedStore(
            self.roles, clock, wake_relay=wake_relay, not_found=lambda i: NotFound(f"No role with id {i}.")
        )

    async def ensure_indexes(self) -> None:
        await drop_indexes_named(self.users, LEGACY_USER_INDEXES)
        await drop_indexes_named(self.departments, LEGACY_DEPARTMENT_INDEXES)
        await self.users.create_indexes(USER_INDEXES)
        await self.departments.create_indexes(DEPARTMENT_INDEXES)
        # Once per database: users and departments stored with datetime sort keys get the integer ones.
        await upgrade_sort_keys(self.users, user_rules.sort_keys, user_rules.SORT_KEYS_VERSION)
        await upgrade_sort_keys(self.departments, dept_rules.sort_keys, dept_rules.SORT_KEYS_VERSION)
        await self.tree_jobs.create_index([("created_at", ASCENDING)], name="created_at")
        await self.roles.create_indexes(ROLE_INDEXES)
        await self.role_holders.create_indexes(ROLE_HOLDER_INDEXES)
        # The sign-in records' retention purge walks them by age.
        await ensure_record_index(self.sign_in_events)
        await self.backfill_role_holders()

    async def purge_sign_in_records(self, retention_days: float, batch_size: int) -> int:
        """Sign-in records older than the retention whose events have left: deleted."""
        return await purge_records(self.sign_in_events, self._clock.now(), retention_days, batch_size)

    # --- users -------------------------------------------------------------------------

    async def user(self, user_id: str) -> Document | None:
        return await self.users.find_one({"_id": user_id})

    async def user_by_email(self, email: str) -> Document | None:
        return await self.users.find_one({"email": email})

    async def count_active_admins(self, excluding: str | None = None) -> int:
        """Active users holding the built-in admin role, from the role's holdings (an indexed equality
        on ``role_id``, then one ``_id`` look-up per holder): ``$in`` on the users' ``roles`` array
        reads every user on the embedded store."""
        return len(await self.holders("admin", active_only=True, excluding=excluding))

    async def user_ids_in(self, department_id: str) -> list[str]:
        return [d["_id"] async for d in self.users.find({"department_id": department_id}, projection={"_id": 1})]

    # --- roles and who holds them -----------------------------------------------------------

    async def role(self, role_id: str) -> Document | None:
        return await self.roles.find_one({"_id": role_id})

    async def roles_by_status(self, status: str) -> list[Document]:
        """Every role of a status: one small document per role, tens of them (an index search)."""
        return [d async for d in self.roles.find({"status": status}, projection={"outbox": 0})]

    async def announce_holder(self, user_id: str, role_ids: list[str]) -> None:
        """Record that ``user_id`` holds (or is about to hold) each role, BEFORE the user write.

        Who holds a role is asked when a role is deleted and by the lock-out guard. The user's
        ``roles`` array cannot answer it cheaply (equality on an array field scans on the
        embedded store), so each holding is a document of its own, ``_id`` "<role>|<user>",
        found by the indexed ``role_id``. They are a superset of the truth: written before the
        user write that adds a role, removed only once the user no longer holds it
        (:meth:`settle_holder`), and every reader checks the user itself. Each write stamps a
        fresh ``nonce``; a removal is conditional on the nonce it saw, so a holding announced
        meanwhile by a concurrent write is never removed.
        """
        for role_id in role_ids:
            await self.role_holders.update_one(
                {"_id": f"{role_id}|{user_id}"},
                {"$set": {"role_id": role_id, "user_id": user_id, "nonce": uuid.uuid4().hex}},
                upsert=True,
            )

    async def settle_holder(self, user_id: str, role_ids: list[str]) -> None:
        """Remove the holdings of ``role_ids`` the user no longer has (after the user write)."""
        for role_id in role_ids:
            await self._prune(await self.role_holders.find_one({"_id": f"{role_id}|{user_id}"}))

    async def _prune(self, holding: Document | None) -> Document | None:
        """The user holding the role, or None (and the stale holding removed)."""
        if holding is None:
            return None
        user = await self.user(holding["user_id"])
        if user is not None and holding["role_id"] in (user.get("roles") or []):
            return user
        await self.role_holders.delete_one({"_id": holding["_id"], "nonce": holding.get("nonce")})
        return None

    async def holder_ids(self, role_id: str) -> list[str]:
        """Ids of the users a holding names for ``role_id`` (on its index; not checked against the
        users: the caller's query does that)."""
        return [h["user_id"] async for h in self.role_holders.find({"role_id": role_id}, projection={"user_id": 1})]

    async def holders(self, role_id: str, *, active_only: bool = False, excluding: str | None = None) -> list[str]:
        """Ids of the users holding ``role_id`` (each checked against the user's own record)."""
        out: list[str] = []
        # Read them all first: no other command while this cursor is open (a prune writes).
        for holding in [h async for h in self.role_holders.find({"role_id": role_id})]:
            if holding["user_id"] == excluding:
                continue
            user = await self._prune(holding)
            if user is not None and (not active_only or user.get("status") == "active"):
                out.append(user["_id"])
        return sorted(out)

    async def backfill_role_holders(self) -> None:
        """Once per database: the holdings of users stored before holdings existed."""
        migrations = self.users.database["migrations"]
        marker = "role_holders_v1"
        if await migrations.find_one({"_id": marker}) is not None:
            return
        for user in [u async for u in self.users.find({}, projection={"_id": 1, "roles": 1})]:
            await self.announce_holder(user["_id"], list(user.get("roles") or []))
        with contextlib.suppress(DuplicateKeyError):
            await migrations.insert_one({"_id": marker})

    # --- sign-ins (not part of the aggregate: a sign-in must not bump the user's version) ------

    async def record_sign_in(self, user_id: str, at: datetime) -> None:
        await self.sign_ins.replace_one({"_id": user_id}, {"_id": user_id, "last_sign_in_at": at}, upsert=True)

    async def last_sign_ins(self, user_ids: list[str]) -> dict[str, datetime]:
        if not user_ids:
            return {}
        return {
            d["_id"]: as_utc(d["last_sign_in_at"])
            async for d in self.sign_ins.find({"_id": {"$in": user_ids}})
            if isinstance(d.get("last_sign_in_at"), datetime)
        }

    # --- departments --------------------------------------------------------------------------

    async def department(self, department_id: str) -> Document | None:
        return await self.departments.find_one({"_id": department_id})

    async def child_ids(self, department_id: str) -> list[str]:
        return [
            d["_id"]
            async for d in self.departments.find(
                {"parent_id": department_id, "status": "active"}, projection={"_id": 1}
            )
        ]

    async def count_children(self, department_id: str) -> int:
        return await count(self.departments, {"parent_id": department_id, "status": "active"})

    async def count_members(self, department_id: str) -> int:
        """Users in the department, active or not: deactivated users keep their department."""
        return await count(self.users, {"department_id": department_id})

    # --- tree jobs: the intent of a move, written before it, removed once its subtree is done ----

    async def add_tree_job(self, department_id: str, actor: str) -> str:
        job_id = uuid.uuid4().hex
        await self.tree_jobs.insert_one(
            {"_id": job_id, "department_id": department_id, "actor": actor, "created_at": self._clock.now()}
        )
        return job_id

    async def pending_tree_jobs(self) -> list[Document]:
        return [d async for d in self.tree_jobs.find({}).sort([("created_at", ASCENDING)])]

    async def remove_tree_job(self, job_id: str) -> None:
        await self.tree_jobs.delete_one({"_id": job_id})

    # --- the tree lease ---------------------------------------------------------------------

    @asynccontextmanager
    async def tree_lease(self, lease_seconds: float, wait_seconds: float) -> AsyncIterator[Callable[[], Any]]:
        """Hold the department tree's lease; yields ``renew()`` for long subtree rewrites.

        Structure changes (create, move, delete) run one at a time across all replicas,
        so two moves can never build a cycle between them, and a department is never
        created under a path a move is rewriting. The lease is a conditional update on
        one document (atomic on MongoDB and the embedded store); a crashed holder's
        lease simply expires.
        """
        token = uuid.uuid4().hex

        async def release() -> None:
            await self.locks.update_one({"_id": "tree", "token": token}, {"$set": {"until": 0.0, "token": None}})

        try:
            await self.locks.insert_one({"_id": "tree", "until": 0.0, "token": None})
        except DuplicateKeyError:
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            now = self._clock.now().timestamp()
            try:
                result = await self.locks.update_one(
                    {"_id": "tree", "until": {"$lt": now}}, {"$set": {"until": now + lease_seconds, "token": token}}
                )
            except Exception as exc:
                if store_unavailable(exc):
                    # The store may have applied it before the connection died: if the lease is
                    # ours, give it back once the store is back rather than hold the tree 60 s.
                    release_in_background(release, lease_seconds, "department tree")
                raise
            if result.modified_count:
                break
            if loop.time() > deadline:
                raise Conflict("Another change to the department tree is in progress; retry in a moment.")
            await asyncio.sleep(0.01)

        async def renew() -> None:
            now = self._clock.now().timestamp()
            await self.locks.update_one({"_id": "tree", "token": token}, {"$set": {"until": now + lease_seconds}})

        try:
            yield renew
        finally:
            # If the store is down now, released in the background as soon as it is back.
            await release_soon(release, lease_seconds, "department tree")


async def drop_indexes_named(collection: AsyncCollection[Document], names: tuple[str, ...]) -> None:
    """Drop those of ``names`` the collection has (renamed indexes of an existing database)."""
    present = await collection.index_information()
    for name in names:
        if name in present:
            await collection.drop_index(name)
