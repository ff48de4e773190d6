"""Pytest fixtures shared by every test directory live in crm_platform.testing.fixtures."""

pytest_plugins = ["crm_platform.testing.fixtures"]
