"""Write gateway/service_openapi.json: the OpenAPI documents of the services behind the gateway, from which the
gateway publishes each forwarded route with its real schemas (gateway/openapi.py). Run it after changing a service's
routes or schemas; tests/unit/gateway/test_gateway_openapi.py fails while the file is stale.

    python scripts/service_openapi.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "gateway" / "service_openapi.json"


def service_documents() -> dict[str, Any]:
    """Each service's document as its app publishes it, without the unauthenticated probes."""
    sys.path.insert(0, str(ROOT))
    from lianghua.standalone import build_app
    from shared.platform.settings import Mode, Settings

    host = build_app(Settings(mode=Mode.STANDALONE))
    documents: dict[str, Any] = {}
    for name, app in sorted(host.state.services.items()):
        document = app.openapi()
        document["paths"] = {p: ops for p, ops in document["paths"].items() if p.startswith("/v1/")}
        documents[name] = document
    return documents


def render(documents: dict[str, Any]) -> str:
    return json.dumps(documents, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(service_documents()), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
