"""Cross-origin access for browser viewers hosted elsewhere (Fetch standard CORS)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

# What a DICOMweb client sends and must be able to read back across origins.
_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
_EXPOSED = (
    "Accept-Ranges",
    "Content-Length",
    "Content-Location",
    "Content-Range",
    "ETag",
    # QIDO-RS paging (rel="next") and counts.
    "Link",
    "Location",
    "Warning",
    "X-Total-Count",
)
_PREFLIGHT_CACHE_S = 600


def cors_middleware(allowed_origins: Sequence[str]) -> list[Middleware]:
    """CORS for the given origins, preflight included; nothing when none is set."""
    if not allowed_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(allowed_origins),
            allow_methods=list(_METHODS),
            allow_headers=["*"],
            expose_headers=list(_EXPOSED),
            max_age=_PREFLIGHT_CACHE_S,
        )
    ]
