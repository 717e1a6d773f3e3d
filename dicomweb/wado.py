"""WADO-RS: retrieve instances, metadata, frames and bulk data (PS3.18 10.4)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Mapping

from pydicom.uid import UID
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from archive.index import StoredInstance
from archive.service import Archive
from archive.transcode import (
    PixelFormat,
    can_decode,
    decode_frame,
    encode_frame,
    native_frame,
    native_pixels,
)
from dicomweb import batch
from dicomweb._errors import HTTPProblem
from dicomweb._media import Offer, negotiate
from dicomweb._multipart import multipart_content_type, new_boundary, stream_parts
from dicomweb._paths import dicomweb_root, scope_uids
from dicomweb._ranges import parse_range
from dicomweb._syntaxes import (
    BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    NATIVE_SYNTAXES,
    OCTETS,
    media_type_of,
    syntax_rank,
)

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
MULTIPART = "multipart/related"
_BULK_PATH = re.compile(r"^[0-9A-F]{8}(/\d+/[0-9A-F]{8})*$")
_EXPLICIT_LE = EXPLICIT_VR_LITTLE_ENDIAN


def _common_targets(archive: Archive, instances: list[StoredInstance]) -> set[str]:
    """Syntaxes every instance in scope can be sent in (as stored or converted)."""
    common: set[str] | None = None
    for stored in instances:
        found = archive.transcode_targets(stored)
        common = set(found) if common is None else common & found
    return common or set()


def _retrieve_syntax(
    request: Request, archive: Archive, instances: list[StoredInstance], single: bool
) -> tuple[Offer, str | None]:
    """Negotiate the media type and transfer syntax (PS3.18 8.7.3.5); else 406.

    Without a transfer-syntax parameter the answer is Explicit VR Little Endian,
    the default of application/dicom since PS3.18 2016c; ``*`` means as stored.
    """
    allowed = _common_targets(archive, instances)
    offers = [Offer(MULTIPART, DICOM, _EXPLICIT_LE)]
    if single:
        offers.append(Offer(DICOM, None, _EXPLICIT_LE))
    chosen = negotiate(request.headers.get("accept"), offers, allowed)
    if chosen is None or (
        chosen.transfer_syntax is not None and chosen.transfer_syntax not in allowed
    ):
        raise HTTPProblem(
            406,
            f'Acceptable here: {MULTIPART}; type="{DICOM}" (or {DICOM} for one '
            "instance) with transfer-syntax=* or one of "
            f"{', '.join(sorted(allowed)) or 'no syntax'}",
        )
    return chosen, chosen.transfer_syntax


def _wants_zip(request: Request) -> bool:
    """Tell whether the client prefers application/zip to multipart/related."""
    offers = (Offer(MULTIPART, DICOM, "*"), Offer(batch.ZIP))
    chosen = negotiate(request.headers.get("accept"), offers)
    return chosen is not None and chosen.media_type == batch.ZIP


async def retrieve(request: Request, archive: Archive) -> Response:
    """Study, series or instance as application/dicom (or a ZIP, see batch)."""
    study, series, instance = scope_uids(request)
    if instance is None and _wants_zip(request):
        return await batch.download(request, archive, [(study, series)])
    instances = await archive.instances(study, series, instance)
    chosen, target = _retrieve_syntax(request, archive, instances, instance is not None)
    if chosen.part_type is None:
        stored = instances[0]
        if target is None or target == stored.transfer_syntax_uid:
            return await _single_instance(request, archive, stored)
        data = await archive.transcoded(stored, target)
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        media_type = f"{DICOM}; transfer-syntax={target}"
        return _bytes_with_range(request, data, etag, media_type)
    # Convert the first instance before answering, so a codec that cannot
    # handle the data gives 406 rather than a cut-off body.
    first: bytes | None = None
    if target is not None and target != instances[0].transfer_syntax_uid:
        first = await archive.transcoded(instances[0], target)
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        for index, stored in enumerate(instances):
            syntax = target or stored.transfer_syntax_uid
            if syntax == stored.transfer_syntax_uid:
                size, body = stored.object_size, archive.stream(stored)
            else:
                data = first if index == 0 and first is not None else None
                data = data or await archive.transcoded(stored, syntax)
                size, body = len(data), _once(data)
            headers = {
                "Content-Type": f"{DICOM}; transfer-syntax={syntax}",
                "Content-Length": str(size),
            }
            yield headers, body

    return StreamingResponse(
        stream_parts(parts(), boundary),
        media_type=multipart_content_type(DICOM, boundary, target),
    )


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
    etag = f'"{hashlib.sha256(body.encode()).hexdigest()}"'
    # Metadata can change (a new instance, a replaced version): revalidate always.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if _matches_any(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=offer.media_type, headers=headers)


def _matches_any(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison of If-None-Match against our ETag (RFC 9110 13.1.2)."""
    if if_none_match is None:
        return False
    candidates = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in candidates or etag in [c.removeprefix("W/") for c in candidates]


def parse_frame_list(text: str) -> list[int]:
    """Frame numbers of a frames resource: 1-based, comma-separated (PS3.18 8.3)."""
    numbers: list[int] = []
    for item in text.split(","):
        item = item.strip()
        # isdigit() alone admits '²' and other Unicode digits.
        if not (item.isascii() and item.isdigit()):
            raise HTTPProblem(
                400,
                f"Frame list {text!r} must be positive whole numbers, comma-separated",
            )
        number = int(item)
        if number < 1:
            raise HTTPProblem(400, f"Frame numbers start at 1; got {number}")
        if number in numbers:
            # Repeats would let a short URL ask for unbounded response bytes.
            raise HTTPProblem(400, f"Frame {number} is listed twice in {text!r}")
        numbers.append(number)
    return numbers


def _frame_offers(
    archive: Archive, stored: StoredInstance, encodable: frozenset[str]
) -> list[Offer]:
    """What frames can be sent as: native, as stored, or encoded anew."""
    syntax = stored.transfer_syntax_uid
    offers: list[Offer] = []
    if syntax in NATIVE_SYNTAXES or syntax == BIG_ENDIAN or can_decode(syntax):
        offers.append(Offer(MULTIPART, OCTETS, _EXPLICIT_LE))
    if syntax not in NATIVE_SYNTAXES:
        offers.append(Offer(MULTIPART, media_type_of(syntax), syntax))
        offers.append(Offer(MULTIPART, OCTETS, syntax))
    ordered = sorted(encodable - {syntax}, key=syntax_rank)
    offers += [Offer(MULTIPART, media_type_of(t), t) for t in ordered]
    return offers


async def frames(request: Request, archive: Archive) -> Response:
    """Frames of one instance in multipart/related, converted if asked (8.7.3.5)."""
    numbers = parse_frame_list(request.path_params["frames"])
    study, series, instance = scope_uids(request)
    stored = (await archive.instances(study, series, instance))[0]
    syntax = stored.transfer_syntax_uid
    encodable = archive.transcode_targets(stored) - NATIVE_SYNTAXES - {syntax}
    chosen = negotiate(
        request.headers.get("accept"), _frame_offers(archive, stored, encodable)
    )
    if chosen is None:
        raise HTTPProblem(
            406,
            f"Frames of this instance ({syntax}) are served as {OCTETS} "
            f"(transfer-syntax=* or {_EXPLICIT_LE}), as stored, or in "
            f"{', '.join(sorted(encodable)) or 'no other syntax'}",
        )
    pixels = await archive.frames(stored, numbers)
    label = _EXPLICIT_LE if syntax in NATIVE_SYNTAXES else syntax
    target = chosen.transfer_syntax or label
    if target != label:
        fmt = await archive.pixel_format(stored)
        pixels = await asyncio.to_thread(_convert_frames, fmt, syntax, pixels, target)
    media_type = chosen.part_type or OCTETS
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        for data in pixels:
            yield {"Content-Type": f"{media_type}; transfer-syntax={target}"}, _once(
                data
            )

    return StreamingResponse(
        stream_parts(parts(), boundary),
        media_type=multipart_content_type(media_type, boundary, target),
    )


def _convert_frames(
    fmt: PixelFormat, source: str, frames: list[bytes], target: str
) -> list[bytes]:
    converted: list[bytes] = []
    for frame in frames:
        if UID(source).is_encapsulated:
            pixels = decode_frame(fmt, source, frame)
        else:
            pixels = native_pixels(fmt, frame, source != BIG_ENDIAN)
        if target == _EXPLICIT_LE:
            converted.append(native_frame(fmt, pixels))
        else:
            converted.append(encode_frame(fmt, pixels, target))
    return converted


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def bulk(request: Request, archive: Archive) -> Response:
    """One bulk data value: octet-stream with Range, or multipart/related."""
    path = request.path_params["path"].upper()
    if not _BULK_PATH.match(path):
        raise HTTPProblem(400, f"Bulk data path {path!r} is not TAG(/item/TAG)*")
    study, series, instance = scope_uids(request)
    stored = (await archive.instances(study, series, instance))[0]
    span = archive.bulk_span(stored, path)
    accept = request.headers.get("accept")
    multipart = negotiate(accept, (Offer(MULTIPART, OCTETS, "*"),)) is not None
    if not multipart and negotiate(accept, (Offer(OCTETS),)) is None:
        raise HTTPProblem(406, f"Bulk data is served as {OCTETS}")
    if span is None:
        data = await archive.bulk(stored, path)
        if not multipart:
            return _bytes_with_range(request, data, f'"{stored.sha256.hex()}"')
        return _bulk_part(request, len(data), lambda s, e: _once(data[s:e]))
    offset, length = span
    if not multipart:
        return await _ranged(request, archive, stored, OCTETS, offset, length)
    return _bulk_part(
        request,
        length,
        lambda s, e: archive.stream(stored, offset + s, offset + e),
    )


def _bulk_part(
    request: Request,
    size: int,
    read: Callable[[int, int], AsyncIterator[bytes]],
) -> Response:
    """One bulk value as the single part of multipart/related, streamed."""
    # In multipart form a Range names the bytes of the one part (PS3.18 8.3.5.2).
    span = parse_range(request.headers.get("range"), size)
    part_headers = {"Content-Type": OCTETS}
    start, end = span if span is not None else (0, size)
    if span is not None:
        part_headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        yield part_headers, read(start, end)

    return StreamingResponse(
        stream_parts(parts(), boundary),
        media_type=multipart_content_type(OCTETS, boundary),
    )


def _bytes_with_range(
    request: Request, data: bytes, etag: str, media_type: str = OCTETS
) -> Response:
    headers = {"Accept-Ranges": "bytes", "ETag": etag}
    span = parse_range(request.headers.get("range"), len(data))
    if request.headers.get("if-range") not in (None, etag):
        span = None
    if span is None:
        return Response(data, media_type=media_type, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return Response(
        data[start:end], status_code=206, media_type=media_type, headers=headers
    )
