"""The platform's side of the bridge protocol, played by a test: a WebSocket server built on `websockets` and
bridge.qmt.protocol (challenge, hello checked, welcome or refused, signed frames both ways)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bridge.qmt import protocol

WAIT_S = 20.0  # a bound on waiting, not a timing assertion
POLL_S = 0.02  # how often `until` checks a state the platform's side does not report


@dataclass
class Session:
    channel_name: str
    ws: ServerConnection
    channel: protocol.Channel
    welcome: dict[str, Any]
    pushes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    replies: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakePlatform:
    def __init__(
        self,
        secrets: dict[str, str],
        accounts: dict[str, str],
        *,
        trading: dict[str, bool] | None = None,
        forge_welcome: bool = False,
    ) -> None:
        self.secrets = secrets
        self.accounts = accounts
        self.trading = trading or {"enabled": False, "read_only": False}
        self.forge_welcome = forge_welcome
        self.hellos: list[dict[str, Any]] = []
        self.refusals: list[str] = []
        self.sessions: list[Session] = []
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _notify(self) -> None:
        self._changed.set()

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        channel_name = {protocol.TRADING_PATH: "trading", protocol.QUOTES_PATH: "quotes"}.get(path)
        if channel_name is None:
            await ws.close(4404, "no such path")
            return
        challenge = protocol.challenge(datetime.now(UTC))
        await ws.send(json.dumps(challenge))
        hello = json.loads(await ws.recv())
        self.hellos.append(hello)
        self._notify()
        secret = self.secrets.get(hello.get("bridge_id"))
        reason = (
            "unknown bridge"
            if secret is None
            else protocol.check_hello(secret, hello, server_nonce=challenge["nonce"], now=datetime.now(UTC))
        )
        if reason is None and hello["channel"] != channel_name:
            reason = "wrong channel"
        if reason is None and self.accounts.get(hello["bridge_id"]) != hello["account_id"]:
            reason = "account_mismatch"
        if reason is not None:
            self.refusals.append(reason)
            self._notify()
            await ws.send(json.dumps(protocol.refused("refused", reason)))
            await ws.close(protocol.REFUSED_CLOSE_CODE, reason)
            return
        assert secret is not None
        welcome = protocol.welcome(secret, bridge_id=hello["bridge_id"], nonce=hello["nonce"], trading=self.trading)
        if self.forge_welcome:
            welcome["sig"] = "0" * 64
        await ws.send(json.dumps(welcome))
        session = Session(channel_name, ws, protocol.Channel(secret, welcome["session"], protocol.TO_BRIDGE), welcome)
        self.sessions.append(session)
        self._notify()
        try:
            async for text in ws:
                type_, id_, body = session.channel.open(text)
                if type_ == protocol.REPLY and id_ in session.replies:
                    session.replies.pop(id_).set_result(body)
                else:
                    session.pushes.append((type_, body))
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            session.close_code = ws.close_code
            session.closed.set()
            self._notify()

    async def until(self, check: Callable[[], Any]) -> Any:
        """`check()`'s value once truthy: checked again whenever the platform's side changes, and every POLL_S for
        a check of something else (the fake xtquant's state, which the bridge changes from its own threads)."""

        async def loop() -> Any:
            while True:
                value = check()
                if value:
                    return value
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), POLL_S)

        return await asyncio.wait_for(loop(), WAIT_S)

    async def session(self, channel_name: str = "trading", *, number: int = 1) -> Session:
        def nth() -> Session | None:
            found = [s for s in self.sessions if s.channel_name == channel_name]
            return found[number - 1] if len(found) >= number else None

        return await self.until(nth)

    def pushes(self, type_: str, pred: Callable[[dict[str, Any]], bool] = lambda b: True) -> list[dict[str, Any]]:
        return [b for s in self.sessions for t, b in s.pushes if t == type_ and pred(b)]

    async def push(self, type_: str, pred: Callable[[dict[str, Any]], bool] = lambda b: True) -> dict[str, Any]:
        found = await self.until(lambda: self.pushes(type_, pred))
        return found[0]

    async def request(self, session: Session, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        id_ = session.channel.new_id()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        session.replies[id_] = future
        await session.ws.send(session.channel.seal(type_, body, id_=id_))
        return await asyncio.wait_for(future, WAIT_S)
