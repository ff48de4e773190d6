"""The service starts, answers health checks, documents its API and its events."""

from __future__ import annotations


async def test_health_readiness_and_catalogue(client):
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks["outbox_pending"]) == {"interactions", "tasks", "feedback", "custom_fields"}
    catalogue = (await client.get("/asyncapi.json")).json()
    names = str(catalogue)
    for event_type in (
        "crm.interaction.logged",
        "crm.interaction.updated",
        "crm.interaction.deleted",
        "crm.task.created",
        "crm.task.rescheduled",
        "crm.task.completed",
        "crm.task.reopened",
        "crm.task.reminder_due",
        "crm.task.overdue",
        "crm.feedback.opened",
        "crm.feedback.status_changed",
        "crm.feedback.resolved",
    ):
        assert event_type in names, event_type
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/v1/interactions", "/v1/customers/{customer_id}/interactions", "/v1/tasks", "/v1/feedback"} <= set(paths)


async def test_no_token_is_401_problem(client, expect_problem):
    for method, path in (("GET", "/v1/interactions"), ("POST", "/v1/tasks"), ("GET", "/v1/feedback/x")):
        body = expect_problem(await client.request(method, path), 401)
        assert body["title"] == "Authentication required"
