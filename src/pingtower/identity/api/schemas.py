"""Request and response bodies of the login and users API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pingtower.identity.domain.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    USERNAME_PATTERN,
    is_valid_username,
    normalize_username,
)
from pingtower.identity.store.users import User

Role = Literal["viewer", "editor", "admin"]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class LoginResponse(BaseModel):
    access_token: str = Field(description="Send as `Authorization: Bearer ...`.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="Seconds until the session ends.")


class Me(BaseModel):
    subject: str
    workspace: str
    roles: list[str]


class _NewPassword(BaseModel):
    @field_validator("password", check_fields=False)
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"must be at least {MIN_PASSWORD_LENGTH} characters")
        return value


class UserCreate(_NewPassword):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(
        min_length=1,
        max_length=100,
        description=f"Case-insensitive; stored in lower case ({USERNAME_PATTERN}).",
    )
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    role: Role

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        value = normalize_username(value)
        if not is_valid_username(value):
            raise ValueError("letters, digits and . _ @ - only, starting with a letter or digit")
        return value


class UserUpdate(_NewPassword):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    password: str | None = Field(
        None, max_length=MAX_PASSWORD_LENGTH, description="A new password ends every session."
    )


class UserPublic(BaseModel):
    id: uuid.UUID
    username: str
    role: str
    created_at: datetime
    created_by: str
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserPublic:
        return cls(
            id=user.id,
            username=user.username,
            role=user.role,
            created_at=user.created_at,
            created_by=user.created_by,
            updated_at=user.updated_at,
        )


class UserPage(BaseModel):
    items: list[UserPublic]
    next_cursor: str | None
