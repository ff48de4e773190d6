"""The CRM platform package: what every service shares.

Events (CloudEvents on Kafka), the transactional outbox and its relay, idempotent
consumers with retries and a dead-letter topic, JWT auth, RFC 9457 errors,
optimistic concurrency, list helpers, settings, logging, metrics and the app
factory that wires them into a FastAPI + FastStream service.
"""
