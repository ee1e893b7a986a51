"""`python -m services.notify`: the notify service as its own process (fleet mode, beside Alertmanager)."""

from __future__ import annotations

import os

from services.notify.app import NAME, create_app
from shared.platform.app import serve
from shared.platform.settings import Settings


def main() -> None:
    settings = Settings()
    host = os.environ.get("LH_HOST", "127.0.0.1")
    port = int(os.environ.get("LH_PORT", "8107"))
    serve(create_app(settings), host, port, NAME, settings)


if __name__ == "__main__":
    main()
