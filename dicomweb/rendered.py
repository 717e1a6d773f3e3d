"""Rendered and thumbnail resources: frames as JPEG or PNG (PS3.18 10.4.1.1.3, 8.3.5).

``/rendered`` of an instance or frames gives one image, or every frame when
``multipart/related; type="image/jpeg"`` is accepted; of a series or study it
gives the middle image, or the first frame of each instance as multipart.
``/thumbnail`` always gives one small image of the middle instance (or of the
first frame named), ``128x128`` unless a viewport says otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from archive.index import StoredInstance
from archive.render import (
    JPEG,
    PNG,
    THUMBNAIL_PIXELS,
    Rendering,
    Viewport,
    parse_quality,
    parse_viewport,
    parse_window,
    render,
)
from archive.service import PIXEL_DATA_PATH, Archive
from archive.transcode import PixelFormat, decode_frames
from dicomweb._errors import HTTPProblem
from dicomweb._media import Offer, negotiate
from dicomweb._multipart import multipart_content_type, new_boundary, stream_parts
from dicomweb._paths import scope_uids
from dicomweb.wado import parse_frame_list

MULTIPART = "multipart/related"
_OFFERS = (
    Offer(JPEG),
    Offer(PNG),
    Offer(MULTIPART, JPEG),
    Offer(MULTIPART, PNG),
)


def _rendering(request: Request, thumbnail: bool) -> tuple[Rendering, bool]:
    """Query parameters and Accept: what to draw, and whether as multipart."""
    chosen = negotiate(request.headers.get("accept"), _OFFERS)
    if chosen is None:
        raise HTTPProblem(406, f"Rendered resources are {JPEG} or {PNG}")
    media_type = chosen.part_type or chosen.media_type
    params = request.query_params
    window = parse_window(params["window"]) if "window" in params else None
    viewport = parse_viewport(params["viewport"]) if "viewport" in params else None
    if thumbnail and viewport is None:
        viewport = Viewport(THUMBNAIL_PIXELS, THUMBNAIL_PIXELS)
    quality = parse_quality(params["quality"]) if "quality" in params else None
    rendering = Rendering(media_type, quality or 90, window, viewport)
    return rendering, chosen.part_type is not None and not thumbnail


def _has_pixels(stored: StoredInstance) -> bool:
    return any(entry[0] == PIXEL_DATA_PATH for entry in stored.bulk)


async def _targets(
    request: Request, archive: Archive, multipart: bool
) -> list[tuple[StoredInstance, int]]:
    """The (instance, frame number) pairs to draw, in order."""
    study, series, instance = scope_uids(request)
    images = [
        s for s in await archive.instances(study, series, instance) if _has_pixels(s)
    ]
    if not images:
        raise HTTPProblem(406, "Nothing here holds pixel data to render")
    if "frames" in request.path_params:
        numbers = parse_frame_list(request.path_params["frames"])
        return [
            (images[0], number) for number in (numbers if multipart else numbers[:1])
        ]
    if instance is not None and multipart:
        return [(images[0], n) for n in range(1, (images[0].number_of_frames or 1) + 1)]
    if multipart:
        return [(stored, 1) for stored in images]
    return [(images[len(images) // 2], 1)]


async def _draw(
    archive: Archive, stored: StoredInstance, number: int, rendering: Rendering
) -> bytes:
    header = await archive.pixel_header(stored)
    fmt = PixelFormat.of(header)
    frames = await archive.frames(stored, [number])
    return await asyncio.to_thread(
        _decode_and_render, header, fmt, stored.transfer_syntax_uid, frames, rendering
    )


def _decode_and_render(
    header: Dataset,
    fmt: PixelFormat,
    syntax: str,
    frames: list[bytes],
    rendering: Rendering,
) -> bytes:
    [pixels] = decode_frames(fmt, syntax, frames)
    return render(header, pixels, rendering)


async def _answer(request: Request, archive: Archive, thumbnail: bool) -> Response:
    rendering, multipart = _rendering(request, thumbnail)
    targets = await _targets(request, archive, multipart)
    if not multipart:
        image = await _draw(archive, *targets[0], rendering)
        return Response(image, media_type=rendering.media_type)
    # Draw the first before answering, so a frame that cannot be decoded
    # gives an error status rather than a cut-off body.
    first = await _draw(archive, *targets[0], rendering)
    boundary = new_boundary()

    async def parts() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        for index, (stored, number) in enumerate(targets):
            image = (
                first if index == 0 else await _draw(archive, stored, number, rendering)
            )
            yield {"Content-Type": rendering.media_type}, _once(image)

    return StreamingResponse(
        stream_parts(parts(), boundary),
        media_type=multipart_content_type(rendering.media_type, boundary),
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def rendered(request: Request, archive: Archive) -> Response:
    """``.../rendered`` of a study, series, instance or frames."""
    return await _answer(request, archive, thumbnail=False)


async def thumbnail(request: Request, archive: Archive) -> Response:
    """``.../thumbnail`` of a study, series, instance or frames."""
    return await _answer(request, archive, thumbnail=True)
