"""Page groups: each declares its router, its menu entries (with the permission they need), its
templates and its messages; the console finds them by looking into ``crm_console.pages``.

A page group is a subpackage ``crm_console/pages/<name>/`` whose ``__init__.py`` defines
``GROUP = PageGroup(...)``. Nothing else lists the groups, so adding one edits no shared file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter

from crm_console.sessions import SessionUser
from crm_platform.auth import BUILTIN_SCOPES, Role, widest
from crm_platform.permissions import Permission, granted


@dataclass(frozen=True)
class MenuEntry:
    label: str  # a message key, e.g. "customers.menu"
    href: str
    permission: Permission | None = None  # None: every signed-in user
    order: int = 100  # smaller first


@dataclass(frozen=True)
class PageGroup:
    name: str  # also the template prefix ("customers/list.html") and the message-key prefix
    router: APIRouter
    directory: Path  # the package's folder: templates/ and messages.json live there
    menu: tuple[MenuEntry, ...] = field(default_factory=tuple)

    @property
    def templates(self) -> Path:
        return self.directory / "templates"

    @property
    def messages(self) -> Path:
        return self.directory / "messages.json"


def discover(package: str = "crm_console.pages") -> list[PageGroup]:
    """Every page group in ``package``, sorted by name."""
    root = importlib.import_module(package)
    groups: list[PageGroup] = []
    for info in pkgutil.iter_modules(root.__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        group = getattr(module, "GROUP", None)
        if not isinstance(group, PageGroup):
            raise TypeError(f"{package}.{info.name} defines no GROUP = PageGroup(...)")
        if group.name != info.name:
            raise ValueError(f"{package}.{info.name}: GROUP.name is {group.name!r}, expected {info.name!r}")
        groups.append(group)
    return sorted(groups, key=lambda g: g.name)


def roles_of(names: Iterable[str]) -> list[Role]:
    return [Role(name) for name in names if name in Role.__members__]


Who = SessionUser | Iterable[str] | None
"""A signed-in user (their session), or role ids (the built-in roles' defaults: tests)."""


def granted_to(who: Who) -> frozenset[str]:
    """What the user may do: the permissions the directory's role definitions gave their roles
    (the token answer at sign-in and at each refresh); for a session stored before the directory
    sent them, or bare role ids, what the built-in roles among them grant by default."""
    if who is None:
        return frozenset()
    if isinstance(who, SessionUser):
        if who.permissions is not None:
            return frozenset(who.permissions)
        who = who.roles
    return frozenset(p.value for p in granted(roles_of(who)))


def menu_for(groups: Iterable[PageGroup], who: Who) -> list[MenuEntry]:
    """The entries the user's permissions cover, in menu order."""
    allowed = granted_to(who)
    entries = [e for g in groups for e in g.menu if e.permission is None or str(e.permission) in allowed]
    return sorted(entries, key=lambda e: (e.order, e.href))


def may(who: Who, permission: Permission | str) -> bool:
    return str(permission) in granted_to(who)


def reaches_beyond_own(user: SessionUser | None, module: str) -> bool:
    """True if the user's data scope in ``module`` reaches others' records (department, subtree or
    all); a session without scopes falls back on the built-in roles' defaults."""
    if user is None:
        return False
    if user.scopes is not None:
        scope = user.scopes.get(module)
    else:
        scope = widest(BUILTIN_SCOPES[role] for role in roles_of(user.roles))
    return scope in ("department", "subtree", "all")
