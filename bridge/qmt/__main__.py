"""`python -m bridge.qmt --config bridge.toml`: run the bridge until Ctrl-C or SIGTERM.

Exit codes: 0 stopped, 2 bad configuration, 3 the platform's welcome was not signed with this bridge's secret."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bridge.qmt.config import SECRET_ENV, ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.qmt", description="LiangHua's bridge beside MiniQMT")
    parser.add_argument("--config", help="the TOML config file (settings may also come from LH_BRIDGE_* variables)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("bridge.qmt")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    log.info("the shared secret comes from %s (not shown)", SECRET_ENV)

    from bridge.qmt.app import Bridge
    from bridge.qmt.platform import ForgedWelcome

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        await Bridge(config).run(stop)

    try:
        asyncio.run(run())
    except ForgedWelcome as exc:
        log.error("stopping: %s", exc)
        return 3
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
