"""Sign-in, sign-out and preferences: the console's own pages (not a page group: every group needs them).

Sign-in calls the directory's ``POST /v1/auth/token``, then ``GET /v1/me`` for the profile (name,
roles, language); the tokens go into a new server-side session. Sign-out revokes the refresh token
through ``POST /v1/auth/logout``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from crm_console.i18n import LANGUAGES, pick_language
from crm_console.problems import localise_field_errors
from crm_console.sessions import Session, SessionUser
from crm_console.upstreams import UpstreamProblem, UpstreamUnavailable
from crm_console.web import Api, NotSignedIn, console, current_session, render, session_lifetime, signed_in, zone

router = APIRouter()

TIMEZONES = ("Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Tokyo", "Asia/Singapore", "Europe/London", "UTC")


def safe_next(target: str | None) -> str:
    """Only paths on this site (no ``//host`` or ``https://``), so the login cannot redirect away."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def set_cookie(request: Request, response: Response, session: Session) -> None:
    settings = console(request).settings
    response.set_cookie(
        settings.console_cookie_name,
        session.id,
        max_age=int(session_lifetime(settings, session).total_seconds()),
        httponly=True,
        samesite="lax",
        secure=settings.console_cookie_secure,
        path="/",
    )


async def anonymous_session(request: Request) -> tuple[Session, bool]:
    """The visitor's session, or a new one before sign-in (it carries the login form's CSRF token)."""
    session = await current_session(request)
    if session is not None:
        return session, False
    app = console(request)
    session = await app.sessions.create(
        language=pick_language(request.headers.get("accept-language"), app.settings.console_default_language),
        timezone=app.settings.console_default_timezone,
        lifetime=session_lifetime(app.settings, None),
    )
    request.state.session = session
    return session, True


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, next: str = "/") -> Response:
    session, new = await anonymous_session(request)
    if session.signed_in:
        return RedirectResponse(safe_next(next), status_code=303)
    response = render(request, "login.html", {"next": safe_next(next), "email": "", "error": None})
    if new:
        set_cookie(request, response, session)
    return response


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    app = console(request)
    before = await current_session(request)  # csrf_protect made sure there is one
    assert before is not None
    answer = await app.upstreams.request(
        "directory", "POST", "/v1/auth/token", json={"email": email, "password": password}
    )
    if answer.status_code != 200:
        problem = UpstreamProblem.from_response("directory", answer)
        localise_field_errors(problem, before.language, app.catalogue)
        error = {401: "core.login.wrong", 429: "core.login.throttled"}.get(answer.status_code, "core.login.refused")
        retry = answer.headers.get("Retry-After", "")
        context = {"next": safe_next(next), "email": email, "error": error, "retry_after": retry}
        context["field_errors"] = problem.field_errors() if answer.status_code == 422 else {}
        return render(request, "login.html", context, status_code=answer.status_code)
    pair = answer.json()
    me_answer = await app.upstreams.request("directory", "GET", "/v1/me", token=pair["access_token"])
    me = me_answer.json() if me_answer.status_code == 200 else {}
    user = SessionUser(
        id=str(me.get("id") or ""),
        name=str(me.get("name") or email),
        email=str(me.get("email") or email),
        roles=list(me.get("roles") or []),
        department_path=me.get("department_path"),
        permissions=list(pair["permissions"]) if isinstance(pair.get("permissions"), list) else None,
        scopes=dict(pair["scopes"]) if isinstance(pair.get("scopes"), dict) else None,
    )
    language = me.get("language") if me.get("language") in LANGUAGES else before.language
    # The profile's zone when it has one (the directory validates it), else this session's.
    profile_zone = me.get("time_zone")
    timezone = profile_zone if isinstance(profile_zone, str) and zone(profile_zone).key == profile_zone else None
    # A new session id at sign-in: an id someone planted before sign-in is worth nothing after it.
    session = await app.sessions.create(
        language=str(language),
        timezone=timezone or before.timezone,
        lifetime=_signed_in_lifetime(request),
        user=user,
        access_token=pair["access_token"],
        refresh_token=pair["refresh_token"],
        access_expires_at=time.time() + float(pair["expires_in"]),
    )
    await app.sessions.delete(before.id)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, session)
    return response


def _signed_in_lifetime(request: Request) -> timedelta:
    return timedelta(hours=console(request).settings.console_session_idle_hours)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    app = console(request)
    session = await current_session(request)
    if session is not None:
        if session.refresh_token:
            # Revoke at the directory first; if it is down the session still ends here.
            try:
                await app.upstreams.request(
                    "directory", "POST", "/v1/auth/logout", json={"refresh_token": session.refresh_token}
                )
            except Exception:
                pass
        await app.sessions.delete(session.id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(app.settings.console_cookie_name, path="/")
    if request.headers.get("HX-Request") == "true":
        response.headers["HX-Redirect"] = "/login"
    return response


@router.post("/preferences", include_in_schema=False)
async def preferences(
    request: Request,
    language: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Language and time zone, remembered in the session and saved to the user's directory
    profile, so the next sign-in starts with them (best effort: the switch works even if that
    write fails)."""
    app = console(request)
    session, _ = await anonymous_session(request)
    changes: dict[str, str] = {}
    if language in LANGUAGES:
        changes["language"] = language
    if timezone and zone(timezone).key == timezone:
        changes["timezone"] = timezone
    if changes:
        await app.sessions.update(session.id, **changes)
    if changes and session.signed_in:
        profile = {"time_zone" if name == "timezone" else name: value for name, value in changes.items()}
        await _save_to_profile(Api(request, session), profile)
    return RedirectResponse(safe_next(next), status_code=303)


async def _save_to_profile(client: Api, changes: dict[str, str]) -> None:
    try:
        me = await client.send("directory", "GET", "/v1/me")
        await client.send("directory", "PATCH", "/v1/me", json=changes, headers={"If-Match": me.headers["ETag"]})
    except (UpstreamProblem, UpstreamUnavailable, NotSignedIn, KeyError):
        pass


@router.get("/preferences", include_in_schema=False)
async def preferences_form(request: Request) -> Response:
    session = await signed_in(request)
    # The user's own zone is offered even when it is not one of the usual ones (set elsewhere).
    zones = TIMEZONES if session.timezone in TIMEZONES else (session.timezone, *TIMEZONES)
    return render(request, "preferences.html", {"languages": LANGUAGES, "timezones": zones})
