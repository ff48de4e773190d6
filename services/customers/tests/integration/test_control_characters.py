"""Control characters are refused with a field error (the platform's check, seen from customers)."""

from __future__ import annotations

import pytest

from crm_platform.testing.fixtures import auth

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "field", "location"),
    [
        ("POST", "/v1/customers", {}, {"kind": "company", "name": "Acme\u0000 Ltd"}, "name", "body"),
        (
            "POST",
            "/v1/customers",
            {},
            {"kind": "company", "name": "A", "tags": ["ok", "v\u001b"]},
            "tags[1]",
            "body",
        ),
        ("GET", "/v1/customers", {"sort": "name\u0000"}, None, "sort", "query"),
        ("GET", "/v1/customers/c%00x", {}, None, "customer_id", "path"),
    ],
)
async def test_control_characters_are_refused(client, method, path, params, body, field, location):
    r = await client.request(method, path, params=params, json=body, headers=auth("u-ctl", ["admin"]))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert [(e["field"], e["location"]) for e in r.json()["errors"]] == [(field, location)]
    assert "control character" in r.json()["errors"][0]["reason"]


async def test_a_csv_import_row_with_a_control_character_is_a_row_error(client):
    payload = b'name,description\r\nAcme\x00 Ltd,fine\r\nBeta Ltd,"two\nlines"\r\n'
    headers = {**auth("u-ctl", ["rep"]), "Content-Type": "text/csv"}
    r = await client.post("/v1/customers/import", params={"dry_run": "true"}, content=payload, headers=headers)
    assert r.status_code == 200, r.text
    errors = [(e["line"], e["field"]) for e in r.json()["errors"]]
    assert errors == [(2, "name")], r.json()
