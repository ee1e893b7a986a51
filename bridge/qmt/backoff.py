"""Exponential backoff with jitter for the bridge's reconnects (to MiniQMT and to the platform): 1 s doubling to
60 s by default, each wait drawn between half and all of the current step so that many bridges do not retry in
step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 1.0, maximum: float = 60.0, *, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._step = initial
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The next wait (seconds); the step doubles up to the maximum."""
        wait = self._step * (0.5 + 0.5 * self._rng.random())
        self._step = min(self.maximum, self._step * 2)
        return wait

    def reset(self) -> None:
        self._step = self.initial
