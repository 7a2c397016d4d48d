"""The API docs page (/docs) served from the package, so it works offline.

FastAPI's default /docs loads Swagger UI from a CDN. The ``swagger-ui-bundle-v2`` package ships
Swagger UI 5 (which renders the OpenAPI 3.1 that FastAPI writes; the older ``swagger-ui-bundle``
ships 4.15, which does not): its files are mounted under /docs/assets.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve /docs with Swagger UI's files from the installed package (create the app with docs_url=None)."""
    from swagger_ui_bundle import swagger_ui_path

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
