"""The customers service's store commands are index lookups on the embedded store (SQLite plans).

The service runs in-process against a store that records and plans every SQL statement
(:mod:`crm_platform.testing.query_plans`), filled with enough customers that SQLite prefers
an index when one serves; each test drives a real path through the API and fails, printing
the statement and its plan, if anything it ran reads a whole collection.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crm_customers.application.queries import CustomerFilter
from crm_customers.application.transfer import record_export
from crm_customers.domain.rules import SORT_FIELDS
from crm_customers.main import create_app
from crm_customers.settings import CustomersSettings
from crm_platform.auth import Principal, Role
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import TEST_JWT_SECRET, auth, eventually, running, unique
from crm_platform.testing.plans import origin_commands, settled_commands
from crm_platform.testing.query_plans import Capture, TracedStore
from crm_platform.testing.roles import define_role

FILL = 400  # customers created before measuring, spread over reps and departments
#: A custom role whose customers scope is "department": the path's equality must be index-served too.
DEPT_ROLE = "plans-department"


#: Collections whose size does not grow with the customers: the pool's claim rules (one per
#: department at most) are read whole by a claim, which is fine.
SMALL = ("pool_claim_rules",)


def assert_indexed(
    capture: Capture, *, sorted_results: bool = False, unkeyed_sorts: bool = False, row_filters: bool = True
) -> None:
    assert capture.statements, "nothing was recorded"
    scans = [
        s
        for s in capture.scans(sorted_results=sorted_results, unkeyed_sorts=unkeyed_sorts, row_filters=row_filters)
        if not any(f"FROM {t} " in s.sql for t in SMALL)
    ]
    assert not scans, "statements that scan:\n" + "\n".join(s.describe() for s in scans)


@pytest.fixture(scope="module")
async def plans_client(backend: Backend, traced_store: TracedStore) -> AsyncIterator[httpx.AsyncClient]:
    settings = CustomersSettings(
        kafka_bootstrap_servers=backend.kafka_bootstrap,
        kafka_enable_idempotence=backend.kafka_enable_idempotence,
        mongo_url=traced_store.url,
        mongo_database=f"crm_customers_plans_{uuid.uuid4().hex[:8]}",
        consumer_group_suffix=f".plans-{uuid.uuid4().hex[:8]}",
        jwt_secret=TEST_JWT_SECRET,  # type: ignore[arg-type]
        log_format="console",
        log_level="WARNING",
        max_customers_per_rep=1000,
    )
    app = create_app(settings)
    # The claim rules are read again every 2 s (and after a claim-rules event): a read that a slow
    # run meets inside a measure below is that cache's, not the create's. Kept for this module.
    app.state.customers.claim_rules.max_age_seconds = 3600
    async with running(app, "http://customers.test") as client:
        for i in range(FILL):
            body = {
                "kind": "company",
                "name": f"填充{i:05d}{uuid.uuid4().hex[:6]}有限公司",
                "phones": [f"137{i:08d}"],
                "emails": [f"fill{i}-{uuid.uuid4().hex[:4]}@example.com"],
                "tags": ["华东", f"t{i % 7}"],
            }
            r = await client.post(
                "/v1/customers", json=body, headers=auth(f"fill-rep-{i % 10}", department_path=f"/hq/d{i % 3}")
            )
            assert r.status_code == 201, r.text
        await define_role(app, DEPT_ROLE, ["customers:view", "customers:export"], {"customers": "department"})
        yield client


async def test_create_is_index_lookups(plans_client: httpx.AsyncClient, traced_store: TracedStore) -> None:
    headers = auth(unique("rep"), department_path="/hq/d1")
    body = {
        "kind": "company",
        "name": f"上海{uuid.uuid4().hex[:8]}科技有限公司",
        "phones": ["13912345678"],
        "emails": [f"{uuid.uuid4().hex[:8]}@example.com"],
        "uscc": None,
    }
    with traced_store.capture() as capture:
        r = await plans_client.post("/v1/customers", json=body, headers=headers)
        assert r.status_code == 201, r.text
    assert_indexed(capture)


@pytest.mark.parametrize(("tags", "commands"), [([], 4), (["重点", "续约"], 5)])
async def test_what_a_create_costs_in_store_commands(
    plans_client: httpx.AsyncClient, tags: list[str], commands: int
) -> None:
    """Issue 13 counts every store command of a create. The request's own, once the owner has
    created before: the owner's lease taken, the duplicate keys claimed, the insert, the lease
    given back (4); with tags, one more: the memberships' upsert, written before the customer and
    with no note (three more before: the note, the upsert, the note cleared)."""
    headers = auth(unique("rep"), department_path="/hq/d1")

    async def create() -> None:
        body = {"kind": "company", "name": f"苏州{uuid.uuid4().hex[:8]}电子有限公司", "tags": tags}
        r = await plans_client.post("/v1/customers", json=body, headers=headers)
        assert r.status_code == 201, r.text

    await create()  # the owner's first: their lease document is made and their customers counted
    # The lease may be given back just after the answer: the count settles before and after.
    before = await settled_commands("http")
    await create()
    await eventually(lambda: origin_commands("http") - before >= commands, timeout=5, message="commands counted")
    assert await settled_commands("http") - before == commands


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = {"kind": "company", "name": f"杭州{uuid.uuid4().hex[:8]}贸易有限公司", **extra}
    r = await client.post("/v1/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_lookup_by_ids_is_id_lookups(plans_client: httpx.AsyncClient, traced_store: TracedStore) -> None:
    """``POST /v1/customers/lookup`` reads the ids in one ``$in`` on ``_id``: the store makes it
    ``WHERE _id IN (...)``, a search of the ``_id`` index (``$in`` on any other field scans)."""
    rep = auth(unique("rep"), department_path="/hq/d1")
    made = [await _create(plans_client, rep) for _ in range(3)]
    ids = [c["id"] for c in made] + ["no-such-customer"]
    with traced_store.capture() as capture:
        r = await plans_client.post("/v1/customers/lookup", json={"ids": ids}, headers=rep)
        assert r.status_code == 200, r.text
    assert [c["id"] for c in r.json()["items"]] == ids[:3]
    assert_indexed(capture)
    reads = [s for s in capture.statements if " IN (" in s.sql and "FROM customers " in s.sql]
    assert len(reads) == 1, capture.report()  # one command for the ids, not one per id
    assert not capture.scans(row_filters=True), capture.report(row_filters=True)


async def test_changes_are_index_lookups(plans_client: httpx.AsyncClient, traced_store: TracedStore) -> None:
    """Edit, contacts, release and claim, delete and restore, merge: every write keeps its keys in step."""
    rep = auth(unique("rep"), department_path="/hq/d2")
    other = auth(unique("rep"), department_path="/hq/d2")
    admin = auth(unique("admin"), ["admin"], department_path="/hq")
    first = await _create(plans_client, rep, phones=["13800138001"])
    second = await _create(plans_client, rep)
    with traced_store.capture() as capture:
        cid = first["id"]
        r = await plans_client.patch(
            f"/v1/customers/{cid}",
            json={"phones": ["13800138002"], "industry": "制造"},
            headers={**rep, "If-Match": f'"{first["version"]}"'},
        )
        assert r.status_code == 200, r.text
        r = await plans_client.post(
            f"/v1/customers/{cid}/contacts", json={"name": "王经理", "role": "decision_maker"}, headers=rep
        )
        assert r.status_code == 201, r.text
        r = await plans_client.post(f"/v1/customers/{cid}/release", json={"reason": "不跟了"}, headers=rep)
        assert r.status_code == 200, r.text
        r = await plans_client.post(f"/v1/customers/{cid}/claim", headers=other)
        assert r.status_code == 200, r.text
        r = await plans_client.delete(f"/v1/customers/{second['id']}", headers=admin)
        assert r.status_code in (200, 204), r.text
        r = await plans_client.post(f"/v1/customers/{second['id']}/restore", headers=admin)
        assert r.status_code == 200, r.text
        r = await plans_client.post(f"/v1/customers/{cid}/merge", json={"duplicate_id": second["id"]}, headers=admin)
        assert r.status_code == 200, r.text
    assert_indexed(capture)


@pytest.mark.parametrize("sort", [*(d + key for key in SORT_FIELDS for d in ("", "-")), "-tier,name"])
async def test_list_pages_are_index_lookups(
    plans_client: httpx.AsyncClient, traced_store: TracedStore, sort: str
) -> None:
    """A rep's, a manager's and an admin's list, page 1 and the page after it, for every sort the
    list offers (each key both ways): an index walk, never a sort of the whole scope."""
    for headers in (
        auth("fill-rep-3", department_path="/hq/d0"),
        auth(unique("mgr"), ["manager"], department_path="/hq"),
        auth(unique("admin"), ["admin"], department_path="/hq"),
        auth(unique("dept"), [DEPT_ROLE], department_path="/hq/d1"),
    ):
        with traced_store.capture() as capture:
            r = await plans_client.get("/v1/customers", params={"sort": sort, "limit": 10}, headers=headers)
            assert r.status_code == 200, r.text
            cursor = r.json()["next_cursor"]
            assert cursor
            r = await plans_client.get(
                "/v1/customers", params={"sort": sort, "limit": 10, "cursor": cursor}, headers=headers
            )
            assert r.status_code == 200, r.text
        # Strict: page 1's only equality is the scope, so a temporary b-tree there sorts the scope.
        assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)


def _tag_scopes() -> list[tuple[str, dict[str, str]]]:
    return [
        ("rep", auth("fill-rep-3", department_path="/hq/d0")),
        ("manager", auth(unique("mgr"), ["manager"], department_path="/hq")),
        ("admin", auth(unique("admin"), ["admin"], department_path="/hq")),
        ("department", auth(unique("dept"), [DEPT_ROLE], department_path="/hq/d1")),
    ]


@pytest.mark.parametrize(
    "tags",
    [{"tags_any": "华东"}, {"tags_any": "t3"}, {"tags_any": "t1,t2"}, {"tags_all": "t4"}],
    ids=["common", "rare", "any-of-two", "all-of-one"],
)
@pytest.mark.parametrize("sort", ["-tier,name", "-updated_at", "name", "-created_at", "last_followed_up_at"])
async def test_tag_filtered_pages_are_index_lookups(
    plans_client: httpx.AsyncClient, traced_store: TracedStore, tags: dict[str, str], sort: str
) -> None:
    """Tag-filtered lists page on the tag memberships' compound indexes in every scope, page 1
    and the page after it, with no per-row test of the tags array and no sort of every match;
    the page's customers are loaded by id. Totals are counted from the same indexes."""
    for scope, headers in _tag_scopes():
        params: dict[str, Any] = {**tags, "sort": sort, "limit": 3}
        with traced_store.capture() as capture:
            r = await plans_client.get("/v1/customers", params=params, headers=headers)
            assert r.status_code == 200, r.text
            cursor = r.json()["next_cursor"]
            assert cursor, scope
            r = await plans_client.get("/v1/customers", params={**params, "cursor": cursor}, headers=headers)
            assert r.status_code == 200, r.text
        scans = capture.scans(sorted_results=True, row_filters=True)
        assert not scans, f"{scope}: statements that scan:\n" + "\n".join(s.describe() for s in scans)


async def test_tags_all_of_two_walks_one_tags_memberships(
    plans_client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    """``tags_all`` of several tags pages on the first tag's memberships (an index) and tests the
    others on the rows walked: no full scan and no sort of every match, in every scope."""
    for scope, headers in _tag_scopes():
        params = {"tags_all": "t5,华东", "sort": "-tier,name", "limit": 3}
        with traced_store.capture() as capture:
            r = await plans_client.get("/v1/customers", params=params, headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["items"], scope
        # The other tags' test on the memberships walked is a per-row filter on the ``tags`` array,
        # NOT bounded (it walks the first tag's memberships in scope until a page matches): a known
        # open problem (an intersection of memberships would need a walk per tag). Every statement
        # without that test must have no per-row filter; those with it, no scan and no full walk.
        tagged = Capture([s for s in capture.statements if "json_each(data, '$.tags')" in s.sql])
        assert tagged.statements, "the other tag is tested on the memberships walked"
        assert_indexed(tagged, sorted_results=True, row_filters=False)
        rest = Capture([s for s in capture.statements if s not in tagged.statements])
        if rest.statements:
            assert_indexed(rest, sorted_results=True)


async def test_neighbours_in_a_tag_list_are_index_lookups(
    plans_client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    """The detail view's previous / next record of a tag-filtered list: the list's keyset on the
    memberships, one row each way, then the customer by id."""
    for scope, headers in _tag_scopes():
        params = {"tags_any": "t2", "sort": "-tier,name"}
        r = await plans_client.get("/v1/customers", params={**params, "limit": 3}, headers=headers)
        assert r.status_code == 200, r.text
        middle = r.json()["items"][1]["id"]
        with traced_store.capture() as capture:
            r = await plans_client.get(f"/v1/customers/{middle}/neighbours", params=params, headers=headers)
            assert r.status_code == 200, r.text
        scans = capture.scans(sorted_results=True, row_filters=True)
        assert not scans, f"{scope}: statements that scan:\n" + "\n".join(s.describe() for s in scans)


async def test_a_tag_nobody_in_scope_has_is_index_lookups(
    plans_client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    """An empty tag list loads no customers at all: the store answers an empty ``$in`` on ``_id``
    by reading every customer (5-6 s at 100k in the console bench before this was pinned)."""
    for scope, headers in _tag_scopes():
        with traced_store.capture() as capture:
            r = await plans_client.get(
                "/v1/customers", params={"tags_any": unique("none"), "sort": "-tier,name"}, headers=headers
            )
            assert r.status_code == 200, r.text
            assert r.json()["items"] == []
        scans = capture.scans(sorted_results=True, row_filters=True)
        assert not scans, f"{scope}: statements that scan:\n" + "\n".join(s.describe() for s in scans)


@pytest.mark.parametrize("filters", [{}, {"tags_any": "t2"}, {"tags_all": "t5,华东"}, {"kind": "company"}])
async def test_exports_walk_the_lists_indexes(
    plans_client: httpx.AsyncClient, traced_store: TracedStore, filters: dict[str, str]
) -> None:
    """The CSV export walks the list's own pages: tag filters on the tag memberships, each visibility
    alternative its own indexed query; no per-row test of the tags array (but for ``tags_all``'s
    other tags, tested on the first tag's memberships as the list does), no sort of every match
    (before, a tag-filtered export sent ``$in`` on the tags array: a subquery on every customer)."""
    row_filters = "tags_all" not in filters
    for scope, headers in _tag_scopes():
        with traced_store.capture() as capture:
            r = await plans_client.get(
                "/v1/customers/export.csv", params={**filters, "sort": "-tier,name"}, headers=headers
            )
            assert r.status_code == 200, r.text
            assert len(r.text.splitlines()) > 1, scope  # the header and at least one customer
        scans = capture.scans(sorted_results=True, row_filters=row_filters)
        assert not scans, f"{scope}: statements that scan:\n" + "\n".join(s.describe() for s in scans)


async def test_an_export_is_recorded_with_index_lookups(
    plans_client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    """An export counts what it will send and stores its record with the event for the audit log
    (crm.customer_export.created) before the first row: the count is one indexed query per
    visibility alternative, the record one insert. Checked for a rep, a manager and an admin, with
    and without a filter, and with a tag filter (counted on the tag memberships). The rows themselves
    are the list's own pages (test_exports_walk_the_lists_indexes)."""
    service = plans_client._transport.app.state.customers  # type: ignore[attr-defined]
    for principal in (
        Principal(user_id="fill-rep-3", roles=frozenset({Role.rep}), department_id="d0", department_path="/hq/d0"),
        Principal(user_id=unique("mgr"), roles=frozenset({Role.manager}), department_id="hq", department_path="/hq"),
        Principal(user_id=unique("admin"), roles=frozenset({Role.admin}), department_id="hq", department_path="/hq"),
        Principal(
            user_id=unique("dept"),
            roles=frozenset({DEPT_ROLE}),
            department_id="d1",
            department_path="/hq/d1",
            scopes={"customers": "department"},
        ),
    ):
        for filters in (CustomerFilter(), CustomerFilter(kind="company"), CustomerFilter(tags_any="t2")):
            before = await service.repo.exports.count_documents({"by": principal.user_id})
            with traced_store.capture() as capture:
                rows = await record_export(service, principal, filters, None)
            assert rows > 0
            assert await service.repo.exports.count_documents({"by": principal.user_id}) == before + 1
            assert_indexed(capture)
            assert not capture.scans(row_filters=True), principal.user_id  # no test of the tags array per row


async def test_my_recycle_bin_and_restoring_from_it_are_index_lookups(
    plans_client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    """``GET /v1/my-recycle-bin`` walks the ``deleted.by`` index in its order (page 1 and the page
    after it); taking one back is the restore's own lookups (lease, count, guarded write)."""
    manager = auth(unique("mgr"), ["manager"], department_path="/hq/d1")
    made = [await _create(plans_client, auth(unique("rep"), department_path="/hq/d1")) for _ in range(5)]
    for c in made:
        r = await plans_client.delete(f"/v1/customers/{c['id']}", headers=manager)
        assert r.status_code == 200, r.text
    with traced_store.capture() as capture:
        r = await plans_client.get("/v1/my-recycle-bin", params={"limit": 2}, headers=manager)
        assert r.status_code == 200, r.text
        assert [c["id"] for c in r.json()["items"]] == [made[4]["id"], made[3]["id"]]
        r = await plans_client.get(
            "/v1/my-recycle-bin", params={"limit": 2, "cursor": r.json()["next_cursor"]}, headers=manager
        )
        assert [c["id"] for c in r.json()["items"]] == [made[2]["id"], made[1]["id"]]
        r = await plans_client.post(f"/v1/my-recycle-bin/{made[0]['id']}/restore", headers=manager)
        assert r.status_code == 200, r.text
    assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)


async def test_a_bulk_assign_is_index_lookups(plans_client: httpx.AsyncClient, traced_store: TracedStore) -> None:
    """The customers read in one ``$in`` on ``_id``, the owner's lease and count, a guarded write each."""
    manager = auth(unique("mgr"), ["manager"], department_path="/hq/d2")
    owner = unique("rep")
    await _create(plans_client, auth(owner, department_path="/hq/d2"))  # the owner's lease and count exist
    made = [await _create(plans_client, auth(unique("rep"), department_path="/hq/d2")) for _ in range(3)]
    with traced_store.capture() as capture:
        body = {"customer_ids": [c["id"] for c in made], "owner_id": owner, "department_path": "/hq/d2"}
        r = await plans_client.post("/v1/customers/bulk-assign", json=body, headers=manager)
        assert r.status_code == 200, r.text
        assert r.json()["assigned"] == 3
    assert_indexed(capture)


async def test_the_export_and_import_records_retention_purge_is_index_lookups(
    plans_client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    """The retention purge of the source records (CRM_RECORD_RETENTION_DAYS): an export record past
    the retention, once its event has left, is deleted; a recent one is kept. Each batch is one
    range on the records' ``at_ms`` index and one delete by ``_id``, for exports and imports alike."""
    service = plans_client._transport.app.state.customers  # type: ignore[attr-defined]
    repo = service.repo
    principal = Principal(
        user_id=unique("admin"), roles=frozenset({Role.admin}), department_id="hq", department_path="/hq"
    )
    for _ in range(3):
        await record_export(service, principal, CustomerFilter(kind="company"), None)
    mine = [doc async for doc in repo.exports.find({"by": principal.user_id})]
    assert len(mine) == 3

    async def published() -> bool:
        return not await repo.exports.count_documents({"by": principal.user_id, "outbox_pending_ms": {"$exists": True}})

    await eventually(published, timeout=10, message="the export events published")
    old = [doc["_id"] for doc in mine[:2]]
    for record_id in old:  # written 100 days ago, as far as the purge can tell
        await repo.exports.update_one({"_id": record_id}, {"$inc": {"at_ms": -100 * 86_400_000}})
    with traced_store.capture() as capture:
        deleted = await repo.purge_records(retention_days=90, batch_size=1)
    assert deleted >= 2
    assert [doc["_id"] async for doc in repo.exports.find({"by": principal.user_id})] == [mine[2]["_id"]]
    assert_indexed(capture, sorted_results=True)
    assert not capture.scans(row_filters=True)
    ranges = [s for s in capture.statements if "json_extract(data, '$.at_ms') <" in s.sql]
    assert {"exports", "import_records"} <= {s.sql.split("FROM ")[1].split()[0] for s in ranges}
    assert all(any("_at_ms (" in line for line in s.plan) for s in ranges), [s.describe() for s in ranges]


async def test_export_approval_is_index_lookups(plans_client: httpx.AsyncClient, traced_store: TracedStore) -> None:
    """Export approval's queries: an approver's pending requests (one range on ``pending_path``, for a
    manager their subtree's, for an admin all), a requester's own (``requester_id`` then newest
    first), a request by id, answering and downloading (guarded replaces by ``_id``), the policy (by
    ``_id``), and the held export's count. Among a few hundred stored requests of other departments."""
    approvals = plans_client._transport.app.state.export_approvals.store  # type: ignore[attr-defined]
    now_ms = int(time.time() * 1000)
    await approvals.requests.insert_many(
        [
            {
                "_id": f"other-{uuid.uuid4().hex}",
                "requester_id": f"fill-rep-{i % 10}",
                "requester_department_path": f"/hq/o{i % 30}",
                "filter": {},
                "sort": None,
                "rows": 10,
                "threshold": 1,
                "status": "pending" if i % 2 else "rejected",
                "at_ms": now_ms - i * 1000,
                **({"pending_path": f"/hq/o{i % 30}/"} if i % 2 else {}),
                "downloads": 0,
                "version": 1,
                "outbox": [],
                "outbox_rev": 1,
            }
            for i in range(300)
        ]
    )
    rep = auth("fill-rep-4", department_path="/hq/d1")
    manager = auth(unique("mgr"), ["manager"], "/hq/d1")
    admin = auth(unique("admin"), ["admin"], "/hq")
    r = await plans_client.put("/v1/customers/export-policy", json={"approval_above_rows": 1}, headers=admin)
    assert r.status_code == 200, r.text
    try:
        with traced_store.capture() as capture:
            held = await plans_client.get("/v1/customers/export.csv", params={"kind": "company"}, headers=rep)
            assert held.status_code == 202, held.text
            request_id = held.json()["id"]
            for headers in (manager, admin):
                pending = await plans_client.get("/v1/customers/export-requests/pending", headers=headers)
                assert request_id in [p["id"] for p in pending.json()["items"]]
            mine = await plans_client.get("/v1/customers/export-requests", headers=rep)
            assert request_id in [m["id"] for m in mine.json()["items"]]
            assert (
                await plans_client.get(f"/v1/customers/export-requests/{request_id}", headers=rep)
            ).status_code == 200
            r = await plans_client.post(
                f"/v1/customers/export-requests/{request_id}/approve", json={"comment": "ok"}, headers=manager
            )
            assert r.status_code == 200, r.text
            r = await plans_client.get(f"/v1/customers/export-requests/{request_id}/download", headers=rep)
            assert r.status_code == 200, r.text
            assert (await plans_client.get("/v1/customers/export-policy", headers=rep)).status_code == 200
        assert_indexed(capture, sorted_results=True)
        ranges = [s for s in capture.statements if "'$.pending_path') >=" in s.sql]
        assert len(ranges) == 2 and all(any("_pending_path (" in line for line in s.plan) for s in ranges), [
            s.describe() for s in ranges
        ]
        theirs = [s for s in capture.statements if "'$.requester_id') =" in s.sql]
        assert theirs and all(
            any("USING INDEX idx_export_requests_requester_id" in line for line in s.plan) for s in theirs
        ), [s.describe() for s in theirs]
    finally:
        r = await plans_client.put("/v1/customers/export-policy", json={"approval_above_rows": None}, headers=admin)
        assert r.status_code == 200, r.text


async def test_custom_field_filters_use_the_fields_index(
    plans_client: httpx.AsyncClient, traced_store: TracedStore
) -> None:
    """``custom.<key>=<value>`` on a filterable field: a search of the field's own index
    (``custom.<key>``, made when the field became filterable) in every scope, never a scan."""
    key = f"lvl{uuid.uuid4().hex[:6]}"
    admin = auth(unique("admin"), ["admin"], department_path="/hq")
    options = [{"key": k, "labels": {"zh-CN": k, "en": k}} for k in ("high", "low")]
    r = await plans_client.post(
        "/v1/fields/customers",
        json={
            "key": key,
            "type": "choice",
            "labels": {"zh-CN": "级别", "en": "Level"},
            "options": options,
            "filterable": True,
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    rep = auth("fill-rep-3", department_path="/hq/d0")
    for i in range(6):
        await _create(plans_client, rep, custom={key: "high" if i % 2 else "low"})
    for headers in (rep, auth(unique("mgr"), ["manager"], department_path="/hq"), admin):
        with traced_store.capture() as capture:
            r = await plans_client.get("/v1/customers", params={f"custom.{key}": "high", "limit": 2}, headers=headers)
            assert r.status_code == 200, r.text
            assert all(c["custom"][key] == "high" for c in r.json()["items"])
            cursor = r.json()["next_cursor"]
            if cursor:
                r = await plans_client.get(
                    "/v1/customers", params={f"custom.{key}": "high", "limit": 2, "cursor": cursor}, headers=headers
                )
                assert r.status_code == 200, r.text
        assert_indexed(capture)
        assert any(key in " ".join(s.plan) for s in capture.statements if "FROM customers " in s.sql), "\n".join(
            s.describe() for s in capture.statements
        )


def _value(type_: str, i: int) -> Any:
    """The i-th of a few ordered values of a field of ``type_``."""
    if type_ == "date":
        return f"2026-01-{i + 1:02d}"
    if type_ == "money":
        return {"amount": f"{i * 100}.50", "currency": "CNY"}
    return i


#: Per type, a range that matches values 2, 3 and 4 of :func:`_value`, and one of another currency.
RANGES = {"number": "2..4", "date": "2026-01-03..2026-01-05", "money": "200..400.50 CNY"}


@pytest.mark.parametrize("type_", ["number", "date", "money"])
async def test_custom_field_ranges_use_the_fields_index(
    plans_client: httpx.AsyncClient, traced_store: TracedStore, type_: str
) -> None:
    """``custom.<key>=<low>..<high>`` on a filterable number, date or money: a range search of the
    field's index behind the scope (the matches sorted, not the scope walked), in every scope. A
    date or money is matched on its copy (``s.cfq_<key>``: an integer day, an amount key), since a
    range on an ISO date string is compared through a function no index serves."""
    key = f"size{uuid.uuid4().hex[:6]}"
    admin = auth(unique("admin"), ["admin"], department_path="/hq")
    r = await plans_client.post(
        "/v1/fields/customers",
        json={"key": key, "type": type_, "labels": {"zh-CN": "规模", "en": "Size"}, "filterable": True},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    rep = auth("fill-rep-3", department_path="/hq/d0")
    for i in range(6):
        await _create(plans_client, rep, custom={key: _value(type_, i)})
    if type_ == "money":  # the same amount in another currency is not in a CNY range
        await _create(plans_client, rep, custom={key: {"amount": "300.50", "currency": "USD"}})
    for headers in (rep, auth(unique("mgr"), ["manager"], department_path="/hq"), admin):
        with traced_store.capture() as capture:
            r = await plans_client.get(
                "/v1/customers", params={f"custom.{key}": RANGES[type_], "limit": 10}, headers=headers
            )
            assert r.status_code == 200, r.text
            got = [c["custom"][key] for c in r.json()["items"]]
            assert sorted(got, key=str) == sorted((_value(type_, i) for i in (2, 3, 4)), key=str), got
        assert_indexed(capture)
        plans = [" ".join(s.plan) for s in capture.statements if "FROM customers " in s.sql]
        assert any(key in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)


@pytest.mark.parametrize(("direction", "type_"), [("", "number"), ("-", "number"), ("", "date"), ("-", "date")])
async def test_custom_field_sorts_walk_the_fields_sort_index(
    plans_client: httpx.AsyncClient, traced_store: TracedStore, direction: str, type_: str
) -> None:
    """``sort=custom.<key>`` (and ``-custom.<key>``) on a sortable field: page 1, the page after
    it and a record's neighbours walk the field's sort index behind each scope (its sort copy
    ``s.cf_<key>`` then the id), never a sort of the scope or of a tie group, for a rep, a
    manager, an admin and a department role. Most customers have no value (one big tie group). A
    date's copy is the integer day: the page after the first is a range on it, index-served."""
    key = f"rank{uuid.uuid4().hex[:6]}"
    admin = auth(unique("admin"), ["admin"], department_path="/hq")
    r = await plans_client.post(
        "/v1/fields/customers",
        json={"key": key, "type": type_, "labels": {"zh-CN": "排名", "en": "Rank"}, "sortable": True},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    rep = auth("fill-rep-3", department_path="/hq/d0")
    made = [await _create(plans_client, rep, custom={key: _value(type_, i % 3)}) for i in range(6)]
    sort = f"{direction}custom.{key}"
    for headers in (
        rep,
        auth(unique("mgr"), ["manager"], department_path="/hq"),
        admin,
        auth(unique("dept"), [DEPT_ROLE], department_path="/hq/d1"),
    ):
        with traced_store.capture() as capture:
            r = await plans_client.get("/v1/customers", params={"sort": sort, "limit": 10}, headers=headers)
            assert r.status_code == 200, r.text
            cursor = r.json()["next_cursor"]
            assert cursor
            r = await plans_client.get(
                "/v1/customers", params={"sort": sort, "limit": 10, "cursor": cursor}, headers=headers
            )
            assert r.status_code == 200, r.text
        assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)
        assert any(f"cf_{key}" in " ".join(s.plan) for s in capture.statements if "FROM customers " in s.sql)
    with traced_store.capture() as capture:
        r = await plans_client.get(f"/v1/customers/{made[1]['id']}/neighbours", params={"sort": sort}, headers=rep)
        assert r.status_code == 200, r.text
        assert r.json()["previous"] and r.json()["next"]
    assert_indexed(capture, sorted_results=True, unkeyed_sorts=True)


#: Per type, a filter on the tag list: an equality, or a range matching values 2, 3 and 4 of :func:`_value`.
TAG_FILTERS = {"choice": "high", **RANGES}


@pytest.mark.parametrize("type_", ["choice", "number", "date", "money"])
async def test_tag_and_custom_field_filters_use_the_memberships_index(
    plans_client: httpx.AsyncClient, traced_store: TracedStore, type_: str
) -> None:
    """``tags_any`` with ``custom.<key>=`` (an equality on a choice; a range on a number, a date or
    a money): a search of the field's index on the tag memberships (the tag, the visibility prefix,
    where the filter looks, then the default sort) in every scope, page 1 and the page after it,
    with no per-row test of the tags array, and the export with the same filters (its count and its
    pages). An equality walks the index in list order; a range sorts its matches (not the scope)."""
    key = f"tf{uuid.uuid4().hex[:6]}"
    admin = auth(unique("admin"), ["admin"], department_path="/hq")
    body: dict[str, Any] = {"key": key, "type": type_, "labels": {"zh-CN": "标签筛选", "en": "Tagged"}}
    if type_ == "choice":
        body["options"] = [{"key": k, "labels": {"zh-CN": k, "en": k}} for k in ("high", "low")]
    r = await plans_client.post("/v1/fields/customers", json={**body, "filterable": True}, headers=admin)
    assert r.status_code == 201, r.text
    rep = auth("fill-rep-3", department_path="/hq/d0")
    for i in range(8):
        value = ("high" if i % 2 else "low") if type_ == "choice" else _value(type_, i % 6)
        await _create(plans_client, rep, tags=["华东", "t3"], custom={key: value})
    equality = type_ == "choice"
    for scope, headers in _tag_scopes():
        params: dict[str, Any] = {"tags_any": "华东", f"custom.{key}": TAG_FILTERS[type_], "limit": 2}
        with traced_store.capture() as capture:
            r = await plans_client.get("/v1/customers", params=params, headers=headers)
            assert r.status_code == 200, r.text
            cursor = r.json()["next_cursor"]
            if scope in ("rep", "admin"):  # the rep's own customers: more than a page
                assert cursor, scope
            if cursor:
                r = await plans_client.get("/v1/customers", params={**params, "cursor": cursor}, headers=headers)
                assert r.status_code == 200, r.text
        scans = capture.scans(sorted_results=equality, row_filters=True)
        assert not scans, f"{scope}: statements that scan:\n" + "\n".join(s.describe() for s in scans)
        plans = [" ".join(s.plan) for s in capture.statements if "FROM customer_tags " in s.sql]
        assert any(key in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)
        # The export: its count (ids from the same memberships' indexes) and its pages.
        with traced_store.capture() as capture:
            export = {k: v for k, v in params.items() if k != "limit"}
            r = await plans_client.get("/v1/customers/export.csv", params=export, headers=headers)
            assert r.status_code == 200, r.text
        scans = capture.scans(sorted_results=equality, row_filters=True)
        assert not scans, f"{scope} export: statements that scan:\n" + "\n".join(s.describe() for s in scans)


@pytest.mark.parametrize(("direction", "type_"), [("", "number"), ("-", "date")])
async def test_tag_and_custom_field_sorts_walk_the_memberships_sort_index(
    plans_client: httpx.AsyncClient, traced_store: TracedStore, direction: str, type_: str
) -> None:
    """``tags_any`` (or ``tags_all``) with ``sort=custom.<key>`` either way: page 1, the page after
    it and a record's neighbours walk the field's sort index on the tag memberships (the tag, the
    visibility prefix, the sort copy, the id) in every scope, never a sort of the tag's scope or of
    a tie group (most memberships have no value). The flag's backfill writes the copies on the
    tagged customers' memberships by ``_id`` (and reads the customers whole, by design)."""
    key = f"ts{uuid.uuid4().hex[:6]}"
    admin = auth(unique("admin"), ["admin"], department_path="/hq")
    body = {"key": key, "type": type_, "labels": {"zh-CN": "标签排序", "en": "Tag rank"}}
    r = await plans_client.post("/v1/fields/customers", json=body, headers=admin)
    assert r.status_code == 201, r.text
    rep = auth("fill-rep-3", department_path="/hq/d0")
    made = [await _create(plans_client, rep, tags=["t3", "华东"], custom={key: _value(type_, i % 3)}) for i in range(6)]
    with traced_store.capture() as capture:
        r = await plans_client.patch(
            f"/v1/fields/customers/{key}", json={"sortable": True}, headers={**admin, "If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
    writes = [s for s in capture.statements if "customer_tags" in s.sql]
    assert writes, "the backfill wrote no memberships"
    scans = [s for s in writes if s.full_scans or s.index_walks]
    assert not scans, "statements that scan:\n" + "\n".join(s.describe() for s in scans)
    sort = f"{direction}custom.{key}"
    try:
        for tags in ({"tags_any": "t3"}, {"tags_all": "t3,华东"}):
            for scope, headers in _tag_scopes():
                params: dict[str, Any] = {**tags, "sort": sort, "limit": 5}
                with traced_store.capture() as capture:
                    r = await plans_client.get("/v1/customers", params=params, headers=headers)
                    assert r.status_code == 200, r.text
                    cursor = r.json()["next_cursor"]
                    assert cursor, scope
                    r = await plans_client.get("/v1/customers", params={**params, "cursor": cursor}, headers=headers)
                    assert r.status_code == 200, r.text
                scans = capture.scans(sorted_results=True, unkeyed_sorts=True, row_filters="tags_all" not in tags)
                assert not scans, f"{scope} {tags}: statements that scan:\n" + "\n".join(s.describe() for s in scans)
                plans = [" ".join(s.plan) for s in capture.statements if "FROM customer_tags " in s.sql]
                assert any(f"cf_{key}" in plan for plan in plans), "\n".join(s.describe() for s in capture.statements)
        with traced_store.capture() as capture:
            r = await plans_client.get(
                f"/v1/customers/{made[1]['id']}/neighbours", params={"tags_any": "t3", "sort": sort}, headers=rep
            )
            assert r.status_code == 200, r.text
            assert r.json()["previous"] and r.json()["next"]
        scans = capture.scans(sorted_results=True, unkeyed_sorts=True, row_filters=True)
        assert not scans, "statements that scan:\n" + "\n".join(s.describe() for s in scans)
    finally:  # room under the module's cap on sortable fields for the other tests
        current = await plans_client.get(f"/v1/fields/customers/{key}", headers=admin)
        r = await plans_client.patch(
            f"/v1/fields/customers/{key}",
            json={"sortable": False},
            headers={**admin, "If-Match": current.headers["ETag"]},
        )
        assert r.status_code == 200, r.text


async def test_a_leads_conversion_is_index_lookups(plans_client: httpx.AsyncClient, traced_store: TracedStore) -> None:
    """Making, linking and refusing a lead's conversion (and each delivered again) find the customer
    and the refusal by ``_id``; the duplicate check and the holding limit are the create's."""
    from datetime import UTC, datetime

    from crm_platform.contracts import leads as lev

    app = plans_client._transport.app  # type: ignore[attr-defined]
    service = app.state.lead_conversions
    now = datetime.now(UTC)
    headers = auth(unique("rep"), department_path="/hq/d1")
    r = await plans_client.post(
        "/v1/customers", json={"kind": "company", "name": f"{unique('链接')}有限公司"}, headers=headers
    )
    assert r.status_code == 201, r.text

    def conversion(**fields: Any) -> lev.Conversion:
        lead_id = str(uuid.uuid4())
        values: dict[str, Any] = {
            "conversion_id": f"{lead_id}:1",
            "customer_id": str(uuid.uuid4()),
            "existing_customer": False,
            "customer_name": f"{unique('转化')}有限公司",
            "owner_id": unique("conv-rep"),
            "department_path": "/hq/d1",
            "contact": lev.ConversionContact(
                contact_id=str(uuid.uuid4()), name="计划", phones=[f"+86135{uuid.uuid4().int % 10**8:08d}"]
            ),
            "requested_by": "plans",
            "requested_at": now,
            **fields,
        }
        return lev.Conversion(**values)

    made = conversion()
    linked = conversion(customer_id=r.json()["id"], existing_customer=True)
    refused = conversion(customer_id=str(uuid.uuid4()), existing_customer=True)
    with traced_store.capture() as capture:
        for command in (made, linked, refused):
            await service.convert(command.conversion_id.split(":")[0], command)
            await service.convert(command.conversion_id.split(":")[0], command)
    assert_indexed(capture)
