"""Cyclic garbage collection held off while a round of quotes is read and taken (docs/quotes.md, "Performance").

A whole market's frame parses into some 70,000 lists and dicts that live until the round is published. With the
collector on, those allocations trigger young collections that promote them, and every few rounds a full (gen-2)
collection walks the whole process's heap (some 200,000 objects in a data service) in the middle of a round: 80-110 ms
added to the round's latency. Held off for the round, the frame's objects are freed by their reference counts when
the round ends, before any collection sees them: they are never promoted, so full collections come far more rarely,
and never inside a round. Nothing else of the process changes: the collector's thresholds stay Python's defaults,
and it runs again as soon as the round is over (rounds come every few seconds and take a few hundred ms at most).
Rounds may overlap (a bridge's frame while the replay runs): the collector is back on when the last one ends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_held = 0  # rounds in progress
_was_enabled = True  # the collector's state when the first of them started


@contextmanager
def collection_paused() -> Iterator[None]:
    global _held, _was_enabled
    if _held == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if _held == 0 and _was_enabled:
            gc.enable()
