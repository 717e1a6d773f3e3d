"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def health_routes(ready: Callable[[], Awaitable[bool]]) -> list[Route]:
    """``/healthz`` answers while the process lives, ``/readyz`` once usable."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        if await ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting or degraded"}, status_code=503)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]
