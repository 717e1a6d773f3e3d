"""WADO-RS: retrieve instances, metadata, frames and bulk data (PS3.18 10.4)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from archive.index import StoredInstance
from archive.service import Archive
from dicomweb._errors import HTTPProblem
from dicomweb._media import Offer, negotiate
from dicomweb._multipart import multipart_content_type, new_boundary, stream_parts
from dicomweb._paths import dicomweb_root, scope_uids

DICOM = "application/dicom"
OCTETS = "application/octet-stream"
DICOM_JSON = "application/dicom+json"
MULTIPART = "multipart/related"
_BULK_PATH = re.compile(r"^[0-9A-F]{8}(/\d+/[0-9A-F]{8})*$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_NATIVE_TRANSFER_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}
)
_EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _stored_syntax(instances: list[StoredInstance]) -> str | None:
    syntaxes = {instance.transfer_syntax_uid for instance in instances}
    return syntaxes.pop() if len(syntaxes) == 1 else None


def _check_transfer_syntax(request: Request, instances: list[StoredInstance]) -> None:
    """Accept '*', no preference, or exactly the stored syntax; else 406."""
    offers = (
        Offer(MULTIPART, DICOM, "*"),
        Offer(MULTIPART, DICOM, _stored_syntax(instances) or "*"),
    )
    chosen = negotiate(request.headers.get("accept"), offers)
    if chosen is None:
        # Known gap (#4): no transcoding to another transfer syntax yet.
        raise HTTPProblem(
            406,
            "This archive returns instances as stored: accept multipart/related; "
            f'type="{DICOM}" with transfer-syntax=* or the stored syntax',
        )


async def retrieve(request: Request, archive: Archive) -> Response:
    """Study, series or instance as multipart/related application/dicom."""
    study, series, instance = scope_uids(request)
    instances = await archive.instances(study, series, instance)
    accept = request.headers.get("accept")
    if instance is not None and negotiate(accept, (Offer(DICOM),)) is not None:
        if negotiate(accept, (Offer(MULTIPART, DICOM, "*"),)) is None:
            return await _single_instance(request, archive, instances[0])
    _check_transfer_syntax(request, instances)
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        for stored in instances:
            headers = {
                "Content-Type": f"{DICOM}; transfer-syntax={stored.transfer_syntax_uid}",
                "Content-Length": str(stored.object_size),
            }
            yield headers, archive.stream(stored)

    return StreamingResponse(
        stream_parts(parts(), boundary),
        media_type=multipart_content_type(DICOM, boundary),
    )


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One byte range of RFC 7233 as [start, end); None for no/unusable Range."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        if length == 0:
            raise HTTPProblem(416, f"Range {header!r} asks for no bytes")
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        raise HTTPProblem(416, f"Range {header!r} lies outside the {size} bytes")
    return start, end


async def _ranged(
    request: Request,
    archive: Archive,
    stored: StoredInstance,
    media_type: str,
    start_at: int,
    size: int,
) -> Response:
    """Serve bytes [start_at, start_at + size) of an object with Range support."""
    etag = f'"{stored.sha256.hex()}"'
    headers = {"Accept-Ranges": "bytes", "ETag": etag}
    if_range = request.headers.get("if-range")
    wanted = request.headers.get("range")
    if if_range is not None and if_range != etag:
        wanted = None
    try:
        span = parse_range(wanted, size)
    except HTTPProblem:
        return Response(
            status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
        )
    start, end = span if span is not None else (0, size)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        archive.stream(stored, start_at + start, start_at + end),
        status_code=206 if span is not None else 200,
        media_type=media_type,
        headers=headers,
    )


async def _single_instance(
    request: Request, archive: Archive, stored: StoredInstance
) -> Response:
    media_type = f"{DICOM}; transfer-syntax={stored.transfer_syntax_uid}"
    return await _ranged(request, archive, stored, media_type, 0, stored.object_size)


async def metadata(request: Request, archive: Archive) -> Response:
    """Metadata of a study, series or instance, served from the index."""
    offers = (Offer(DICOM_JSON), Offer("application/json"))
    offer = negotiate(request.headers.get("accept"), offers)
    if offer is None:
        raise HTTPProblem(406, f"Metadata is served as {DICOM_JSON} only")
    study, series, instance = scope_uids(request)
    documents = await archive.metadata(study, series, instance)
    root = dicomweb_root(request) + "/"
    body = "[" + ",".join(documents) + "]"
    # Bulk data URIs are stored relative to the DICOMweb root.
    body = body.replace('"BulkDataURI": "studies/', f'"BulkDataURI": "{root}studies/')
    return Response(body, media_type=offer.media_type)


def parse_frame_list(text: str) -> list[int]:
    """Frame numbers of a frames resource: 1-based, comma-separated (PS3.18 8.3)."""
    numbers: list[int] = []
    for item in text.split(","):
        if not item.strip().isdigit():
            raise HTTPProblem(
                400,
                f"Frame list {text!r} must be positive whole numbers, comma-separated",
            )
        number = int(item)
        if number < 1:
            raise HTTPProblem(400, f"Frame numbers start at 1; got {number}")
        numbers.append(number)
    return numbers


def _frame_offers(stored: StoredInstance) -> tuple[Offer, ...]:
    syntax = stored.transfer_syntax_uid
    if syntax in _NATIVE_TRANSFER_SYNTAXES:
        return (Offer(MULTIPART, OCTETS, _EXPLICIT_LE), Offer(MULTIPART, OCTETS, "*"))
    return (Offer(MULTIPART, OCTETS, syntax),)


async def frames(request: Request, archive: Archive) -> Response:
    """Frames of one instance, as stored, in multipart/related."""
    numbers = parse_frame_list(request.path_params["frames"])
    study, series, instance = scope_uids(request)
    stored = (await archive.instances(study, series, instance))[0]
    offers = _frame_offers(stored)
    if negotiate(request.headers.get("accept"), offers) is None:
        # Known gap (#4): frames cannot be transcoded to another syntax yet.
        raise HTTPProblem(
            406,
            f"Frames are served as stored ({stored.transfer_syntax_uid}); accept "
            f'multipart/related; type="{OCTETS}"; transfer-syntax=* or that syntax',
        )
    pixels = await archive.frames(stored, numbers)
    syntax = (
        _EXPLICIT_LE
        if stored.transfer_syntax_uid in _NATIVE_TRANSFER_SYNTAXES
        else stored.transfer_syntax_uid
    )
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        for data in pixels:
            yield (
                {"Content-Type": f"{OCTETS}; transfer-syntax={syntax}"},
                _once(data),
            )

    return StreamingResponse(
        stream_parts(parts(), boundary),
        media_type=multipart_content_type(OCTETS, boundary, syntax),
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def bulk(request: Request, archive: Archive) -> Response:
    """One bulk data value: octet-stream with Range, or multipart/related."""
    path = request.path_params["path"].upper()
    if not _BULK_PATH.match(path):
        raise HTTPProblem(400, f"Bulk data path {path!r} is not TAG(/item/TAG)*")
    study, series, instance = scope_uids(request)
    stored = (await archive.instances(study, series, instance))[0]
    data = await archive.bulk(stored, path)
    accept = request.headers.get("accept")
    if negotiate(accept, (Offer(MULTIPART, OCTETS, "*"),)) is None:
        if negotiate(accept, (Offer(OCTETS),)) is None:
            raise HTTPProblem(406, f"Bulk data is served as {OCTETS}")
        return _bytes_with_range(request, data, stored)
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        yield {"Content-Type": OCTETS}, _once(data)

    return StreamingResponse(
        stream_parts(parts(), boundary),
        media_type=multipart_content_type(OCTETS, boundary),
    )


def _bytes_with_range(
    request: Request, data: bytes, stored: StoredInstance
) -> Response:
    span = parse_range(request.headers.get("range"), len(data))
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{stored.sha256.hex()}"'}
    if span is None:
        return Response(data, media_type=OCTETS, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return Response(
        data[start:end], status_code=206, media_type=OCTETS, headers=headers
    )
