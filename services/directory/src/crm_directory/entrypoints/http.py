"""The HTTP API of the directory service (/v1, and the JWKS at /.well-known/jwks.json).

Who may do what:

- administrators manage users, departments and roles (``roles:manage``);
- managers read the users of their department and every department below it (lists,
  records, history);
- everybody reads and edits their own name, phone, language and time zone (``/v1/me``), changes
  their own password, reads the department tree, and reads the public card (name and
  department) of any *active* user at ``GET /v1/users/{id}``, so that every UI can show
  who owns a record. A user one may not read in full, who is deactivated, answers 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from crm_directory.application import history as history_
from crm_directory.application.auth import TokenPair
from crm_directory.application.directory import Directory
from crm_directory.application.queries import (
    DepartmentFilter,
    UserFilter,
    department_tree,
    list_departments,
    list_users,
)
from crm_directory.domain.model import (
    DeactivateIn,
    DepartmentCreate,
    DepartmentPatch,
    MoveIn,
    PasswordChange,
    PasswordReset,
    RefreshIn,
    RoleCreate,
    RolePatch,
    SelfPatch,
    SignIn,
    UserCreate,
    UserPatch,
    UserUpsert,
)
from crm_directory.entrypoints.schemas import (
    DepartmentOut,
    DepartmentPage,
    PublicUserOut,
    RoleOut,
    TreeNode,
    UserOut,
    UserPage,
    department_out,
    public_user_out,
    role_out,
    tree_out,
    user_out,
)
from crm_platform.auth import CurrentPrincipal
from crm_platform.concurrency import etag, expected_version
from crm_platform.history import HistoryEntry
from crm_platform.idempotency import IdempotencyKeyHeader, mark_replayed
from crm_platform.openapi import problems
from crm_platform.serving import client_address

Document = dict[str, Any]
USER_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


def directory(request: Request) -> Directory:
    service: Directory = request.app.state.directory
    return service


Service = Annotated[Directory, Depends(directory)]
UserId = Annotated[
    str, Path(pattern=USER_ID, max_length=128, description="1-128 letters, digits or . _ : @ -, e.g. the IdP subject")
]


def client_ip(request: Request, service: Directory) -> str | None:
    # X-Forwarded-For counts only when a proxy named in CRM_TRUSTED_PROXIES sent the request.
    return client_address(request, service.settings.trusted_proxies)


async def _user_response(service: Directory, doc: Document, status: int = 200, **headers: str) -> JSONResponse:
    last = (await service.repo.last_sign_ins([doc["_id"]])).get(doc["_id"])
    body = user_out(doc, last).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers={"ETag": etag(doc["version"]), **headers})


def _department_response(doc: Document, status: int = 200, **headers: str) -> JSONResponse:
    body = department_out(doc).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers={"ETag": etag(doc["version"]), **headers})


# --- sign-in -------------------------------------------------------------------------------------

auth_router = APIRouter(prefix="/v1/auth", tags=["sign-in"])
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@auth_router.post(
    "/token",
    response_model=TokenPair,
    summary="Sign in with email and password: an access token (JWT) and a refresh token",
    responses={401: {"description": "Wrong email or password"}, 429: {"description": "Too many failures"}},
)
async def sign_in(body: SignIn, request: Request, service: Service) -> JSONResponse:
    pair = await service.auth.sign_in(body.email, body.password.get_secret_value(), client_ip(request, service))
    return JSONResponse(pair.model_dump(), headers=_NO_STORE)


@auth_router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Trade a refresh token for new tokens (rotation)",
    responses=problems(401),
)
async def refresh(body: RefreshIn, service: Service) -> JSONResponse:
    pair = await service.auth.refresh(body.refresh_token.get_secret_value())
    return JSONResponse(pair.model_dump(), headers=_NO_STORE)


@auth_router.post("/logout", status_code=204, summary="Sign out: revoke the refresh token and its whole family")
async def logout(body: RefreshIn, service: Service) -> Response:
    await service.auth.logout(body.refresh_token.get_secret_value())
    return Response(status_code=204)


# --- the JWKS (RS256) --------------------------------------------------------------------------------

wellknown_router = APIRouter(tags=["sign-in"])


@wellknown_router.get(
    "/.well-known/jwks.json", summary="The public key(s) that verify access tokens (empty with HS256)"
)
async def jwks(service: Service) -> JSONResponse:
    return JSONResponse(service.signer.jwks(), headers={"Cache-Control": "public, max-age=300"})


# --- me ------------------------------------------------------------------------------------------------

me_router = APIRouter(prefix="/v1/me", tags=["me"])


# The /v1/me routes answer 404 for a caller the directory does not hold (a token of another issuer).
@me_router.get("", response_model=UserOut, summary="Who I am", responses=problems(404))
async def get_me(principal: CurrentPrincipal, service: Service) -> JSONResponse:
    return await _user_response(service, await service.users.get_full(principal, principal.user_id))


@me_router.patch(
    "",
    response_model=UserOut,
    summary="Change my name, phone, language or time zone (send If-Match)",
    responses=problems(404, 409, 412, 428),
)
async def patch_me(body: SelfPatch, request: Request, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    doc = await service.users.update(principal, principal.user_id, body, expected_version(request, required=True))
    return await _user_response(service, doc)


@me_router.post(
    "/password",
    status_code=204,
    summary="Change my password (with the current one); signs out every session",
    responses=problems(404, 409),
)
async def change_my_password(
    body: PasswordChange, request: Request, principal: CurrentPrincipal, service: Service
) -> Response:
    ip = client_ip(request, service)

    async def verify(doc: Document, password: str) -> bool:
        return await service.auth.verify_current_password(doc, password, ip)

    await service.users.change_own_password(
        principal, body.current_password.get_secret_value(), body.new_password.get_secret_value(), verify
    )
    return Response(status_code=204)


@me_router.get(
    "/history", response_model=list[HistoryEntry], summary="The history of my own record", responses=problems(404)
)
async def my_history(principal: CurrentPrincipal, service: Service, request: Request) -> list[HistoryEntry]:
    doc = await service.users.get_full(principal, principal.user_id)
    return await history_.user_history(request.app.state.kit.event_log, doc)


# --- users ------------------------------------------------------------------------------------------

users_router = APIRouter(prefix="/v1/users", tags=["users"])


class UserListParams(UserFilter):
    model_config = ConfigDict(extra="forbid")

    sort: str | None = Field(
        default=None, description="Up to four of name, email, created_at, updated_at, department_path; '-' descends."
    )
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=500)
    include_total: bool = False


@users_router.post(
    "", status_code=201, response_model=UserOut, summary="Create a user (users:manage)", responses=problems(409)
)
async def create_user(
    body: UserCreate, principal: CurrentPrincipal, service: Service, key: IdempotencyKeyHeader
) -> JSONResponse:
    doc = await service.users.create(principal, body, key)
    return mark_replayed(await _user_response(service, doc, 201, Location=f"/v1/users/{doc['_id']}"), key)


@users_router.get(
    "",
    response_model=UserPage,
    summary="List users (admins: everyone; managers: their department and below)",
)
async def list_(params: Annotated[UserListParams, Query()], principal: CurrentPrincipal, service: Service) -> UserPage:
    filters = UserFilter.model_validate(params.model_dump(include=set(UserFilter.model_fields)))
    page = await list_users(
        service.repo,
        principal,
        filters,
        sort=params.sort,
        cursor=params.cursor,
        limit=params.limit,
        with_total=params.include_total,
    )
    last = await service.repo.last_sign_ins([d["_id"] for d in page.items])
    return UserPage(
        items=[user_out(d, last.get(d["_id"])) for d in page.items], next_cursor=page.next_cursor, total=page.total
    )


@users_router.get(
    "/{user_id}",
    response_model=UserOut | PublicUserOut,
    summary="One user: the full record (admins, their managers, themselves) or the public card (anyone)",
)
async def get_user(user_id: str, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    doc, full = await service.users.get(principal, user_id)
    if full:
        return await _user_response(service, doc)
    return JSONResponse(public_user_out(doc).model_dump(mode="json"), headers={"ETag": etag(doc["version"])})


@users_router.patch(
    "/{user_id}",
    response_model=UserOut,
    summary="Change a user (admins: any field; a user: their own name, phone, language). Send If-Match.",
    responses=problems(409, 412, 428),
)
async def patch_user(
    user_id: str, body: UserPatch, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc = await service.users.update(principal, user_id, body, expected_version(request, required=True))
    return await _user_response(service, doc)


@users_router.put(
    "/{user_id}",
    response_model=UserOut,
    summary="Create or update a user to exactly this state (admins; idempotent: what an IdP sync calls)",
    responses={201: {"model": UserOut, "description": "Created"}, **problems(409, 412)},
)
async def put_user(
    user_id: UserId, body: UserUpsert, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc, created = await service.users.upsert(principal, user_id, body, expected_version(request, required=False))
    if created:
        return await _user_response(service, doc, 201, Location=f"/v1/users/{doc['_id']}")
    return await _user_response(service, doc)


@users_router.post(
    "/{user_id}/deactivate",
    response_model=UserOut,
    summary="Deactivate (users:manage): sign-in refused, refresh tokens revoked, records and history kept",
    responses=problems(409, 412),
)
async def deactivate(
    user_id: str,
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    body: DeactivateIn | None = None,
) -> JSONResponse:
    doc = await service.users.deactivate(
        principal, user_id, body.reason if body else None, expected_version(request, required=False)
    )
    return await _user_response(service, doc)


@users_router.post(
    "/{user_id}/reactivate", response_model=UserOut, summary="Reactivate (users:manage)", responses=problems(409, 412)
)
async def reactivate(user_id: str, request: Request, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    doc = await service.users.reactivate(principal, user_id, expected_version(request, required=False))
    return await _user_response(service, doc)


@users_router.post(
    "/{user_id}/password",
    response_model=UserOut,
    summary="Set a user's password (users:manage); revokes every refresh token of the user",
    responses=problems(409, 412),
)
async def set_password(
    user_id: str, body: PasswordReset, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc = await service.users.set_password(
        principal, user_id, body.new_password.get_secret_value(), expected_version(request, required=False)
    )
    return await _user_response(service, doc)


@users_router.get(
    "/{user_id}/history", response_model=list[HistoryEntry], summary="Field-level history: who, when, old and new"
)
async def user_history(
    user_id: str, principal: CurrentPrincipal, service: Service, request: Request
) -> list[HistoryEntry]:
    doc = await service.users.get_full(principal, user_id)
    return await history_.user_history(request.app.state.kit.event_log, doc)


# --- departments ------------------------------------------------------------------------------------

departments_router = APIRouter(prefix="/v1/departments", tags=["departments"])


class DepartmentListParams(DepartmentFilter):
    model_config = ConfigDict(extra="forbid")

    sort: str | None = Field(default=None, description="path (default), name, created_at, updated_at; '-' descends.")
    cursor: str | None = None
    limit: int = Field(default=200, ge=1, le=1000)
    include_total: bool = False


@departments_router.post(
    "",
    status_code=201,
    response_model=DepartmentOut,
    summary="Create a department (departments:manage)",
    responses=problems(409),
)
async def create_department(body: DepartmentCreate, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    doc = await service.departments.create(principal, body)
    return _department_response(doc, 201, Location=f"/v1/departments/{doc['_id']}")


@departments_router.get("", response_model=DepartmentPage, summary="Departments as a flat list (filters, sort)")
async def list_departments_(
    params: Annotated[DepartmentListParams, Query()], principal: CurrentPrincipal, service: Service
) -> DepartmentPage:
    filters = DepartmentFilter.model_validate(params.model_dump(include=set(DepartmentFilter.model_fields)))
    page = await list_departments(
        service.repo,
        principal,
        filters,
        sort=params.sort,
        cursor=params.cursor,
        limit=params.limit,
        with_total=params.include_total,
    )
    return DepartmentPage(items=[department_out(d) for d in page.items], next_cursor=page.next_cursor, total=page.total)


@departments_router.get("/tree", response_model=list[TreeNode], summary="Departments as a tree (or one subtree)")
async def tree(
    principal: CurrentPrincipal,
    service: Service,
    root: Annotated[str | None, Query(max_length=63, description="Only this department and below.")] = None,
) -> list[TreeNode]:
    return [tree_out(n) for n in await department_tree(service.repo, root)]


@departments_router.get("/{department_id}", response_model=DepartmentOut, summary="One department")
async def get_department(department_id: str, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    return _department_response(await service.departments.get(principal, department_id))


@departments_router.patch(
    "/{department_id}",
    response_model=DepartmentOut,
    summary="Rename or change the manager (admins; send If-Match)",
    responses=problems(409, 412, 428),
)
async def patch_department(
    department_id: str, body: DepartmentPatch, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc = await service.departments.update(principal, department_id, body, expected_version(request, required=True))
    return _department_response(doc)


@departments_router.post(
    "/{department_id}/move",
    response_model=DepartmentOut,
    summary="Move under another parent (departments:manage): the paths of every department and user below follow",
    responses=problems(409, 412),
)
async def move_department(
    department_id: str, body: MoveIn, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc = await service.departments.move(
        principal, department_id, body.parent_id, expected_version(request, required=False)
    )
    return _department_response(doc)


@departments_router.delete(
    "/{department_id}",
    status_code=204,
    summary="Delete an empty department (admins; 409 if it has users or children)",
    responses=problems(409, 412),
)
async def delete_department(
    department_id: str, request: Request, principal: CurrentPrincipal, service: Service
) -> Response:
    await service.departments.delete(principal, department_id, expected_version(request, required=False))
    return Response(status_code=204)


@departments_router.get(
    "/{department_id}/history", response_model=list[HistoryEntry], summary="Field-level history of a department"
)
async def department_history(
    department_id: str, principal: CurrentPrincipal, service: Service, request: Request
) -> list[HistoryEntry]:
    doc = await service.departments.get(principal, department_id)
    return await history_.department_history(request.app.state.kit.event_log, doc)


# --- roles ----------------------------------------------------------------------------------------

roles_router = APIRouter(prefix="/v1/roles", tags=["roles"])
RoleId = Annotated[str, Path(max_length=63, description="The role's id (slug), e.g. rep or key-account.")]


def _role_response(doc: Document, status: int = 200, **headers: str) -> JSONResponse:
    body = role_out(doc).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers={"ETag": etag(doc["version"]), **headers})


@roles_router.get("", response_model=list[RoleOut], summary="Every role: the built-in ones first, then by id")
async def list_roles(
    service: Service,
    include_deleted: Annotated[bool, Query(description="Also the deleted custom roles.")] = False,
) -> list[RoleOut]:
    return [role_out(d) for d in await service.roles.list_roles(include_deleted)]


@roles_router.post(
    "",
    status_code=201,
    response_model=RoleOut,
    summary="Define a role: its permissions and its data scope per module (roles:manage)",
    responses=problems(409),
)
async def create_role(body: RoleCreate, principal: CurrentPrincipal, service: Service) -> JSONResponse:
    doc = await service.roles.create(principal, body)
    return _role_response(doc, 201, Location=f"/v1/roles/{doc['_id']}")


@roles_router.get("/{role_id}", response_model=RoleOut, summary="One role", responses=problems(404))
async def get_role(role_id: RoleId, service: Service) -> JSONResponse:
    return _role_response(await service.roles.get(role_id))


@roles_router.patch(
    "/{role_id}",
    response_model=RoleOut,
    summary="Change a role's names, description, permissions, scopes or field rules (roles:manage). If-Match.",
    responses=problems(404, 409, 412, 428),
)
async def patch_role(
    role_id: RoleId, body: RolePatch, request: Request, principal: CurrentPrincipal, service: Service
) -> JSONResponse:
    doc = await service.roles.update(principal, role_id, body, expected_version(request, required=True))
    return _role_response(doc)


@roles_router.delete(
    "/{role_id}",
    status_code=204,
    summary="Delete a custom role no user holds (roles:manage; 409 naming how many users hold it)",
    responses=problems(404, 409, 412),
)
async def delete_role(role_id: RoleId, request: Request, principal: CurrentPrincipal, service: Service) -> Response:
    await service.roles.delete(principal, role_id, expected_version(request, required=False))
    return Response(status_code=204)


@roles_router.get(
    "/{role_id}/history", response_model=list[HistoryEntry], summary="Field-level history of a role (roles:manage)"
)
async def role_history(role_id: RoleId, service: Service, request: Request) -> list[HistoryEntry]:
    doc = await service.roles.get(role_id)
    return await history_.role_history(request.app.state.kit.event_log, doc)


ROUTERS = [auth_router, wellknown_router, me_router, users_router, departments_router, roles_router]
