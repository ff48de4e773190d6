"""After a restore: a customer the topic shows at a newer version than the backup is restated.

``crm restore customers`` (crm_platform.backup) calls :func:`restater` for each customer whose
newest event on ``crm.customers.v1`` is newer than the backup's copy. Re-applying that event's
snapshot is not sound here: a snapshot leaves out the customer's own phones and emails, its
contacts' details, who changed it last and when it was followed up, so a document rebuilt
from it would mix two points in time. Instead the backup's state is written at the version
after the newest published one, with an event that says so:

* a customer in the backup: ``crm.customer.updated`` with its full snapshot and, as
  ``changes``, every snapshot field the restore took back (published value -> restored value);
  ``crm.customer.deleted`` or ``crm.customer.restored`` instead where the restore moves it into or
  out of the recycle bin, so consumers' reactions (hiding or showing its opportunities) follow;
* a customer created after the backup (not in it), or purged in it: a tombstone and
  ``crm.customer.purged``, as a purge leaves it: the restore forgot it, and so does every read
  copy (opportunities and follow-ups of it are hidden as for a purged customer).

Every consumer applies these by version, so read copies move to the restored state, and the
next ordinary write gets a version nobody has seen. Not undone downstream: a merge made after the
backup (the other services moved the duplicate's records to the survivor).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crm_customers.domain import rules
from crm_platform.backup import Restater
from crm_platform.clock import Clock
from crm_platform.contracts import customers as ev
from crm_platform.events import EventEnvelope, EventFactory

Document = dict[str, Any]
ACTOR = "system:restore"


class _At:
    """The restore's moment as a clock, for the event factory."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


def _changes(published: Document, restored: Document) -> list[ev.FieldChange]:
    before = published.get("data", {}).get("customer") or {}
    return [
        ev.FieldChange(field=name, old=before.get(name), new=value)
        for name, value in sorted(restored.items())
        if name in before and before.get(name) != value
    ]


def _published_status(published: Document) -> str | None:
    if published.get("type") == ev.PURGED.name:
        return "purged"
    customer = published.get("data", {}).get("customer") or {}
    status = customer.get("status")
    return str(status) if status is not None else None


def restater(source: str) -> Restater:
    """The customers service's restater (see crm_platform.backup.Restater)."""

    def restate(
        restored: Document | None, published: Document, version: int, now: datetime
    ) -> tuple[Document, Sequence[tuple[str, EventEnvelope]]]:
        clock: Clock = _At(now)
        events = EventFactory(source, clock)
        customer_id = str(published["subject"])
        if restored is None or restored.get("status") == "purged":
            tombstone: Document = dict(restored) if restored else {"_id": customer_id, "status": "purged"}
            tombstone.setdefault("purged", {"by": ACTOR, "at": now})
            return tombstone, [events(ev.PURGED, customer_id, ev.Purged(customer_id=customer_id), version, ACTOR)]
        snapshot = rules.snapshot(restored)
        was = _published_status(published)
        if snapshot.status == "deleted" and was != "deleted":
            deleted = ev.Deleted(customer=snapshot, reason="restored from a backup")
            return restored, [events(ev.DELETED, customer_id, deleted, version, ACTOR)]
        if snapshot.status == "active" and was in ("deleted", "purged"):
            back = ev.Restored(customer=snapshot)
            return restored, [events(ev.RESTORED, customer_id, back, version, ACTOR)]
        changes = _changes(published, snapshot.model_dump(mode="json"))
        data = ev.CustomerUpdated(customer=snapshot, changes=changes)
        return restored, [events(ev.CUSTOMER_UPDATED, customer_id, data, version, ACTOR)]

    return restate
