"""Put the fake `xtquant` on sys.path for one test, and take it off after (the suite's other tests, and the
platform, never see it)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

FAKES = Path(__file__).resolve().parent


def _forget() -> None:
    for name in [n for n in sys.modules if n == "xtquant" or n.startswith("xtquant.")]:
        del sys.modules[name]


@contextmanager
def fake_xtquant(state_file: str | None = None) -> Iterator[SimpleNamespace]:
    """The fake xtquant's modules and a fresh broker: `.xttrader`, `.xttype`, `.xtconstant`, `.xtdata`, `.fake`,
    `.broker`."""
    _forget()
    sys.path.insert(0, str(FAKES))
    modules = None
    try:
        fake = importlib.import_module("xtquant.fake")
        modules = SimpleNamespace(
            xttrader=importlib.import_module("xtquant.xttrader"),
            xttype=importlib.import_module("xtquant.xttype"),
            xtconstant=importlib.import_module("xtquant.xtconstant"),
            xtdata=importlib.import_module("xtquant.xtdata"),
            fake=fake,
            broker=fake.reset(state_file),
        )
        yield modules
    finally:
        if modules is not None:
            modules.broker.disconnect(down=False)
        sys.path.remove(str(FAKES))
        _forget()
