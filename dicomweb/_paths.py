"""Path parameters of DICOMweb resources, checked before anything is touched."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from archive.uids import check_uid
from dicomweb._errors import error_response


def uid_param(request: Request, name: str) -> str:
    """A UID from the (already URL-decoded) path; ``InvalidUID`` if malformed."""
    return check_uid(request.path_params[name], name)


def scope_uids(request: Request) -> tuple[str, str | None, str | None]:
    """Study, series and instance UIDs named by the path (later ones optional)."""
    study = uid_param(request, "study")
    series = uid_param(request, "series") if "series" in request.path_params else None
    instance = (
        uid_param(request, "instance") if "instance" in request.path_params else None
    )
    return study, series, instance


def dicomweb_root(request: Request) -> str:
    """The absolute URL of the DICOMweb root this request came through."""
    url = request.url
    return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}"


# Percent-encoded '/' and '\': decoded, they would split or join path segments,
# so '1.2%2f3' would be routed as two UIDs instead of refused as one bad one.
_ENCODED_SEPARATORS = (b"%2f", b"%5c")


class EncodedSeparatorGuard:
    """ASGI middleware: a path with an encoded separator is a 400 (PS3.18 8.6)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") or b""
        if scope["type"] == "http" and any(
            separator in raw.lower() for separator in _ENCODED_SEPARATORS
        ):
            response = error_response(
                400,
                "A UID in the path holds an encoded '/' or '\\'; UIDs are digits "
                "and dots (PS3.5 9.1)",
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)
