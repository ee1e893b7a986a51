"""The request-body size limit of every app (the gateway and each service): a body over LH_MAX_BODY_BYTES is
refused with 413 `body_too_large` before it is read whole, whether it declares its length or arrives chunked."""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CODE = "body_too_large"
# How much of a refused body is read (and thrown away) past the limit so that the connection can stay open and the
# client, which typically sends its whole body before it reads, gets the 413: beyond that the server stops reading
# and closes the connection after the 413 (such a client then sees a connection reset, not the 413).
DISCARD_MAX_BYTES = 32 * 1024 * 1024
# How long the rest of a refused chunked body is waited for before the connection is closed.
DISCARD_TIMEOUT_S = 30.0


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a chunked body passes the limit. An HTTPException, so that FastAPI passes it on
    from its body parsing instead of turning it into a 400; the middleware answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Pure ASGI. A declared Content-Length over the limit is answered at once, without calling the app: nothing is
    read or run. A body without one (chunked) is counted as it arrives; past the limit the app's read fails and the
    answer is this 413, whatever the app made of the failure.

    Up to `discard_max_bytes` past the limit, the connection is left open and the rest of the body read and thrown
    away (by the server for a declared length, here for a chunked one, before the 413 is sent), so that a client
    that sends its whole body before reading (httpx, requests) gets the 413: closing at once makes such a client see
    a connection reset instead. A body declared longer than that, or a chunked one that goes on past it (or stalls
    for DISCARD_TIMEOUT_S), gets the 413 with `Connection: close` and the server reads no more of it."""

    def __init__(self, app: ASGIApp, max_bytes: int, discard_max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._discard_max_bytes = discard_max_bytes

    @property
    def discard_max_bytes(self) -> int:
        return DISCARD_MAX_BYTES if self._discard_max_bytes is None else self._discard_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            # The server throws away what the app does not read; a body too long for that is not read at all.
            await self._refuse(send, close=declared > self.max_bytes + self.discard_max_bytes)
            return

        received = 0
        overflowed = False  # the app's read failed: the body is over the limit
        body_done = False  # the body's last message has arrived
        started = False  # a response has begun (the app's, or our 413)
        refused = False  # the 413 is ours

        async def counting_receive() -> Message:
            nonlocal received, overflowed, body_done
            if overflowed:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    overflowed = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def refuse_chunked() -> None:
            # Read the rest of the body (bounded) so that the connection can stay open; else close it.
            close = False
            if not body_done:
                close = not await self._discard(receive, received)
            await self._refuse(send, close=close)

        async def guarded_send(message: Message) -> None:
            nonlocal started, refused
            if refused:
                return
            if overflowed and not started:
                # The app answered its failed read in its own way (a 400, its HTTPException handler): ours instead.
                started = refused = True
                await refuse_chunked()
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if refused:
                return
            if started:
                raise
            await refuse_chunked()

    async def _discard(self, receive: Receive, received: int) -> bool:
        """Read and drop the rest of a body of which `received` bytes have arrived; False when it goes on past
        `max_bytes + discard_max_bytes`, stalls, or the client is gone (the connection is then to be closed)."""
        try:
            async with asyncio.timeout(DISCARD_TIMEOUT_S):
                while received <= self.max_bytes + self.discard_max_bytes:
                    message = await receive()
                    if message["type"] != "http.request":
                        return False
                    received += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return received <= self.max_bytes + self.discard_max_bytes
        except TimeoutError:
            return False
        return False

    async def _refuse(self, send: Send, *, close: bool = False) -> None:
        body = json.dumps(
            {
                "code": CODE,
                "message": f"the request body is larger than the limit of {self.max_bytes} bytes",
                "details": {"limit_bytes": self.max_bytes},
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *([(b"connection", b"close")] if close else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the app sees the request
    return None
