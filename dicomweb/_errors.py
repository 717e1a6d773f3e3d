"""The one place where archive errors become DICOMweb answers (PS3.18 8.6)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from archive.errors import (
    ArchiveError,
    InvalidQuery,
    InvalidRange,
    InvalidUID,
    NotFound,
    StoreUnavailable,
    TranscodeFailed,
)

logger = logging.getLogger(__name__)


class HTTPProblem(Exception):
    """An HTTP error with its status and a reason a client can act on."""

    def __init__(
        self, status: int, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


def error_response(status: int, reason: str) -> Response:
    """A JSON error body with the reason, the same shape for every error."""
    return JSONResponse(
        {"status": status, "error": reason},
        status_code=status,
        headers={"Warning": f'299 dicomvault "{_header_safe(reason)}"'},
    )


def _header_safe(text: str) -> str:
    cleaned = "".join(c if 32 <= ord(c) < 127 and c != '"' else "?" for c in text)
    return cleaned[:400]


def status_of(error: ArchiveError) -> int:
    """The HTTP status of an archive error raised outside STOW."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, (InvalidQuery, InvalidUID, InvalidRange)):
        return 400
    if isinstance(error, StoreUnavailable):
        return 503
    if isinstance(error, TranscodeFailed):
        # The client may accept another syntax (PS3.18 8.7.3.5): not a 5xx.
        return 406
    return 400


async def handle_archive_error(request: Request, error: Exception) -> Response:
    """Starlette exception handler for ``ArchiveError``."""
    assert isinstance(error, ArchiveError)
    return error_response(status_of(error), str(error))


async def handle_problem(request: Request, error: Exception) -> Response:
    """Starlette exception handler for ``HTTPProblem``."""
    assert isinstance(error, HTTPProblem)
    response = error_response(error.status, error.reason)
    response.headers.update(error.headers)
    return response
