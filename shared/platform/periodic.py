"""The one background loop: `PeriodicTask` runs an async function every interval in a service's lifespan (the
outbox relay, stale-job sweeps, the execution reconciler, metric refreshes), survives the function's failures, and
stops gracefully.

- A failing call is logged with its traceback and counted (`failures`); the loop goes on at the next interval (after
  a failure it waits the whole interval, even when woken, so a broken dependency is not hammered).
- `wake()` runs the function now instead of at the end of the interval (e.g. the outbox after a commit).
- `stop(grace_s)` sets `stopping` (functions that work through a list check it between items), lets a call in
  progress finish for up to `grace_s`, then cancels it, and never waits longer than that again: a task cancelled
  inside an asyncmy transaction can wait forever on its rollback, so cancelling is the last resort, not the way to
  stop. The loop ends by itself on `stopping`, so it does not depend on a cancel arriving (on Python 3.11 a cancel
  that meets a completing `wait_for` is dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PeriodicTask:
    def __init__(
        self,
        name: str,
        interval_s: float,
        fn: Callable[[], Awaitable[object]],
        *,
        run_at_start: bool = True,
        stop_grace_s: float = 10.0,
    ) -> None:
        """`fn` runs at start (or, with `run_at_start=False`, one interval after it) and then `interval_s` after
        each call ends."""
        self.name = name
        self.interval_s = interval_s
        self.fn = fn
        self.run_at_start = run_at_start
        self.stop_grace_s = stop_grace_s
        self.runs = 0  # calls that returned
        self.failures = 0  # calls that raised
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def woken(self) -> bool:
        """A wake-up is pending: the function runs again as soon as the loop gets to it."""
        return self._wake.is_set()

    def start(self) -> None:
        """Start the loop (again after a stop). Starting a running loop is an error."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self.name} is already running")
        self.stopping.clear()
        self._wake.clear()
        self._task = asyncio.create_task(self._loop(), name=self.name)

    def wake(self) -> None:
        """Run the function as soon as the call in progress (if any) ends, instead of at the end of the interval."""
        self._wake.set()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop the loop: the call in progress gets `grace_s` (default `stop_grace_s`) to finish, then is cancelled;
        returns within about twice `grace_s` whatever the function does."""
        grace = self.stop_grace_s if grace_s is None else grace_s
        task, self._task = self._task, None
        self.stopping.set()
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            log.warning("%s still running %ss after its stop; cancelling it", self.name, grace)
            task.cancel()
            await asyncio.wait({task}, timeout=grace)

    async def run_once(self) -> bool:
        """One call, its failure logged and counted; True when it returned."""
        try:
            await self.fn()
        except Exception:
            self.failures += 1
            log.exception("%s failed; it runs again in %ss", self.name, self.interval_s)
            return False
        self.runs += 1
        return True

    async def _loop(self) -> None:
        if not self.run_at_start:
            await self._pause(wakeable=True)
        while not self.stopping.is_set():
            ok = await self.run_once()
            if self.stopping.is_set():
                return
            await self._pause(wakeable=ok)

    async def _pause(self, *, wakeable: bool) -> None:
        waiters = [asyncio.ensure_future(self.stopping.wait())]
        if wakeable:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._wake.clear()
