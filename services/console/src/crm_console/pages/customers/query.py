"""The customers list's query: the form's fields, and how they become the customers API's.

Two spellings of one query exist. The console's own URL carries the form as a person filled it
(dates as days, the sort as up to four key/direction pairs); the API takes the same filters under
the same names but moments with a zone and the sort as ``-tier,name``. :meth:`ListQuery.api_params`
gives the API's spelling, which is also what a saved view stores and what a row's ``?from=`` link
passes on to the customer page (so it can ask ``/v1/customers/{id}/neighbours`` with it).
:class:`ListQuery` reads both spellings, so a saved view's query opens as a console URL as it is.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, ConfigDict, model_validator

from crm_console.web import zone

PAGE_SIZE = 20
MAX_SORT_KEYS = 4
DEFAULT_SORT = "-updated_at"

# The API's sort keys (customers service, domain/rules.py SORT_FIELDS), in the order the menu offers them.
SORT_KEYS = (
    "updated_at",
    "created_at",
    "name",
    "last_followed_up_at",
    "tier",
    "lifecycle_stage",
    "kind",
    "industry",
    "size",
    "source",
    "owner_id",
    "province",
    "city",
)
KINDS = ("company", "person")
TIERS = ("A", "B", "C")
STAGES = ("lead", "prospect", "customer", "repeat_customer", "dormant", "churned")
SIZES = ("1-20", "21-100", "101-500", "501-1000", "1000+")
SOURCES = (
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
)

#: Filters passed to the API under the same name and value.
PLAIN_FILTERS = (
    "q",
    "kind",
    "tier",
    "lifecycle_stage",
    "industry",
    "size",
    "source",
    "province",
    "city",
    "owner_id",
    "department_id",
    "in_pool",
    "locked",
    "phone",
    "uscc",
    "tags_all",
    "tags_any",
    "never_followed_up",
)
#: Day filters: (form field, API field, whether the day is the end of the range).
DAY_FILTERS = (
    ("created_from", False),
    ("created_to", True),
    ("updated_from", False),
    ("updated_to", True),
)

#: Every filter of the customers API's list (``GET /v1/customers``, and its neighbours endpoint)
#: and the sort: a list's query in the API's spelling holds only these. The form offers most of
#: them; the others (a district, an email, follow-up moments) can come from a saved view.
API_LIST_KEYS = frozenset(
    {
        *PLAIN_FILTERS,
        *(name for name, _ in DAY_FILTERS),
        "district",
        "email",
        "followed_up_from",
        "followed_up_to",
        "sort",
    }
)


def api_list_params(query_string: str) -> dict[str, str]:
    """A list's query string in the API's spelling (a row's ``?from=``) as the API's parameters:
    its filters and sort, nothing else (no cursor, no limit)."""
    return {k: v for k, v in parse_qsl(query_string) if k in API_LIST_KEYS and v}


class ListQuery(BaseModel):
    """The list form's fields; empty ones are left out everywhere."""

    model_config = ConfigDict(extra="ignore")

    q: str = ""
    kind: str = ""
    tier: str = ""
    lifecycle_stage: str = ""
    industry: str = ""
    size: str = ""
    source: str = ""
    province: str = ""
    city: str = ""
    owner_id: str = ""
    department_id: str = ""
    in_pool: str = ""
    locked: str = ""
    phone: str = ""
    uscc: str = ""
    tags_all: str = ""
    tags_any: str = ""
    never_followed_up: str = ""
    created_from: str = ""
    created_to: str = ""
    updated_from: str = ""
    updated_to: str = ""
    bin: str = ""  # "1": the recycle bin instead of the active customers (managers, admins)
    s1: str = ""
    d1: str = ""
    s2: str = ""
    d2: str = ""
    s3: str = ""
    d3: str = ""
    s4: str = ""
    d4: str = ""
    sort: str = ""  # the API's spelling (a saved view, an old link): read into s1..s4
    cursor: str = ""
    timezone: str = "Asia/Shanghai"  # set by the handler from the session, never from the URL

    @model_validator(mode="before")
    @classmethod
    def _read_api_spelling(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k != "timezone"}
        sort = str(data.get("sort") or "")
        if sort and not data.get("s1"):
            for i, part in enumerate([p.strip() for p in sort.split(",") if p.strip()][:MAX_SORT_KEYS], start=1):
                data[f"s{i}"] = part.lstrip("+-")
                data[f"d{i}"] = "desc" if part.startswith("-") else "asc"
        return data

    @classmethod
    def parse(cls, query_string: str, timezone: str) -> ListQuery:
        """A list's query string, in either spelling (the console URL's, a saved view's)."""
        return cls.model_validate(dict(parse_qsl(query_string))).with_zone(timezone)

    def with_zone(self, timezone: str) -> ListQuery:
        return self.model_copy(update={"timezone": timezone})

    # --- the sort -------------------------------------------------------------------------

    def sort_keys(self) -> list[tuple[str, str]]:
        """(key, "asc"|"desc") for the four sort rows of the form (blank rows included)."""
        values = self.model_dump()
        return [(values[f"s{i}"], values[f"d{i}"] or "asc") for i in range(1, MAX_SORT_KEYS + 1)]

    def api_sort(self) -> str:
        parts: list[str] = []
        for key, direction in self.sort_keys():
            if key and key not in [p.lstrip("-") for p in parts]:
                parts.append(("-" if direction == "desc" else "") + key)
        return ",".join(parts)

    # --- the filters ----------------------------------------------------------------------

    def _day(self, value: str, end: bool) -> str:
        """A day of the form as the API's moment: its start (or the next day's, for "to": the API's
        upper bound is exclusive) in the user's zone. A value that is not a day goes as it is (a
        saved view's moment), and the API's 422 marks the field if it is wrong."""
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return value
        if end:
            day += timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=zone(self.timezone)).isoformat()

    def form_day(self, name: str) -> str:
        """The value a ``type=date`` input shows: the day, also when the query holds a moment."""
        value: str = getattr(self, name)
        if not value or len(value) == 10:
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            moment = moment.astimezone(zone(self.timezone))
        day = moment.date()
        if name.endswith("_to") and moment.time() == datetime.min.time():
            day -= timedelta(days=1)
        return day.isoformat()

    def api_filters(self) -> dict[str, str]:
        """The filters and the sort as the API names them (a saved view's query)."""
        values = self.model_dump()
        params = {name: values[name].strip() for name in PLAIN_FILTERS if values[name].strip()}
        for name, end in DAY_FILTERS:
            if values[name]:
                params[name] = self._day(values[name], end)
        if sort := self.api_sort():
            params["sort"] = sort
        return params

    def api_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {**self.api_filters(), "limit": PAGE_SIZE}
        if self.cursor:
            params["cursor"] = self.cursor
        return params

    def in_bin(self) -> bool:
        return self.bin == "1"

    def form_params(self) -> dict[str, str]:
        """The console URL's query for these filters (no cursor)."""
        values = self.model_dump(exclude={"cursor", "sort", "timezone"})
        return {k: v for k, v in values.items() if v and not (k.startswith("d") and k[1:].isdigit() and v == "asc")}

    def query_string(self) -> str:
        return urlencode(self.form_params())

    def next_query(self, cursor: str) -> str:
        return urlencode({**self.form_params(), "cursor": cursor})

    def from_query(self) -> str:
        """What a row's link carries as ``?from=``: the API's filters and sort of this list."""
        return urlencode(self.api_filters())

    def active_filters(self) -> int:
        """How many filters are set (shown on the "more filters" toggle)."""
        return len(self.api_filters()) - (1 if "sort" in self.api_filters() else 0)
