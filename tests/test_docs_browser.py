"""/docs in a real headless browser (Debian's chromium): Swagger UI renders the OpenAPI document
from the gateway's own assets, and the page lists the score route."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from gateway_harness import base_url, loop, scorer  # noqa: F401

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless browser here (Debian: apt-get install chromium)")


def _browse(url: str, *options: str) -> subprocess.CompletedProcess:
    # --virtual-time-budget lets Swagger UI's scripts fetch /openapi.json and render before the
    # page is captured; no sandbox: the suite may run as root, which chromium's sandbox refuses
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--virtual-time-budget=15000", "--window-size=1280,1600",
                           *options, url], capture_output=True, text=True, timeout=120)


def test_the_docs_page_renders_every_route_in_a_browser(base_url, tmp_path: Path) -> None:  # noqa: F811
    rendered = _browse(f"{base_url}/docs", "--dump-dom")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout
    assert 'class="swagger-ui' in dom, dom[:2000]
    # operations appear only once the UI has fetched and rendered /openapi.json
    for path in ("/v1/score/{model}", "/v1/rerank", "/score", "/healthz"):
        assert f'data-path="{path}"' in dom, f"{path} is not listed in the rendered page"
    assert "Failed to load API definition" not in dom

    screenshot = tmp_path / "docs.png"
    shot = _browse(f"{base_url}/docs", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(screenshot)
    assert pixels.shape[:2] == (1600, 1280)
    assert pixels.std() > 0.05  # a rendered page, not a blank one
