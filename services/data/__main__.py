"""`python -m services.data`: the data service as its own process (fleet mode)."""

import os

from services.data.app import create_app
from shared.app import serve
from shared.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    serve(
        create_app(settings),
        host=os.environ.get("LH_HOST", "127.0.0.1"),
        port=int(os.environ.get("LH_PORT", "8101")),
        service="data",
        settings=settings,
    )
