"""Run the backtest service as its own process: `python -m services.backtest` (LH_HOST, default 127.0.0.1;
LH_PORT, default 8103). The worker that runs the jobs is a separate process: `python -m services.backtest.worker`."""

import os

from services.backtest.app import SERVICE, create_app
from shared.platform.app import serve
from shared.platform.settings import Settings


def main() -> None:
    settings = Settings()
    host = os.environ.get("LH_HOST", "127.0.0.1")
    port = int(os.environ.get("LH_PORT", "8103"))
    serve(create_app(settings), host, port, SERVICE, settings)


if __name__ == "__main__":
    main()
