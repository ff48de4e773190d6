"""Control characters are refused with a field error (the platform's check, seen from directory)."""

from __future__ import annotations

import pytest

from crm_platform.testing.fixtures import auth

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "field", "location"),
    [
        ("POST", "/v1/departments", {}, {"id": "d-ctl", "name": "Sales\u0000"}, "name", "body"),
        ("GET", "/v1/users", {"sort": "name\u0000"}, None, "sort", "query"),
        ("GET", "/v1/users/u%00x", {}, None, "user_id", "path"),
    ],
)
async def test_control_characters_are_refused(client, method, path, params, body, field, location):
    r = await client.request(method, path, params=params, json=body, headers=auth("u-ctl", ["admin"]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert [(e["field"], e["location"]) for e in r.json()["errors"]] == [(field, location)]
    assert "control character" in r.json()["errors"][0]["reason"]
