"""``/docs`` and ``/redoc`` work without internet: headless Chromium, with every host but the
loopback unreachable, renders the API's operations from a real ``synthgen serve``.

Needs the Debian ``chromium`` package (``.ci/run`` installs it); skipped, saying so, without it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html

from service.svc_helpers import Service

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (Debian: apt-get install -y chromium)")

# The network off for the page: every name resolves to nothing and every proxied request goes
# to a closed port; only 127.0.0.1 (where the test's server is) is left.
OFFLINE = ["--proxy-server=http://127.0.0.1:9",
           "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom"]
# Operations both pages list once they have fetched /openapi.json and drawn it.
OPERATIONS = ("/v1/jobs/{job_id}/cancel", "/v1/datasets/{dataset_id}/versions")


def rendered_dom(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    result = subprocess.run([CHROMIUM, *FLAGS, *OFFLINE, f"--user-data-dir={profile}", url],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("page", ["docs", "redoc"])
def test_docs_render_their_operations_offline(embedded: Service, page: str,
                                              tmp_path: Path) -> None:
    html = httpx.get(f"{embedded.url}/{page}").text
    assert "https://" not in html and "http://" not in html  # nothing from another host
    dom = rendered_dom(f"{embedded.url}/{page}", tmp_path / "profile")
    for operation in OPERATIONS:
        assert operation in dom, f"{page} did not render {operation}"
    assert "Unable to render" not in dom and "Failed to load API definition" not in dom


def test_a_cdn_page_stays_blank_under_the_same_flags(embedded: Service, tmp_path: Path) -> None:
    """The check above can fail: FastAPI's default page (scripts from a CDN), pointed at the
    same server, renders no operation when the network is off."""
    page = tmp_path / "cdn.html"
    page.write_bytes(get_swagger_ui_html(openapi_url=f"{embedded.url}/openapi.json",
                                         title="cdn").body)
    dom = rendered_dom(page.as_uri(), tmp_path / "profile")
    assert 'id="swagger-ui"' in dom
    assert not any(operation in dom for operation in OPERATIONS)
