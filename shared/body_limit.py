"""The request-body size limit of every app (the gateway and each service): a body over LH_MAX_BODY_BYTES is
refused with 413 `body_too_large` before it is read whole, whether it declares its length or arrives chunked."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CODE = "body_too_large"


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a chunked body passes the limit. An HTTPException, so that FastAPI passes it on
    from its body parsing instead of turning it into a 400; the middleware answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Pure ASGI. A declared Content-Length over the limit is answered at once, without calling the app: nothing is
    read or run. A body without one (chunked) is counted as it arrives; past the limit the app's read fails and the
    answer is this 413, whatever the app made of the failure. The connection is left open: the server discards the
    rest of the body without keeping it, and a client that sends its whole body before reading (httpx, requests)
    gets the 413 instead of a connection reset."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return

        received = 0
        overflowed = False  # the app's read failed: the body is over the limit
        started = False  # a response has begun (the app's, or our 413)
        refused = False  # the 413 is ours

        async def counting_receive() -> Message:
            nonlocal received, overflowed
            if overflowed:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflowed = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, refused
            if refused:
                return
            if overflowed and not started:
                # The app answered its failed read in its own way (a 400, its HTTPException handler): ours instead.
                started = refused = True
                await self._refuse(send)
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
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
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
