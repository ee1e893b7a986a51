"""`python -m services.data`: the data service as its own process (fleet mode); with a command (backfill, update,
import, quality, runs) the ingestion CLI instead (services/data/cli.py)."""

import os
import sys

from shared.platform.settings import Settings

if __name__ == "__main__":
    if len(sys.argv) > 1:
        from services.data.cli import main

        sys.exit(main(sys.argv[1:]))
    from services.data.app import create_app
    from shared.platform.app import serve

    settings = Settings()
    serve(
        create_app(settings),
        host=os.environ.get("LH_HOST", "127.0.0.1"),
        port=int(os.environ.get("LH_PORT", "8101")),
        service="data",
        settings=settings,
    )
