"""The DICOMweb routes (PS3.18 10.4-10.6), mounted at /dicom-web."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from archive.attributes import Level
from archive.service import Archive
from archive.uids import check_uid
from dicomweb import batch, qido, rendered, stow, wado
from dicomweb._errors import HTTPProblem
from dicomweb._paths import EncodedSeparatorGuard

Handler = Callable[[Request], Awaitable[Response]]

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"


def by_method(**handlers: Handler) -> Handler:
    """One handler per HTTP method of a path; HEAD is served as GET."""

    async def handler(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return handler


def dicomweb_routes(archive: Archive, qido_max_results: int) -> list[BaseRoute]:
    """Every DICOMweb resource, bound to one Archive service."""

    def searching(level: Level) -> Handler:
        async def handler(request: Request) -> Response:
            return await qido.search(request, archive, level, qido_max_results)

        return handler

    def bound(function: Callable[[Request, Archive], Awaitable[Response]]) -> Handler:
        async def handler(request: Request) -> Response:
            return await function(request, archive)

        return handler

    async def root(request: Request) -> Response:
        raise HTTPProblem(404, "This is the DICOMweb root; see /studies")

    async def unmatched(request: Request) -> Response:
        # Check every segment that should be a UID, so that '..%2f' gets 400.
        for segment in request.path_params["rest"].split("/"):
            if segment not in ("series", "instances", "frames", "metadata", "bulk"):
                check_uid(segment, "UID in the path")
        raise HTTPProblem(404, f"No DICOMweb resource at {request.url.path!r}")

    routes = [
        # One route per path, so that a 405 names every method the path takes.
        Route(
            "/studies",
            by_method(GET=searching(Level.STUDY), POST=bound(stow.store)),
            methods=["GET", "POST"],
        ),
        Route(
            _STUDY,
            by_method(GET=bound(wado.retrieve), POST=bound(stow.store)),
            methods=["GET", "POST"],
        ),
        Route("/batch", bound(batch.studies), methods=["GET"]),
        Route("/series", searching(Level.SERIES), methods=["GET"]),
        Route("/instances", searching(Level.IMAGE), methods=["GET"]),
        Route(_STUDY + "/series", searching(Level.SERIES), methods=["GET"]),
        Route(_STUDY + "/instances", searching(Level.IMAGE), methods=["GET"]),
        Route(_SERIES + "/instances", searching(Level.IMAGE), methods=["GET"]),
        Route(_SERIES, bound(wado.retrieve), methods=["GET"]),
        Route(_INSTANCE, bound(wado.retrieve), methods=["GET"]),
        Route(_STUDY + "/metadata", bound(wado.metadata), methods=["GET"]),
        Route(_SERIES + "/metadata", bound(wado.metadata), methods=["GET"]),
        Route(_INSTANCE + "/metadata", bound(wado.metadata), methods=["GET"]),
        Route(_INSTANCE + "/frames/{frames}", bound(wado.frames), methods=["GET"]),
        Route(_INSTANCE + "/bulk/{path:path}", bound(wado.bulk), methods=["GET"]),
        *[
            Route(resource + "/" + kind, bound(handler), methods=["GET"])
            for resource in (_STUDY, _SERIES, _INSTANCE, _INSTANCE + "/frames/{frames}")
            for kind, handler in (
                ("rendered", rendered.rendered),
                ("thumbnail", rendered.thumbnail),
            )
        ],
        Route("/studies/{rest:path}", unmatched, methods=["GET", "POST"]),
    ]
    return [
        Mount(
            "/dicom-web",
            routes=[Route("/", root, name="dicomweb_root"), *routes],
            middleware=[Middleware(EncodedSeparatorGuard)],
        )
    ]
