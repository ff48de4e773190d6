"""Sending one email over SMTP with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import aiosmtplib

from crm_notifications.settings import NotificationSettings


class Mailer:
    def __init__(self, settings: NotificationSettings) -> None:
        self._s = settings

    def message(
        self, *, to: str, to_name: str | None, subject: str, body: str, language: str, ref: str
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._s.smtp_from
        msg["To"] = formataddr((to_name or "", to))
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="crm.local")
        # Lets support trace a complaint about an email back to the notification.
        msg["X-CRM-Notification-Id"] = ref
        msg.set_content(body, charset="utf-8")
        msg["Content-Language"] = language  # after set_content, which drops Content-* headers
        return msg

    async def send(self, message: EmailMessage) -> None:
        s = self._s
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls if not s.smtp_use_tls else False,
            use_tls=s.smtp_use_tls,
            timeout=s.smtp_timeout_seconds,
        )
