"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on a machine that
cannot reach it. These are the same pages, built by FastAPI's ``get_swagger_ui_html`` and
``get_redoc_html``, with their scripts, styles and favicon served by this server from the static
files that the ``fastapi-offline`` package ships (Swagger UI 5 and ReDoc 2). Neither page asks
anything of another host: no CDN, no Google Fonts, no Swagger validator badge.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
# FastAPI's defaults, less the validator: Swagger UI would fetch a badge from swagger.io.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
# The pages may load nothing from another host. ReDoc's bundle, for one, shows its maker's logo
# from their CDN (and hides it when it does not load): the browser is told not to ask.
CONTENT_SECURITY_POLICY = "default-src 'self' 'unsafe-inline' data: blob:"


def install_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` for ``app``'s schema (none if it has no ``openapi_url``).

    ``app`` is built with ``docs_url=None, redoc_url=None`` so that FastAPI's CDN pages are not
    also there. The pages honour the ASGI ``root_path`` (a server behind a path prefix)."""
    if app.openapi_url is None:
        return
    schema_url = app.openapi_url
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")

    async def swagger_page(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_swagger_ui_html(
            openapi_url=root + schema_url,
            title=f"{app.title} · API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return page

    async def redoc_page(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_redoc_html(
            openapi_url=root + schema_url,
            title=f"{app.title} · API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return page

    app.add_api_route("/docs", swagger_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc_page, methods=["GET"], include_in_schema=False)


def assets_dir() -> str:
    """The folder of Swagger UI's and ReDoc's files in the installed ``fastapi-offline``."""
    return str(files("fastapi_offline") / "static")


def _root_path(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
