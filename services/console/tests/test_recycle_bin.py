"""My recycle bin (``/my-recycle-bin``), against the real customers, directory and pool services:
the menu entry, what I deleted (and not what someone else deleted), a restore, and a restore the
owner's holding limit refuses (409) shown as a clear message at the customer's row."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.async_api import expect

from crm_console.testing import PASSWORD, Stack, User, sign_in
from crm_platform.testing.fixtures import eventually, unique


class Seed:
    """Customers created and deleted through the customers API as ``user``."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.url = stack.urls["customers"]
        self.headers = {"Authorization": f"Bearer {token}"}

    async def create(self, name: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers) as client:
            return await client.post("/v1/customers", json={"kind": "company", "name": name})

    async def created(self, name: str) -> str:
        answer = await self.create(name)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    async def delete(self, customer_id: str, reason: str = "") -> None:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers) as client:
            answer = await client.delete(f"/v1/customers/{customer_id}", params={"reason": reason} if reason else None)
        assert answer.status_code == 200, answer.text

    async def status(self, customer_id: str) -> str:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers) as client:
            answer = await client.get(f"/v1/customers/{customer_id}")
        return str(answer.json()["status"])


async def signed_in(stack: Stack, page: Any, user: User) -> Seed:
    await sign_in(page, user)
    await page.wait_for_url("**/")
    return Seed(stack, await stack.token_for(user))


async def test_a_manager_finds_what_they_deleted_in_their_bin_and_restores_it(stack: Stack, page: Any) -> None:
    manager, other = await stack.new_user(roles=["manager"]), await stack.new_user(roles=["manager"])
    seed = await signed_in(stack, page, manager)
    mine = await seed.created(unique("回收客户"))
    await seed.delete(mine, "录重了")
    theirs_seed = Seed(stack, await stack.token_for(other))
    theirs = await theirs_seed.created(unique("别人删的"))
    await theirs_seed.delete(theirs)

    menu = page.get_by_role("navigation", name="Main menu")
    await menu.get_by_role("link", name="My recycle bin").click()
    await expect(page.get_by_role("heading", name="My recycle bin")).to_be_visible()
    row = page.locator(f"#bin-{mine}")
    await expect(row).to_contain_text("录重了")
    await expect(page.locator(f"#bin-{theirs}")).to_have_count(0)  # someone else's deletion

    await row.get_by_role("button", name="Restore").click()
    await expect(page.get_by_role("status")).to_contain_text("is restored")
    await expect(page.locator(f"#bin-{mine}")).to_have_count(0)
    assert await seed.status(mine) == "active"
    await page.locator("#restored-link").click()
    await page.wait_for_url(f"**/customers/{mine}")


async def test_the_menu_entry_follows_the_delete_permission(stack: Stack, page: Any) -> None:
    role_id = unique("viewer").lower()
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        made = await directory.post(
            "/v1/roles",
            json={
                "id": role_id,
                "names": {"zh-CN": "只读", "en": f"Viewer {role_id}"},
                "permissions": ["account:self", "customers:view"],
                "scopes": {"customers": "own"},
            },
        )
    assert made.status_code == 201, made.text
    await signed_in(stack, page, await stack.new_user(roles=[role_id]))
    menu = page.get_by_role("navigation", name="Main menu")
    await expect(menu.get_by_role("link", name="Customers")).to_be_visible()
    await expect(menu.get_by_role("link", name="My recycle bin")).to_have_count(0)
    response = await page.goto("/my-recycle-bin")  # the service refuses the list: the 403 page
    assert response.status == 403


async def test_a_restore_over_the_owners_holding_limit_says_so(stack: Stack, page: Any) -> None:
    # A department of its own with a holding limit of one, so no other test's owners are limited.
    dept = f"bin-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        made = await directory.post("/v1/departments", json={"id": dept, "name": f"回收站 {dept}", "parent_id": "hq"})
        assert made.status_code == 201, made.text
        path = made.json()["path"]
        email = f"{unique('m')}@example.com"
        body = {"email": email, "name": unique("经理"), "roles": ["manager"], "department_id": dept, "language": "en"}
        user = await directory.post("/v1/users", json=body | {"password": PASSWORD})
        assert user.status_code == 201, user.text
    manager = User(id=user.json()["id"], email=email, name=body["name"])
    async with httpx.AsyncClient(base_url=stack.urls["pool"], headers=stack.admin_headers) as pool:
        rule = {"name": f"limit {dept}", "department_path": path, "no_interaction_days": 3650, "max_held": 1}
        made = await pool.post("/v1/pool/rules", json=rule)
        assert made.status_code == 201, made.text

    seed = await signed_in(stack, page, manager)
    deleted = await seed.created(unique("先删的"))
    await seed.delete(deleted)
    await seed.created(unique("后建的"))  # the manager now holds one: the limit

    async def limit_known() -> bool:  # the customers service learns the rule from the pool's event
        answer = await seed.create(unique("试探"))
        if answer.status_code == 201:  # not yet: take it back out of the count
            await seed.delete(str(answer.json()["id"]))
            return False
        assert answer.status_code == 409, answer.text
        return True

    await eventually(limit_known, timeout=60, interval=0.5, message="the holding limit applies")

    await page.goto("/my-recycle-bin")
    await page.locator(f"#bin-{deleted}").get_by_role("button", name="Restore").click()
    await expect(page.get_by_role("alert")).to_contain_text("already holds 1 customers, the limit is 1")
    await expect(page.locator(f"#refused-{deleted}")).to_contain_text("release some to the pool first")
    await expect(page.locator(f"#bin-{deleted}")).to_be_visible()  # still in the bin
    assert await seed.status(deleted) == "deleted"
