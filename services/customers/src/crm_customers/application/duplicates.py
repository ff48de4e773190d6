"""Duplicate checks (查重): exact key matches that block a create, fuzzy name matches that warn."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from crm_customers.adapters.repository import CustomerRepository
from crm_customers.domain.names import normalise_name
from crm_customers.domain.rules import name_grams
from crm_customers.domain.similarity import rank_candidates

Document = dict[str, Any]


class Match(BaseModel):
    customer_id: str
    name: str
    kind: str
    status: str
    owner_id: str | None = None
    department_id: str | None = None
    in_pool: bool = False
    matched_on: list[str] = Field(default_factory=list, description="Keys that matched: name, uscc, phones, emails.")
    similarity: float | None = Field(default=None, description="0-100, for similar names.")


class DuplicateReport(BaseModel):
    exact: list[Match] = Field(description="Records that are the same customer: creating it again is refused (409).")
    similar: list[Match] = Field(description="Records with a similar name: check before creating.")


def describe_match(candidate: Document, existing: Document) -> dict[str, Any]:
    matched: list[str] = []
    if (
        candidate.get("kind") == "company"
        and existing.get("kind") == "company"
        and (
            candidate.get("name_normalised") == existing.get("name_normalised")
            or candidate.get("name_normalised") in (existing.get("merged_names") or [])
        )
    ):
        matched.append("name")
    if candidate.get("uscc") and candidate.get("uscc") == existing.get("uscc"):
        matched.append("uscc")
    if set(candidate.get("match_phones") or []) & set(existing.get("match_phones") or []):
        matched.append("phones")
    if set(candidate.get("match_emails") or []) & set(existing.get("match_emails") or []):
        matched.append("emails")
    return Match(
        customer_id=existing["_id"],
        name=existing["name"],
        kind=existing["kind"],
        status=existing.get("status", "active"),
        owner_id=existing.get("owner_id"),
        department_id=existing.get("department_id"),
        in_pool=bool(existing.get("in_pool")),
        matched_on=matched,
    ).model_dump()


class DuplicateFinder:
    def __init__(self, repo: CustomerRepository, threshold: float) -> None:
        self._repo = repo
        self._threshold = threshold

    async def check(
        self,
        *,
        kind: str | None,
        name: str | None,
        uscc: str | None,
        phones: list[str],
        emails: list[str],
        exclude_id: str | None = None,
    ) -> DuplicateReport:
        normalised = normalise_name(name) if name else None
        candidate = {
            "kind": kind,
            "name_normalised": normalised,
            "uscc": uscc,
            "match_phones": phones,
            "match_emails": emails,
        }
        exact_docs = await self._repo.exact_matches(
            kind=kind, name_normalised=normalised, uscc=uscc, phones=phones, emails=emails, exclude_id=exclude_id
        )
        exact = [Match(**describe_match(candidate, d)) for d in exact_docs]
        similar: list[Match] = []
        if normalised:
            exact_ids = {m.customer_id for m in exact}
            pool = await self._repo.gram_candidates(name_grams(normalised), exclude_id)
            by_id = {d["_id"]: d for d in pool if d["_id"] not in exact_ids}
            ranked = rank_candidates(
                normalised, ((i, d["name_normalised"]) for i, d in by_id.items()), threshold=self._threshold
            )
            for customer_id, score in ranked:
                match = Match(**describe_match(candidate, by_id[customer_id]))
                match.similarity = round(score, 1)
                similar.append(match)
        return DuplicateReport(exact=exact, similar=similar)
