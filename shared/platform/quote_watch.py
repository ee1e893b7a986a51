"""An owner's lease on the data service's watched codes (docs/quotes.md, "Ticks of the watched codes"): the codes
whose per-code ticks the QMT bridge forwards, for lower latency than the whole-market rounds.

`QuoteWatch.check()` (run by a `PeriodicTask` every CHECK_S) reads the owner's codes and sends
`PUT /v1/quotes/watch {"owner", "codes", "ttl_s"}` to the data service when they changed, and every RENEW_S to keep
the lease (TTL_S: an owner that stops renewing drops out by itself). A failed PUT is logged and tried again at the
next check: ticks are an improvement in latency, never what correctness rests on (the whole-market rounds still
carry every code), so nothing waits for it. Owners: execution (open orders, armed conditional orders) and each
gateway process (its browsers' /ws subscriptions)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from shared.platform.http import ServiceDirectory
from shared.platform.internal_auth import service_headers

log = logging.getLogger(__name__)

CHECK_S = 2.0  # how often the owner's codes are read (a change is sent at the next check)
RENEW_S = 30.0  # the lease is renewed this often when nothing changed
TTL_S = 90  # the lease lapses this long after its last PUT
MAX_CODES = 300  # the data service's (and the bridge's) limit; an owner's codes beyond it are cut, sorted


def owner_name(service: str) -> str:
    """One owner per process: `execution:<host>:<pid>`."""
    return f"{service}:{socket.gethostname()[:40]}:{os.getpid()}"


class QuoteWatch:
    def __init__(
        self,
        owner: str,
        codes: Callable[[], Awaitable[set[str]]],
        put: Callable[[str, list[str], int], Awaitable[None]],
        *,
        renew_s: float = RENEW_S,
        ttl_s: int = TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner = owner
        self.codes = codes
        self.put = put
        self.renew_s = renew_s
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self.sent: list[str] | None = None  # what the data service holds for us (None: nothing known)
        self._sent_at = 0.0
        self.failures = 0

    async def check(self) -> None:
        wanted = sorted(await self.codes())
        if len(wanted) > MAX_CODES:
            log.warning("more codes to watch than the tick limit; the first ones by code are watched",
                        extra={"owner": self.owner, "codes": len(wanted), "limit": MAX_CODES})  # fmt: skip
            wanted = wanted[:MAX_CODES]
        moment = self.monotonic()
        if wanted == self.sent and moment - self._sent_at < self.renew_s:
            return
        try:
            await self.put(self.owner, wanted, self.ttl_s)
        except Exception as exc:
            self.failures += 1
            self.sent = None  # sent again at the next check
            log.warning("the watched codes could not be sent to the data service; trying again",
                        extra={"owner": self.owner, "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            return
        self.sent, self._sent_at = wanted, moment


def data_service_put(
    services: ServiceDirectory, internal_secret: str, caller: str
) -> Callable[[str, list[str], int], Awaitable[None]]:
    """The PUT to the data service, raising on anything but a 2xx (ServiceError / Unavailable)."""

    async def put(owner: str, codes: list[str], ttl_s: int) -> None:
        response = await services.client("data").request(
            "PUT", "/v1/quotes/watch", json={"owner": owner, "codes": codes, "ttl_s": ttl_s},
            headers=service_headers(internal_secret, caller),
        )  # fmt: skip
        if response.status_code >= 300:
            raise RuntimeError(f"the data service answered {response.status_code}: {response.text[:200]}")

    return put
