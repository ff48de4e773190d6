"""Helpers for the test suites: real (embedded or Docker) Kafka and MongoDB backends.

Fixtures live in the suites' conftest.py files; this package only has the functions.
"""

from crm_platform.testing.backends import (
    BACKEND_ENV,
    Backend,
    backend_kind,
    start_backend,
)

__all__ = ["BACKEND_ENV", "Backend", "backend_kind", "start_backend"]
