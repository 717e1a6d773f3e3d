"""Path parameters of DICOMweb resources, checked before anything is touched."""

from __future__ import annotations

from starlette.requests import Request

from archive.uids import check_uid


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
