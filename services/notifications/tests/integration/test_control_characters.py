"""Control characters are refused with a field error (the platform's check, seen from notifications)."""

from __future__ import annotations

import pytest

from crm_platform.testing.fixtures import auth

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "field", "location"),
    [
        (
            "POST",
            "/v1/webhooks",
            {},
            {"url": "https://hooks.example.com/in", "event_types": ["crm.customer.*"], "description": "a\u0000"},
            "description",
            "body",
        ),
        ("POST", "/v1/webhooks", {}, {"url": "https://x.example.com/\u0000", "event_types": ["a"]}, "url", "body"),
        ("GET", "/v1/notifications", {"cursor": "\u0000"}, None, "cursor", "query"),
        ("GET", "/v1/webhooks/wh%00", {}, None, "subscription_id", "path"),
    ],
)
async def test_control_characters_are_refused(client, method, path, params, body, field, location):
    r = await client.request(method, path, params=params, json=body, headers=auth("u-ctl", ["admin"]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert [(e["field"], e["location"]) for e in r.json()["errors"]] == [(field, location)]
    assert "control character" in r.json()["errors"][0]["reason"]
