"""Batch download as application/zip: a study, a series or a list of studies.

``GET /studies/{study}`` or ``/studies/{study}/series/{series}`` with
``Accept: application/zip``, or ``GET /batch?study={uid}&study={uid}`` for
several studies. The ZIP is the same bytes on each request while the studies
do not change (its ETag says so), so ``Range`` with ``If-Range`` resumes it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from archive.batch import plan_batch, stream_batch
from archive.service import Archive
from archive.uids import check_uid
from dicomweb._errors import HTTPProblem
from dicomweb._media import Offer, negotiate
from dicomweb._ranges import parse_range

ZIP = "application/zip"
_MOST_STUDIES = 500


async def download(
    request: Request, archive: Archive, scopes: list[tuple[str, str | None]]
) -> Response:
    """Answer with the ZIP of the scopes, or the byte range asked for."""
    layout = await plan_batch(archive, scopes)
    name = scopes[0][1] or scopes[0][0] if len(scopes) == 1 else "studies"
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": layout.etag,
        "Content-Disposition": f'attachment; filename="{name}.zip"',
    }
    wanted = request.headers.get("range")
    if request.headers.get("if-range") not in (None, layout.etag):
        wanted = None
    try:
        span = parse_range(wanted, layout.size)
    except HTTPProblem:
        headers["Content-Range"] = f"bytes */{layout.size}"
        return Response(status_code=416, headers=headers)
    start, end = span if span is not None else (0, layout.size)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{layout.size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        stream_batch(archive, layout, start, end),
        status_code=206 if span is not None else 200,
        media_type=ZIP,
        headers=headers,
    )


async def studies(request: Request, archive: Archive) -> Response:
    """``GET /batch?study=...``: several studies in one ZIP."""
    if negotiate(request.headers.get("accept"), (Offer(ZIP),)) is None:
        raise HTTPProblem(406, f"A batch is served as {ZIP} only")
    uids: list[str] = []
    for value in request.query_params.getlist("study"):
        for uid in value.split(","):
            checked = check_uid(uid.strip(), "study")
            if checked not in uids:
                uids.append(checked)
    if not uids:
        raise HTTPProblem(400, "Name the studies: /batch?study=UID&study=UID")
    if len(uids) > _MOST_STUDIES:
        raise HTTPProblem(
            400, f"A batch holds at most {_MOST_STUDIES} studies, not {len(uids)}"
        )
    return await download(request, archive, [(uid, None) for uid in uids])
