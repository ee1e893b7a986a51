"""Rule sets against the real MariaDB: every change is a new version (1, 2, ... per level) with who and why, and a
`risk.rules.changed` event in risk's outbox written with it; bad changes are 422 naming the field with nothing stored;
two changes of one level at once get the next two versions, never one twice; traders read only what is theirs; a
change made through one risk process reaches another's rule book."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.risk.app import create_app as create_risk_app
from services.risk.store import Decision, RiskStore, outbox, risk_rule_sets
from shared.platform.app import Infra
from shared.platform.bus import create_bus
from shared.platform.cache import create_cache
from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import INTERNAL_HEADER, Principal, mint_internal_token
from shared.platform.observability import new_id
from shared.platform.settings import Settings
from tests.conftest import Backing

pytestmark = pytest.mark.integration

ROOT = Principal("root", "admin", "acct-root")


@asynccontextmanager
async def _risk(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    infra = Infra(
        settings,
        create_bus(settings.amqp_url, namespace=settings.bus_namespace, source="risk"),
        create_cache(settings.redis_url),
        ServiceDirectory(settings),
    )
    app = create_risk_app(settings, infra)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://risk") as client,
    ):
        yield app, client
    await infra.close()


def _headers(settings: Settings, who: Principal) -> dict[str, str]:
    return {INTERNAL_HEADER: mint_internal_token(settings.internal_secret, who)}


def _account() -> str:
    return f"acct-{new_id()[:10]}"


async def _put(
    client: httpx.AsyncClient, settings: Settings, scope: str, body: dict[str, Any], who: Principal = ROOT
) -> httpx.Response:
    return await client.put(f"/v1/risk/rules/{scope}", json=body, headers=_headers(settings, who))


async def _events(app: FastAPI, key: str) -> list[dict[str, Any]]:
    async with app.state.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.body).where(outbox.c.type == "risk.rules.changed").order_by(outbox.c.created_at)
            )
        ).all()
    return [p for p in (json.loads(r.body)["payload"] for r in rows) if p["key"] == key]


async def _stored(app: FastAPI, key: str) -> list[int]:
    async with app.state.db.engine.connect() as conn:
        c = risk_rule_sets.c
        rows = (await conn.execute(select(c.version).where(c.key == key).order_by(c.version))).all()
    return [r.version for r in rows]


async def test_every_change_is_a_new_version_with_its_event_and_history_is_newest_first(backing: Backing) -> None:
    settings = backing.settings("rulesets")
    account = _account()
    async with _risk(settings) as (app, client):
        tight = {"order_limits": {"max_order_value": "50000"}, "codes": {"blacklist": ["600001.SH"]}}
        first = await _put(client, settings, "account", {"key": account, "rules": tight, "reason": "new desk"})
        assert first.status_code == 201, first.text
        assert {k: first.json()[k] for k in ("scope", "key", "version", "body", "set_by", "reason", "changed")} == {
            "scope": "account", "key": account, "version": 1, "body": tight, "set_by": "root", "reason": "new desk",
            "changed": True,
        }  # fmt: skip

        # The same rules again (written differently): nothing recorded.
        same = {"codes": {"blacklist": ["600001.SH"]}, "order_limits": {"max_order_value": 50000}}
        again = await _put(client, settings, "account", {"key": account, "rules": same, "reason": "again"})
        assert again.status_code == 200 and (again.json()["version"], again.json()["changed"]) == (1, False)

        looser = {"order_limits": {"max_order_value": "80000"}}
        second = await _put(client, settings, "account", {"key": account, "rules": looser, "reason": "grew"})
        assert second.status_code == 201 and second.json()["version"] == 2

        cleared = await client.request(
            "DELETE",
            "/v1/risk/rules/account",
            json={"key": account, "reason": "closed"},
            headers=_headers(settings, ROOT),
        )
        assert cleared.status_code == 201 and (cleared.json()["version"], cleared.json()["body"]) == (3, None)
        twice = await client.request(
            "DELETE",
            "/v1/risk/rules/account",
            json={"key": account, "reason": "closed"},
            headers=_headers(settings, ROOT),
        )
        assert twice.status_code == 200 and (twice.json()["version"], twice.json()["changed"]) == (3, False)
        never = await client.request(
            "DELETE",
            "/v1/risk/rules/account",
            json={"key": _account(), "reason": "x"},
            headers=_headers(settings, ROOT),
        )
        assert never.status_code == 404 and never.json()["code"] == "rule_set_not_found"

        history = await client.get(
            "/v1/risk/rules/account/history", params={"key": account}, headers=_headers(settings, ROOT)
        )
        assert [(h["version"], h["body"], h["reason"]) for h in history.json()] == [
            (3, None, "closed"),
            (2, looser, "grew"),
            (1, tight, "new desk"),
        ]
        events = await _events(app, account)
        assert [(e["scope"], e["version"], e["body"], e["reason"], e["by"]) for e in events] == [
            ("account", 1, tight, "new desk", "root"),
            ("account", 2, looser, "grew", "root"),
            ("account", 3, None, "closed", "root"),
        ]
        listed = (await client.get("/v1/risk/rules", headers=_headers(settings, ROOT))).json()
        mine = [s for s in listed["rule_sets"] if s["key"] == account]
        assert [(s["version"], s["body"]) for s in mine] == [(3, None)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rules": {"order_limits": {"max_order_value": "1"}}}, "reason"),
        ({"rules": {"order_limits": {"max_order_value": "1"}}, "reason": "  "}, "reason"),
        ({"rules": {"stop_loss": {"pct": 5}}, "reason": "x"}, "rules.stop_loss"),
        ({"rules": {"order_limits": {"max_order_value": "-5"}}, "reason": "x"}, "rules.order_limits.max_order_value"),
        ({"rules": {"position_limit": {"max_pct_of_equity": 101}}, "reason": "x"},
         "rules.position_limit.max_pct_of_equity"),
        ({"rules": {"order_limits": {"max_order_vaule": "1"}}, "reason": "x"}, "rules.order_limits.max_order_vaule"),
        ({"key": "no spaces", "rules": {}, "reason": "x"}, "key"),
    ],
)  # fmt: skip
async def test_a_bad_change_is_422_naming_the_field_and_stores_nothing(
    backing: Backing, body: dict[str, Any], field: str
) -> None:
    settings = backing.settings("rulesets")
    account = _account()
    async with _risk(settings) as (app, client):
        response = await _put(client, settings, "account", {"key": account, **body})
        assert response.status_code == 422 and response.json()["code"] == "invalid_request", response.text
        assert [d["field"] for d in response.json()["details"]] == [field]
        assert field in response.json()["message"]
        assert await _stored(app, account) == [] and await _events(app, account) == []
        bad_scope = await _put(client, settings, "planet", {"rules": {}, "reason": "x"})
        assert bad_scope.status_code == 422 and bad_scope.json()["details"][0]["field"] == "scope"


async def test_changes_of_one_level_at_once_get_the_next_versions_never_one_twice(backing: Backing) -> None:
    settings = backing.settings("rulesets")
    async with _risk(settings) as (app, client), _risk(settings) as (other_app, other):
        # Two risk processes on one database; the level has no version yet, then has some.
        for account in (_account(), _account()):
            answers = await asyncio.gather(
                _put(client, settings, "account",
                     {"key": account, "rules": {"duplicates": {"window_s": 6}}, "reason": "a"}),
                _put(other, settings, "account",
                     {"key": account, "rules": {"duplicates": {"window_s": 7}}, "reason": "b"}),
            )  # fmt: skip
            assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
            assert sorted(a.json()["version"] for a in answers) == [1, 2]
            more = await asyncio.gather(
                *(
                    _put(client if i % 2 else other, settings, "account",
                         {"key": account, "rules": {"duplicates": {"window_s": 10 + i}}, "reason": f"r{i}"})
                    for i in range(6)
                )
            )  # fmt: skip
            assert sorted(a.json()["version"] for a in more) == [3, 4, 5, 6, 7, 8]
            assert await _stored(app, account) == [1, 2, 3, 4, 5, 6, 7, 8]
            assert sorted(e["version"] for e in await _events(app, account)) == [1, 2, 3, 4, 5, 6, 7, 8]
        assert other_app is not app


async def test_the_effective_rules_merge_the_levels_and_traders_see_only_theirs(backing: Backing) -> None:
    settings = backing.settings("rulesets")
    alice, bob = _account(), _account()
    her_instance, his_instance = new_id(), new_id()
    assert len(her_instance) == 32
    ann = Principal("ann", "trader", alice)
    async with _risk(settings) as (app, client):
        # Risk knows whose an instance is from the decisions it made for it.
        store: RiskStore = app.state.store
        for account, instance in ((alice, her_instance), (bob, his_instance)):
            await store.record(
                Decision(
                    decision_id=new_id(), client_order_id=f"c-{new_id()[:8]}", account_id=account, ts_code="600000.SH",
                    side="buy", order_type="limit", qty=100, price=Decimal("10.00"), approved=True, reasons=[],
                    created_at=datetime.now(UTC), correlation_id=None, strategy_instance_id=instance,
                )
            )  # fmt: skip
        for scope, key, rules in [
            ("account", alice, {"order_limits": {"max_order_value": "100000"}, "duplicates": {"window_s": 10}}),
            ("instance", her_instance, {"order_limits": {"max_order_value": "30000", "max_order_qty": 5000}}),
            ("account", bob, {"order_limits": {"max_order_value": "1"}}),
            ("instance", his_instance, {"order_limits": {"max_order_value": "2"}}),
        ]:
            assert (await _put(client, settings, scope, {"key": key, "rules": rules, "reason": "x"})).status_code == 201

        # Hers: min(100,000, 30,000) and the instance's 5,000 shares; the window only her account sets (10 s; global,
        # if an earlier test set one here, can only make it longer). Versions: hers and her instance's first.
        answer = await client.get(
            "/v1/risk/rules", params={"instance_id": her_instance}, headers=_headers(settings, ann)
        )
        assert answer.status_code == 200, answer.text
        effective = answer.json()["effective"]
        assert (effective["account_id"], effective["instance_id"]) == (alice, her_instance)
        assert effective["versions"]["account"] == 1 and effective["versions"]["instance"] == 1
        assert effective["rules"]["order_limits"]["max_order_value"] == "30000"
        assert effective["rules"]["order_limits"]["max_order_qty"] == 5000
        assert int(effective["rules"]["duplicates"]["window_s"]) >= 10
        seen = {(s["scope"], s["key"]) for s in answer.json()["rule_sets"]}
        assert {("account", alice), ("instance", her_instance)} <= seen
        assert not {k for _, k in seen} & {bob, his_instance}
        assert {s for s, _ in seen} <= {"global", "account", "instance"}

        # The same through the rule book the desk reads.
        book = await app.state.rule_book.effective_for(alice, her_instance)
        assert book.configs["order_limits"].max_order_value == Decimal(30000)
        assert (book.versions["account"], book.versions["instance"]) == (1, 1)

        for params in ({"account_id": bob}, {"instance_id": his_instance}):
            refused = await client.get("/v1/risk/rules", params=params, headers=_headers(settings, ann))
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden", params
        for scope, key, status in [("account", alice, 200), ("instance", her_instance, 200), ("global", "", 200),
                                   ("account", bob, 403), ("instance", his_instance, 403)]:  # fmt: skip
            history = await client.get(
                f"/v1/risk/rules/{scope}/history", params={"key": key}, headers=_headers(settings, ann)
            )
            assert history.status_code == status, (scope, key)

        # Only an admin changes a rule set: a trader, a viewer, a service are 403 and nothing is stored.
        for who in (ann, Principal("vic", "viewer", "acct-vic"), Principal("svc:strategy", "service")):
            refused = await _put(client, settings, "account", {"key": alice, "rules": {}, "reason": "x"}, who)
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
        assert await _stored(app, alice) == [1]


async def test_a_change_through_one_process_reaches_the_rule_book_of_another(backing: Backing) -> None:
    settings = backing.settings("rulesets")
    account = _account()
    async with _risk(settings) as (app, client), _risk(settings) as (other_app, _):
        book = other_app.state.rule_book
        assert book.loaded
        loads = book.loads
        assert (await book.effective_for(account, None)).versions["account"] is None
        rules = {"order_activity": {"max_per_second": 20}}
        assert (
            await _put(client, settings, "account", {"key": account, "rules": rules, "reason": "x"})
        ).status_code == 201
        # Its own process's book reloads before its next decision; the other's on the event (risk.rules.changed,
        # published from the first process's outbox over RabbitMQ to every risk process's own queue) ...
        own = await app.state.rule_book.effective_for(account, None)
        assert own.versions["account"] == 1 and own.configs["order_activity"].max_per_second == 20
        for _ in range(300):
            if book.loads > loads and (await book.effective_for(account, None)).versions["account"] == 1:
                break
            await asyncio.sleep(0.05)
        assert (await book.effective_for(account, None)).versions["account"] == 1
        # ... or, had the event been lost, on its next check (one count of the versions) after check_every_s.
        second = {"order_activity": {"max_per_second": 10}}
        assert (
            await _put(client, settings, "account", {"key": account, "rules": second, "reason": "y"})
        ).status_code == 201
        book.check_every_s = 0
        checked = await book.effective_for(account, None)
        assert checked.versions["account"] == 2 and checked.configs["order_activity"].max_per_second == 10
