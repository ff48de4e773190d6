"""What people send: the request models of the directory (pydantic, validated at the edge).

Emails and phones are normalised by the application layer (the phone's default
region is a setting), which reports a bad value as a 422 naming the field.
"""

from __future__ import annotations

import unicodedata
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from crm_platform.auth import ROLE_ID
from crm_platform.contracts.directory import Language


def _clean_text(value: str) -> str:
    text = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise ValueError("must not contain control characters")
    if not text:
        raise ValueError("must not be empty")
    return text


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean_text)]


def _time_zone(value: str) -> str:
    # Names only ("Asia/Shanghai"): no paths, no offsets the tz database does not know.
    if "." in value or value.startswith("/") or value.strip() != value:
        raise ValueError(f"'{value}' is not a time zone of the IANA database (e.g. Asia/Shanghai)")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"'{value}' is not a time zone of the IANA database (e.g. Asia/Shanghai)") from exc
    return value


TimeZone = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["Asia/Shanghai"], description="IANA time zone the user works in."),
    AfterValidator(_time_zone),
]


def _roles(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("give at least one role: admin, manager, rep or a role defined at /v1/roles")
    for role in value:
        if not ROLE_ID.match(role):
            raise ValueError(f"'{role}' is not a role id (1-63 lower-case letters, digits, '-' or '_')")
    return list(dict.fromkeys(value))  # as sent (a refusal names roles[i] of the request); stored sorted


#: Role ids (built-in or defined at /v1/roles); the application refuses one that is not defined.
Roles = Annotated[list[str], Field(min_length=1, max_length=20), AfterValidator(_roles)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserCreate(_Strict):
    email: str = Field(max_length=254, examples=["zhang.san@example.com"])
    name: Name
    phone: str | None = Field(default=None, max_length=40, description="Any common notation; stored as E.164.")
    language: Language = "zh-CN"
    time_zone: TimeZone | None = None
    roles: Roles
    department_id: str = Field(max_length=63)
    password: SecretStr | None = Field(
        default=None,
        description="Initial password (min. 10 characters, not the email). Without one the user cannot sign "
        "in until an administrator sets one (POST /v1/users/{id}/password) or an identity provider is used.",
    )


class UserPatch(_Strict):
    """Fields an administrator may change; send only those that change."""

    email: str | None = Field(default=None, max_length=254)
    name: Name | None = None
    phone: str | None = Field(default=None, max_length=40, description="null removes the phone.")
    language: Language | None = None
    time_zone: TimeZone | None = None
    roles: Roles | None = None
    department_id: str | None = Field(default=None, max_length=63)

    @field_validator("email", "name", "language", "time_zone", "roles", "department_id")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class SelfPatch(_Strict):
    """What every user may change on their own profile."""

    name: Name | None = None
    phone: str | None = Field(default=None, max_length=40, description="null removes the phone.")
    language: Language | None = None
    time_zone: TimeZone | None = None

    @field_validator("name", "language", "time_zone")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class UserUpsert(_Strict):
    """The whole user as an identity provider (or any sync job) knows it: PUT is idempotent."""

    email: str = Field(max_length=254)
    name: Name
    phone: str | None = Field(default=None, max_length=40)
    language: Language = "zh-CN"
    roles: Roles
    department_id: str = Field(max_length=63)
    active: bool = True


class DeactivateIn(_Strict):
    reason: str | None = Field(default=None, max_length=500)


class PasswordChange(_Strict):
    current_password: SecretStr = Field(max_length=1024)
    new_password: SecretStr = Field(max_length=1024)


class PasswordReset(_Strict):
    new_password: SecretStr = Field(max_length=1024)


class DepartmentCreate(_Strict):
    id: str | None = Field(
        default=None,
        max_length=63,
        description="Slug (a-z, 0-9, '-', '_'); generated from the name when omitted.",
        examples=["sh-team-1"],
    )
    name: Name
    parent_id: str | None = Field(default=None, max_length=63, description="None: a root (e.g. the company).")
    manager_id: str | None = Field(default=None, max_length=128)


class DepartmentPatch(_Strict):
    name: Name | None = None
    manager_id: str | None = Field(default=None, max_length=128, description="null removes the manager.")

    @field_validator("name")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class MoveIn(_Strict):
    parent_id: str | None = Field(max_length=63, description="The new parent; null makes it a root.")


class SignIn(_Strict):
    email: str = Field(max_length=254)
    password: SecretStr = Field(max_length=1024)


class RefreshIn(_Strict):
    refresh_token: SecretStr = Field(max_length=512)


# --- roles ----------------------------------------------------------------------------------------

Description = Annotated[str, Field(max_length=500), AfterValidator(_clean_text)]


class RoleNamesIn(_Strict):
    zh_CN: Name = Field(alias="zh-CN")
    en: Name

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    def as_dict(self) -> dict[str, str]:
        return {"zh-CN": self.zh_CN, "en": self.en}


class RoleCreate(_Strict):
    id: str = Field(max_length=63, description="Slug (a-z, 0-9, '-', '_'), e.g. key-account.", examples=["key-account"])
    names: RoleNamesIn = Field(description='The name in both languages: {"zh-CN": "大客户经理", "en": "Key account"}.')
    description: Description | None = None
    permissions: list[str] = Field(
        max_length=200, description="Permission values, module:action (see GET /v1/roles for the built-ins')."
    )
    scopes: dict[str, str] = Field(
        default_factory=dict,
        description="Module -> own | department | subtree | all; a module not listed: own.",
        examples=[{"customers": "subtree", "opportunities": "department"}],
    )
    fields: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Field-level permissions: module -> field -> hidden | read (a field not listed: read-write). "
        "Custom fields are custom.<key>.",
        examples=[{"customers": {"phones": "hidden", "tier": "read"}, "contacts": {"phones": "hidden"}}],
    )


class RolePatch(_Strict):
    """Fields of a role to change; send only those that change."""

    names: RoleNamesIn | None = None
    description: Description | None = Field(default=None, description="null removes the description.")
    permissions: list[str] | None = Field(default=None, max_length=200)
    scopes: dict[str, str] | None = None
    fields: dict[str, dict[str, str]] | None = None

    @field_validator("names", "permissions", "scopes", "fields")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value
