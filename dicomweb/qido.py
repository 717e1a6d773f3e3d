"""QIDO-RS: search for studies, series and instances (PS3.18 10.6)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from starlette.requests import Request
from starlette.responses import Response

from archive.attributes import Level
from archive.query import CursorValue, OrderKey, Query
from archive.service import Archive
from dicomweb._errors import HTTPProblem
from dicomweb._media import Offer, negotiate
from dicomweb._paths import dicomweb_root, uid_param

DICOM_JSON = "application/dicom+json"
_OFFERS = (Offer(DICOM_JSON), Offer("application/json"))
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_RESERVED = frozenset(
    {"includefield", "limit", "offset", "fuzzymatching", "orderby", "count", "cursor"}
)
_RETRIEVE_URL = "00081190"
TOTAL_COUNT = "X-Total-Count"


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


_LARGEST_WHOLE_NUMBER = 2**62


def _whole_number(name: str, text: str, lowest: int) -> int:
    if not (text.isascii() and text.isdigit()) and not (
        text[:1] == "-" and text[1:].isascii() and text[1:].isdigit()
    ):
        raise HTTPProblem(400, f"{name} must be a whole number, got {text!r}")
    value = int(text)
    if not lowest <= value <= _LARGEST_WHOLE_NUMBER:
        raise HTTPProblem(
            400, f"{name} must be {lowest}..{_LARGEST_WHOLE_NUMBER}, got {value}"
        )
    return value


def _flag(params: Any, name: str) -> bool:
    text = params.get(name, "false").lower()
    if text not in ("true", "false"):
        raise HTTPProblem(400, f"{name} must be true or false, got {text!r}")
    return bool(text == "true")


def _order(params: Any) -> tuple[OrderKey, ...]:
    keys: list[OrderKey] = []
    for value in params.getlist("orderby"):
        for field in value.split(","):
            name = field.strip()
            if not name:
                continue
            descending = name.startswith("-")
            try:
                keyword = _keyword(name.lstrip("-+ "))
            except HTTPProblem:
                raise HTTPProblem(
                    400, f"orderby {name!r} is not a DICOM keyword or tag"
                ) from None
            keys.append(OrderKey(keyword, descending))
    return tuple(keys)


@dataclass(frozen=True)
class Page:
    """How one QIDO-RS request is paged: rows wanted and whether the cap cut."""

    size: int
    capped: bool
    order_text: str


def _encode_cursor(level: Level, order_text: str, values: tuple[Any, ...]) -> str:
    data = json.dumps({"l": level.value, "o": order_text, "k": list(values)})
    return base64.urlsafe_b64encode(data.encode()).decode("ascii").rstrip("=")


def _decode_cursor(text: str, level: Level, order_text: str) -> tuple[CursorValue, ...]:
    """The keyset position a ``cursor`` parameter names (see ``_encode_cursor``)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
        values = tuple(data["k"])
        same = data["l"] == level.value and data["o"] == order_text
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise HTTPProblem(
            400, f"cursor {text[:40]!r} is not one this server gave in a Link header"
        ) from None
    if not same:
        raise HTTPProblem(
            400,
            "cursor belongs to another resource or orderby; follow the Link "
            "header of the previous page unchanged",
        )
    if not all(v is None or isinstance(v, (str, int)) for v in values):
        raise HTTPProblem(400, f"cursor {text[:40]!r} holds values of the wrong type")
    return values


def parse_query(
    request: Request, level: Level, max_results: int
) -> tuple[Query, list[str], Page]:
    """Turn QIDO-RS query parameters into a ``Query``.

    Also returns warnings, and the page: how many rows the response holds at
    most and whether the server's cap (not the client's limit) sets that. One
    row more than that is asked for, to tell whether a next page exists.
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
    limit_text = params.get("limit")
    limit = _whole_number("limit", limit_text, 1) if limit_text else None
    capped = limit is None or limit > max_results
    offset = _whole_number("offset", params.get("offset", "0"), 0)
    order = _order(params)
    order_text = ",".join(("-" if k.descending else "") + k.keyword for k in order)
    after = None
    if params.get("cursor"):
        if offset:
            raise HTTPProblem(400, "offset cannot be combined with cursor")
        after = _decode_cursor(params["cursor"], level, order_text)
    study = uid_param(request, "study") if "study" in request.path_params else None
    series = uid_param(request, "series") if "series" in request.path_params else None
    page = Page(max_results if capped else limit or max_results, capped, order_text)
    query = Query(
        level=level,
        keys=keys,
        include=frozenset(include),
        include_all=include_all,
        study_instance_uid=study,
        series_instance_uid=series,
        limit=page.size + 1,
        offset=offset,
        fuzzy=_flag(params, "fuzzymatching"),
        order=order,
        after=after,
    )
    return query, warnings, page


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


def _next_link(request: Request, level: Level, page: Page, position: Any) -> str:
    params = [
        (name, value)
        for name, value in request.query_params.multi_items()
        if name not in ("offset", "cursor")
    ]
    params.append(("cursor", _encode_cursor(level, page.order_text, position)))
    url = request.url.replace(query=urlencode(params))
    return f'<{url}>; rel="next"'


def _warning_header(warnings: list[str]) -> dict[str, str]:
    if not warnings:
        return {}
    return {"Warning": ", ".join(f'299 dicomvault "{w}"' for w in warnings)}


def _unsupported_warning(unsupported: tuple[str, ...]) -> list[str]:
    if not unsupported:
        return []
    return [
        "These keys are not supported for matching and were ignored: "
        + ", ".join(unsupported)
    ]


async def count(
    request: Request, archive: Archive, level: Level, max_results: int
) -> Response:
    """Answer a count request: HEAD, or GET with count=true (no rows)."""
    query, warnings, _ = parse_query(request, level, max_results)
    total, unsupported = await archive.count(query)
    warnings += _unsupported_warning(unsupported)
    headers = {TOTAL_COUNT: str(total), **_warning_header(warnings)}
    return Response("[]", media_type=DICOM_JSON, headers=headers)


async def search(
    request: Request, archive: Archive, level: Level, max_results: int
) -> Response:
    """Answer one QIDO-RS request (PS3.18 10.6), paged by a keyset cursor.

    A response that may have a next page carries ``Link: <...>; rel="next"``
    whose ``cursor`` parameter continues after its last row.
    """
    offer = negotiate(request.headers.get("accept"), _OFFERS)
    if offer is None:
        raise HTTPProblem(406, f"QIDO-RS answers only in {DICOM_JSON}")
    if request.method == "HEAD" or _flag(request.query_params, "count"):
        return await count(request, archive, level, max_results)
    query, warnings, page = parse_query(request, level, max_results)
    result = await archive.search(query)
    matches = result.matches[: page.size]
    more = len(result.matches) > page.size
    headers: dict[str, str] = {}
    if more:
        headers["Link"] = _next_link(
            request, level, page, result.cursors[page.size - 1]
        )
    if more and page.capped:
        warnings.append(
            "The number of results exceeded the maximum supported by the server. "
            "Additional results can be requested."
        )
    warnings += _unsupported_warning(result.unsupported)
    base = dicomweb_root(request)
    for match in matches:
        url = _retrieve_url(base, level, match)
        if url is not None:
            match[_RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    return Response(
        orjson.dumps(matches),
        media_type=offer.media_type,
        headers={**headers, **_warning_header(warnings)} or None,
    )
