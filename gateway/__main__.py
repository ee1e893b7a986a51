"""Run the gateway as its own process: `python -m gateway` (LH_HOST, default 127.0.0.1; LH_PORT, default 8000)."""

import os

from gateway.app import create_app
from shared.platform.app import serve
from shared.platform.settings import Settings


def main() -> None:
    settings = Settings()
    host = os.environ.get("LH_HOST", "127.0.0.1")
    port = int(os.environ.get("LH_PORT", "8000"))
    serve(create_app(settings), host, port, "gateway", settings)


if __name__ == "__main__":
    main()
