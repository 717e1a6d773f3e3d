"""Serve the installed OHIF app at /viewer, beside DICOMweb on one origin."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from viewer.install import BASE_PATH, read_marker

logger = logging.getLogger(__name__)

MOUNT_PATH = BASE_PATH.rstrip("/")
# Set explicitly: the system's MIME table may lack these, and browsers refuse
# streaming WebAssembly compilation and module workers of any other type.
_MEDIA_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
}
# Files whose content changes on reinstall under the same name.
_REVALIDATE = frozenset({"index.html", "app-config.js"})


class ViewerFiles(StaticFiles):
    """The app's files; a page navigation to an unknown path gets index.html.

    OHIF routes in the browser (``/viewer/viewer?StudyInstanceUIDs=...``), so a
    reload of such a URL must answer the app. Requests for scripts, images or
    WebAssembly that do not exist still get 404, not HTML.
    """

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file at ``path``, or index.html for an unknown page."""
        try:
            return await super().get_response(path, scope)
        except HTTPException as error:
            if error.status_code != 404 or not (path == "." or _is_navigation(scope)):
                raise
        full_path, stat_result = await asyncio.to_thread(self.lookup_path, "index.html")
        if stat_result is None:
            raise HTTPException(404)
        return self.file_response(full_path, stat_result, scope)

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The file with its exact media type and caching rule."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = os.path.basename(full_path)
        media_type = _MEDIA_TYPES.get(os.path.splitext(name)[1].lower())
        if media_type is not None and response.status_code != 304:
            response.headers["content-type"] = media_type
        if name in _REVALIDATE:
            response.headers["cache-control"] = "no-cache"
        return response


def _is_navigation(scope: Scope) -> bool:
    """A browser asking for a page (Accept names text/html), not an asset."""
    return "text/html" in Headers(scope=scope).get("accept", "")


async def _to_app(request: Request) -> Response:
    return RedirectResponse(request.url.replace(path=BASE_PATH), status_code=308)


def viewer_routes(folder: Path) -> list[BaseRoute]:
    """Routes serving the viewer in ``folder``; none when it is not installed."""
    if not (folder / "index.html").is_file():
        logger.info(
            "No viewer in %s; `dicomvault install-viewer` installs OHIF there",
            folder,
        )
        return []
    installed = read_marker(folder)
    if installed is None or installed.base_path != BASE_PATH:
        logger.warning(
            "The viewer in %s was not installed by `dicomvault install-viewer` for "
            "%s; its scripts may load from the wrong path",
            folder,
            BASE_PATH,
        )
    else:
        logger.info(
            "Serving %s %s at %s from %s",
            installed.package,
            installed.version,
            BASE_PATH,
            folder,
        )
    return [
        Route(MOUNT_PATH, _to_app, methods=["GET", "HEAD"]),
        Mount(MOUNT_PATH, app=ViewerFiles(directory=folder), name="viewer"),
    ]
