"""Prometheus metrics shared by every service (each process exposes its own /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("crm_http_requests_total", "HTTP requests served", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "crm_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_PUBLISHED = Counter("crm_outbox_published_total", "Events published by the outbox relay", ["type"])
OUTBOX_RELAY_ERRORS = Counter("crm_outbox_relay_errors_total", "Outbox relay rounds that failed")
OUTBOX_LAG = Histogram(
    "crm_outbox_lag_seconds",
    "From the write that caused an event to its publication",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300),
)
OUTBOX_PENDING = Gauge("crm_outbox_pending_aggregates", "Aggregates with unpublished events", ["collection"])
EVENTS_CONSUMED = Counter("crm_events_consumed_total", "Events handled by consumers", ["group", "type", "outcome"])
EVENTS_DEAD_LETTERED = Counter(
    "crm_events_dead_lettered_total", "Events sent to a dead-letter topic", ["group", "type"]
)
CONSUMER_LAG = Gauge("crm_consumer_lag_messages", "Messages not yet consumed", ["group", "topic"])
BACKGROUND_RUNS = Counter(
    "crm_background_runs_total", "Runs of a periodic background task (schedulers)", ["task", "outcome"]
)
BACKGROUND_SECONDS = Histogram(
    "crm_background_run_seconds",
    "How long a periodic background task's run took",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
STORE_COMMANDS = Counter(
    "crm_store_commands_total",
    "Commands sent to the store, by the work that sent them (http, relay, consumer, background)",
    ["origin", "command"],
)
