"""Hot reload of strategy code: the strategy files (the `strategies` package's modules and the `*.py` of the folders in
LH_STRATEGY_DIRS) are checked every LH_STRATEGY_RELOAD_S seconds; a changed file is imported again as a new module
object (the classes already loaded are never touched), and each strategy class in it replaces the catalogue's and is
handed to the runner, which swaps it in between bars for the instances that opted in (`reload: auto`), keeping their
books and stored variables (`Runner.swap_strategy`).

A file that does not import (or defines a malformed strategy, or a name another file already uses) changes nothing:
every instance keeps its code, and `strategy.code.rejected` is published (an alert) with the file and the error.
An instance whose parameters the new class's `Params` refuses (or whose new object's on_init raises) keeps its old
code, with the same alert naming the instance. Each instance that took the new code gets an audit row and
`strategy.instance.reloaded` (InstanceService.reloaded).

Polling file stamps needs no dependency and sees every kind of folder (a network mount, a bind mount) the same way;
a file is taken once its stamp has stayed the same for one whole interval, so an editor's save in progress is not
read half-written. Strategy code only ever comes from these files: no route of the API takes code."""

from __future__ import annotations

import hashlib
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from shared.platform.clock import utcnow
from shared.platform.events import StrategyCodeRejected, make_event
from shared.research.strategy import Strategy
from shared.research.strategy.registry import (
    StrategyDefinitionError,
    import_fresh,
    strategies_by_name,
    strategy_classes,
)

log = logging.getLogger(__name__)

SOURCE = "strategy"
ERROR_MAX_CHARS = 500

Swap = Callable[[str, type[Strategy]], Awaitable[Mapping[str, str | None]]]


class ReloadReports(Protocol):
    async def reloaded(self, instance_id: str, detail: dict[str, Any]) -> None:
        """The instance runs the new class now (audit row, `strategy.instance.reloaded`)."""

    async def rejected(self, payload: StrategyCodeRejected) -> None:
        """A file, or one instance, kept the old code (`strategy.code.rejected`)."""


class ReloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "lh_strategy_code_reload_failures",
            "Changed strategy code that was not taken: reason=file (the file did not import or its strategy is "
            "malformed; every instance kept its code) or instance (one instance's params no longer validate, or the "
            "new object's on_init raised; that instance kept its code)",
            ["reason"],
            registry=registry,
        )
        self.reloads = Counter(
            "lh_strategy_code_reloads", "Instances that took a changed strategy class between bars", registry=registry
        )
        for reason in ("file", "instance"):
            self.failures.labels(reason=reason)


@dataclass(frozen=True)
class Stamp:
    mtime_ns: int
    size: int


@dataclass(frozen=True)
class Seen:
    stamp: Stamp
    sha256: str


def stamp_of(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return Stamp(st.st_mtime_ns, st.st_size)


def describe_error(exc: BaseException, path: Path) -> str:
    """What went wrong, in one line, with the line of the file where it did (the log has the traceback)."""
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        text = f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    else:
        here = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        text = f"{type(exc).__name__}: {exc}" + (f" (line {here[-1].lineno})" if here else "")
    return text[:ERROR_MAX_CHARS]


class StrategyWatcher:
    """`files()` lists the watched files with the module name each is imported under; `catalogue` is the service's
    strategies by name (the mapping the instance API and the runner read, updated in place); `swap` is the runner's
    `swap_strategy`. `scan()` is one look at the files (a PeriodicTask calls it)."""

    def __init__(
        self,
        files: Callable[[], Mapping[Path, str]],
        catalogue: MutableMapping[str, type[Strategy]],
        swap: Swap,
        reports: ReloadReports,
        *,
        metrics: ReloadMetrics | None = None,
        on_loaded: Callable[[type[Strategy]], None] | None = None,
    ) -> None:
        self.files = files
        self.catalogue = catalogue
        self.swap = swap
        self.reports = reports
        self.metrics = metrics
        self.on_loaded = on_loaded
        # What the service imported when it started: a file is reloaded when it differs from this (or from the
        # version last taken or refused)
        self.seen: dict[Path, Seen] = {}
        for path in files():
            stamp = stamp_of(path)
            if stamp is not None:
                self.seen[path] = Seen(stamp, hashlib.sha256(path.read_bytes()).hexdigest())
        self.settling: dict[Path, Stamp] = {}  # changed at the last look: taken if it has not changed since

    async def scan(self) -> None:
        for path, module_name in self.files().items():
            stamp = stamp_of(path)
            seen = self.seen.get(path)
            if stamp is None or (seen is not None and seen.stamp == stamp):
                self.settling.pop(path, None)
                continue  # unchanged (or gone: its classes stay as they are)
            if self.settling.get(path) != stamp:
                self.settling[path] = stamp  # still being written, maybe: look again next time
                continue
            del self.settling[path]
            source = path.read_bytes()
            digest = hashlib.sha256(source).hexdigest()
            self.seen[path] = Seen(stamp, digest)  # taken or refused, this version is dealt with
            if seen is not None and seen.sha256 == digest:
                continue  # touched, not changed
            await self.load(path, module_name, source, digest)

    async def load(self, path: Path, module_name: str, source: bytes, digest: str) -> None:
        """Import the file's new version and hand its strategies to the runner; refuse it as a whole when it does
        not import or a strategy in it is malformed."""
        previous = sys.modules.get(module_name)
        try:
            module = import_fresh(path, module_name, source)
            classes = strategies_by_name(strategy_classes(module))
            for name in classes:
                other = self.catalogue.get(name)
                if other is not None and other.__module__ != module_name:
                    raise StrategyDefinitionError(
                        f"strategy name {name!r} is already used by {other.__module__}.{other.__qualname__}"
                    )
        except Exception as exc:
            if previous is not None:
                sys.modules[module_name] = previous  # the module the running classes came from stays the current
            else:
                sys.modules.pop(module_name, None)
            log.warning("a changed strategy file was refused; the old code keeps running", exc_info=True,
                        extra={"file": str(path)})  # fmt: skip
            if self.metrics is not None:
                self.metrics.failures.labels(reason="file").inc()
            await self._rejected(None, path, describe_error(exc, path), None)
            return
        for name, cls in classes.items():
            self.catalogue[name] = cls
            if self.on_loaded is not None:
                self.on_loaded(cls)
            outcome = await self.swap(name, cls)
            for instance_id, error in outcome.items():
                if error is None:
                    if self.metrics is not None:
                        self.metrics.reloads.inc()
                    log.info("strategy instance reloaded", extra={"instance_id": instance_id, "file": str(path)})
                    await self._report(
                        self.reports.reloaded(
                            instance_id, {"strategy": name, "title": cls.title, "file": str(path), "sha256": digest}
                        )
                    )
                else:
                    if self.metrics is not None:
                        self.metrics.failures.labels(reason="instance").inc()
                    log.warning("a strategy instance kept its old code", extra={"instance_id": instance_id,
                                "file": str(path), "error": error})  # fmt: skip
                    await self._rejected(name, path, error, instance_id)

    async def _rejected(self, strategy: str | None, path: Path, error: str, instance_id: str | None) -> None:
        payload = StrategyCodeRejected(
            strategy=strategy, file=str(path), error=error[:ERROR_MAX_CHARS], instance_id=instance_id, at=utcnow()
        )
        await self._report(self.reports.rejected(payload))

    @staticmethod
    async def _report(report: Awaitable[None]) -> None:
        # the code is swapped already: a report that cannot be written is logged, the next ones still go
        try:
            await report
        except Exception:
            log.exception("could not record a strategy reload")


class ServiceReloadReports:
    """Reports through the strategy service: `reloaded` as InstanceService.reloaded (audit + event in one
    transaction), `rejected` through the service's outbox, naming the instance's owner (the gateway's WebSocket
    pushes it to them; admins see every one)."""

    def __init__(
        self,
        emit: Callable[[Any], Awaitable[None]],
        reloaded: Callable[[str, dict[str, Any]], Awaitable[None]],
        owner_of: Callable[[str], str | None],
    ) -> None:
        self.emit = emit
        self._reloaded = reloaded
        self.owner_of = owner_of

    async def reloaded(self, instance_id: str, detail: dict[str, Any]) -> None:
        await self._reloaded(instance_id, detail)

    async def rejected(self, payload: StrategyCodeRejected) -> None:
        if payload.instance_id is not None:
            payload = payload.model_copy(update={"owner": self.owner_of(payload.instance_id)})
        await self.emit(make_event("strategy.code.rejected", payload, source=SOURCE))


__all__ = ["ReloadMetrics", "ReloadReports", "ServiceReloadReports", "StrategyWatcher", "describe_error"]
