"""Use cases on the department tree.

Structure changes (create, move, delete) hold the tree lease, one at a time across
replicas: a cycle needs two moves racing, and a department created under a path
that a move is rewriting would keep the old path.

Moving a department (resumable and idempotent):

1. Under the lease, write a *tree job* naming the department: the intent, before anything changes.
2. Move the department itself: parent and path in one guarded write, with its ``crm.department.moved``.
3. Walk its subtree top-down (parents before children). Every user of a department,
   then every child department, gets its path recomputed *from its parent's current path*
   in its own guarded write with its own event (``crm.user.updated`` with
   ``cause="department_moved:<id>"``, or ``crm.department.moved``); a document whose path
   is already right is left alone, with no event.
4. Remove the tree job.

Nothing in step 3 depends on remembering how far a previous run got: paths are
derived from the parent pointers, so running the walk again converges to the same
state and writes only what is still wrong. A crash anywhere leaves the tree job
behind; it is finished by the next move (which first completes every pending job),
by re-running the same move (the department is already under its new parent, so
only the walk runs), or by the repair on start-up (:meth:`Departments.repair`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pymongo.errors import DuplicateKeyError

from crm_directory.adapters.repository import DirectoryRepository
from crm_directory.application.publishing import EventFactory
from crm_directory.application.users import Users
from crm_directory.domain import departments as rules
from crm_directory.domain.model import DepartmentCreate, DepartmentPatch
from crm_directory.settings import DirectorySettings
from crm_platform.auth import Principal, Role
from crm_platform.clock import Clock
from crm_platform.concurrency import stale
from crm_platform.contracts import directory as ev
from crm_platform.errors import Conflict, DomainError, Duplicate, FieldError, NotFound, ValidationFailed
from crm_platform.permissions import Permission
from crm_platform.store import Change

log = structlog.get_logger(__name__)
Document = dict[str, Any]
Renew = Callable[[], Awaitable[Any]]
RENEW_EVERY = 50  # writes between two renewals of the tree lease during a walk


class Departments:
    def __init__(
        self,
        repo: DirectoryRepository,
        users: Users,
        settings: DirectorySettings,
        events: EventFactory,
        clock: Clock,
    ) -> None:
        self.repo = repo
        self.users = users
        self.settings = settings
        self.events = events
        self.clock = clock

    def _lease(self) -> Any:
        s = self.settings
        return self.repo.tree_lease(s.directory_tree_lease_seconds, s.directory_tree_lock_wait_seconds)

    async def _active(self, department_id: str) -> Document:
        doc = await self.repo.department(department_id)
        if doc is None or doc.get("status") != "active":
            raise NotFound(f"No department with id {department_id}.")
        return doc

    async def _ensure_manager(self, manager_id: str | None) -> None:
        if manager_id is None:
            return
        user = await self.repo.user(manager_id)
        if user is None or user.get("status") != "active":
            raise ValidationFailed.for_field("manager_id", f"no active user with id {manager_id}")
        # A department's manager holds the built-in manager (or admin) role: it is what the
        # department's "manager" means in the directory, not what the caller may reach.
        if not {Role.manager.value, Role.admin.value} & set(user.get("roles") or []):  # scope-lint: builtin
            raise ValidationFailed.for_field(
                "manager_id", f"{manager_id} does not have the manager role; give it to them first"
            )

    # --- read ----------------------------------------------------------------------------------

    async def get(self, principal: Principal, department_id: str) -> Document:
        doc = await self.repo.department(department_id)
        # Deleted departments stay readable to those who manage departments (their history), and
        # are gone for everyone else.
        if doc is None or (doc.get("status") != "active" and not principal.holds(Permission.departments_manage)):
            raise NotFound(f"No department with id {department_id}.")
        return doc

    # --- create ----------------------------------------------------------------------------------

    async def create(self, principal: Principal, data: DepartmentCreate) -> Document:
        principal.require(Permission.departments_manage)
        chosen = rules.validate_id(data.id) if data.id else None
        if data.parent_id is not None:
            rules.validate_id(data.parent_id, "parent_id")
        await self._ensure_manager(data.manager_id)
        async with self._lease():
            parent = None
            if data.parent_id is not None:
                parent = await self.repo.department(data.parent_id)
                if parent is None or parent.get("status") != "active":
                    raise ValidationFailed.for_field("parent_id", f"no department with id {data.parent_id}")
            candidate = chosen or rules.generated_id(data.name)
            for _ in range(5):
                try:
                    return await self._insert_or_revive(principal, candidate, data, parent)
                except Duplicate:
                    if chosen:
                        raise
                    candidate = rules.with_suffix(candidate)
        raise Conflict("Could not find a free id for this department; choose one.")

    async def _insert_or_revive(
        self, principal: Principal, department_id: str, data: DepartmentCreate, parent: Document | None
    ) -> Document:
        now = self.clock.now()
        doc = rules.new_department(department_id, data.name, parent, data.manager_id, principal.user_id, now)
        existing = await self.repo.department(department_id)
        if existing is not None and existing.get("status") == "active":
            raise Duplicate(
                f"A department with id {department_id} already exists ({existing['name']}, {existing['path']}).",
                errors=[FieldError(field="id", reason="already used by another department")],
            )
        if existing is not None:
            # The id of a deleted department is reused: the same aggregate lives on (its version
            # keeps growing, so read copies elsewhere accept the new state), with its old history.
            def decide(old: Document, version: int) -> Change:
                if old.get("status") == "active":
                    raise Duplicate(f"A department with id {department_id} already exists.")
                revived = {**doc, "created_at": old["created_at"], "created_by": old.get("created_by")}
                data_ = ev.DepartmentCreated(department=rules.snapshot(revived))
                return Change(
                    revived, [self.events(ev.DEPARTMENT_CREATED, department_id, data_, version, principal.user_id)]
                )

            return await self.repo.department_store.mutate(department_id, decide)
        event = self.events(
            ev.DEPARTMENT_CREATED,
            department_id,
            ev.DepartmentCreated(department=rules.snapshot(doc)),
            1,
            principal.user_id,
        )
        try:
            return await self.repo.department_store.insert(doc, [event])
        except DuplicateKeyError as exc:
            raise Duplicate(f"A department with id {department_id} already exists.") from exc

    # --- rename, manager -------------------------------------------------------------------------

    async def update(
        self, principal: Principal, department_id: str, patch: DepartmentPatch, expected_version: int | None
    ) -> Document:
        principal.require(Permission.departments_manage)
        fields = patch.model_fields_set
        if "manager_id" in fields:
            await self._ensure_manager(patch.manager_id)

        def decide(doc: Document, version: int) -> Change:
            if doc.get("status") != "active":
                raise NotFound(f"No department with id {department_id}.")
            outgoing = []
            if "name" in fields and patch.name is not None and patch.name != doc["name"]:
                old_name, doc["name"] = doc["name"], patch.name
                outgoing.append(("renamed", old_name))
            if "manager_id" in fields and patch.manager_id != doc.get("manager_id"):
                old_manager, doc["manager_id"] = doc.get("manager_id"), patch.manager_id
                outgoing.append(("manager", old_manager))
            if not outgoing:
                return Change(None)
            rules.touch(doc, principal.user_id, self.clock.now())
            snapshot = rules.snapshot(doc)
            events = []
            for kind, old in outgoing:
                if kind == "renamed":
                    renamed = ev.DepartmentRenamed(department=snapshot, old_name=old, new_name=doc["name"])
                    events.append(
                        self.events(ev.DEPARTMENT_RENAMED, department_id, renamed, version, principal.user_id)
                    )
                else:
                    changed = ev.DepartmentManagerChanged(
                        department=snapshot, old_manager_id=old, new_manager_id=doc.get("manager_id")
                    )
                    events.append(
                        self.events(ev.DEPARTMENT_MANAGER_CHANGED, department_id, changed, version, principal.user_id)
                    )
            return Change(doc, events)

        return await self.repo.department_store.mutate(department_id, decide, expected_version=expected_version)

    # --- move ------------------------------------------------------------------------------------

    async def move(
        self, principal: Principal, department_id: str, parent_id: str | None, expected_version: int | None
    ) -> Document:
        principal.require(Permission.departments_manage)
        if parent_id is not None:
            rules.validate_id(parent_id, "parent_id")
        async with self._lease() as renew:
            await self._finish_pending_jobs(renew)
            doc = await self._active(department_id)
            parent = None
            if parent_id is not None:
                parent = await self.repo.department(parent_id)
                if parent is None or parent.get("status") != "active":
                    raise ValidationFailed.for_field("parent_id", f"no department with id {parent_id}")
            rules.ensure_not_into_itself(doc, parent)
            if expected_version is not None and doc["version"] != expected_version:
                raise stale(doc["version"], expected_version)
            if doc.get("parent_id") == parent_id:
                # Already there (e.g. this move is being re-run after a crash): make sure the subtree is done.
                await self._walk(department_id, principal.user_id, renew)
                return await self._active(department_id)
            job_id = await self.repo.add_tree_job(department_id, principal.user_id)
            try:
                await self.repo.department_store.mutate(
                    department_id,
                    self._decide_move(department_id, parent, principal.user_id),
                    expected_version=expected_version,
                )
            except DomainError:
                await self.repo.remove_tree_job(job_id)
                raise
            await self._walk(department_id, principal.user_id, renew)
            await self.repo.remove_tree_job(job_id)
            return await self._active(department_id)

    def _decide_move(self, department_id: str, parent: Document | None, actor: str) -> Any:
        def decide(doc: Document, version: int) -> Change:
            old_parent, old_path = doc.get("parent_id"), doc["path"]
            doc["parent_id"] = parent["_id"] if parent else None
            doc["path"] = rules.child_path(parent["path"] if parent else None, department_id)
            rules.touch(doc, actor, self.clock.now())
            data = ev.DepartmentMoved(
                department=rules.snapshot(doc),
                moved_department_id=department_id,
                old_parent_id=old_parent,
                new_parent_id=doc["parent_id"],
                old_path=old_path,
                new_path=doc["path"],
            )
            return Change(doc, [self.events(ev.DEPARTMENT_MOVED, department_id, data, version, actor)])

        return decide

    async def _walk(self, root_id: str, actor: str, renew: Renew) -> int:
        """Bring every user and department below ``root_id`` to its parent's current path.

        Top-down, so a parent is always right before its children are derived from it.
        Returns how many documents were looked at.
        """
        cause = f"department_moved:{root_id}"
        queue: deque[str] = deque([root_id])
        seen = 0
        while queue:
            department_id = queue.popleft()
            for user_id in await self.repo.user_ids_in(department_id):
                await self.users.sync_department_path(user_id, actor, cause)
                seen += 1
                if seen % RENEW_EVERY == 0:
                    await renew()
            for child_id in await self.repo.child_ids(department_id):
                await self._sync_path(child_id, root_id, actor)
                queue.append(child_id)
                seen += 1
                if seen % RENEW_EVERY == 0:
                    await renew()
        return seen

    async def _sync_path(self, department_id: str, moved_root: str, actor: str) -> None:
        async def decide(doc: Document, version: int) -> Change:
            # The parent is read inside the guarded write, after the child: see Users.sync_department_path.
            parent = await self.repo.department(doc["parent_id"]) if doc.get("parent_id") else None
            new_path = rules.child_path(parent["path"] if parent else None, department_id)
            if new_path == doc["path"]:
                return Change(None)
            old_path, doc["path"] = doc["path"], new_path
            rules.touch(doc, actor, self.clock.now())
            data = ev.DepartmentMoved(
                department=rules.snapshot(doc),
                moved_department_id=moved_root,
                old_parent_id=doc.get("parent_id"),
                new_parent_id=doc.get("parent_id"),
                old_path=old_path,
                new_path=new_path,
            )
            return Change(doc, [self.events(ev.DEPARTMENT_MOVED, department_id, data, version, actor)])

        await self.repo.department_store.mutate(department_id, decide)

    async def _finish_pending_jobs(self, renew: Renew) -> int:
        jobs = await self.repo.pending_tree_jobs()
        for job in jobs:
            if await self.repo.department(job["department_id"]) is not None:
                log.warning("finishing an interrupted department move", department_id=job["department_id"])
                await self._walk(job["department_id"], job.get("actor") or "system:directory", renew)
            await self.repo.remove_tree_job(job["_id"])
        return len(jobs)

    async def repair(self) -> int:
        """On start-up: finish moves a crashed process left half done. Returns the jobs finished."""
        if not await self.repo.pending_tree_jobs():
            return 0
        try:
            async with self._lease() as renew:
                return await self._finish_pending_jobs(renew)
        except Conflict:
            # Another replica holds the lease: it is moving (and finishes pending jobs first).
            log.info("department tree busy; leaving pending moves to the lease holder")
            return 0

    # --- delete ----------------------------------------------------------------------------------

    async def delete(self, principal: Principal, department_id: str, expected_version: int | None) -> Document:
        """Delete an empty department: it stays as a tombstone (status "deleted") with its history.

        Known gap: an administrator who puts a user into this department in the same instant
        as another deletes it (user writes do not take the tree lease) can leave that user in a
        deleted department; the user keeps a valid path and can be moved out again.
        """
        principal.require(Permission.departments_manage)
        async with self._lease():
            await self._active(department_id)
            children = await self.repo.count_children(department_id)
            members = await self.repo.count_members(department_id)
            if children or members:
                raise Conflict(
                    f"Department {department_id} is not empty: {children} sub-department(s) and {members} user(s) "
                    "(deactivated users count: they keep their department). Move them first.",
                    extra={"sub_departments": children, "users": members},
                )

            def decide(doc: Document, version: int) -> Change:
                doc["status"] = "deleted"
                rules.touch(doc, principal.user_id, self.clock.now())
                data = ev.DepartmentDeleted(department=rules.snapshot(doc))
                return Change(
                    doc, [self.events(ev.DEPARTMENT_DELETED, department_id, data, version, principal.user_id)]
                )

            return await self.repo.department_store.mutate(department_id, decide, expected_version=expected_version)
