"""STOW-RS: store instances sent as multipart/related (PS3.18 10.5)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pydicom
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from archive.errors import CANNOT_UNDERSTAND, ArchiveError
from archive.ingest import Outcome, StoreResult
from archive.service import Archive
from dicomweb._errors import HTTPProblem
from dicomweb._media import InvalidMediaType
from dicomweb._multipart import MultipartError, iter_parts, parse_content_type
from dicomweb._paths import dicomweb_root, uid_param

logger = logging.getLogger(__name__)

DICOM = "application/dicom"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_SEQUENCE = "00081199"
_REFERENCED_SOP_CLASS_UID = "00081150"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_WARNING_REASON = "00081196"
_RETRIEVE_URL = "00081190"
# PS3.18 Table 10.5.3-1: elements were coerced / the stored version changed.
_WARNING_COERCION = 0xB000


@dataclass(frozen=True)
class Failure:
    """One refused part: its number in the request, UIDs if known, and why."""

    part: int
    sop_class_uid: str | None
    sop_instance_uid: str | None
    reason: int
    text: str


@dataclass
class StowReport:
    """What happened to each part of one STOW-RS request."""

    stored: list[StoreResult] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    parts_seen: int = 0

    def status(self) -> int:
        """HTTP status per PS3.18 10.5.3: 200 all, 202 some, 409 none stored."""
        if not self.failed:
            return 200
        return 202 if self.stored else 409


def _uid(value: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def response_body(report: StowReport, base: str, study: str | None) -> dict[str, Any]:
    """The Store Instances Response Module as DICOM JSON."""
    body: dict[str, Any] = {}
    if study is not None:
        body[_RETRIEVE_URL] = {"vr": "UR", "Value": [f"{base}/studies/{study}"]}
    if report.failed:
        body[_FAILED_SOP_SEQUENCE] = {
            "vr": "SQ",
            "Value": [
                {
                    _REFERENCED_SOP_CLASS_UID: _uid(sop_class),
                    _REFERENCED_SOP_INSTANCE_UID: _uid(sop_instance),
                    _FAILURE_REASON: {"vr": "US", "Value": [reason]},
                }
                for sop_class, sop_instance, reason in (
                    (f.sop_class_uid, f.sop_instance_uid, f.reason)
                    for f in report.failed
                )
            ],
        }
    referenced = []
    for result in report.stored:
        url = (
            f"{base}/studies/{result.study_instance_uid}/series/"
            f"{result.series_instance_uid}/instances/{result.sop_instance_uid}"
        )
        item = {
            _REFERENCED_SOP_CLASS_UID: _uid(result.sop_class_uid),
            _REFERENCED_SOP_INSTANCE_UID: _uid(result.sop_instance_uid),
            _RETRIEVE_URL: {"vr": "UR", "Value": [url]},
        }
        if result.outcome is Outcome.REPLACED:
            item[_WARNING_REASON] = {"vr": "US", "Value": [_WARNING_COERCION]}
        referenced.append(item)
    if referenced:
        body[_REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": referenced}
    return body


def _boundary(request: Request) -> str:
    try:
        media_type, params = parse_content_type(request.headers.get("content-type", ""))
    except InvalidMediaType as error:
        raise HTTPProblem(415, f"The Content-Type cannot be read: {error}") from None
    if media_type != "multipart/related":
        raise HTTPProblem(
            415,
            f'STOW-RS takes multipart/related; type="{DICOM}", '
            f"not {media_type or 'a request without Content-Type'!r}",
        )
    part_type = params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise HTTPProblem(
            415,
            f"STOW-RS here takes parts of type {DICOM!r}, not {part_type!r}",
        )
    boundary = params.get("boundary")
    if not boundary:
        raise HTTPProblem(400, "The multipart/related Content-Type has no boundary")
    return boundary


_MAX_NOTES = 10


def _notes(report: StowReport) -> list[str]:
    """Reasons in words for the Warning header, bounded so clients can read it."""
    notes = [f"Part {failure.part}: {failure.text}" for failure in report.failed]
    notes += [
        f"SOP Instance {r.sop_instance_uid} replaced its earlier version "
        "(duplicate policy 'replace')"
        for r in report.stored
        if r.outcome is Outcome.REPLACED
    ]
    if len(notes) > _MAX_NOTES:
        more = len(notes) - _MAX_NOTES
        notes = notes[:_MAX_NOTES] + [f"and {more} more; see FailedSOPSequence"]
    return notes


async def store(request: Request, archive: Archive) -> Response:
    """Answer one STOW-RS request, storing each part as it arrives."""
    study = uid_param(request, "study") if "study" in request.path_params else None
    boundary = _boundary(request)
    report = StowReport()
    try:
        async for part in iter_parts(request.stream(), boundary):
            with part.file:
                await _store_part(archive, part, study, report)
    except ClientDisconnect:
        # Parts received whole are stored; the client resumes by asking QIDO
        # which instances arrived and sending the rest (README, "Resumable upload").
        logger.warning(
            "STOW upload cut off by the client after %d stored and %d failed parts",
            len(report.stored),
            len(report.failed),
        )
        return Response(status_code=400)
    except MultipartError as error:
        if not report.stored and not report.failed:
            raise HTTPProblem(
                400, f"The multipart body is malformed: {error}"
            ) from None
        report.failed.append(
            Failure(
                report.parts_seen + 1,
                None,
                None,
                CANNOT_UNDERSTAND,
                f"Malformed body: {error}",
            )
        )
    if not report.stored and not report.failed:
        raise HTTPProblem(400, "The multipart body holds no part")
    base = dicomweb_root(request)
    notes = _notes(report)
    headers = {"Warning": ", ".join(f'299 dicomvault "{_ascii(n)}"' for n in notes)}
    return Response(
        json.dumps(response_body(report, base, study)),
        status_code=report.status(),
        media_type="application/dicom+json",
        headers=headers if notes else None,
    )


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c != '"' else "?" for c in text)[:300]


async def _store_part(
    archive: Archive, part: Any, study: str | None, report: StowReport
) -> None:
    report.parts_seen += 1
    number = report.parts_seen
    try:
        content_type = parse_content_type(part.content_type or DICOM)[0]
    except InvalidMediaType:
        content_type = part.content_type or ""
    if content_type != DICOM:
        text = f"part type {content_type!r} is not {DICOM}"
        report.failed.append(Failure(number, None, None, CANNOT_UNDERSTAND, text))
        return
    try:
        report.stored.append(await archive.store(part.file, part.size, study))
    except ArchiveError as error:
        sop_class, sop_instance = _identify(part.file)
        logger.warning("STOW part refused: %s", type(error).__name__)
        report.failed.append(
            Failure(number, sop_class, sop_instance, error.status, str(error))
        )


def _identify(fp: Any) -> tuple[str | None, str | None]:
    """Best-effort SOP Class/Instance UIDs of a refused part, for the response."""
    try:
        fp.seek(0)
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        found = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    except Exception:  # noqa: BLE001 - any failure only means "unknown UIDs"
        return None, None
    # Multi-valued or binary values cannot name an instance in the response.
    sop_class, sop_instance = (
        str(value) if isinstance(value, str) and value else None for value in found
    )
    return sop_class, sop_instance
