"""What every page handler uses: the signed-in session, the API client acting as its user, CSRF
checks and rendering a template in the user's language and time zone."""

from __future__ import annotations

import asyncio
import hmac
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from crm_console.i18n import Catalogue
from crm_console.problems import explain, localise_field_errors, specifics
from crm_console.registry import PageGroup, may, menu_for
from crm_console.sessions import Session, SessionStore
from crm_console.settings import ConsoleSettings
from crm_console.upstreams import UpstreamProblem, Upstreams

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
REFRESH_LEASE_SECONDS = 10.0


class NotSignedIn(Exception):
    """No session, or its sign-in ended (refresh refused): the person signs in again."""


class CsrfRefused(Exception):
    pass


@dataclass
class Console:
    """The app's shared parts (``app.state.console``)."""

    settings: ConsoleSettings
    sessions: SessionStore
    upstreams: Upstreams
    catalogue: Catalogue
    templates: jinja2.Environment
    groups: list[PageGroup]


def console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


async def current_session(request: Request) -> Session | None:
    """The request's session (any, signed in or not), read once per request."""
    if hasattr(request.state, "session"):
        cached: Session | None = request.state.session
        return cached
    session_id = request.cookies.get(console(request).settings.console_cookie_name)
    session = await console(request).sessions.get(session_id) if session_id else None
    request.state.session = session
    return session


async def signed_in(request: Request) -> Session:
    """FastAPI dependency of every page that needs a user."""
    session = await current_session(request)
    if session is None or not session.signed_in:
        raise NotSignedIn()
    return session


async def csrf_protect(request: Request) -> None:
    """On the whole app: a request that changes something carries the session's CSRF token, in the
    X-CSRF-Token header (htmx sends it, see base.html) or the csrf_token form field."""
    if request.method in SAFE_METHODS:
        return
    session = await current_session(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = str((await request.form()).get(CSRF_FIELD) or "") or None
    if session is None or sent is None or not hmac.compare_digest(sent, session.csrf):
        raise CsrfRefused()


def session_lifetime(settings: ConsoleSettings, session: Session | None) -> timedelta:
    if session is not None and session.signed_in:
        return timedelta(hours=settings.console_session_idle_hours)
    return timedelta(minutes=settings.console_anonymous_session_minutes)


# In this process, requests of one session queue here (the store's lease covers other replicas);
# a lock lives as long as a request holds it.
_refresh_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


class Api:
    """The services' APIs as the signed-in user: their bearer token, refreshed when it expires
    (before a call, or after a 401), so pages never see an expired token."""

    def __init__(self, request: Request, session: Session) -> None:
        self.console = console(request)
        self.session = session

    def problem_text(self, problem: UpstreamProblem) -> str:
        """A service's refusal in this user's language (:mod:`crm_console.problems`)."""
        return explain(problem, self.session.language, self.console.catalogue)

    async def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        response = await self.send(service, "GET", path, params=params)
        return response.json()

    async def send(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """One call (``content``: a raw body, e.g. an uploaded CSV); a problem answer (4xx) raises
        :class:`UpstreamProblem` for the page to show."""
        await self._fresh_token()
        response = await self._call(service, method, path, params, json, headers, content)
        if response.status_code == 401:
            await self._fresh_token(force=True)
            response = await self._call(service, method, path, params, json, headers, content)
            if response.status_code == 401:
                raise NotSignedIn()
        if response.status_code >= 400:
            problem = UpstreamProblem.from_response(service, response)
            localise_field_errors(problem, self.session.language, self.console.catalogue)
            raise problem
        return response

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        json: Any,
        headers: dict[str, str] | None,
        content: bytes | None = None,
    ) -> httpx.Response:
        return await self.console.upstreams.request(
            service,
            method,
            path,
            token=self.session.access_token,
            params=params,
            json=json,
            headers=headers,
            content=content,
        )

    async def _fresh_token(self, force: bool = False) -> None:
        margin = self.console.settings.console_refresh_margin_seconds
        if not force and self.session.access_expires_at - margin > time.time():
            return
        spent = self.session.access_token
        lock = _refresh_locks.get(self.session.id)
        if lock is None:
            lock = _refresh_locks[self.session.id] = asyncio.Lock()
        async with lock:
            await self._refresh_once(spent)

    async def _refresh_once(self, spent: str | None) -> None:
        store = self.console.sessions
        deadline = time.monotonic() + REFRESH_LEASE_SECONDS
        while True:
            latest = await store.get(self.session.id)
            if latest is None or not latest.signed_in:
                raise NotSignedIn()
            if latest.access_token != spent:  # another request (or replica) refreshed meanwhile
                self.session = latest
                return
            if await store.claim_refresh(self.session.id, REFRESH_LEASE_SECONDS):
                break
            if time.monotonic() > deadline:
                raise NotSignedIn()
            await asyncio.sleep(0.1)
        response = await self.console.upstreams.request(
            "directory", "POST", "/v1/auth/refresh", json={"refresh_token": latest.refresh_token}
        )
        if response.status_code != 200:
            await store.delete(self.session.id)
            raise NotSignedIn()
        pair = response.json()
        await store.store_tokens(self.session.id, pair["access_token"], pair["refresh_token"], pair["expires_in"])
        user = self.session.user
        if user is not None and isinstance(pair.get("permissions"), list):
            # A role changed since sign-in: the menus follow at the next refresh.
            user.permissions, user.scopes = list(pair["permissions"]), dict(pair.get("scopes") or {})
            await store.update(self.session.id, **{"user.permissions": user.permissions, "user.scopes": user.scopes})
        self.session.access_token = pair["access_token"]
        self.session.refresh_token = pair["refresh_token"]
        self.session.access_expires_at = time.time() + float(pair["expires_in"])


async def api(request: Request) -> Api:
    """FastAPI dependency: the API client for the signed-in user (raises NotSignedIn)."""
    return Api(request, await signed_in(request))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_datetime(value: str | datetime | None, timezone: str) -> str:
    """An API timestamp (ISO 8601) in the user's time zone, to the minute."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone(timezone)).strftime("%Y-%m-%d %H:%M")


def language_of(request: Request) -> str:
    """The signed-in user's language, or the console's default before sign-in."""
    session: Session | None = getattr(request.state, "session", None)
    return session.language if session else console(request).settings.console_default_language


def problem_text(request: Request, problem: UpstreamProblem) -> str:
    """A service's refusal in the user's language (:mod:`crm_console.problems`)."""
    return explain(problem, language_of(request), console(request).catalogue)


def refusal_specifics(request: Request, problem: UpstreamProblem) -> str:
    """What a refusal says beyond its kind, in the user's language (:func:`crm_console.problems.specifics`)."""
    return specifics(problem, language_of(request), console(request).catalogue)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A template with what every page needs: ``t()`` (messages), ``dt()`` (dates in the user's
    zone), the session and its CSRF token, the menu for what the user's roles grant, ``may()`` for buttons."""
    app = console(request)
    session: Session | None = getattr(request.state, "session", None)
    language = language_of(request)
    timezone = session.timezone if session else app.settings.console_default_timezone
    user = session.user if session else None

    def t(key: str, **values: object) -> str:
        return app.catalogue.translate(language, key, **values)

    def dt(value: str | datetime | None) -> str:
        return format_datetime(value, timezone)

    def choices(prefix: str, options: Iterable[str], blank: str | None = None) -> list[tuple[str, str]]:
        """(value, label) pairs for a select: each label is the message ``<prefix>.<value>``."""
        pairs = [("", t(blank))] if blank else []
        return pairs + [(option, t(f"{prefix}.{option}")) for option in options]

    values = {
        "request": request,
        "choices": choices,
        "session": session,
        "user": session.user if session else None,
        "csrf_token": session.csrf if session else "",
        "language": language,
        "timezone": timezone,
        "menu": menu_for(app.groups, user) if session and session.signed_in else [],
        "t": t,
        "dt": dt,
        "problem_text": lambda problem: explain(problem, language, app.catalogue),
        "may": lambda permission: may(user, permission),
        "htmx": is_htmx(request),
        **(context or {}),
    }
    html = app.templates.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=headers)
