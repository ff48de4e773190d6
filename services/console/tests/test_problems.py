"""Services' refusals in the user's language (crm_console.problems): the console's text for a
code it knows, a specific text where the problem's members say what was refused, the service's
own words for a code it does not know. The browser journeys in both languages are in
test_admin.py (a department that still has a user) and below (the error page)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from crm_console.main import catalogue_for
from crm_console.problems import KNOWN_CODES, REASONS, explain, localise_field_errors, specifics
from crm_console.registry import discover
from crm_console.testing import Stack, sign_in
from crm_console.upstreams import UpstreamProblem
from crm_platform.testing.fixtures import unique

CATALOGUE = catalogue_for(discover())


def problem(code: str, detail: str = "English detail.", **extensions: Any) -> UpstreamProblem:
    return UpstreamProblem(
        "svc", 409, title="English title", detail=detail, type=f"urn:crm:problem:{code}", extensions=extensions
    )


@pytest.mark.parametrize("code", sorted(KNOWN_CODES))
def test_every_known_code_has_a_text_in_both_languages(code: str) -> None:
    for language in ("zh-CN", "en"):
        assert f"core.problem.{code}" in CATALOGUE.messages[language]
    assert explain(problem(code), "zh-CN", CATALOGUE) == CATALOGUE.messages["zh-CN"][f"core.problem.{code}"]
    # In English the service's detail (which names the record) follows the console's text.
    assert explain(problem(code), "en", CATALOGUE) == CATALOGUE.messages["en"][f"core.problem.{code}"] + (
        " English detail."
    )


def test_every_specific_reason_has_a_text_in_both_languages() -> None:
    for reason in REASONS:
        for language in ("zh-CN", "en"):
            assert f"core.problem.reason.{reason.name}" in CATALOGUE.messages[language], reason.name


def test_a_specific_refusal_is_worded_with_the_problem_members() -> None:
    full = problem("conflict", sub_departments=2, users=3)
    assert explain(full, "zh-CN", CATALOGUE) == "该部门不为空：有 2 个子部门、3 名用户（含已停用用户）。请先将其移走。"
    assert explain(full, "en", CATALOGUE).startswith("The department is not empty: 2 sub-department(s) and 3 user(s)")
    binned = problem("conflict", status="deleted")
    assert explain(binned, "zh-CN", CATALOGUE) == "此客户在回收站中，请先恢复。"
    # The same members with another value are not that reason: the code's general text.
    assert explain(problem("conflict", status="merged"), "zh-CN", CATALOGUE) == "操作被拒绝：与记录的当前状态冲突。"


def test_an_unknown_code_or_type_keeps_the_service_words() -> None:
    assert explain(problem("quota-exceeded", detail="Quota exceeded."), "zh-CN", CATALOGUE) == "Quota exceeded."
    blank = UpstreamProblem("svc", 400, title="Bad Request", detail=None)
    assert explain(blank, "zh-CN", CATALOGUE) == "Bad Request"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("zh-CN", "该部门不为空：有 1 个子部门、0 名用户（含已停用用户）。请先将其移走。"),
        ("en", "The department is not empty: 1 sub-department(s) and 0 user(s), deactivated users included."),
    ],
)
async def test_a_refusal_from_the_directory_is_shown_in_the_users_language(
    page: Any, stack: Stack, language: str, expected: str
) -> None:
    parent, child = unique("parent"), unique("child")
    async with httpx.AsyncClient(base_url=stack.urls["directory"], headers=stack.admin_headers) as directory:
        for department, above in ((parent, "hq"), (child, parent)):
            made = await directory.post(
                "/v1/departments", json={"id": department, "name": f"部门 {department}", "parent_id": above}
            )
            assert made.status_code == 201, made.text
    admin = await stack.new_user(roles=["admin"], language=language)
    await sign_in(page, admin)
    await page.wait_for_url("**/")
    await page.goto("/admin/departments")
    node = page.locator(f"#dept-{parent}")
    await node.locator("summary").first.click()
    await node.locator(f"#delete-{parent}").click()
    await expect(page.locator("#problem")).to_contain_text(expected)


def field_problem(*errors: dict[str, Any]) -> UpstreamProblem:
    return UpstreamProblem(
        "svc", 422, title="Invalid", detail=None, type="urn:crm:problem:validation-failed", errors=list(errors)
    )


def test_field_errors_with_a_known_code_are_in_the_users_language() -> None:
    errors = (
        {"field": "name", "reason": "Field required", "code": "missing"},
        {"field": "title", "reason": "String should have at most 200 characters", "code": "string_too_long",
         "params": {"max_length": 200}},
        {"field": "tier", "reason": "Input should be 'A', 'B' or 'C'", "code": "enum",
         "params": {"expected": "'A', 'B' or 'C'"}},
        # The service's own rule (no code), a code the console does not know, a text whose limit is missing.
        {"field": "minutes", "reason": "a phone interaction has no minutes"},
        {"field": "x", "reason": "Something new", "code": "brand_new_check"},
        {"field": "y", "reason": "At most 3 items", "code": "too_long"},
    )  # fmt: skip
    zh = field_problem(*(dict(e) for e in errors))
    localise_field_errors(zh, "zh-CN", CATALOGUE)
    assert zh.field_errors() == {
        "name": "必填。",
        "title": "最多 200 个字符。",
        "tier": "可选值：'A', 'B' or 'C'。",
        "minutes": "a phone interaction has no minutes",
        "x": "Something new",
        "y": "At most 3 items",
    }
    en = field_problem(*(dict(e) for e in errors))
    localise_field_errors(en, "en", CATALOGUE)
    assert en.field_errors()["title"] == "At most 200 characters." and en.field_errors()["name"] == "Required."


def test_every_field_error_text_is_in_both_languages() -> None:
    keys = {k for k in CATALOGUE.messages["en"] if k.startswith("core.field.")}
    assert keys and keys == {k for k in CATALOGUE.messages["zh-CN"] if k.startswith("core.field.")}


def test_the_not_allowed_page_adds_only_what_is_specific() -> None:
    """The 403 page already says "not allowed" in its heading and text: what it adds is the
    specific reason, or the service's detail in English, never the code's general sentence again."""
    generic = problem("forbidden", detail="Only the owner may do this.")
    assert specifics(generic, "zh-CN", CATALOGUE) == ""
    assert specifics(generic, "en", CATALOGUE) == "Only the owner may do this."
    assert specifics(problem("permission-denied", detail=None), "en", CATALOGUE) == ""
    department = problem("forbidden", claim_scope="department", department_path="/hq/east")
    assert specifics(department, "zh-CN", CATALOGUE) == explain(department, "zh-CN", CATALOGUE)
    assert "/hq/east" in specifics(department, "zh-CN", CATALOGUE)
