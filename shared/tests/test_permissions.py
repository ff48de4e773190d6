"""The permission table as the kit applies it: a route without a decision stops the app from being
built, and a role's permissions are the union of what its roles grant."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from crm_platform.auth import Principal, Role
from crm_platform.permissions import Permission, PermissionDenied, ensure_permitted, granted, rule_for
from crm_platform.service import ServiceKit
from crm_platform.settings import ServiceSettings
from crm_platform.testing.fixtures import TEST_JWT_SECRET


def _kit(service: str) -> ServiceKit:
    settings = ServiceSettings(service_name=service, jwt_secret=TEST_JWT_SECRET)  # type: ignore[arg-type]
    return ServiceKit(settings, title=service, description="permission check")


def test_a_route_without_a_decision_stops_the_app_from_being_built() -> None:
    router = APIRouter(prefix="/v1")

    @router.get("/customers/{customer_id}/secrets")
    async def secrets(customer_id: str) -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match=r"GET /v1/customers/\{customer_id\}/secrets"):
        _kit("customers").build_app([router])


def test_declared_routes_build_and_head_needs_what_get_needs() -> None:
    router = APIRouter(prefix="/v1")

    @router.get("/customers")
    async def customers() -> list[str]:
        return []

    assert _kit("customers").build_app([router]) is not None
    assert rule_for("customers", "HEAD", "/v1/customers") == Permission.customers_view


def test_permissions_of_several_roles_add_up() -> None:
    both = Principal(user_id="u", roles=frozenset({Role.integrator, Role.rep}))
    ensure_permitted(both, Permission.webhooks_manage)
    ensure_permitted(both, Permission.customers_export)
    assert granted([]) == frozenset()


def test_a_denial_names_the_permission_and_who_has_it() -> None:
    integrator = Principal(user_id="erp", roles=frozenset({Role.integrator}))
    with pytest.raises(PermissionDenied) as denied:
        ensure_permitted(integrator, Permission.pool_claim)
    assert denied.value.status == 403 and denied.value.extra == {"permission": "pool:claim"}
    assert "admin, manager, rep" in denied.value.detail
