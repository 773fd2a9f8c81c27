"""Routes of the dashboard's pages and assets (not part of the API schema).

The pages call the API from the browser; Plotly.js is served from the installed ``plotly``
Python package (``package_data/plotly.min.js``), never copied into this repository.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from service.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
_ASSET = re.compile(r"^[a-z][a-z0-9_-]*\.(js|css|svg)$")
_NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard")
def studies_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)


@router.get("/dashboard/studies/{study_id}")
def study_page(study_id: int) -> FileResponse:
    """The page loads the study itself (an unknown id shows a message there)."""
    return FileResponse(STATIC_DIR / "study.html", headers=_NO_CACHE)


@router.get("/dashboard/static/plotly.min.js")
def plotly_js() -> FileResponse:
    path = plotly_bundle()
    if path is None:
        raise NotFound("plotly.min.js is not available: install the 'plotly' Python package")
    return FileResponse(
        path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/dashboard/static/{name}")
def asset(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not _ASSET.match(name) or not path.is_file():
        raise NotFound(f"no dashboard asset {name!r}")
    media_type = "text/javascript" if name.endswith(".js") else None
    return FileResponse(path, media_type=media_type, headers=_NO_CACHE)


@functools.cache
def plotly_bundle() -> Path | None:
    """``plotly.min.js`` of the installed plotly package, if any (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None
