"""Custom fields of customers in reports, learnt from the crm.custom_field.* events: distribution by
a choice (or multi-choice, boolean) field, and required custom fields in data-quality completeness.

The required field is archived before the test ends: definitions apply to every customer the
session's service applies, and other tests count completeness over the built-in fields only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm_platform.contracts import custom_fields as fev
from crm_platform.contracts import customers as cev
from crm_platform.testing.event_feed import EventFeed, at, customer
from crm_platform.testing.fixtures import auth, eventually, unique


def definition(key: str, type_: str, version_status: str = "active", **extra: Any) -> fev.FieldDefinitionData:
    now = datetime.now(UTC)
    return fev.FieldDefinitionData(
        field_id=f"customers.{key}",
        module="customers",
        key=key,
        type=type_,
        labels={"zh-CN": key, "en": key},
        status=version_status,
        created_at=now,
        updated_at=now,
        **extra,
    )


async def test_distribution_and_completeness_follow_custom_fields(
    client: Any, reporting_app: Any, feed: EventFeed, wait_applied: Any
) -> None:
    seg, need = f"seg{unique('k')[2:8]}", f"need{unique('k')[2:8]}"
    options = [fev.OptionData(key=k, labels={"zh-CN": k, "en": k}) for k in ("big", "small")]
    await feed.send(
        fev.FIELD_DEFINED,
        f"customers.{seg}",
        fev.FieldDefined(field=definition(seg, "choice", options=options)),
        at("2026-11-01"),
    )
    await feed.send(
        fev.FIELD_DEFINED,
        f"customers.{need}",
        fev.FieldDefined(field=definition(need, "text", required=True)),
        at("2026-11-01"),
    )
    reports = reporting_app.state.reports
    await eventually(lambda: {seg, need} <= set(reports.custom_fields().active), message="definitions learnt")

    dept, rep = f"/hq/{unique('d')}", unique("r")
    day = at("2026-11-02")
    values = {"c1": {seg: "big", need: "预算已批"}, "c2": {seg: "small"}, "c3": {}}
    sent = []
    for name, custom in values.items():
        cid = f"{name}-{unique('c')}"
        snap = customer(cid, rep, dept, day, industry="制造业", region="广东", source="website", tier="A")
        sent.append(
            await feed.send(
                cev.CUSTOMER_CREATED, cid, cev.CustomerCreated(customer=snap.model_copy(update={"custom": custom})), day
            )
        )
    await wait_applied(sent)

    admin = auth("boss", ["admin"], "/hq")
    r = await client.get(
        "/v1/reports/distribution", params={"field": f"custom.{seg}", "department_path": dept}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert {row["value"]: row["count"] for row in r.json()["rows"]} == {"big": 1, "small": 1, "(none)": 1}
    # A text field is not a distribution; an unknown one neither: 422 naming the parameter.
    for field in (f"custom.{need}", "custom.nope"):
        r = await client.get("/v1/reports/distribution", params={"field": field}, headers=admin)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "field", r.text

    r = await client.get("/v1/reports/quality", params={"period": "2026-11", "department_path": dept}, headers=admin)
    assert r.status_code == 200, r.text
    quality = r.json()
    assert f"custom.{need}" in quality["required_fields"]
    assert quality["overall"]["missing_per_field"][f"custom.{need}"] == 2  # c2 and c3 lack it
    assert quality["overall"]["customers"] == 3

    # Archived: no longer required.
    await feed.send(
        fev.FIELD_ARCHIVED,
        f"customers.{need}",
        fev.FieldArchived(field=definition(need, "text", "archived", required=True)),
        at("2026-11-03"),
    )
    await eventually(lambda: need not in reports.custom_fields().active, message="archive learnt")
    r = await client.get("/v1/reports/quality", params={"period": "2026-11", "department_path": dept}, headers=admin)
    assert f"custom.{need}" not in r.json()["required_fields"]
