"""The first admin: created at start-up when there is none, so a fresh install can be logged into."""

from __future__ import annotations

import asyncio
import logging
import secrets

from gateway.schemas import MIN_PASSWORD_LENGTH
from gateway.security import hash_password
from gateway.store import GatewayStore
from shared.platform.errors import Conflict
from shared.platform.roles import Role
from shared.platform.settings import Settings

log = logging.getLogger(__name__)


async def ensure_admin(store: GatewayStore, settings: Settings) -> str | None:
    """Create `settings.admin_username` as admin if no admin exists. The password is `settings.admin_password`,
    or, when that is empty, a generated one printed once to stdout (never logged). Returns the name created."""
    if await store.has_admin():
        return None
    name = settings.admin_username
    password = settings.admin_password
    if password and len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"LH_ADMIN_PASSWORD must have at least {MIN_PASSWORD_LENGTH} characters")
    existing = await store.get_user(name)
    if existing is not None:
        # Promoting an existing non-admin account because of its name would hand its owner the keys; say so instead.
        log.error(
            "no admin exists and the admin user name is taken by a non-admin; set LH_ADMIN_USERNAME to a free name",
            extra={"admin_username": name, "role": existing.role.value},
        )
        return None
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        await store.create_user(name, password_hash, Role.ADMIN, name)
    except Conflict:
        # Another gateway process starting at the same moment won the race: its admin is the admin.
        log.info("admin user created by another gateway process", extra={"admin_username": name})
        return None
    if generated:
        # stdout, once: the operator reads it from the console; logs (shipped, kept) never see it.
        print(f"LiangHua admin user: {name} password: {password}", flush=True)
    log.warning(
        "created the admin user",
        extra={"admin_username": name, "password_source": "generated (printed to stdout)" if generated else "settings"},
    )
    return name
