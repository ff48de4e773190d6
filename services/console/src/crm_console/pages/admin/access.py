"""A page the menu hides from a role must refuse that role too: the same permission, checked here,
so a rep who types /dashboards or /admin/users sees the console's 403 page (not an empty page
that only fails at the first upstream call)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends

from crm_console.registry import may
from crm_console.sessions import Session
from crm_console.upstreams import UpstreamProblem
from crm_console.web import signed_in
from crm_platform.permissions import Permission


def requires(permission: Permission) -> Callable[[Session], Awaitable[None]]:
    """A dependency: the signed-in user's roles grant ``permission``, else the 403 page."""

    async def check(session: Session = Depends(signed_in)) -> None:
        if not may(session.user, permission):
            # UpstreamProblem is what the console's error handler turns into its 403 page.
            raise UpstreamProblem("console", 403, "Forbidden", "")

    return check
