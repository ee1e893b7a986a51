"""The gateway's own tables (database `lh_gateway`): users, their API keys, the audit log, the alert history
(gateway/alerts.py), and the queries on them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from shared.platform.clock import UtcDateTime, as_utc, utcnow
from shared.platform.db import Database, new_metadata
from shared.platform.errors import Conflict
from shared.platform.roles import Role

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# `last_used_at` is a hint for the user ("is this key still in use?"), not an audit log: writing it at most once a
# minute per key keeps a busy script from turning every read into a database write.
LAST_USED_RESOLUTION = timedelta(seconds=60)
RECORD_ATTEMPTS = 3  # an alert notification's transitions, recorded again after a concurrent delivery kept one

log = logging.getLogger("lianghua.gateway.store")


def _duplicate_key(error: IntegrityError) -> bool:
    """A unique key's collision (MariaDB's error 1062, SQLite's UNIQUE constraint), not another integrity error."""
    args: tuple[Any, ...] = tuple(getattr(error.orig, "args", ()))
    return (len(args) > 0 and args[0] == 1062) or "UNIQUE constraint failed" in str(error.orig)


metadata = new_metadata()

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    CheckConstraint("role IN ('viewer', 'trader', 'admin')", name="role"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("username", String(64), ForeignKey("users.username"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    # What the key may do: at most its owner's role (the lower of the two applies when the owner is demoted).
    Column("role", String(16), nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Index("ix_api_keys_username", "username"),
    CheckConstraint("role IN ('viewer', 'trader', 'admin')", name="role"),
)

# Alertmanager's alerts as they fired and resolved (its webhook, gateway/alerts.py): Alertmanager keeps no history.
# One row per transition: an alert (fingerprint) that fired at `starts_at`, and the same one resolved. Alertmanager
# retries a delivery and repeats a firing group every repeat_interval: the unique key makes those add nothing.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("alertname", String(200), nullable=False),
    Column("severity", String(32), nullable=False),
    Column("labels", Text, nullable=False),  # JSON object of the alert's labels
    # Whose it is (alert_scope): its account (the `account` label, or `key` of a scope=account alert), its `owner`
    # label (None: none) and whether it is platform-wide (no scoping label at all), by which a non-admin's history is
    # scoped (gateway/alerts.py, may_see)
    Column("account", String(200), nullable=True),
    Column("owner", String(200), nullable=True),
    Column("platform", Boolean, nullable=False, default=False),
    Column("summary", String(1000), nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=True),  # resolved transitions only
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("fingerprint", "starts_at", "status"),
    CheckConstraint("status IN ('firing', 'resolved')", name="status"),
)


# Every state-changing request through the gateway (gateway/audit.py writes it; never a body).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("username", String(64), nullable=True),  # None: the request carried no valid credential
    Column("via", String(16), nullable=True),  # jwt | api_key
    Column("key_id", String(16), nullable=True),  # the API key's id when via == api_key
    Column("method", String(8), nullable=False),
    Column("path", String(512), nullable=False),
    Column("resource_id", String(200), nullable=True),
    Column("status", Integer, nullable=False),
    Column("request_id", String(64), nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_username_id", "username", "id"),
    Index("ix_audit_log_path_id", "path", "id"),  # the path_prefix filter (a LIKE 'prefix%': a range on path)
)


def as_utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class UserRecord:
    username: str
    password_hash: str
    role: Role
    account_id: str
    created_at: datetime
    disabled: bool


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    username: str
    name: str
    secret_hash: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    role: Role
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class AlertTransition:
    """One alert firing or resolved, as Alertmanager's webhook reported it."""

    fingerprint: str
    status: str  # firing | resolved
    alertname: str
    severity: str
    labels: dict[str, str]
    summary: str
    starts_at: datetime
    ends_at: datetime | None
    received_at: datetime
    id: int = 0


@dataclass(frozen=True)
class HistoryScope:
    """Whose alert history: a non-admin's account and username (gateway/alerts.py, may_see)."""

    account: str
    username: str


# The labels that tie an alert to an account, a user, a strategy instance or a QMT bridge: an alert with any of them
# (or a `scope` other than global: a halted account or instance) is not platform-wide.
SCOPING_LABELS = ("account", "owner", "instance_id", "bridge_id")


@dataclass(frozen=True)
class AlertScope:
    """Whose an alert is (gateway/alerts.py, may_see): its account, its owner (a strategy's author), and whether it is
    platform-wide (everybody's). An alert that is none of these (an instance's, a bridge's without an account) is
    an admin's alone: scoping fails closed."""

    account: str | None
    owner: str | None
    platform: bool


def alert_scope(labels: dict[str, str]) -> AlertScope:
    """An alert's scope from its labels. Its account is its `account` label, or the `key` of a `scope=account` alert
    (risk's account kill switch); the two disagreeing is no account (admin-only). Empty labels count as absent
    (Alertmanager drops them); a value longer than the column is cut, which then equals no account id or username
    (64 at most)."""
    scope = labels.get("scope") or None
    account = labels.get("account") or None
    if scope == "account":
        key = labels.get("key") or None
        account = None if account and key and key != account else account or key
    owner = labels.get("owner") or None
    platform = scope in (None, "global") and not any(labels.get(name) for name in SCOPING_LABELS)
    return AlertScope(account[:200] if account else None, owner[:200] if owner else None, platform)


def _transition(m: RowMapping) -> AlertTransition:
    return AlertTransition(
        fingerprint=m["fingerprint"],
        status=m["status"],
        alertname=m["alertname"],
        severity=m["severity"],
        labels=json.loads(m["labels"]),
        summary=m["summary"],
        starts_at=as_utc(m["starts_at"]),
        ends_at=as_utc_or_none(m["ends_at"]),
        received_at=as_utc(m["received_at"]),
        id=int(m["id"]),
    )


@dataclass(frozen=True)
class AuditEntry:
    """One state-changing request, as the audit log keeps it (`id` None until written)."""

    at: datetime
    username: str | None
    via: str | None
    key_id: str | None
    method: str
    path: str
    resource_id: str | None
    status: int
    request_id: str
    id: int | None = None

    def row(self) -> dict[str, object]:
        return {
            "at": self.at,
            "username": self.username,
            "via": self.via,
            "key_id": self.key_id,
            "method": self.method,
            "path": self.path,
            "resource_id": self.resource_id,
            "status": self.status,
            "request_id": self.request_id,
        }


def _audit(m: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=m["id"],
        at=as_utc(m["at"]),
        username=m["username"],
        via=m["via"],
        key_id=m["key_id"],
        method=m["method"],
        path=m["path"],
        resource_id=m["resource_id"],
        status=m["status"],
        request_id=m["request_id"],
    )


def _user(m: RowMapping) -> UserRecord:
    return UserRecord(
        username=m["username"],
        password_hash=m["password_hash"],
        role=Role(m["role"]),
        account_id=m["account_id"],
        created_at=as_utc(m["created_at"]),
        disabled=bool(m["disabled"]),
    )


def _key(m: RowMapping) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=m["key_id"],
        username=m["username"],
        name=m["name"],
        secret_hash=m["secret_hash"],
        created_at=as_utc(m["created_at"]),
        last_used_at=as_utc_or_none(m["last_used_at"]),
        revoked_at=as_utc_or_none(m["revoked_at"]),
        role=Role(m["role"]),
        expires_at=as_utc_or_none(m["expires_at"]),
    )


# How long a gateway process answers a signed-in user's role, account and `disabled` from memory (`current_user`)
# before it reads the users table again: the per-request lookup was a transaction on every call. The process that
# changes a user (PATCH /users, a password rehash at log-in) forgets its entry at once, so there a disabled user is
# refused, and a new role applies, from the next request; another gateway process sees the change within this bound.
USER_CACHE_TTL_S = 2.0
USER_CACHE_MAX = 10_000  # users remembered at most (then forgotten all at once: a bound, not an eviction policy)


class GatewayStore:
    def __init__(
        self, db: Database, *, user_cache_ttl_s: float = USER_CACHE_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.user_cache_ttl_s = user_cache_ttl_s
        self.clock = clock
        self._users: dict[str, tuple[float, UserRecord]] = {}
        # Bumped by every change of a user in this process: a lookup that began before it does not store its answer.
        self._users_changed = 0

    async def current_user(self, username: str) -> UserRecord | None:
        """The user as the table said at most `user_cache_ttl_s` ago (see USER_CACHE_TTL_S); None when unknown (not
        remembered: a user created since is found at the next request)."""
        now = self.clock()
        hit = self._users.get(username)
        if hit is not None and now - hit[0] < self.user_cache_ttl_s:
            return hit[1]
        changed = self._users_changed
        user = await self.get_user(username)
        if user is None:
            self._users.pop(username, None)
        elif changed == self._users_changed:
            if len(self._users) >= USER_CACHE_MAX:
                self._users.clear()
            self._users[username] = (now, user)
        return user

    def _forget_user(self, username: str) -> None:
        self._users_changed += 1
        self._users.pop(username, None)

    async def start(self) -> None:
        await self.db.connect()
        await self.db.migrate(MIGRATIONS_DIR)

    async def close(self) -> None:
        await self.db.dispose()

    # --- users ---

    async def has_admin(self) -> bool:
        async for attempt in self.db.transaction():
            async with attempt as s:
                n = await s.scalar(select(func.count()).select_from(users).where(users.c.role == Role.ADMIN.value))
        return bool(n)

    async def create_user(self, username: str, password_hash: str, role: Role, account_id: str) -> UserRecord:
        created = utcnow()
        try:
            async for attempt in self.db.transaction():
                async with attempt as s:
                    await s.execute(
                        insert(users).values(
                            username=username,
                            password_hash=password_hash,
                            role=role.value,
                            account_id=account_id,
                            created_at=created,
                            disabled=False,
                        )
                    )
        except IntegrityError as exc:
            raise Conflict("user_exists", f"a user named {username!r} already exists") from exc
        self._forget_user(username)
        return UserRecord(username, password_hash, role, account_id, as_utc(created), False)

    async def get_user(self, username: str) -> UserRecord | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(users).where(users.c.username == username))).first()
        return None if row is None else _user(row._mapping)

    async def list_users(self) -> list[UserRecord]:
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(select(users).order_by(users.c.username))).all()
        return [_user(r._mapping) for r in rows]

    async def update_user(
        self,
        username: str,
        *,
        role: Role | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None:
        values: dict[str, object] = {}
        if role is not None:
            values["role"] = role.value
        if disabled is not None:
            values["disabled"] = disabled
        if password_hash is not None:
            values["password_hash"] = password_hash
        async for attempt in self.db.transaction():
            async with attempt as s:
                if values:
                    await s.execute(update(users).where(users.c.username == username).values(**values))
                row = (await s.execute(select(users).where(users.c.username == username))).first()
        self._forget_user(username)
        return None if row is None else _user(row._mapping)

    # --- API keys ---

    async def create_api_key(
        self,
        username: str,
        name: str,
        key_id: str,
        secret_hash: str,
        *,
        role: Role,
        expires_at: datetime | None = None,
    ) -> ApiKeyRecord:
        """`expires_at` is an aware datetime."""
        created = utcnow()
        expires = as_utc_or_none(expires_at)
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    insert(api_keys).values(
                        key_id=key_id,
                        username=username,
                        name=name,
                        secret_hash=secret_hash,
                        created_at=created,
                        role=role.value,
                        expires_at=expires,
                    )
                )
        return ApiKeyRecord(
            key_id, username, name, secret_hash, as_utc(created), None, None, role, as_utc_or_none(expires)
        )

    async def api_key_with_user(self, key_id: str) -> tuple[ApiKeyRecord, UserRecord] | None:
        """The key and its owner in one round trip (API-key requests are the hot path of scripts)."""
        query = (
            select(
                api_keys,
                users.c.password_hash,
                users.c.role.label("user_role"),
                users.c.account_id,
                users.c.disabled,
                users.c.created_at.label("user_created_at"),
            )
            .join(users, users.c.username == api_keys.c.username)
            .where(api_keys.c.key_id == key_id)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(query)).first()
        if row is None:
            return None
        m = row._mapping
        user = UserRecord(
            username=m["username"],
            password_hash=m["password_hash"],
            role=Role(m["user_role"]),
            account_id=m["account_id"],
            created_at=as_utc(m["user_created_at"]),
            disabled=bool(m["disabled"]),
        )
        return _key(m), user

    async def touch_api_key(self, key_id: str) -> None:
        now = utcnow()
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    update(api_keys)
                    .where(
                        and_(
                            api_keys.c.key_id == key_id,
                            or_(
                                api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < now - LAST_USED_RESOLUTION
                            ),
                        )
                    )
                    .values(last_used_at=now)
                )

    async def list_api_keys(self, username: str | None) -> list[ApiKeyRecord]:
        """`username`'s keys, or everyone's when None, oldest first."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if username is not None:
            query = query.where(api_keys.c.username == username)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_key(r._mapping) for r in rows]

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        return None if row is None else _key(row._mapping)

    async def revoke_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """Revoke once: a second revocation keeps the first time."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(
                    update(api_keys)
                    .where(and_(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None)))
                    .values(revoked_at=utcnow())
                )
                row = (await s.execute(select(api_keys).where(api_keys.c.key_id == key_id))).first()
        return None if row is None else _key(row._mapping)

    # --- alert history ---

    async def record_alert_transitions(self, transitions: list[AlertTransition]) -> int:
        """Keep each transition once: one already kept (a redelivery, a repeat of a firing group) changes nothing.
        Returns how many were new."""
        if not transitions:
            return 0
        rows = [
            {
                "fingerprint": t.fingerprint,
                "status": t.status,
                "alertname": t.alertname,
                "severity": t.severity,
                "labels": json.dumps(t.labels, ensure_ascii=False, sort_keys=True),
                "account": (scope := alert_scope(t.labels)).account,
                "owner": scope.owner,
                "platform": scope.platform,
                "summary": t.summary,
                "starts_at": t.starts_at,
                "ends_at": t.ends_at,
                "received_at": t.received_at,
            }
            for t in transitions
        ]
        # Two deliveries at once may both find a transition missing: the unique key lets one insert it and the
        # other's whole batch fails and runs again, finding it kept this time, so each is counted by one delivery.
        for attempt_number in range(1, RECORD_ATTEMPTS + 1):
            try:
                return await self._record_new_transitions(rows)
            except IntegrityError as exc:
                if not _duplicate_key(exc) or attempt_number == RECORD_ATTEMPTS:
                    raise
                log.info("alert transition kept by a concurrent delivery; again")
        raise AssertionError("unreachable: the loop returns or raises")

    async def _record_new_transitions(self, rows: list[dict[str, Any]]) -> int:
        added = 0
        async for attempt in self.db.transaction():
            async with attempt as s:
                added = 0
                for row in rows:
                    kept = await s.scalar(
                        select(alert_events.c.id).where(
                            alert_events.c.fingerprint == row["fingerprint"],
                            alert_events.c.starts_at == row["starts_at"],
                            alert_events.c.status == row["status"],
                        )
                    )
                    if kept is None:
                        await s.execute(alert_events.insert().values(**row))
                        added += 1
        return added

    async def alert_history(
        self, *, limit: int, before_id: int | None = None, scope: HistoryScope | None = None
    ) -> list[AlertTransition]:
        """The newest transitions first (by arrival), `limit` of them, older than `before_id` when given; with a
        `scope`, only those it may see (None: all, an admin's): of its account, of no account and its owner, and the
        platform-wide ones."""
        query = select(alert_events).order_by(alert_events.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(alert_events.c.id < before_id)
        if scope is not None:
            account, owner = alert_events.c.account, alert_events.c.owner
            query = query.where(
                or_(
                    account == scope.account,
                    and_(account.is_(None), owner == scope.username),
                    alert_events.c.platform.is_(True),
                )
            )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_transition(r._mapping) for r in rows]

    # --- audit log ---

    async def insert_audit(self, entries: list[AuditEntry]) -> None:
        """Write `entries` in one transaction (all or none: the caller keeps them and tries again on failure)."""
        if not entries:
            return
        async for attempt in self.db.transaction():
            async with attempt as s:
                await s.execute(insert(audit_log), [e.row() for e in entries])

    async def delete_audit_before(self, cutoff: datetime, *, batch_size: int = 5_000) -> int:
        """Delete the entries written before `cutoff`, oldest first, `batch_size` rows a transaction (no long lock
        on a table the writer inserts into); returns how many."""
        deleted = 0
        while True:
            oldest = (
                select(audit_log.c.id).where(audit_log.c.at < as_utc(cutoff)).order_by(audit_log.c.id).limit(batch_size)
            )
            async for attempt in self.db.transaction():
                async with attempt as s:
                    ids = list((await s.scalars(oldest)).all())
                    if ids:
                        await s.execute(delete(audit_log).where(audit_log.c.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < batch_size:
                return deleted

    async def list_audit(
        self,
        *,
        username: str | None = None,
        path_prefix: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first: at most `limit` entries older than `before_id` (the previous page's last id)."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if username is not None:
            query = query.where(audit_log.c.username == username)
        if path_prefix:
            query = query.where(audit_log.c.path.startswith(path_prefix, autoescape=True))
        if since is not None:
            query = query.where(audit_log.c.at >= as_utc(since))
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_audit(r._mapping) for r in rows]
