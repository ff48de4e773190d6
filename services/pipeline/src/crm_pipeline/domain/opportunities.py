"""The opportunity aggregate's rules: plain functions over the stored document, no I/O.

Stored shape (the API shape is in entrypoints/schemas.py): money as integer minor
units (``amount_minor``, ``quotation_minor``, products' ``unit_price_minor``) plus
``currency``; ``expected_close_date`` and the ``won_on``/``lost_on``/``created_on``
days as ISO date strings (they compare and sort as text on every store); the
stage as ``stage_id`` with its name and kind as of the last write; every move in
``stage_history``; and ``s``, the never-null sort keys list views sort on.

Probability: entering a stage sets ``stage_probability`` from the stage's default;
a rep's override (``probability_override``) wins over it and is kept across moves
until reset (PATCH ``probability: null``). Won is 100 and lost is 0 whatever the
override, which comes back if the deal is reopened.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from crm_pipeline.domain import lines as item_lines
from crm_pipeline.domain import money
from crm_pipeline.domain import requirements as req
from crm_pipeline.domain.model import DocumentIn, OpportunityCreate, OpportunityFields, ProductIn
from crm_platform.auth import Principal
from crm_platform.clock import as_utc
from crm_platform.contracts.pipeline import FieldChange, OpportunityLine, OpportunitySnapshot, StageMove
from crm_platform.customfields import day_number
from crm_platform.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from crm_platform.permissions import Permission
from crm_platform.sortkeys import epoch_ms

#: The data-scope modules this service honours (see the root README, "Who may do what").
OPPORTUNITIES = "opportunities"
TARGETS = "targets"

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: API sort keys -> stored, never-null fields.
SORT_FIELDS = {
    "name": "s.name",
    "amount": "s.amount",
    "weighted_amount": "s.weighted",
    "probability": "s.probability",
    # The day as an integer (YYYYMMDD): a range on an ISO date string is not index-served on the
    # embedded store, and every cursor page after the first is such a range.
    "expected_close_date": "s.close_day",
    "created_at": "s.created_at",
    "updated_at": "s.updated_at",
    "stage_entered_at": "s.stage_entered_at",
    "status": "s.status",
    "owner_id": "s.owner_id",
    "customer_id": "s.customer_id",
}


class FieldErrors:
    """Collects every bad field of a request, so one 422 lists them all."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, reason: str) -> None:
        self.errors.append(FieldError(field=field, reason=reason))

    def raise_any(self) -> None:
        if self.errors:
            raise ValidationFailed("; ".join(f"{e.field}: {e.reason}" for e in self.errors[:5]), errors=self.errors)


def local_day(moment: datetime, zone: ZoneInfo) -> str:
    return as_utc(moment).astimezone(zone).date().isoformat()


# --- derived fields -------------------------------------------------------------------------


def effective_probability(doc: Document) -> int:
    if doc["status"] == "won":
        return 100
    if doc["status"] == "lost":
        return 0
    override = doc.get("probability_override")
    return int(override if override is not None else doc.get("stage_probability", 0))


def refresh(doc: Document) -> Document:
    """Recompute what is derived: probability, weighted amount, sort keys."""
    doc["probability"] = effective_probability(doc)
    amount = doc.get("amount_minor")
    doc["weighted_minor"] = None if amount is None else money.weighted(amount, doc["probability"])
    # A plain indexed flag: managers list what waits for them without querying inside the array.
    doc["pending_approval"] = any(a["status"] == "pending" for a in doc.get("approvals") or [])
    doc["s"] = sort_keys(doc)
    return doc


#: The shape of the sort keys; documents stored with another are rewritten once at start-up.
SORT_KEYS_VERSION = 3  # 2: moments as epoch ms, the id's copy (s.id) as the last key; 3: days as YYYYMMDD


def sort_keys(doc: Document) -> Document:
    """The never-null, datetime-free copies of the fields lists sort on (see crm_platform.sortkeys).

    Moments are epoch milliseconds and the id is copied in as the tie-breaker: the embedded store
    serves a range on an indexed integer or string from its index, but reads every row for a
    range on a date or on ``_id``, and every cursor page after the first is such a range. The
    stored field names stay ``s.<key>``, so an older cursor (its values dates, its last key
    ``_id``) no longer names this sort and gets a 422 instead of a wrong page.

    Days (the expected close, won and creation days, stored as ISO date strings) are copied as the
    integer ``YYYYMMDD`` (0: none): the embedded store compares a string that looks like a date
    through ``datetime()``, which no index serves, so the list's expected-close filter and sort,
    the forecast and the funnel range over these copies instead (``s.close_day`` is a new name,
    so a cursor of the ISO-string sort gets a 422 too).
    """
    amount = doc.get("amount_minor")
    weighted = doc.get("weighted_minor")
    return {
        "v": SORT_KEYS_VERSION,
        "name": doc["name"].casefold(),
        "amount": -1 if amount is None else amount,
        "weighted": -1 if weighted is None else weighted,
        "probability": doc["probability"],
        "close_day": day_number(doc.get("expected_close_date")) or 0,
        "won_day": day_number(doc.get("won_on")) or 0,
        "created_day": day_number(doc.get("created_on")) or 0,
        "created_at": epoch_ms(doc["created_at"]),
        "updated_at": epoch_ms(doc["updated_at"]),
        "stage_entered_at": epoch_ms(doc["stage_entered_at"]),
        "status": doc["status"],
        "owner_id": doc.get("owner_id") or "",
        "customer_id": doc["customer_id"],
        "id": doc["_id"],
    }


def touch(doc: Document, actor: str, now: datetime) -> None:
    doc["updated_at"] = now
    doc["updated_by"] = actor
    if "s" in doc:  # the updated_at sort key follows (a stage move refreshed the keys before this)
        doc["s"] = sort_keys(doc)


# --- parsing input ---------------------------------------------------------------------------


def _money(errors: FieldErrors, field: str, text: str | None, currency: str) -> int | None:
    if text is None:
        return None
    try:
        return money.to_minor(text, currency)
    except money.InvalidMoney as exc:
        errors.add(field, str(exc))
        return None


def _products(errors: FieldErrors, products: list[ProductIn], currency: str) -> list[Document]:
    out = []
    for i, product in enumerate(products):
        unit = _money(errors, f"products[{i}].unit_price", product.unit_price, currency)
        if unit is None:
            continue
        out.append(
            {
                "name": product.name,
                "quantity": format(product.quantity.normalize(), "f"),
                "unit_price_minor": unit,
                "line_total_minor": money.line_total(product.quantity, unit),
            }
        )
    return out


def _currency(errors: FieldErrors, raw: str | None, default: str) -> str:
    try:
        return money.currency_code(raw or default)
    except money.InvalidMoney as exc:
        errors.add("currency", str(exc))
        return default


def _check_contacts(errors: FieldErrors, contact_ids: list[str], customer_contacts: set[str], customer_id: str) -> None:
    for i, contact_id in enumerate(contact_ids):
        if contact_id not in customer_contacts:
            errors.add(f"contact_ids[{i}]", f"{contact_id} is not a contact of customer {customer_id}")


def new_document(data: DocumentIn, actor: str, now: datetime) -> Document:
    return {
        "document_id": str(uuid.uuid4()),
        "kind": data.kind,
        "name": data.name,
        "url": str(data.url),
        "added_by": actor,
        "added_at": now,
    }


def products_total(products: list[Document]) -> int:
    return sum(p["line_total_minor"] for p in products)


# --- creation ---------------------------------------------------------------------------------


def owner_for(principal: Principal, data: OpportunityCreate) -> tuple[str, str | None, str | None]:
    """The creator owns it, unless a manager (within their subtree) or an admin names someone."""
    if not data.owner_id or (data.owner_id == principal.user_id and not data.department_path):
        return principal.user_id, principal.department_id, principal.department_path
    if not principal.holds(Permission.opportunities_assign):
        raise Forbidden("Creating an opportunity for someone else needs the permission opportunities:assign.")
    if not data.department_path:
        raise ValidationFailed.for_field("department_path", "give the new owner's department path")
    if not principal.reaches_path(data.department_path, OPPORTUNITIES):
        raise Forbidden("You may only give opportunities to people your opportunities scope reaches.")
    department_id = data.department_id or data.department_path.rstrip("/").rsplit("/", 1)[-1] or None
    return data.owner_id, department_id, data.department_path


def new_opportunity(
    data: OpportunityCreate,
    principal: Principal,
    pipeline: Document,
    stage: Document,
    customer_contacts: set[str],
    now: datetime,
    zone: ZoneInfo,
    default_currency: str,
    custom: Document | None = None,
) -> Document:
    """``custom``: the custom field values as validated against the definitions (defaults applied)."""
    errors = FieldErrors()
    currency = _currency(errors, data.currency, default_currency)
    amount = _money(errors, "amount", data.amount, currency)
    quotation = _money(errors, "quotation_amount", data.quotation_amount, currency)
    products = _products(errors, data.products, currency)
    from_products = amount is None and data.amount is None and bool(products)
    if from_products:
        amount = products_total(products)  # no amount given: the products add up to it
    _check_contacts(errors, data.contact_ids, customer_contacts, data.customer_id)
    if data.amount_follows_lines and data.amount is not None:
        errors.add("amount", "the amount follows the line items (amount_follows_lines); leave it out")
    if stage["kind"] != "open":
        errors.add("stage_id", "an opportunity starts in an open stage; win or lose it afterwards")
    errors.raise_any()
    owner_id, department_id, department_path = owner_for(principal, data)
    doc: Document = {
        "_id": str(uuid.uuid4()),
        "name": data.name,
        "customer_id": data.customer_id,
        "contact_ids": list(data.contact_ids),
        "amount_minor": amount,
        "amount_from_products": from_products,  # then it follows the products until an amount is sent
        "currency": currency,
        "quotation_minor": quotation,
        "expected_close_date": data.expected_close_date.isoformat() if data.expected_close_date else None,
        "probability_override": data.probability,
        "source_campaign": data.source_campaign,
        "products": products,
        "notes": data.notes,
        "documents": [new_document(d, principal.user_id, now) for d in data.documents],
        "approvals": [],
        "owner_id": owner_id,
        "department_id": department_id,
        "department_path": department_path,
        "pipeline_id": pipeline["_id"],
        "stage_id": stage["stage_id"],
        "stage_name": stage["name"],
        "stage_kind": stage["kind"],
        "stage_probability": stage["probability"],
        "stage_entered_at": now,
        "stage_history": [],
        "status": "open",
        "won": None,
        "lost": None,
        "won_on": "",
        "lost_on": "",
        "hidden": False,
        "hidden_reason": None,
        "created_at": now,
        "created_on": local_day(now, zone),
        "created_by": principal.user_id,
        "updated_at": now,
        "updated_by": principal.user_id,
        "custom": custom or {},
    }
    if data.amount_follows_lines:
        item_lines.set_lines(doc, [], True)  # no lines yet: the amount is their total, 0
    skipped = req.check(doc, pipeline, None, stage)
    doc["stage_history"].append(_history_entry("created", None, None, stage, principal.user_id, now, None, skipped))
    return refresh(doc)


# --- who may see and change it -------------------------------------------------------------------


def ensure_visible(principal: Principal, doc: Document | None, opportunity_id: str) -> Document:
    # Hidden (its customer is in the recycle bin) or not yours: reported as missing.
    if (
        doc is None
        or doc.get("hidden")
        or not principal.can_see_owned(doc.get("owner_id"), doc.get("department_path"), module=OPPORTUNITIES)
    ):
        raise NotFound(f"No opportunity with id {opportunity_id}.")
    return doc


def ensure_open(doc: Document) -> None:
    if doc["status"] != "open":
        raise Conflict(
            f"The opportunity is {doc['status']}: a closed deal is final. Reopen it first (POST /reopen).",
            extra={"opportunity_status": doc["status"]},
        )


def ensure_manager_of(principal: Principal, doc: Document, action: str) -> None:
    if principal.reaches_path(doc.get("department_path"), OPPORTUNITIES):
        return
    raise Forbidden(f"Only those whose opportunities scope reaches the department may {action}.")


# --- changes ---------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def public_value(doc: Document, field: str) -> Any:
    """A field as the API and the events show it (money as decimal strings)."""
    currency = doc["currency"]
    if field == "amount":
        return money.format_optional(doc.get("amount_minor"), currency)
    if field == "quotation_amount":
        return money.format_optional(doc.get("quotation_minor"), currency)
    if field == "products":
        return [product_out(p, currency) for p in doc.get("products") or []]
    if field == "probability":
        return doc.get("probability")
    if field == "amount_follows_lines":
        return bool(doc.get("amount_follows_lines"))
    return _jsonable(doc.get(field))


def product_out(product: Document, currency: str) -> Document:
    return {
        "name": product["name"],
        "quantity": product["quantity"],
        "unit_price": money.format_minor(product["unit_price_minor"], currency),
        "line_total": money.format_minor(product["line_total_minor"], currency),
    }


PATCH_FIELDS = (
    "name",
    "contact_ids",
    "amount",
    "currency",
    "expected_close_date",
    "probability",
    "source_campaign",
    "products",
    "notes",
    "quotation_amount",
    "probability_override",
    "amount_follows_lines",
)


def apply_patch(doc: Document, patch: OpportunityFields, customer_contacts: set[str]) -> list[FieldChange]:
    """Apply the fields the client sent; return what really changed (possibly nothing)."""
    sent = patch.model_fields_set
    before = {f: public_value(doc, f) for f in PATCH_FIELDS}
    errors = FieldErrors()
    old_currency = doc["currency"]
    currency = old_currency
    if "currency" in sent:
        if patch.currency is None:
            errors.add("currency", "must not be null")
        else:
            currency = _currency(errors, patch.currency, old_currency)

    def reparse(field: str, stored: str) -> None:
        # Amounts not sent keep their value in the new currency (or are refused if it cannot hold them).
        text = getattr(patch, field) if field in sent else money.format_optional(doc.get(stored), old_currency)
        doc[stored] = _money(errors, field, text, currency)

    reparse("amount", "amount_minor")
    reparse("quotation_amount", "quotation_minor")
    if "products" in sent or currency != old_currency:
        if "products" in sent:
            products = _products(errors, patch.products or [], currency)
        else:
            products = []
            for i, p in enumerate(doc.get("products") or []):
                unit = _money(
                    errors,
                    f"products[{i}].unit_price",
                    money.format_minor(p["unit_price_minor"], old_currency),
                    currency,
                )
                if unit is not None:
                    products.append(
                        {
                            **p,
                            "unit_price_minor": unit,
                            "line_total_minor": money.line_total(Decimal(p["quantity"]), unit),
                        }
                    )
        doc["products"] = products
        if "amount" not in sent and (doc.get("amount_minor") is None or doc.get("amount_from_products")):
            doc["amount_from_products"] = bool(products)
            doc["amount_minor"] = products_total(products) if products else None
    if "amount" in sent:
        doc["amount_from_products"] = False
    item_lines.patch_follow(errors, doc, patch, sent, old_currency, currency)
    doc["currency"] = currency
    if "name" in sent:
        if patch.name is None:
            errors.add("name", "must not be null")
        else:
            doc["name"] = patch.name
    if "contact_ids" in sent:
        ids = list(patch.contact_ids or [])
        _check_contacts(errors, ids, customer_contacts, doc["customer_id"])
        doc["contact_ids"] = ids
    if "expected_close_date" in sent:
        doc["expected_close_date"] = patch.expected_close_date.isoformat() if patch.expected_close_date else None
    if "probability" in sent:
        doc["probability_override"] = patch.probability
    for name in ("source_campaign", "notes"):
        if name in sent:
            doc[name] = getattr(patch, name)
    errors.raise_any()
    refresh(doc)
    after = {f: public_value(doc, f) for f in PATCH_FIELDS}
    out = [FieldChange(field=f, old=before[f], new=after[f]) for f in PATCH_FIELDS if before[f] != after[f]]
    return out


def _history_entry(
    kind: str,
    from_id: str | None,
    from_name: str | None,
    to: Document,
    actor: str,
    now: datetime,
    seconds: float | None,
    skipped: list[str],
    reason: str | None = None,
) -> Document:
    return {
        "kind": kind,
        "from_stage_id": from_id,
        "from_stage_name": from_name,
        "to_stage_id": to["stage_id"],
        "to_stage_name": to["name"],
        "to_stage_kind": to["kind"],
        "by": actor,
        "at": now,
        "seconds_in_previous": seconds,
        "skipped": skipped,
        "reason": reason,
    }


def _enter(
    doc: Document, stage: Document, actor: str, now: datetime, kind: str, skipped: list[str], reason: str | None = None
) -> StageMove:
    seconds = max((now - as_utc(doc["stage_entered_at"])).total_seconds(), 0.0)
    move = StageMove(
        from_stage_id=doc["stage_id"],
        from_stage_name=doc["stage_name"],
        to_stage_id=stage["stage_id"],
        to_stage_name=stage["name"],
        moved_by=actor,
        moved_at=now,
        time_in_previous_stage_seconds=seconds,
        skipped_stage_ids=skipped,
    )
    doc["stage_history"] = [
        *list(doc.get("stage_history") or []),
        _history_entry(kind, doc["stage_id"], doc["stage_name"], stage, actor, now, seconds, skipped, reason),
    ]
    doc["stage_id"] = stage["stage_id"]
    doc["stage_name"] = stage["name"]
    doc["stage_kind"] = stage["kind"]
    doc["stage_probability"] = stage["probability"]
    doc["stage_entered_at"] = now
    return move


def move(doc: Document, pipeline: Document, target: Document, actor: str, now: datetime) -> StageMove | None:
    """Move to another open stage (None: it is already there)."""
    ensure_open(doc)
    if target["kind"] != "open":
        verb = "win" if target["kind"] == "won" else "lose"
        raise ValidationFailed.for_field(
            "stage_id", f"{target['name']} is a {target['kind']} stage: use POST /{verb} (with a reason)"
        )
    if target["stage_id"] == doc["stage_id"]:
        return None
    skipped = req.check(doc, pipeline, doc["stage_id"], target)
    stage_move = _enter(doc, target, actor, now, "moved", skipped)
    refresh(doc)
    return stage_move


def win(
    doc: Document, pipeline: Document, won_stage: Document, actor: str, now: datetime, reason: str, zone: ZoneInfo
) -> StageMove:
    ensure_open(doc)
    skipped = req.check(doc, pipeline, doc["stage_id"], won_stage)
    stage_move = _enter(doc, won_stage, actor, now, "won", skipped, reason)
    doc["status"] = "won"
    doc["won"] = {"by": actor, "at": now, "reason": reason}
    doc["won_on"] = local_day(now, zone)
    refresh(doc)
    return stage_move


def lose(
    doc: Document, lost_stage: Document, actor: str, now: datetime, reason: str, competitor: str | None, zone: ZoneInfo
) -> StageMove:
    ensure_open(doc)
    stage_move = _enter(doc, lost_stage, actor, now, "lost", [], reason)
    doc["status"] = "lost"
    doc["lost"] = {"by": actor, "at": now, "reason": reason, "competitor": competitor}
    doc["lost_on"] = local_day(now, zone)
    refresh(doc)
    return stage_move


def reopen(doc: Document, target: Document, principal: Principal, now: datetime, reason: str) -> tuple[StageMove, str]:
    previous = doc["status"]
    if previous == "open":
        raise Conflict("The opportunity is open already.")
    if previous == "won":
        # Reopening a won deal takes revenue back out of the numbers: a manager's call.
        ensure_manager_of(principal, doc, "reopen a won opportunity")
    if target["kind"] != "open":
        raise ValidationFailed.for_field("stage_id", "reopen into an open stage")
    stage_move = _enter(doc, target, principal.user_id, now, "reopened", [], reason)
    doc["status"] = "open"
    doc["won_on"] = ""
    doc["lost_on"] = ""
    doc["reopened"] = {
        "by": principal.user_id,
        "at": now,
        "reason": reason,
        "previous_status": previous,
        "previous": doc.get(previous),
    }
    doc["won"] = None
    doc["lost"] = None
    refresh(doc)
    return stage_move, previous


def assign(doc: Document, owner_id: str, department_id: str | None, department_path: str) -> tuple[str, str | None]:
    previous = (doc["owner_id"], doc.get("department_path"))
    doc["owner_id"] = owner_id
    doc["department_id"] = department_id or department_path.rstrip("/").rsplit("/", 1)[-1] or None
    doc["department_path"] = department_path
    refresh(doc)
    return previous


def add_document(doc: Document, data: DocumentIn, actor: str, now: datetime) -> Document:
    document = new_document(data, actor, now)
    doc["documents"] = [*list(doc.get("documents") or []), document]
    return document


def remove_document(doc: Document, document_id: str) -> Document:
    documents = list(doc.get("documents") or [])
    found: Document | None = next((d for d in documents if d["document_id"] == document_id), None)
    if found is None:
        raise NotFound(f"The opportunity has no document {document_id}.")
    doc["documents"] = [d for d in documents if d["document_id"] != document_id]
    return found


def document_out(document: Document) -> Document:
    return {k: _jsonable(v) for k, v in document.items()}


def set_approval(doc: Document, entry: Document) -> Document | None:
    """Replace the stage's approval entry; return the previous one."""
    approvals = list(doc.get("approvals") or [])
    previous = next((a for a in approvals if a["stage_id"] == entry["stage_id"]), None)
    doc["approvals"] = [a for a in approvals if a["stage_id"] != entry["stage_id"]] + [entry]
    return previous


def snapshot(doc: Document) -> OpportunitySnapshot:
    currency = doc["currency"]
    return OpportunitySnapshot(
        opportunity_id=doc["_id"],
        name=doc["name"],
        customer_id=doc["customer_id"],
        contact_ids=list(doc.get("contact_ids") or []),
        amount=money.format_optional(doc.get("amount_minor"), currency),
        currency=currency,
        quotation_amount=money.format_optional(doc.get("quotation_minor"), currency),
        probability=doc["probability"],
        probability_overridden=doc.get("probability_override") is not None,
        weighted_amount=money.format_optional(doc.get("weighted_minor"), currency),
        expected_close_date=doc.get("expected_close_date"),
        pipeline_id=doc["pipeline_id"],
        stage_id=doc["stage_id"],
        stage_name=doc["stage_name"],
        stage_kind=doc["stage_kind"],
        stage_entered_at=doc["stage_entered_at"],
        status=doc["status"],
        won_on=doc.get("won_on") or None,
        lost_on=doc.get("lost_on") or None,
        owner_id=doc["owner_id"],
        department_id=doc.get("department_id"),
        department_path=doc.get("department_path"),
        source_campaign=doc.get("source_campaign"),
        document_kinds=sorted({d["kind"] for d in doc.get("documents") or []}),
        hidden=bool(doc.get("hidden")),
        created_at=doc["created_at"],
        created_by=doc.get("created_by"),
        updated_at=doc["updated_at"],
        custom=dict(doc.get("custom") or {}),
        lead_id=doc.get("lead_id"),
        lines=[OpportunityLine(**line) for line in item_lines.lines_out(doc)],
        lines_total=item_lines.lines_total_out(doc),
        amount_follows_lines=bool(doc.get("amount_follows_lines")),
    )


def apply_custom(doc: Document, custom: Document) -> list[FieldChange]:
    """Set the custom field values (validated already); what changed, each as ``custom.<key>``."""
    old = doc.get("custom") or {}
    changes = [
        FieldChange(field=f"custom.{key}", old=old.get(key), new=custom.get(key))
        for key in sorted(set(old) | set(custom))
        if old.get(key) != custom.get(key)
    ]
    doc["custom"] = custom
    return changes
