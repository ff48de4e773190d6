"""The HTTP API of the interactions service (/v1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from crm_interactions.application import history as history_
from crm_interactions.application.custom import fieldset
from crm_interactions.application.feedback import Feedback
from crm_interactions.application.interactions import Interactions
from crm_interactions.application.stats import Stats, interaction_stats
from crm_interactions.application.tasks import Tasks
from crm_interactions.domain.calendar import GroupBy, zone
from crm_interactions.domain.fields import ensure_query_visible, redacting
from crm_interactions.domain.interactions import FEEDBACK, INTERACTIONS, TASKS
from crm_interactions.domain.model import (
    FeedbackIn,
    FeedbackPatch,
    InteractionIn,
    InteractionPatch,
    NoteBody,
    RescheduleIn,
    TaskIn,
    TaskPatch,
    TransitionIn,
)
from crm_interactions.entrypoints.schemas import (
    FeedbackFilter,
    FeedbackOut,
    FeedbackPage,
    InteractionFilter,
    InteractionOut,
    InteractionPage,
    Paging,
    TaskFilter,
    TaskOut,
    TaskPage,
    feedback_out,
    interaction_out,
    task_out,
)
from crm_interactions.settings import InteractionsSettings
from crm_platform.auth import CurrentPrincipal, Principal
from crm_platform.concurrency import etag, expected_version
from crm_platform.customfields import query_filters
from crm_platform.errors import ValidationFailed
from crm_platform.fieldaccess import written_fields
from crm_platform.history import HistoryEntry, history
from crm_platform.idempotency import IdempotencyKeyHeader, mark_replayed
from crm_platform.openapi import problems
from crm_platform.service import ServiceKit

Document = dict[str, Any]
P = TypeVar("P", bound=Paging)
P_ = TypeVar("P_", bound=BaseModel)


@dataclass
class Services:
    interactions: Interactions
    tasks: Tasks
    feedback: Feedback
    settings: InteractionsSettings
    kit: ServiceKit


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


App = Annotated[Services, Depends(services)]
Reason = Annotated[str | None, Query(max_length=500)]

interactions_router = APIRouter(prefix="/v1", tags=["interactions"])
tasks_router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
feedback_router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


async def _with_custom(
    params: P, request: Request, app: Services, principal: Principal, module: str = INTERACTIONS
) -> P:
    """``params`` with the query's ``custom.<key>=<value>`` filters, checked against ``module``'s
    definitions; a filter or sort on a field the caller's roles hide is refused (403 field-hidden)."""
    fields = await fieldset(app.interactions.fields, module)
    custom = query_filters(fields, request.query_params.multi_items())
    ensure_query_visible(principal.fields(module), custom, params.sort)
    return params.with_custom(fields.conditions(custom))


def _visible(principal: Principal, module: str, body: BaseModel) -> dict[str, Any]:
    """A record as this caller may see it: fields their roles hide are left out, not nulled."""
    policy, values = principal.fields(module), body.model_dump(mode="json")
    return policy.redact(values) if policy.hidden else values


def _page(principal: Principal, module: str, page: P_, items: Sequence[BaseModel]) -> P_ | JSONResponse:
    """A list page; while the caller's roles hide none of ``module``'s fields, as it is."""
    if not principal.fields(module).hidden:
        return page
    body = page.model_dump(mode="json")
    body["items"] = [_visible(principal, module, item) for item in items]
    return JSONResponse(body)


def _ensure_writable(principal: Principal, module: str, body: BaseModel, *, creating: bool) -> None:
    """Refuse (403 ``field-read-only``) a create or patch that sets fields the caller's roles protect."""
    policy = principal.fields(module)
    if not policy.unrestricted:
        policy.ensure_writable(written_fields(body.model_dump(exclude_unset=True), creating=creating))


def _respond(
    principal: Principal, module: str, body: BaseModel, version: int, status: int = 200, location: str | None = None
) -> JSONResponse:
    headers = {"ETag": etag(version)}
    if location:
        headers["Location"] = location
    return JSONResponse(_visible(principal, module, body), status_code=status, headers=headers)


def _interaction(principal: Principal, doc: Document, status: int = 200, location: str | None = None) -> JSONResponse:
    return _respond(principal, INTERACTIONS, interaction_out(doc), doc["version"], status, location)


def _task(app: App, principal: Principal, doc: Document, status: int = 200) -> JSONResponse:
    location = f"/v1/tasks/{doc['_id']}" if status == 201 else None
    body = task_out(doc, app.interactions.clock.now())
    return _respond(principal, TASKS, body, doc["version"], status, location)


def _feedback(principal: Principal, doc: Document, status: int = 200) -> JSONResponse:
    location = f"/v1/feedback/{doc['_id']}" if status == 201 else None
    return _respond(principal, FEEDBACK, feedback_out(doc), doc["version"], status, location)


async def _history(app: App, principal: Principal, doc: Document) -> list[HistoryEntry]:
    """The record's history as the caller may read it: no change to, nor value of, a field their
    roles hide (an entry that changed only hidden fields is left out)."""
    if not any(principal.fields(m).hidden for m in (INTERACTIONS, TASKS, FEEDBACK)):
        return await history(app.kit.event_log, doc, history_.summarise)
    dropped: set[str] = set()
    entries = await history(app.kit.event_log, doc, redacting(history_.summarise, principal, dropped))
    return [e for e in entries if e.event_id not in dropped]


# --- interactions -------------------------------------------------------------------------------


@interactions_router.post(
    "/interactions",
    status_code=201,
    response_model=InteractionOut,
    summary="Log an interaction (call, email, meeting, visit, social/chat, note)",
    responses={
        200: {
            "description": "This email (same message_id) was logged before: the existing record.",
            "model": InteractionOut,
        },
        **problems(409),
    },
)
async def log_interaction(
    body: Annotated[InteractionIn, Body()], principal: CurrentPrincipal, app: App, key: IdempotencyKeyHeader
) -> JSONResponse:
    _ensure_writable(principal, INTERACTIONS, body, creating=True)
    doc, created = await app.interactions.log(principal, body, key)
    return mark_replayed(_interaction(principal, doc, 201 if created else 200, f"/v1/interactions/{doc['_id']}"), key)


@interactions_router.get(
    "/interactions",
    response_model=InteractionPage,
    summary="Interactions across customers: yours, your team's (managers), those of customers you own",
)
async def list_interactions(
    params: Annotated[InteractionFilter, Query()], request: Request, principal: CurrentPrincipal, app: App
) -> InteractionPage | JSONResponse:
    """Filters combine with AND; ``custom.<key>=<value>`` filters on a custom field flagged
    ``filterable`` (a number also ``<low>..<high>``, either end left open)."""
    params = await _with_custom(params, request, app, principal)
    if params.lead_id:  # a lead's history: who sees the lead sees it all (as GET /v1/leads/{id}/interactions)
        items, cursor = await app.interactions.lead_history(
            principal, params.lead_id, params.to_mongo(), params.sort, params.cursor, params.limit
        )
    else:
        items, cursor = await app.interactions.search(
            principal, params.to_mongo(), params.sort, params.cursor, params.limit
        )
    out = [interaction_out(d) for d in items]
    return _page(principal, INTERACTIONS, InteractionPage(items=out, next_cursor=cursor), out)


@interactions_router.get(
    "/interactions/stats",
    response_model=Stats,
    response_model_by_alias=True,
    summary="Interactions per rep and channel per day, week or month (with recorded-late counts)",
)
async def stats(
    principal: CurrentPrincipal,
    app: App,
    group_by: GroupBy = "day",
    start: Annotated[datetime | None, Query(alias="from", description="Default: 30 days before `to`.")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Default: now.")] = None,
    tz: Annotated[str | None, Query(description="IANA zone of days/weeks/months; default Asia/Shanghai.")] = None,
    department: Annotated[str | None, Query(description="A department path: it and everything below it.")] = None,
    rep: Annotated[str | None, Query(description="One rep's user id.")] = None,
    channel: Annotated[str | None, Query(description="Comma-separated channels.")] = None,
) -> JSONResponse:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed.for_field(name, "give a time zone, e.g. 2026-01-31T00:00:00+08:00", "query")
    tz_name = tz or app.settings.default_timezone
    zone(tz_name)
    end = end or app.interactions.clock.now()
    start = start or end - timedelta(days=30)
    result = await interaction_stats(
        app.interactions.repo,
        principal,
        group_by=group_by,
        start=start,
        end=end,
        tz=tz_name,
        department=department,
        rep=rep,
        channel=channel,
        max_rows=app.settings.stats_max_rows,
    )
    return JSONResponse(result.model_dump(mode="json", by_alias=True))


@interactions_router.get("/interactions/{interaction_id}", response_model=InteractionOut, summary="One interaction")
async def get_interaction(interaction_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    return _interaction(principal, await app.interactions.get(principal, interaction_id))


@interactions_router.patch(
    "/interactions/{interaction_id}",
    response_model=InteractionOut,
    summary="Change fields of the interaction's channel (send If-Match)",
    responses=problems(409, 412, 428),
)
async def patch_interaction(
    interaction_id: str, body: InteractionPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    _ensure_writable(principal, INTERACTIONS, body, creating=False)
    doc = await app.interactions.update(principal, interaction_id, body, expected_version(request, required=True))
    return _interaction(principal, doc)


@interactions_router.delete(
    "/interactions/{interaction_id}", status_code=204, summary="Delete (kept, hidden)", responses=problems(409, 412)
)
async def delete_interaction(
    interaction_id: str, request: Request, principal: CurrentPrincipal, app: App, reason: Reason = None
) -> Response:
    doc = await app.interactions.delete(principal, interaction_id, reason, expected_version(request, required=False))
    return Response(status_code=204, headers={"ETag": etag(doc["version"])})


@interactions_router.get(
    "/interactions/{interaction_id}/history",
    response_model=list[HistoryEntry],
    summary="Field-level history: who, when, old and new",
)
async def interaction_history(interaction_id: str, principal: CurrentPrincipal, app: App) -> list[HistoryEntry]:
    return await _history(app, principal, await app.interactions.get(principal, interaction_id))


@interactions_router.get(
    "/customers/{customer_id}/interactions",
    response_model=InteractionPage,
    summary="A customer's full interaction history in time order (what a rep reads before a visit)",
)
async def customer_interactions(
    customer_id: str,
    params: Annotated[InteractionFilter, Query()],
    request: Request,
    principal: CurrentPrincipal,
    app: App,
) -> InteractionPage | JSONResponse:
    params = await _with_custom(params, request, app, principal)
    items, cursor = await app.interactions.customer_history(
        principal, customer_id, params.to_mongo(), params.sort, params.cursor, params.limit
    )
    out = [interaction_out(d) for d in items]
    return _page(principal, INTERACTIONS, InteractionPage(items=out, next_cursor=cursor), out)


@interactions_router.get(
    "/leads/{lead_id}/interactions",
    response_model=InteractionPage,
    summary="A lead's follow-ups in time order (kept after its conversion moved them to the customer)",
)
async def lead_interactions(
    lead_id: str,
    params: Annotated[InteractionFilter, Query()],
    request: Request,
    principal: CurrentPrincipal,
    app: App,
) -> InteractionPage | JSONResponse:
    params = await _with_custom(params, request, app, principal)
    items, cursor = await app.interactions.lead_history(
        principal, lead_id, params.to_mongo(), params.sort, params.cursor, params.limit
    )
    out = [interaction_out(d) for d in items]
    return _page(principal, INTERACTIONS, InteractionPage(items=out, next_cursor=cursor), out)


# --- tasks ----------------------------------------------------------------------------------------


@tasks_router.post(
    "", status_code=201, response_model=TaskOut, summary="Create a follow-up task", responses=problems(409)
)
async def create_task(body: TaskIn, principal: CurrentPrincipal, app: App, key: IdempotencyKeyHeader) -> JSONResponse:
    _ensure_writable(principal, TASKS, body, creating=True)
    return mark_replayed(_task(app, principal, await app.tasks.create(principal, body, key), 201), key)


@tasks_router.get(
    "",
    response_model=TaskPage,
    summary="Tasks: mine / created by me / my team's / all, overdue / today / this week (in a time zone)",
)
async def list_tasks(
    params: Annotated[TaskFilter, Query()], request: Request, principal: CurrentPrincipal, app: App
) -> TaskPage | JSONResponse:
    """Filters combine with AND; ``custom.<key>=<value>`` filters on a custom field flagged
    ``filterable`` (a number also ``<low>..<high>``, either end left open)."""
    params = await _with_custom(params, request, app, principal, TASKS)
    items, cursor = await app.tasks.list(
        principal,
        view=params.view,
        scope=params.scope,
        status=params.status,
        tz=params.tz,
        filters=params.to_mongo(),
        sort=params.sort,
        cursor=params.cursor,
        limit=params.limit,
    )
    now = app.interactions.clock.now()
    out = [task_out(d, now) for d in items]
    return _page(principal, TASKS, TaskPage(items=out, next_cursor=cursor), out)


@tasks_router.get("/{task_id}", response_model=TaskOut, summary="One task")
async def get_task(task_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    return _task(app, principal, await app.tasks.get(principal, task_id))


@tasks_router.patch(
    "/{task_id}",
    response_model=TaskOut,
    summary="Change title, notes or assignee (send If-Match)",
    responses=problems(409, 412, 428),
)
async def patch_task(
    task_id: str, body: TaskPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    _ensure_writable(principal, TASKS, body, creating=False)
    doc = await app.tasks.update(principal, task_id, body, expected_version(request, required=True))
    return _task(app, principal, doc)


@tasks_router.post(
    "/{task_id}/reschedule",
    response_model=TaskOut,
    summary="Move the due and reminder times",
    responses=problems(409, 412),
)
async def reschedule_task(
    task_id: str, body: RescheduleIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    doc = await app.tasks.reschedule(principal, task_id, body, expected_version(request, required=False))
    return _task(app, principal, doc)


@tasks_router.post("/{task_id}/complete", response_model=TaskOut, summary="Mark done", responses=problems(409, 412))
async def complete_task(
    task_id: str, request: Request, principal: CurrentPrincipal, app: App, body: NoteBody | None = None
) -> JSONResponse:
    note = body.note if body else None
    doc = await app.tasks.complete(principal, task_id, note, expected_version(request, required=False))
    return _task(app, principal, doc)


@tasks_router.post(
    "/{task_id}/reopen", response_model=TaskOut, summary="Open a done task again", responses=problems(409, 412)
)
async def reopen_task(
    task_id: str, request: Request, principal: CurrentPrincipal, app: App, body: NoteBody | None = None
) -> JSONResponse:
    reason = body.note if body else None
    doc = await app.tasks.reopen(principal, task_id, reason, expected_version(request, required=False))
    return _task(app, principal, doc)


@tasks_router.delete(
    "/{task_id}", status_code=204, summary="Cancel the task (kept, hidden)", responses=problems(409, 412)
)
async def delete_task(
    task_id: str, request: Request, principal: CurrentPrincipal, app: App, reason: Reason = None
) -> Response:
    doc = await app.tasks.delete(principal, task_id, reason, expected_version(request, required=False))
    return Response(status_code=204, headers={"ETag": etag(doc["version"])})


@tasks_router.get("/{task_id}/history", response_model=list[HistoryEntry], summary="Every change and notice")
async def task_history(task_id: str, principal: CurrentPrincipal, app: App) -> list[HistoryEntry]:
    return await _history(app, principal, await app.tasks.get(principal, task_id))


# --- feedback -------------------------------------------------------------------------------------


@feedback_router.post(
    "",
    status_code=201,
    response_model=FeedbackOut,
    summary="Record a request, suggestion or complaint",
    responses=problems(409),
)
async def open_feedback(
    body: FeedbackIn, principal: CurrentPrincipal, app: App, key: IdempotencyKeyHeader
) -> JSONResponse:
    _ensure_writable(principal, FEEDBACK, body, creating=True)
    return mark_replayed(_feedback(principal, await app.feedback.open(principal, body, key), 201), key)


@feedback_router.get("", response_model=FeedbackPage, summary="Feedback you recorded, handle, or may see")
async def list_feedback(
    params: Annotated[FeedbackFilter, Query()], request: Request, principal: CurrentPrincipal, app: App
) -> FeedbackPage | JSONResponse:
    """Filters combine with AND; ``custom.<key>=<value>`` filters on a custom field flagged
    ``filterable`` (a number also ``<low>..<high>``, either end left open)."""
    params = await _with_custom(params, request, app, principal, FEEDBACK)
    items, cursor = await app.feedback.list(principal, params.to_mongo(), params.sort, params.cursor, params.limit)
    out = [feedback_out(d) for d in items]
    return _page(principal, FEEDBACK, FeedbackPage(items=out, next_cursor=cursor), out)


@feedback_router.get("/{feedback_id}", response_model=FeedbackOut, summary="One piece of feedback, with its steps")
async def get_feedback(feedback_id: str, principal: CurrentPrincipal, app: App) -> JSONResponse:
    return _feedback(principal, await app.feedback.get(principal, feedback_id))


@feedback_router.patch(
    "/{feedback_id}",
    response_model=FeedbackOut,
    summary="Change fields (send If-Match)",
    responses=problems(409, 412, 428),
)
async def patch_feedback(
    feedback_id: str, body: FeedbackPatch, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    _ensure_writable(principal, FEEDBACK, body, creating=False)
    doc = await app.feedback.update(principal, feedback_id, body, expected_version(request, required=True))
    return _feedback(principal, doc)


@feedback_router.post(
    "/{feedback_id}/transitions",
    response_model=FeedbackOut,
    summary="Move to another status: in_progress, resolved (with a resolution), closed, open (reopen); "
    "409 lists the allowed ones",
    responses=problems(409, 412),
)
async def transition_feedback(
    feedback_id: str, body: TransitionIn, request: Request, principal: CurrentPrincipal, app: App
) -> JSONResponse:
    # Resolving or closing sets the resolution and the rating: a role that protects them may not.
    principal.fields(FEEDBACK).ensure_writable(
        [n for n in ("resolution", "satisfaction") if getattr(body, n) is not None]
    )
    doc = await app.feedback.transition(principal, feedback_id, body, expected_version(request, required=False))
    return _feedback(principal, doc)


@feedback_router.get("/{feedback_id}/history", response_model=list[HistoryEntry], summary="Every step and change")
async def feedback_history(feedback_id: str, principal: CurrentPrincipal, app: App) -> list[HistoryEntry]:
    return await _history(app, principal, await app.feedback.get(principal, feedback_id))
