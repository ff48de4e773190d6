"""Control characters are refused with a field error (the platform's check, seen from interactions)."""

from __future__ import annotations

import pytest

from crm_platform.testing.fixtures import auth

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "field", "location"),
    [
        ("POST", "/v1/tasks", {}, {"title": "Call\u0000", "due_at": "2030-01-01T09:00:00+08:00"}, "title", "body"),
        (
            "POST",
            "/v1/tasks",
            {},
            {"title": "Call", "notes": "a\u0008b", "due_at": "2030-01-01T09:00:00Z"},
            "notes",
            "body",
        ),
        ("GET", "/v1/tasks", {"sort": "\u0000"}, None, "sort", "query"),
        ("GET", "/v1/tasks/t%00", {}, None, "task_id", "path"),
    ],
)
async def test_control_characters_are_refused(client, method, path, params, body, field, location):
    r = await client.request(method, path, params=params, json=body, headers=auth("u-ctl", ["admin"]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert [(e["field"], e["location"]) for e in r.json()["errors"]] == [(field, location)]
    assert "control character" in r.json()["errors"][0]["reason"]


async def test_multi_line_notes_keep_their_line_breaks(client):
    body = {"title": "Call back", "notes": "first line\r\nsecond\tline", "due_at": "2030-01-01T09:00:00Z"}
    r = await client.post("/v1/tasks", json=body, headers=auth("u-ctl-notes", ["rep"]))
    assert r.status_code == 201, r.text
    assert r.json()["notes"] == "first line\r\nsecond\tline"
