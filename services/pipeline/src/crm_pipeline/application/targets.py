"""Targets (目标) per rep and per department, and the forecast (预测) against them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from crm_pipeline.adapters.repository import Repository
from crm_pipeline.application.queries import day_range, subtree, visibility_within
from crm_pipeline.domain import forecast as fc
from crm_pipeline.domain import money
from crm_pipeline.domain.model import TargetIn
from crm_pipeline.domain.opportunities import OPPORTUNITIES, TARGETS
from crm_pipeline.domain.periods import InvalidPeriod, Period, parse_period
from crm_pipeline.settings import PipelineSettings
from crm_platform.auth import Principal
from crm_platform.clock import Clock
from crm_platform.contracts import pipeline as ev
from crm_platform.errors import Forbidden, NotFound, ValidationFailed
from crm_platform.events import EventFactory
from crm_platform.listing import all_of
from crm_platform.permissions import Permission
from crm_platform.readmodels.directory import DirectoryReadModel
from crm_platform.store import Change

Document = dict[str, Any]
Scope = Literal["rep", "department"]


def period_from(text: str, field: str = "period", location: str = "path") -> Period:
    try:
        return parse_period(text)
    except InvalidPeriod as exc:
        raise ValidationFailed.for_field(field, str(exc), location) from exc


def currency_from(raw: str | None, default: str, field: str = "currency", location: str = "body") -> str:
    try:
        return money.currency_code(raw or default)
    except money.InvalidMoney as exc:
        raise ValidationFailed.for_field(field, str(exc), location) from exc


def can_see_target(principal: Principal, doc: Document) -> bool:
    if principal.reaches_path(doc.get("department_path"), TARGETS):
        return True
    return bool(doc["scope"] == "rep" and doc["scope_id"] == principal.user_id)


def target_data(doc: Document) -> ev.TargetData:
    return ev.TargetData(
        target_id=doc["_id"],
        scope=doc["scope"],
        scope_id=doc["scope_id"],
        department_path=doc.get("department_path"),
        period=doc["period"],
        period_start=doc["period_start"],
        period_end=doc["period_end"],
        amount=money.format_minor(doc["amount_minor"], doc["currency"]),
        currency=doc["currency"],
        set_by=doc["set_by"],
        set_at=doc["set_at"],
    )


class Forecast(BaseModel):
    period: str
    period_start: str
    period_end: str
    scope: Scope
    scope_id: str
    currency: str
    target: str | None
    target_source: str
    target_parts: list[str]
    won: str
    won_count: int
    pipeline: str
    weighted_pipeline: str
    open_count: int
    remaining: str | None
    gap: str | None
    attainment: float | None
    other_currencies: dict[str, int]


class Targets:
    def __init__(
        self,
        repo: Repository,
        clock: Clock,
        settings: PipelineSettings,
        events: EventFactory,
        directory: DirectoryReadModel | None = None,
    ) -> None:
        self.directory = directory
        self.repo = repo
        self.clock = clock
        self.settings = settings
        self.event = events

    # --- targets ---------------------------------------------------------------------------------

    async def _scope_path(self, scope: Scope, scope_id: str, given: str | None) -> str:
        """The department path of the target's rep or department: the directory's, or as given.

        The directory's read copy is the truth for those it knows (a manager can not file a rep
        under their own subtree to set that rep's target); a path in the request is only for
        people and departments it does not know.
        """
        known: Document | None = None
        if self.directory is not None:
            if scope == "rep":
                known = await self.directory.user(scope_id)
            else:
                known = await self.directory.department(scope_id)
        if known is not None:
            path = str(known.get("department_path") if scope == "rep" else known.get("path"))
            if given is not None and given.rstrip("/") != path.rstrip("/"):
                raise ValidationFailed.for_field("department_path", f"the directory has {scope_id} in {path}")
            return path
        if given is None:
            raise ValidationFailed.for_field(
                "department_path", f"required: the directory does not know {scope} {scope_id} (yet)"
            )
        return given

    async def set(
        self,
        principal: Principal,
        scope: Scope,
        scope_id: str,
        period_text: str,
        data: TargetIn,
        expected_version: int | None,
    ) -> Document:
        principal.require(Permission.targets_set)
        period = period_from(period_text)
        path = (await self._scope_path(scope, scope_id, data.department_path)).rstrip("/") or "/"
        if scope == "department" and path.rsplit("/", 1)[-1] != scope_id:
            raise ValidationFailed.for_field("department_path", f"a department's path ends with its id ('{scope_id}')")
        if not principal.reaches_path(path, TARGETS):
            raise Forbidden("Targets are set within the departments your targets scope reaches.")
        currency = currency_from(data.currency, self.settings.default_currency)
        try:
            amount = money.to_minor(data.amount, currency)
        except money.InvalidMoney as exc:
            raise ValidationFailed.for_field("amount", str(exc)) from exc
        target_id = f"{scope}:{scope_id}:{period}"
        now = self.clock.now()
        fields = {
            "scope": scope,
            "scope_id": scope_id,
            "department_path": path,
            "department_id": path.rsplit("/", 1)[-1] or None,
            "period": str(period),
            "period_kind": period.kind,
            "year": period.year,
            "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(),
            "amount_minor": amount,
            "currency": currency,
            "set_by": principal.user_id,
            "set_at": now,
        }

        def decide(doc: Document, version: int) -> Change:
            if not can_see_target(principal, doc):
                raise Forbidden("This target belongs to a department your targets scope does not reach.")
            previous = money.format_minor(doc["amount_minor"], doc["currency"])
            if all(doc.get(k) == v for k, v in fields.items() if k not in ("set_by", "set_at")):
                return Change(None)
            doc.update(fields)
            data_ = ev.TargetSet(target=target_data(doc), previous_amount=previous)
            return Change(doc, [self.event(ev.TARGET_SET, target_id, data_, version, principal.user_id)])

        if await self.repo.target(target_id) is None:
            if expected_version is not None:
                raise NotFound(
                    f"No target {target_id} to match If-Match against; send the PUT without it to create one."
                )
            doc = {"_id": target_id, **fields, "created_at": now}
            try:
                return await self.repo.target_store.insert(
                    doc,
                    [self.event(ev.TARGET_SET, target_id, ev.TargetSet(target=target_data(doc)), 1, principal.user_id)],
                )
            except DuplicateKeyError:
                pass  # set by someone else a moment ago: update it like any existing target
        return await self.repo.target_store.mutate(target_id, decide, expected_version=expected_version)

    async def get(self, principal: Principal, scope: Scope, scope_id: str, period_text: str) -> Document:
        target_id = f"{scope}:{scope_id}:{period_from(period_text)}"
        doc = await self.repo.target(target_id)
        if doc is None or not can_see_target(principal, doc):
            raise NotFound(f"No target {target_id}.")
        return doc

    async def list(
        self, principal: Principal, year: int, department: str | None, scope: Scope | None
    ) -> list[Document]:
        query: Document = {"year": year}
        if scope:
            query["scope"] = scope
        if department:
            query["department_path"] = subtree(department)
        docs = [d for d in await self.repo.targets_where(query) if can_see_target(principal, d)]
        return sorted(
            docs,
            key=lambda d: (
                d.get("department_path") or "",
                d["scope"],
                d["scope_id"],
                d["period_start"],
                d["period_kind"],
            ),
        )

    # --- the forecast --------------------------------------------------------------------------------

    async def forecast(
        self, principal: Principal, period_text: str, rep: str | None, department: str | None, currency_raw: str | None
    ) -> Forecast:
        period = period_from(period_text, location="query")
        currency = currency_from(currency_raw, self.settings.default_currency, location="query")
        if rep and department:
            raise ValidationFailed.for_field("department", "give either rep or department, not both", "query")
        if department:
            department = department.rstrip("/") or "/"
            if not principal.reaches_path(department, OPPORTUNITIES):
                raise Forbidden("A department's forecast is for those whose opportunities scope reaches it.")
            scope: Scope = "department"
            scope_id = department
            scope_filter: Document = {"department_path": subtree(department)}
            resolved = await self._department_target(period, department, currency)
        else:
            rep = rep or principal.user_id
            if rep != principal.user_id and not principal.reaches_beyond_own(OPPORTUNITIES):
                raise Forbidden("An opportunities scope of own sees its own forecast only.")
            scope, scope_id = "rep", rep
            scope_filter = {"owner_id": rep}
            targets = await self.repo.targets_where(
                {"scope": "rep", "scope_id": rep, "year": period.year, "currency": currency}
            )
            targets = [t for t in targets if can_see_target(principal, t)]
            resolved = fc.resolve(period, {t["period"]: t["amount_minor"] for t in targets})
        visibility = visibility_within(principal, department)
        start, end = period.start.isoformat(), period.end.isoformat()

        async def query(*clauses: Document) -> list[Document]:
            # Flat, so the store can use an index; visibility's $or runs per alternative.
            wanted = all_of({"hidden": False}, scope_filter, *clauses, visibility)
            return await self.repo.opportunities_where(
                wanted, projection={"amount_minor": 1, "currency": 1, "probability": 1, "status": 1}
            )

        # On the days' integer copies: a range on an ISO date string scans on the embedded store.
        days = day_range(period.start, period.end, end_exclusive=True)
        won = await query({"status": "won"}, {"s.won_day": days})
        open_ = await query({"status": "open"}, {"s.close_day": days})
        others: dict[str, int] = {}
        for doc in won + open_:
            if doc["currency"] != currency:
                others[doc["currency"]] = others.get(doc["currency"], 0) + 1
        figures = fc.figures(
            resolved.amount_minor,
            [d for d in won if d["currency"] == currency],
            [d for d in open_ if d["currency"] == currency],
        )

        def fmt(minor: int | None) -> str | None:
            return money.format_optional(minor, currency)

        return Forecast(
            period=str(period),
            period_start=start,
            period_end=end,
            scope=scope,
            scope_id=scope_id,
            currency=currency,
            target=fmt(figures.target_minor),
            target_source=resolved.source,
            target_parts=resolved.parts,
            won=money.format_minor(figures.won_minor, currency),
            won_count=figures.won_count,
            pipeline=money.format_minor(figures.pipeline_minor, currency),
            weighted_pipeline=money.format_minor(figures.weighted_minor, currency),
            open_count=figures.open_count,
            remaining=fmt(figures.remaining_minor),
            gap=fmt(figures.gap_minor),
            attainment=figures.attainment,
            other_currencies=others,
        )

    async def _department_target(self, period: Period, department: str, currency: str) -> fc.ResolvedTarget:
        found = await self.repo.targets_where(
            {"department_path": subtree(department), "year": period.year, "currency": currency}
        )
        departments: dict[str, fc.TargetsByPeriod] = {}
        reps: dict[str, tuple[str | None, fc.TargetsByPeriod]] = {}
        for t in found:
            if t["scope"] == "department":
                departments.setdefault(t["department_path"], {})[t["period"]] = t["amount_minor"]
            else:
                _, periods = reps.setdefault(t["scope_id"], (t.get("department_path"), {}))
                periods[t["period"]] = t["amount_minor"]
        return fc.resolve_department(period, department, departments, [(r, p, t) for r, (p, t) in reps.items()])
