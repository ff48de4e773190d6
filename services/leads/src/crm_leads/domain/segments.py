"""A campaign's target segment (目标客群): customer tags (all of / any of) and the customers list's
filters, kept as a definition only (no I/O, no copy of customers).

The filters are named exactly as ``GET /v1/customers`` takes them, and their values are checked
here against what that list accepts, so :func:`customers_query` always gives a query string the
customers service takes as it is: it lists the segment's customers, each viewer seeing those
their own visibility reaches (tag filters are index-served there).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

Document = dict[str, Any]
MAX_TAGS = 20

# The values the customers list takes (crm_customers.domain.model: Kind, Size, Source, Tier,
# LifecycleStage). A service imports no other service's code: they are repeated here, and the
# round-trip test (tests/integration/test_segments.py) lists customers with every one of them.
Kind = Literal["company", "person"]
Size = Literal["1-20", "21-100", "101-500", "501-1000", "1000+"]
Source = Literal[
    "website",
    "inbound_call",
    "cold_call",
    "referral",
    "campaign",
    "exhibition",
    "social",
    "partner",
    "advertising",
    "lead_conversion",
    "other",
]
Tier = Literal["A", "B", "C"]
LifecycleStage = Literal["lead", "prospect", "customer", "repeat_customer", "dormant", "churned"]

#: The list filters a segment may hold, in the order the query string gives them.
FILTERS = (
    "kind",
    "industry",
    "size",
    "source",
    "tier",
    "lifecycle_stage",
    "province",
    "city",
    "owner_id",
    "department_id",
)


def _tag(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("a tag must not be empty")
    if "," in cleaned:
        # The customers list takes tags comma-separated: a comma would split this one in two.
        raise ValueError("a tag in a segment cannot contain a comma")
    return cleaned


def _text(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("must not be empty (leave the filter out instead)")
    return cleaned


Tag = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(_tag)]
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_text)]


class SegmentIn(BaseModel):
    """Who a campaign targets: customers with every tag of ``tags_all``, at least one of
    ``tags_any``, and each list filter given (all combine with AND). An empty segment is refused."""

    model_config = ConfigDict(extra="forbid")

    tags_all: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    tags_any: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    kind: Kind | None = None
    industry: Text | None = None
    size: Size | None = None
    source: Source | None = None
    tier: Tier | None = None
    lifecycle_stage: LifecycleStage | None = None
    province: Text | None = None
    city: Text | None = None
    owner_id: Text | None = None
    department_id: Text | None = None

    @field_validator("tags_all", "tags_any")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))

    def stored(self) -> Document:
        """The segment as the campaign keeps it: the tag lists always, the filters given."""
        out: Document = {"tags_all": list(self.tags_all), "tags_any": list(self.tags_any)}
        for name in FILTERS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def empty(segment: Document) -> bool:
    return not segment.get("tags_all") and not segment.get("tags_any") and not any(segment.get(f) for f in FILTERS)


def customers_query(segment: Document) -> str:
    """The query string of ``GET /v1/customers`` that lists exactly the segment's customers."""
    pairs: list[tuple[str, str]] = []
    if segment.get("tags_all"):
        pairs.append(("tags_all", ",".join(segment["tags_all"])))
    if segment.get("tags_any"):
        pairs.append(("tags_any", ",".join(segment["tags_any"])))
    pairs += [(name, str(segment[name])) for name in FILTERS if segment.get(name)]
    return urlencode(pairs)
