"""Email per the user's preferences, sent by the background worker through SMTP (a local aiosmtpd sink)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
from notifications_testkit import World, customer, task

from crm_notifications.adapters.mailer import Mailer
from crm_notifications.adapters.repository import NEVER, Repository
from crm_notifications.application.email_worker import EmailWorker
from crm_notifications.settings import NotificationSettings
from crm_notifications.smtp_sink import SmtpSink
from crm_platform.clock import ManualClock
from crm_platform.contracts import customers, interactions, pool
from crm_platform.testing.backends import Backend
from crm_platform.testing.fixtures import database, eventually, unique


async def test_preferences_default_change_and_etag(client: httpx.AsyncClient, world: World) -> None:
    rep = await world.person("en")
    got = await client.get("/v1/me/notification-preferences", headers=rep.headers)
    assert got.status_code == 200 and got.headers["etag"] == '"0"'
    defaults = got.json()["email"]
    assert defaults["customer_recycle_warning"] is True and defaults["task_overdue"] is True
    assert defaults["task_reminder"] is False and defaults["customer_assigned"] is False

    put = await client.put(
        "/v1/me/notification-preferences",
        headers=rep.match('"0"'),
        json={"email": {"customer_assigned": True, "task_overdue": False}},
    )
    assert put.status_code == 200 and put.headers["etag"] == '"1"'
    assert put.json()["email"]["customer_assigned"] is True and put.json()["email"]["task_overdue"] is False
    assert put.json()["email"]["customer_recycle_warning"] is True  # left out: unchanged
    stale = await client.put(
        "/v1/me/notification-preferences", headers=rep.match('"0"'), json={"email": {"task_reminder": True}}
    )
    assert stale.status_code == 412
    unknown = await client.put(
        "/v1/me/notification-preferences", headers=rep.headers, json={"email": {"birthday": True}}
    )
    assert unknown.status_code == 422 and unknown.headers["content-type"].startswith("application/problem+json")


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


async def test_emails_go_out_in_the_users_language_with_the_link(
    client: httpx.AsyncClient, world: World, smtp_sink: SmtpSink
) -> None:
    zh = await world.person("zh-CN")
    en = await world.person("en")
    await client.put("/v1/me/notification-preferences", headers=en.headers, json={"email": {"customer_assigned": True}})
    c = customer(zh.id, "杭州云帆贸易有限公司")
    warning = pool.RecycleWarning(
        customer_id=c.customer_id,
        customer_name=c.name,
        owner_id=zh.id,
        recycle_at=c.created_at,
        reason="no_interaction",
        rule_id="r-1",
        days_left=2,
    )
    await world.emit(pool.RECYCLE_WARNING, c.customer_id, warning, actor=pool.SYSTEM_ACTOR)
    # A kind that is off by default for zh: a reminder only in the inbox.
    t = task(zh.id)
    await world.emit(interactions.TASK_REMINDER_DUE, t.task_id, interactions.TaskReminderDue(task=t))
    c2 = customer(en.id, "Northwind Traders")
    await world.emit(
        customers.OWNER_CHANGED,
        c2.customer_id,
        customers.OwnerChanged(customer=c2, previous_owner_id=None, owner_id=en.id),
        actor="u-manager",
    )

    [zh_mail] = await eventually(lambda: smtp_sink.to(zh.email), timeout=30, message="mail to zh")
    assert zh_mail["Subject"] == f"客户即将回收至公海：{c.name}"
    assert zh_mail["Content-Language"] == "zh-CN"
    assert f"Name {zh.id}" in str(zh_mail["To"])
    body = _body(zh_mail)
    assert f"http://localhost:8080/customers/{c.customer_id}" in body and "2 天后" in body

    [en_mail] = await eventually(lambda: smtp_sink.to(en.email), timeout=30, message="mail to en")
    assert en_mail["Subject"] == "New customer for you: Northwind Traders"
    assert en_mail["Content-Language"] == "en"
    assert f"/customers/{c2.customer_id}" in _body(en_mail)

    # The reminder reached the inbox, but not the mailbox.
    items = await world.inbox(client, zh, 2)
    assert {i["kind"] for i in items} == {"customer_recycle_warning", "task_reminder"}
    assert len(smtp_sink.to(zh.email)) == 1


async def test_a_failing_smtp_server_is_retried_then_given_up(
    backend: Backend, notifications_settings: NotificationSettings
) -> None:
    """The worker against a port where nothing listens, on a database of its own (so the service's
    running worker does not take the job): attempts are counted, retried, then the job fails for good."""
    dead = notifications_settings.model_copy(
        update={"smtp_port": 1, "email_max_attempts": 2, "email_retry_initial_seconds": 0.0, "smtp_timeout_seconds": 1}
    )
    clock = ManualClock(datetime.now(UTC))
    async with database(backend.mongo_url, f"crm_notifications_mail_{unique('x')}") as db:
        repo = Repository(db, clock, lambda: None)
        await repo.ensure_indexes()
        worker = EmailWorker(repo, Mailer(dead), clock, dead)
        job = {
            "_id": "job-1",
            "notification_id": "n-1",
            "recipient_id": "u-x",
            "to": "nobody@example.com",
            "to_name": None,
            "subject": "s",
            "body": "b",
            "language": "en",
            "status": "pending",
            "attempts": 0,
            "last_error": "",
            "due_ts": clock.now().timestamp(),
            "created_at": clock.now(),
        }
        await db["email_jobs"].insert_one(job)
        assert await worker.run() == 0
        first = await db["email_jobs"].find_one({"_id": "job-1"})
        assert first["status"] == "pending" and first["attempts"] == 1 and first["last_error"]
        assert first["due_ts"] < NEVER
        clock.advance(timedelta(seconds=1))
        assert await worker.run() == 0
        second = await db["email_jobs"].find_one({"_id": "job-1"})
        assert second["status"] == "failed" and second["attempts"] == 2 and second["due_ts"] == NEVER
        clock.advance(timedelta(days=1))
        assert await worker.run() == 0  # a failed job is not tried again
        assert (await db["email_jobs"].find_one({"_id": "job-1"}))["attempts"] == 2
