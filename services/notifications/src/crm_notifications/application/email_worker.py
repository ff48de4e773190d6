"""Sends queued emails in the background, with retries; the inbox never waits for SMTP.

A job is claimed by moving its ``due_ts`` forward by a lease in one conditional update
(only the replica whose filter still matches the old value wins), then sent, then marked
sent, rescheduled with backoff, or failed after the last attempt.
"""

from __future__ import annotations

from typing import Any

import structlog

from crm_notifications.adapters.mailer import Mailer
from crm_notifications.adapters.repository import NEVER, Repository
from crm_notifications.domain.webhooks import next_delay
from crm_notifications.metrics import EMAILS
from crm_notifications.settings import NotificationSettings
from crm_platform.clock import Clock

log = structlog.get_logger(__name__)
Document = dict[str, Any]
LEASE_SECONDS = 120.0


class EmailWorker:
    def __init__(self, repo: Repository, mailer: Mailer, clock: Clock, settings: NotificationSettings) -> None:
        self._repo = repo
        self._mailer = mailer
        self._clock = clock
        self._s = settings

    async def run(self) -> int:
        """One round: send every due job (up to the batch size); returns how many were sent."""
        now = self._clock.now().timestamp()
        due = (
            await self._repo.email_jobs.find({"due_ts": {"$lte": now}})
            .sort("due_ts", 1)
            .to_list(self._s.email_batch_size)
        )
        sent = 0
        for job in due:
            claimed = await self._repo.email_jobs.update_one(
                {"_id": job["_id"], "due_ts": job["due_ts"]}, {"$set": {"due_ts": now + LEASE_SECONDS}}
            )
            if claimed.modified_count and await self._send(job, now):
                sent += 1
        return sent

    async def _send(self, job: Document, now: float) -> bool:
        attempts = int(job.get("attempts", 0)) + 1
        message = self._mailer.message(
            to=job["to"],
            to_name=job.get("to_name"),
            subject=job["subject"],
            body=job["body"],
            language=job["language"],
            ref=job["notification_id"],
        )
        try:
            await self._mailer.send(message)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            if attempts >= self._s.email_max_attempts:
                update = {"status": "failed", "due_ts": NEVER}
                EMAILS.labels("failed").inc()
                log.error("email failed for good", job=job["_id"], error=error, attempts=attempts)
            else:
                delay = next_delay(attempts, self._s.email_retry_initial_seconds, self._s.email_retry_max_seconds)
                update = {"status": "pending", "due_ts": now + delay}
                EMAILS.labels("retry").inc()
                log.warning("email failed; will retry", job=job["_id"], error=error, attempts=attempts)
            await self._repo.email_jobs.update_one(
                {"_id": job["_id"]}, {"$set": {**update, "attempts": attempts, "last_error": error}}
            )
            return False
        await self._repo.email_jobs.update_one(
            {"_id": job["_id"]},
            {"$set": {"status": "sent", "due_ts": NEVER, "attempts": attempts, "sent_ts": now, "last_error": ""}},
        )
        EMAILS.labels("sent").inc()
        return True
