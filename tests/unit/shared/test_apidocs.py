"""/docs and /redoc of the gateway and of every service load their scripts and styles from the service itself."""

from __future__ import annotations

import importlib
import re

import httpx
import pytest

from shared.platform.apidocs import VENDOR_DIR
from shared.platform.app import Infra
from shared.platform.settings import Settings

HTTP_APPS = {
    "gateway": "gateway.app",
    "data": "services.data.app",
    "strategy": "services.strategy.app",
    "backtest": "services.backtest.app",
    "risk": "services.risk.app",
    "execution": "services.execution.app",
}
# What a page loads: <script src>, <link href>, and the favicon.
ASSET = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


@pytest.mark.parametrize("name", sorted(HTTP_APPS))
async def test_api_docs_pages_load_only_assets_the_service_serves(name: str) -> None:
    settings = Settings()
    app = importlib.import_module(HTTP_APPS[name]).create_app(settings, Infra.from_settings(settings, name))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for page, expected in (
            ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
            ("/redoc", {"redoc.standalone.js"}),
        ):
            answer = await http.get(page)
            assert answer.status_code == 200, (page, answer.status_code)
            assets = ASSET.findall(answer.text)
            assert assets, answer.text
            assert "googleapis" not in answer.text and "jsdelivr" not in answer.text
            assert expected <= {url.rsplit("/", 1)[-1] for url in assets}
            for url in assets:
                assert url.startswith("/"), f"{page} loads {url} from elsewhere"
                asset = await http.get(url)
                assert asset.status_code == 200, (url, asset.status_code)
                assert asset.content == (VENDOR_DIR / url.rsplit("/", 1)[-1]).read_bytes(), url
        redirect = await http.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200 and "oauth2" in redirect.text.lower()


# Hosts a browser would fetch a library or a font from: none may be named by a file the platform serves to a browser.
CDN = re.compile(
    r"https?://(?:cdn\b|[\w.-]*\.cdn\.|unpkg\.com|cdnjs\.|[\w.-]*jsdelivr\.net|fonts\.googleapis|fonts\.gstatic)"
)
BROWSER_ASSETS = ("shared/platform/apidocs/vendor", "shared/research/report/vendor", "shared/research/report/templates",
                  "gateway/web")  # fmt: skip


def test_no_file_served_to_a_browser_names_a_cdn() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    found = []
    for folder in BROWSER_ASSETS:
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in {".js", ".css", ".html", ".svg", ".mako", ".j2"} and path.is_file():
                for match in CDN.finditer(path.read_text(encoding="utf-8", errors="replace")):
                    found.append(f"{path.relative_to(root)}: {match.group(0)}")
    assert found == [], found
