"""The CRM platform package: what every service shares.

Events (CloudEvents on Kafka), the transactional outbox and its relay, idempotent
consumers with retries and a dead-letter topic, JWT auth, RFC 9457 errors,
optimistic concurrency, list helpers, settings, logging, metrics and the app
factory that wires them into a FastAPI + FastStream service.
"""

from crm_platform import pymongo_compat

# Before any service makes a client: PyMongo's async lock can be left held after a cancelled
# wait on Python 3.11 (see crm_platform.pymongo_compat), which hangs the client for good.
pymongo_compat.install()
