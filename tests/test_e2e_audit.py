"""End to end: what people do in the directory, customers and notifications services lands in the
audit log through Kafka alone, one entry per action, saying who, when, from where and what.

The four services run in-process against the session's Kafka and MongoDB, each with its own
database and consumer group and the same JWT secret, as deployed; none calls another. Requests
reach them through httpx's ASGI transport, whose client address is 127.0.0.1: that is the
"where" every entry must carry, carried in each event's envelope (clientaddress).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_audit.main import create_app as create_audit_app
from crm_audit.settings import AuditSettings
from crm_customers.main import create_app as create_customers_app
from crm_customers.settings import CustomersSettings
from crm_directory.main import create_app as create_directory_app
from crm_directory.settings import DirectorySettings
from crm_notifications.main import create_app as create_notifications_app
from crm_notifications.settings import NotificationSettings
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import auth, eventually, running, service_settings, unique

PASSWORD = "a long enough passphrase"
Clients = dict[str, httpx.AsyncClient]


@pytest.fixture(scope="module")
async def clients(backend: Backend) -> AsyncIterator[Clients]:
    directory = create_directory_app(
        DirectorySettings(
            **service_settings(backend, "directory"),  # type: ignore[arg-type]
            directory_argon2_time_cost=1,
            directory_argon2_memory_kib=256,
            directory_argon2_parallelism=1,
        )
    )
    customers = create_customers_app(CustomersSettings(**service_settings(backend, "customers")))  # type: ignore[arg-type]
    notifications = create_notifications_app(
        NotificationSettings(
            **service_settings(backend, "notifications"),  # type: ignore[arg-type]
            email_enabled=False,
            webhooks_enabled=False,
            webhook_allowed_networks=["127.0.0.0/8"],
        )
    )
    audit = create_audit_app(
        AuditSettings(**service_settings(backend, "audit"), audit_purge_enabled=False)  # type: ignore[arg-type]
    )
    async with (
        directory.router.lifespan_context(directory),
        customers.router.lifespan_context(customers),
        notifications.router.lifespan_context(notifications),
        running(audit, "http://audit.e2e") as audit_client,
    ):
        apps = {"directory": directory, "customers": customers, "notifications": notifications}
        opened = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.e2e")
            for name, app in apps.items()
        }
        try:
            yield {**opened, "audit": audit_client}
        finally:
            for client in opened.values():
                await client.aclose()


async def test_every_auditable_action_makes_one_entry_with_who_when_where_what(clients: Clients) -> None:
    directory, customers, notifications, audit = (
        clients[n] for n in ("directory", "customers", "notifications", "audit")
    )
    started = datetime.now(UTC) - timedelta(seconds=1)
    root = auth(unique("it-root"), ["admin"], "/hq")
    dept = unique("hq")
    assert (await directory.post("/v1/departments", json={"id": dept, "name": "总部"}, headers=root)).status_code == 201
    admin_email, rep_email = f"{unique('admin')}@example.com", f"{unique('rep')}@example.com"
    made = await directory.post(
        "/v1/users",
        json={
            "email": admin_email,
            "name": "审计管理员",
            "roles": ["admin"],
            "department_id": dept,
            "password": PASSWORD,
        },
        headers=root,
    )
    assert made.status_code == 201, made.text
    admin_id = made.json()["id"]
    audit_admin = auth(unique("auditor"), ["admin"])

    # The admin's name reaches the audit log with the directory's event; an entry takes the name
    # known when it is made, so the admin acts once the audit log has seen them created.
    async def admin_known() -> bool:
        r = await audit.get("/v1/audit", params={"target_id": admin_id}, headers=audit_admin)
        return r.status_code == 200 and [e["action"] for e in r.json()["items"]] == ["user.created"]

    await eventually(admin_known, timeout=60, message="the admin's creation in the audit log")

    # Sign-ins: one that works, a wrong password, an unknown email.
    token = await directory.post("/v1/auth/token", json={"email": admin_email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
    wrong = await directory.post("/v1/auth/token", json={"email": admin_email, "password": "not the password"})
    nobody_email = f"{unique('ghost')}@example.com"
    nobody = await directory.post("/v1/auth/token", json={"email": nobody_email, "password": "x"})
    assert wrong.status_code == nobody.status_code == 401

    # A role change, by the admin.
    rep = await directory.post(
        "/v1/users",
        json={"email": rep_email, "name": "李雷", "roles": ["rep"], "department_id": dept, "password": PASSWORD},
        headers=admin,
    )
    assert rep.status_code == 201, rep.text
    promoted = await directory.patch(
        f"/v1/users/{rep.json()['id']}",
        json={"roles": ["rep", "manager"]},
        headers={**admin, "If-Match": rep.headers["etag"]},
    )
    assert promoted.status_code == 200, promoted.text

    # Customers: a merge, a purge, an export and an import of two rows.
    ids = []
    for i in range(3):
        r = await customers.post(
            "/v1/customers", json={"kind": "company", "name": f"{unique('审计客户')}有限公司{i}"}, headers=admin
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    merged = await customers.post(f"/v1/customers/{ids[0]}/merge", json={"duplicate_id": ids[1]}, headers=admin)
    assert merged.status_code == 200, merged.text
    assert (await customers.delete(f"/v1/customers/{ids[2]}", headers=admin)).status_code == 200
    assert (await customers.delete(f"/v1/recycle-bin/{ids[2]}", headers=admin)).status_code == 204
    exported = await customers.get("/v1/customers/export.csv", params={"kind": "company"}, headers=admin)
    assert exported.status_code == 200, exported.text
    exported_rows = len(exported.content.decode("utf-8-sig").strip().splitlines()) - 1
    rows = "".join(f"{unique('导入')} 有限公司\n" for _ in range(2))
    imported = await customers.post(
        "/v1/customers/import",
        params={"dry_run": "false"},
        content=("名称\n" + rows).encode(),
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 200 and imported.json()["imported"] == 2, imported.text

    # A webhook subscription.
    hook = await notifications.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/erp", "event_types": ["crm.customer.*"]}, headers=admin
    )
    assert hook.status_code == 201, hook.text

    expected = Counter(
        {
            "auth.signed_in": 1,
            "user.created": 1,  # the rep, by the admin (the admin was created by it-root)
            "user.roles_changed": 1,
            "customer.merged": 1,
            "customer.purged": 1,
            "customer.exported": 1,
            "customer.imported": 1,  # the import, with its counts (its two customers make none)
            "webhook.subscription_created": 1,
        }
    )

    async def by_admin() -> list[dict[str, Any]] | None:
        r = await audit.get("/v1/audit", params={"actor": admin_id, "limit": 100}, headers=audit_admin)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items if Counter(e["action"] for e in items) == expected else None

    items = await eventually(by_admin, timeout=60, message="the admin's entries")
    for item in items:
        assert item["actor_name"] == "审计管理员", item
        assert item["client_address"] == "127.0.0.1", item
        assert started <= datetime.fromisoformat(item["at"]) <= datetime.now(UTC) + timedelta(seconds=1), item
    by_action = {e["action"]: e for e in items}
    assert by_action["customer.merged"]["target_id"] == ids[0]
    assert by_action["customer.merged"]["details"]["merged_customer_id"] == ids[1]
    assert by_action["customer.purged"]["target_id"] == ids[2]
    assert by_action["customer.exported"]["details"] == {"filter": {"kind": "company"}, "rows": exported_rows}
    assert by_action["user.roles_changed"]["target_id"] == rep.json()["id"]
    assert by_action["webhook.subscription_created"]["target_id"] == hook.json()["id"]
    assert by_action["auth.signed_in"]["details"]["email"] == admin_email
    assert by_action["customer.imported"]["details"] == {
        "total_rows": 2,
        "valid_rows": 2,
        "imported": 2,
        "errors": 0,
        "duplicates": 0,
    }

    async def failures() -> list[dict[str, Any]] | None:
        r = await audit.get(
            "/v1/audit",
            params={"action": "auth.sign_in_failed", "from": started.isoformat(), "limit": 100},
            headers=audit_admin,
        )
        mine = [e for e in r.json()["items"] if e["details"]["email"] in (admin_email, nobody_email)]
        return mine if len(mine) == 2 else None

    refused = await eventually(failures, timeout=60, message="the two failed sign-ins")
    # A wrong password and an unknown email look the same: no actor, no user, the same reason.
    for item in refused:
        assert item["actor_id"] is None and item["target_type"] == "sign_in", item
        assert item["details"]["reason"] == "invalid_credentials"
        assert item["client_address"] == "127.0.0.1"
