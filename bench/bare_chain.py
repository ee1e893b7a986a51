"""The floor of the order path: a bare chain of the same shape (gateway -> risk -> execution), three uvicorn processes
(uvloop, httptools) each forwarding the order's JSON to the next with a pooled httpx client and doing no work, as
`../shared/floors/` measures it. The order-path benchmark starts it beside the platform and sends to both in turn,
so that the ratio between them is measured in one run on one machine (absolute times move 2-3x between runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request

HOPS = ("gateway", "risk", "execution")
# below uvicorn's 5 s keep-alive, so that the pool never reuses a socket the server is closing
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=4)


def create_app() -> FastAPI:
    """One hop: POST /order answers the next hop's answer (BARE_NEXT) with its hop count raised by one, or is the
    last hop."""
    next_url = os.environ.get("BARE_NEXT") or None
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        async with AsyncExitStack() as stack:
            if next_url:
                clients["next"] = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=next_url, limits=LIMITS, timeout=30)
                )
            yield

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/order")
    async def order(request: Request) -> dict[str, Any]:
        body = await request.json()
        if "next" not in clients:
            return {"ok": True, "id": body["client_order_id"], "status": "accepted", "hops": 1}
        down = (await clients["next"].post("/order", json=body)).json()
        return {"ok": down["ok"], "id": body["client_order_id"], "status": down["status"], "hops": down["hops"] + 1}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


@contextmanager
def bare_chain(ports: list[int]) -> Iterator[tuple[str, dict[str, int]]]:
    """Start the three hops on `ports` (gateway first); yields the gateway's URL and each hop's pid; stops them
    after."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in reversed(range(len(HOPS))):  # the last hop first
            env = dict(os.environ, BARE_NEXT=f"http://127.0.0.1:{ports[i + 1]}" if i + 1 < len(HOPS) else "")
            argv = [sys.executable, "-m", "uvicorn", "--factory", "bench.bare_chain:create_app", "--host", "127.0.0.1",
                    "--port", str(ports[i]), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
                    "--no-access-log"]  # fmt: skip
            procs.append(subprocess.Popen(argv, env=env))
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the bare chain did not come up")
                time.sleep(0.1)
        pids = {name: p.pid for name, p in zip(HOPS, reversed(procs), strict=True)}
        yield f"http://127.0.0.1:{ports[0]}", pids
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
