"""The web dashboard at ``/ui``: static files shipped in the package (``scheduler/ui``).

The files carry no data: the page asks for a token once and reads the JSON API with
it, so serving them needs no auth. A strict Content-Security-Policy keeps every
script, style and request on this server (the token lives in the browser's storage).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(str(resources.files("scheduler.ui").joinpath("static")))
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(tags=["ui"], include_in_schema=False)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
def ui_index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


def install(app: FastAPI) -> None:
    """The page at ``/ui/`` and its scripts and styles under ``/ui/static/``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
