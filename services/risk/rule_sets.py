"""Risk rule sets, configured and versioned (docs/risk-rules.md "Managing rule sets"): every level — global default,
an account, a strategy instance — has versions 1, 2, ... of its rule set (`risk_rule_sets`), each with who, when and
why; the level's current rule set is its latest version (a null body: the level was cleared). Admins write them
(`PUT` / `DELETE /v1/risk/rules/{scope}`); everyone reads what is theirs. Every new version is published as
`risk.rules.changed`, written to risk's outbox in the same transaction.

`RuleBook` is what an order decision reads: every level's current rule set held in memory (loaded in one query),
reloaded when a `risk.rules.changed` arrives and after a cheap check (one `count(*)`) at most every `check_every_s`
seconds — no query per order in the steady state — merged per account and instance with `rules.effective` (the
strictest of the levels)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError

from services.risk.events import rule_set_changed
from services.risk.rules import RuleSet, effective
from services.risk.rules.base import RuleConfig
from services.risk.store import Scope, outbox, risk_decisions, risk_rule_sets
from shared.platform.db import Database
from shared.platform.errors import Forbidden, NotFound, Unavailable
from shared.platform.events.envelope import Envelope
from shared.platform.internal_auth import Principal
from shared.platform.outbox import add_to_outbox
from shared.platform.request_model import ACCOUNT_ID_PATTERN, STRATEGY_INSTANCE_ID_PATTERN
from shared.platform.roles import Role

log = logging.getLogger(__name__)

# How often (at most) a RuleBook asks the database whether a rule set changed without it hearing the event.
CHECK_EVERY_S = 5.0
# A concurrent change of the same level took the version this one was about to write: run it again (it reads the new
# latest version and writes the next one). Bounded: so many collisions in a row means something else is wrong.
VERSION_ATTEMPTS = 5
MERGED_CACHE = 10_000  # merged settings kept per (account, instance); dropped whole when full or on a reload
KEY_PATTERNS = {Scope.ACCOUNT: ACCOUNT_ID_PATTERN, Scope.INSTANCE: STRATEGY_INSTANCE_ID_PATTERN}
KEY_SHAPES = {Scope.ACCOUNT: "an account_id", Scope.INSTANCE: "a strategy instance id (32 lowercase hex)"}


class RulesUnavailable(Unavailable):
    """The rule sets were never loaded and cannot be read now: the desk refuses the order (fail closed)."""

    def __init__(self, message: str) -> None:
        super().__init__("risk_unavailable", message)


@dataclass(frozen=True)
class RuleSetVersion:
    scope: str
    key: str
    version: int
    body: dict[str, Any] | None  # the RuleSet as JSON; None: the level was cleared
    reason: str
    set_by: str
    set_at: datetime

    @property
    def rules(self) -> RuleSet | None:
        return None if self.body is None else RuleSet.model_validate(self.body)

    def as_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "key": self.key,
            "version": self.version,
            "body": self.body,
            "reason": self.reason,
            "set_by": self.set_by,
            "set_at": self.set_at.isoformat(),
        }


@dataclass(frozen=True)
class EffectiveRules:
    """The settings every rule runs with for one account (and instance): `configs` rule name -> its merged settings;
    `versions` the version of each level they came from ("global", "account", "instance"; None: the level has none)."""

    configs: Mapping[str, RuleConfig]
    versions: Mapping[str, int | None]

    def as_json(self) -> dict[str, Any]:
        rules = {name: config.model_dump(mode="json") for name, config in self.configs.items()}
        for settings in rules.values():
            for name, value in settings.items():
                if isinstance(value, list):
                    settings[name] = sorted(value)  # a set's members (a blacklist) in one order
        return {"rules": rules, "versions": dict(self.versions)}


def _body(rules: RuleSet) -> dict[str, Any]:
    """The rule set as stored: what the admin set (rules not named and settings not given are left out), as JSON. A
    rule given as null is a rule not named; a setting given as null is kept: it says "no limit" (or "no warning",
    `warn_at_pct`) at this level, which the merge honours where no other level sets one."""
    dumped: dict[str, Any] = rules.model_dump(mode="json", exclude_unset=True)
    body = {name: settings for name, settings in dumped.items() if settings is not None}
    for settings in body.values():
        for name, value in settings.items():
            if isinstance(value, list):
                settings[name] = sorted(value)  # a set's members in one order: the same set is the same body
    return body


def same_rules(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two stored bodies mean the same settings (200000 and "200000.0" alike; a rule named with its defaults
    is not the same as a rule not named: it takes part in the merge)."""
    if a is None or b is None:
        return a is b
    return RuleSet.model_validate(a).model_dump() == RuleSet.model_validate(b).model_dump()


def _version(row: Any) -> RuleSetVersion:
    body = None if row.body is None else json.loads(row.body)
    return RuleSetVersion(row.scope, row.key, row.version, body, row.reason, row.set_by, row.set_at)


def check_key(scope: Scope, key: str) -> str:
    """The level's key for `scope`; else 422 `invalid_request` naming `key`."""
    if scope is Scope.GLOBAL:
        if key:
            raise _invalid("key", "global takes no key (leave it out or send an empty one)")
        return ""
    if not re.fullmatch(KEY_PATTERNS[scope], key):
        raise _invalid("key", f"scope {scope.value} needs {KEY_SHAPES[scope]}, not {key[:64]!r}")
    return key


def _invalid(field: str, message: str) -> RequestValidationError:
    """Answered as every invalid body is (422 `invalid_request`, the field named in the message and `details`)."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


LevelKey = tuple[str, str]


def merge_levels(
    levels: Mapping[LevelKey, tuple[RuleSetVersion, RuleSet | None]], account_id: str | None, instance_id: str | None
) -> EffectiveRules:
    """The strictest of the global, account and instance levels' current rule sets (`rules.effective`)."""
    wanted = {
        "global": (Scope.GLOBAL.value, ""),
        "account": None if account_id is None else (Scope.ACCOUNT.value, account_id),
        "instance": None if instance_id is None else (Scope.INSTANCE.value, instance_id),
    }
    found = {name: levels.get(where) if where is not None else None for name, where in wanted.items()}
    configs = effective(*(level[1] if level is not None else None for level in found.values()))
    versions = {name: level[0].version if level is not None else None for name, level in found.items()}
    return EffectiveRules(configs, versions)


def parsed(versions: Iterable[RuleSetVersion]) -> dict[LevelKey, tuple[RuleSetVersion, RuleSet | None]]:
    return {(v.scope, v.key): (v, v.rules) for v in versions}


class RuleSetStore:
    """The versions of the rule sets in risk's database (`risk_rule_sets`)."""

    def __init__(self, db: Database, *, on_event: Callable[[], None] | None = None) -> None:
        self.db = db
        self.on_event = on_event  # told after a commit that wrote an outbox event (the relay publishes it at once)

    async def current(self) -> list[RuleSetVersion]:
        """Every level's latest version (cleared levels included), in one query."""
        t = risk_rule_sets.c
        latest = (
            select(t.scope, t.key, func.max(t.version).label("version")).group_by(t.scope, t.key).subquery("latest")
        )
        query = (
            select(risk_rule_sets)
            .join(latest, and_(t.scope == latest.c.scope, t.key == latest.c.key, t.version == latest.c.version))
            .order_by(t.scope, t.key)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_version(r) for r in rows]

    async def stamp(self) -> int:
        """How many versions exist: any change adds one (versions are never removed), so an unchanged count is
        unchanged rule sets. Equal to the sum of the current versions (each level's run from 1 is unbroken)."""
        async for attempt in self.db.transaction():
            async with attempt as s:
                count = (await s.execute(select(func.count()).select_from(risk_rule_sets))).scalar_one()
        return int(count)

    async def history(self, scope: Scope, key: str, *, limit: int) -> list[RuleSetVersion]:
        t = risk_rule_sets.c
        query = (
            select(risk_rule_sets).where(t.scope == scope.value, t.key == key).order_by(t.version.desc()).limit(limit)
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return [_version(r) for r in rows]

    async def instances_of(self, account_id: str) -> set[str]:
        """The strategy instances risk knows trade in `account_id`: those it has decided an order of (risk keeps no
        other record of whose an instance is; one that never sent an order is not known here)."""
        d = risk_decisions.c
        query = (
            select(d.strategy_instance_id)
            .where(d.account_id == account_id, d.strategy_instance_id.is_not(None))
            .distinct()
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                rows = (await s.execute(query)).all()
        return {r.strategy_instance_id for r in rows}

    async def record(
        self,
        scope: Scope,
        key: str,
        body: dict[str, Any] | None,
        *,
        reason: str,
        by: str,
        at: datetime,
        make_event: Callable[[RuleSetVersion], Envelope] | None = None,
    ) -> tuple[RuleSetVersion | None, bool]:
        """A new version of the level with `body` (None: clear it), unless the body is its current one's (nothing is
        written). Returns (the level's current version afterwards, None if it has none; whether one was written). The
        version, and its event, are written in one transaction; two changes of a level at once get the next two
        versions (the latest is read under a lock; a collision on the primary key runs the change again)."""
        make_event = make_event or _event
        for attempt_number in range(1, VERSION_ATTEMPTS + 1):
            try:
                written, latest = await self._record_once(scope, key, body, reason, by, at, make_event)
            except IntegrityError:
                if attempt_number == VERSION_ATTEMPTS:
                    raise
                log.info("rule set version taken by a concurrent change; again", extra={"scope": scope.value})
                continue
            if written and self.on_event is not None:
                self.on_event()
            return latest, written
        raise AssertionError("unreachable: the loop returns or raises")

    async def _record_once(
        self,
        scope: Scope,
        key: str,
        body: dict[str, Any] | None,
        reason: str,
        by: str,
        at: datetime,
        make_event: Callable[[RuleSetVersion], Envelope],
    ) -> tuple[bool, RuleSetVersion | None]:
        t = risk_rule_sets.c
        query = (
            select(risk_rule_sets)
            .where(t.scope == scope.value, t.key == key)
            .order_by(t.version.desc())
            .limit(1)
            .with_for_update()
        )
        async for attempt in self.db.transaction():
            async with attempt as s:
                row = (await s.execute(query)).first()
                latest = None if row is None else _version(row)
                if (latest is None and body is None) or (latest is not None and same_rules(latest.body, body)):
                    return False, latest  # nothing to change (a cleared level cleared again, the same rules again)
                number = 1 if latest is None else latest.version + 1
                new = RuleSetVersion(scope.value, key, number, body, reason, by, at)
                await s.execute(
                    risk_rule_sets.insert().values(
                        scope=new.scope,
                        key=new.key,
                        version=new.version,
                        body=None if body is None else json.dumps(body, ensure_ascii=False, sort_keys=True),
                        reason=reason,
                        set_by=by,
                        set_at=at,
                    )
                )
                await add_to_outbox(s, outbox, make_event(new))
        return True, new


def _event(version: RuleSetVersion) -> Envelope:
    return rule_set_changed(
        version.scope, version.key, version.version, version.body, version.reason, version.set_by, version.set_at
    )


class RuleSets:
    """The API's side: who may see and change which level (admins: all; anyone else: global, their own account and
    the instances risk knows trade in it), and the changes themselves."""

    def __init__(
        self, store: RuleSetStore, clock: Callable[[], datetime], on_change: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_change = on_change  # this process's rule book: reload before its next decision

    async def put(self, scope: Scope, key: str, rules: RuleSet, reason: str, principal: Principal) -> dict[str, Any]:
        return await self._change(scope, key, _body(rules), reason, principal)

    async def clear(self, scope: Scope, key: str, reason: str, principal: Principal) -> dict[str, Any]:
        return await self._change(scope, key, None, reason, principal)

    async def _change(
        self, scope: Scope, key: str, body: dict[str, Any] | None, reason: str, principal: Principal
    ) -> dict[str, Any]:
        if principal.is_service or not principal.at_least(Role.ADMIN):
            raise Forbidden("forbidden", f"only an admin may change a rule set ({principal.subject} may not)")
        key = check_key(scope, key)
        by, at = principal.subject, self.clock()
        current, changed = await self.store.record(scope, key, body, reason=reason, by=by, at=at)
        if changed and self.on_change is not None:
            self.on_change()
        log.warning(
            "rule set changed" if changed else "rule set unchanged",
            extra={"scope": scope.value, "key": key, "by": principal.subject, "changed": changed,
                   "version": None if current is None else current.version},
        )  # fmt: skip
        if current is None:  # clearing a level that never had a rule set: nothing recorded
            where = "global" if scope is Scope.GLOBAL else f"{scope.value} {key}"
            raise NotFound("rule_set_not_found", f"{where} has no rule set to clear")
        return {**current.as_json(), "changed": changed}

    async def _own(self, principal: Principal) -> tuple[str, set[str]] | None:
        """None for those who see everything; else (their account, the instances risk knows trade in it)."""
        if principal.acts_for_everyone:
            return None
        account = principal.account_id or principal.subject
        return account, await self.store.instances_of(account)

    @staticmethod
    def _visible(own: tuple[str, set[str]] | None, scope: str, key: str) -> bool:
        if own is None or scope == Scope.GLOBAL.value:
            return True
        account, instances = own
        return (scope == Scope.ACCOUNT.value and key == account) or (scope == Scope.INSTANCE.value and key in instances)

    async def visible(self, principal: Principal, account_id: str | None, instance_id: str | None) -> dict[str, Any]:
        """The current rule sets the caller may see, and the settings in force for `account_id` / `instance_id`
        (anyone but an admin or a service: their own account by default, and only theirs)."""
        own = await self._own(principal)
        if own is not None:
            account_id = account_id or own[0]
        for scope, key in ((Scope.ACCOUNT, account_id), (Scope.INSTANCE, instance_id)):
            if key is not None and not self._visible(own, scope.value, key):
                raise Forbidden("forbidden", f"{principal.subject} may not see the rules of {scope.value} {key}")
        current = await self.store.current()
        merged = merge_levels(parsed(current), account_id, instance_id)
        return {
            "rule_sets": [v.as_json() for v in current if self._visible(own, v.scope, v.key)],
            "effective": {"account_id": account_id, "instance_id": instance_id, **merged.as_json()},
        }

    async def history(self, principal: Principal, scope: Scope, key: str, limit: int) -> list[dict[str, Any]]:
        key = "" if scope is Scope.GLOBAL else key
        own = await self._own(principal)
        if not self._visible(own, scope.value, key):
            raise Forbidden("forbidden", f"{principal.subject} may not see the rules of {scope.value} {key}")
        return [v.as_json() for v in await self.store.history(scope, key, limit=limit)]


class RuleBook:
    """What an order decision reads: `effective_for(account_id, instance_id)`, served from memory.

    Every level's current rule set is loaded in one query (`load`, at start). It is loaded again when a
    `risk.rules.changed` event arrives (`on_rules_changed`, subscribed by the app) or this process changed one
    (`invalidate`), and when a cheap check (one `count(*)` of the versions, at most every `check_every_s` seconds)
    finds a change the events missed. Fails closed: never loaded and the database cannot be read -> RulesUnavailable
    (503 `risk_unavailable`). Once loaded, a failed reload keeps serving what it holds (logged) and is tried again
    `check_every_s` later."""

    def __init__(
        self,
        store: RuleSetStore,
        *,
        check_every_s: float = CHECK_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.check_every_s = check_every_s
        self.monotonic = monotonic
        self._levels: dict[LevelKey, tuple[RuleSetVersion, RuleSet | None]] | None = None
        self._stamp = -1
        self._checked_at = 0.0
        self._stale = False
        self._invalidations = 0  # counts invalidate() calls: a load that began before one does not clear it
        self._merged: dict[tuple[str | None, str | None], EffectiveRules] = {}
        self._lock = asyncio.Lock()
        self.loads = 0  # full loads (one query each), for tests and metrics
        self.checks = 0  # cheap checks

    @property
    def loaded(self) -> bool:
        return self._levels is not None

    def invalidate(self) -> None:
        """A rule set changed (an event, or this process wrote one): load again before the next decision."""
        self._stale = True
        self._invalidations += 1
        self._checked_at = float("-inf")

    async def on_rules_changed(self, _envelope: Any = None) -> None:
        """The `risk.rules.changed` handler: load again now (and, if that fails, before the next decision)."""
        self.invalidate()
        try:
            await self._refresh()
        except Exception:
            log.warning("rule sets not reloaded after risk.rules.changed; the next decision tries", exc_info=True)

    async def load(self) -> None:
        """Load every level's current rule set (one query). Raises when the database cannot be read."""
        async with self._lock:
            await self._load()

    async def start(self) -> None:
        """The first load, at start: a failure is logged (the first decision tries again, and refuses if it fails)."""
        try:
            await self.load()
        except Exception:
            log.error("risk rule sets not loaded at start; decisions are refused until they are", exc_info=True)

    async def _load(self) -> None:
        seen = self._invalidations
        current = await self.store.current()
        self._levels = parsed(current)
        self._stamp = sum(v.version for v in current)
        self._merged = {}
        self._checked_at = self.monotonic()
        self.loads += 1
        if self._invalidations == seen:
            self._stale = False

    async def _refresh(self) -> None:
        async with self._lock:
            if self._levels is not None and not self._stale:
                if self.monotonic() - self._checked_at < self.check_every_s:
                    return  # another caller just checked
                self._checked_at = self.monotonic()
                self.checks += 1
                if await self.store.stamp() == self._stamp:
                    return
            await self._load()

    async def effective_for(self, account_id: str | None, instance_id: str | None) -> EffectiveRules:
        """The settings every rule runs with for an order of `account_id` (and `instance_id`), and the versions of
        the levels they came from."""
        if self._levels is None:
            try:
                await self._refresh()
            except Exception as exc:
                raise RulesUnavailable(
                    "risk's rule sets cannot be read (never loaded, and the database does not answer)"
                ) from exc
        elif self.monotonic() - self._checked_at >= self.check_every_s and not self._lock.locked():
            try:
                await self._refresh()
            except Exception:
                self._checked_at = self.monotonic()  # try again check_every_s later; serve what is held till then
                log.warning("rule sets not reloaded; serving the ones loaded", exc_info=True)
        levels = self._levels
        assert levels is not None
        cache_key = (account_id, instance_id)
        merged = self._merged.get(cache_key)
        if merged is None:
            merged = merge_levels(levels, account_id, instance_id)
            if len(self._merged) >= MERGED_CACHE:
                self._merged = {}
            self._merged[cache_key] = merged
        return merged
