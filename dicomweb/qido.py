"""QIDO-RS: search for studies, series and instances (PS3.18 10.6)."""

from __future__ import annotations

import json
import re
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from starlette.requests import Request
from starlette.responses import Response

from archive.attributes import Level
from archive.query import Query
from archive.service import Archive
from dicomweb._errors import HTTPProblem
from dicomweb._media import Offer, negotiate
from dicomweb._paths import dicomweb_root, uid_param

DICOM_JSON = "application/dicom+json"
_OFFERS = (Offer(DICOM_JSON), Offer("application/json"))
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_RESERVED = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
_RETRIEVE_URL = "00081190"


def _keyword(name: str) -> str:
    """A query parameter's attribute as a keyword; tags are accepted too."""
    if _TAG.match(name):
        keyword = keyword_for_tag(int(name, 16))
        if not keyword:
            raise HTTPProblem(400, f"Attribute tag {name!r} is not in the dictionary")
        return str(keyword)
    if tag_for_keyword(name) is None:
        raise HTTPProblem(
            400,
            f"Query parameter {name!r} is neither a DICOM keyword, a tag (8 hex "
            f"digits) nor one of {sorted(_RESERVED)}",
        )
    return name


def _attribute_path(name: str) -> str:
    return ".".join(_keyword(part) for part in name.split("."))


def _vr(keyword: str) -> str:
    tag = tag_for_keyword(keyword.rpartition(".")[2])
    return str(dictionary_VR(tag)) if tag is not None else "LO"


def _whole_number(name: str, text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be a whole number, got {text!r}") from None
    if value < lowest:
        raise HTTPProblem(400, f"{name} must be at least {lowest}, got {value}")
    return value


def parse_query(
    request: Request, level: Level, max_results: int
) -> tuple[Query, list[str], bool]:
    """Turn QIDO-RS query parameters into a ``Query``.

    Also returns warnings, and whether the server's cap (not the client's
    limit) bounds the result: then one row more is asked for, to tell.
    """
    warnings: list[str] = []
    keys: dict[str, str] = {}
    include: set[str] = set()
    include_all = False
    params = request.query_params
    for name in params:
        values = params.getlist(name)
        if name == "includefield":
            for value in values:
                for field in value.split(","):
                    if field.strip() == "all":
                        include_all = True
                    elif field.strip():
                        include.add(_attribute_path(field.strip()).partition(".")[0])
            continue
        if name in _RESERVED:
            continue
        keyword = _attribute_path(name)
        if _vr(keyword) == "UI":
            # A UID list may be comma-separated, repeated, or both (PS3.18 8.3.4.1).
            uids = [uid for value in values for uid in value.split(",")]
            keys[keyword] = "\\".join(uid.strip() for uid in uids)
        elif len(values) > 1:
            raise HTTPProblem(
                400, f"{name} is given {len(values)} times; only UID keys may repeat"
            )
        else:
            keys[keyword] = values[0]
    if params.get("fuzzymatching", "false").lower() == "true":
        # Known gap (#4): fuzzy person name matching is not implemented yet.
        warnings.append(
            "The fuzzymatching parameter is not supported. "
            "Only literal matching has been performed."
        )
    limit_text = params.get("limit")
    limit = _whole_number("limit", limit_text, 1) if limit_text else None
    capped = limit is None or limit > max_results
    offset = _whole_number("offset", params.get("offset", "0"), 0)
    study = uid_param(request, "study") if "study" in request.path_params else None
    series = uid_param(request, "series") if "series" in request.path_params else None
    query = Query(
        level=level,
        keys=keys,
        include=frozenset(include),
        include_all=include_all,
        study_instance_uid=study,
        series_instance_uid=series,
        limit=max_results + 1 if capped else limit,
        offset=offset,
    )
    return query, warnings, capped


def _retrieve_url(base: str, level: Level, match: dict[str, Any]) -> str | None:
    def uid(tag: str) -> str | None:
        values = match.get(tag, {}).get("Value")
        return str(values[0]) if values else None

    study, series, instance = uid("0020000D"), uid("0020000E"), uid("00080018")
    if study is None:
        return None
    url = f"{base}/studies/{study}"
    if level in (Level.SERIES, Level.IMAGE) and series is not None:
        url += f"/series/{series}"
    if level == Level.IMAGE and instance is not None:
        url += f"/instances/{instance}"
    return url


async def search(
    request: Request, archive: Archive, level: Level, max_results: int
) -> Response:
    """Answer one QIDO-RS request."""
    offer = negotiate(request.headers.get("accept"), _OFFERS)
    if offer is None:
        raise HTTPProblem(406, f"QIDO-RS answers only in {DICOM_JSON}")
    query, warnings, capped = parse_query(request, level, max_results)
    result = await archive.search(query)
    matches = result.matches
    if capped and len(matches) > max_results:
        matches = matches[:max_results]
        warnings.append(
            "The number of results exceeded the maximum supported by the server. "
            "Additional results can be requested."
        )
    if result.unsupported:
        warnings.append(
            "These keys are not supported for matching and were ignored: "
            + ", ".join(result.unsupported)
        )
    base = dicomweb_root(request)
    for match in matches:
        url = _retrieve_url(base, level, match)
        if url is not None:
            match[_RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    headers = {"Warning": ", ".join(f'299 dicomvault "{w}"' for w in warnings)}
    return Response(
        json.dumps(matches, ensure_ascii=False),
        media_type=offer.media_type,
        headers=headers if warnings else None,
    )
