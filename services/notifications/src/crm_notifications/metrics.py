"""Prometheus counters of the notifications service (served at /metrics with the platform's)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

NOTIFICATIONS_CREATED = Counter("crm_notifications_created_total", "Inbox notifications stored", ["kind"])
EMAILS = Counter("crm_notifications_emails_total", "Email send attempts by outcome", ["outcome"])
WEBHOOK_DELIVERIES = Counter(
    "crm_notifications_webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered, retry, dead, refused)",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "crm_notifications_webhook_seconds",
    "Webhook receiver response time",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
