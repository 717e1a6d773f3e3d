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
