"""The request and response models of the gateway's own routes (log-in, users, API keys). The services' models
reach the gateway's OpenAPI from their own documents (see openapi.py), not from here."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from gateway.store import ApiKeyRecord, AuditEntry, UserRecord
from shared.platform.request_model import IsoAwareDatetime, RequestModel, StrictBool
from shared.platform.roles import Role

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
USERNAME_RE = re.compile(USERNAME_PATTERN)
MIN_PASSWORD_LENGTH = 8


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    role: Role
    expires_in: int = Field(description="seconds until the token expires")


class Me(BaseModel):
    username: str
    role: Role
    account_id: str
    auth: str = Field(description="how this request was authenticated: jwt | api_key")


class UserCreate(RequestModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=256)
    role: Role = Role.VIEWER
    account_id: str | None = Field(default=None, pattern=USERNAME_PATTERN, description="defaults to the username")


class UserUpdate(RequestModel):
    role: Role | None = None
    disabled: StrictBool | None = None
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=256)


class UserOut(BaseModel):
    username: str
    role: Role
    account_id: str
    created_at: datetime
    disabled: bool

    @classmethod
    def of(cls, user: UserRecord) -> UserOut:
        return cls(
            username=user.username,
            role=user.role,
            account_id=user.account_id,
            created_at=user.created_at,
            disabled=user.disabled,
        )


class ApiKeyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    role: Role | None = Field(
        default=None, description="what the key may do: at most your own role; defaults to your role"
    )
    expires_at: IsoAwareDatetime | None = Field(
        default=None,
        description="when the key stops working: ISO 8601 text with a UTC offset, in the future; none: never",
    )


class ApiKeyOut(BaseModel):
    key_id: str
    username: str = Field(description="the key's owner")
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKeyRecord) -> ApiKeyOut:
        return cls(
            key_id=key.key_id,
            username=key.username,
            name=key.name,
            role=key.role,
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class ApiKeyCreated(BaseModel):
    key_id: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    api_key: str = Field(description="shown only in this response: store it now")


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    username: str | None = Field(description="who: none when the request carried no valid credential")
    via: str | None = Field(description="how they were authenticated: jwt (a log-in session) | api_key")
    key_id: str | None = Field(description="the API key, when via is api_key")
    method: str
    path: str
    resource_id: str | None = Field(description="the id(s) in the path (order, user, key, ...), joined with /")
    status: int = Field(description="the HTTP status the gateway answered")
    request_id: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        assert entry.id is not None
        return cls(
            id=entry.id,
            at=entry.at,
            username=entry.username,
            via=entry.via,
            key_id=entry.key_id,
            method=entry.method,
            path=entry.path,
            resource_id=entry.resource_id,
            status=entry.status,
            request_id=entry.request_id,
        )


class AuditPage(BaseModel):
    entries: list[AuditEntryOut] = Field(description="newest first")
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; none: no more")


class ServiceHealth(BaseModel):
    service: str
    healthz: str = Field(description="ok | unavailable | http_<status>: is the process answering")
    readyz: str = Field(description="ready | not_ready | unavailable: are its dependencies reachable")
    checks: dict[str, str] = Field(description="each dependency's state, as the service's /readyz reports it")
    latency_ms: float | None = Field(description="how long /healthz took to answer")


class QuoteSubscription(RequestModel):
    """A browser's command on `/ws` (docs/quotes.md): subscribe to (or unsubscribe from) real-time quotes of some
    codes. The socket then receives `quotes.snapshot` and `bars.1m` events holding only its codes."""

    op: Literal["subscribe", "unsubscribe"]
    codes: list[Annotated[str, Field(max_length=16)]] = Field(min_length=1, max_length=1000)
