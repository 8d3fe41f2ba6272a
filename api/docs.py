"""``/docs`` (Swagger UI) and ``/redoc`` served with their scripts from an installed package.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, and Google Fonts: a self-hosted
service often runs where there is no internet, and those pages were blank there. The assets come
from the ``fastapi-offline`` wheel (MIT; Swagger UI and ReDoc's standalone bundles), mounted
under ``/docs-assets``; nothing on either page asks another host for anything.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"


def install(app: FastAPI) -> None:
    """Add the two pages and their assets (create the app with ``docs_url=None,
    redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    def urls(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "")  # behind a proxy with a path prefix
        return f"{root}{app.openapi_url}", f"{root}{ASSETS_URL}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi, assets = urls(request)
        return get_swagger_ui_html(
            openapi_url=openapi, title=f"{app.title} API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        openapi, assets = urls(request)
        return get_redoc_html(
            openapi_url=openapi, title=f"{app.title} API",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png", with_google_fonts=False)
