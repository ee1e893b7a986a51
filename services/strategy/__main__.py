"""Run the strategy service as its own process: `python -m services.strategy` (LH_HOST, default 127.0.0.1;
LH_PORT, default 8102)."""

import os

from services.strategy.app import SERVICE, create_app
from shared.platform.app import serve
from shared.platform.settings import Settings


def main() -> None:
    settings = Settings()
    host = os.environ.get("LH_HOST", "127.0.0.1")
    port = int(os.environ.get("LH_PORT", "8102"))
    serve(create_app(settings), host, port, SERVICE, settings)


if __name__ == "__main__":
    main()
