"""Batch download: studies or a series as one ZIP of Part 10 files and a DICOMDIR.

The ZIP holds STORED entries whose headers are computed up front from the index
(object size, CRC-32 taken at ingest), so the archive has the same bytes on
every request: any byte range can be served alone, which makes a download
resumable. Memory grows with the number of instances (their headers and the
DICOMDIR, built with pydicom's FileSet from index metadata), never with their
bytes: instance data streams from the store.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import logging
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import UID

from archive._zip import ZipEntry, central_header, end_records, local_header
from archive.index import StoredInstance

if TYPE_CHECKING:
    from archive.service import Archive

logger = logging.getLogger(__name__)

DICOMDIR_NAME = "DICOMDIR"
# Fixed, so the DICOMDIR (and the whole ZIP) is the same on every request.
_FILE_SET_ID = "DICOMVAULT"
_FILE_SET_UID_ROOT = "2.25."
_LAYOUT_VERSION = b"dicomvault-zip-1"
_UNLISTED = "UNLISTED"
_PATIENT_ID = "00100020"
_SOP_INSTANCE_UID = "00080018"


@dataclass(frozen=True)
class Piece:
    """A run of the ZIP's bytes: literal header bytes or one stored instance."""

    offset: int
    length: int
    literal: bytes | None = None
    stored: StoredInstance | None = None


@dataclass(frozen=True)
class BatchLayout:
    """The whole byte layout of one batch ZIP, and a tag that names it."""

    pieces: list[Piece]
    size: int
    etag: str
    count: int

    def slices(self, start: int, end: int) -> Iterator[tuple[Piece, int, int]]:
        """The pieces overlapping [start, end), each with the part of it wanted."""
        offsets = [piece.offset for piece in self.pieces]
        index = max(0, bisect.bisect_right(offsets, start) - 1)
        for piece in self.pieces[index:]:
            if piece.offset >= end:
                return
            low = max(start, piece.offset) - piece.offset
            high = min(end, piece.offset + piece.length) - piece.offset
            if high > low:
                yield piece, low, high


def _stub(metadata: dict[str, Any], stored: StoredInstance) -> Dataset:
    """A header-only data set from index metadata, enough for a directory record."""
    kept = {
        tag: element
        for tag, element in metadata.items()
        if "BulkDataURI" not in element and "InlineBinary" not in element
    }
    ds = Dataset.from_json(kept)
    if _PATIENT_ID not in kept:
        ds.PatientID = ""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(stored.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(stored.sop_instance_uid)
    meta.TransferSyntaxUID = UID(stored.transfer_syntax_uid)
    ds.file_meta = meta
    return ds


def build_dicomdir(
    instances: list[StoredInstance], documents: dict[str, dict[str, Any]]
) -> tuple[bytes, dict[str, str]]:
    """The DICOMDIR (PS3.10 7.2) and each SOP Instance UID's file ID in the ZIP."""
    uids = "".join(stored.sop_instance_uid for stored in instances).encode()
    file_set = FileSet()
    file_set.ID = _FILE_SET_ID
    # A UID derived from the content (PS3.5 B.2), so the same batch repeats.
    number = int(hashlib.sha256(uids).hexdigest()[:30], 16)
    file_set.UID = UID(f"{_FILE_SET_UID_ROOT}{number}")
    unlisted: dict[str, str] = {}
    for stored in instances:
        try:
            file_set.add(_stub(documents[stored.sop_instance_uid], stored))
        except (ValueError, KeyError, AttributeError, TypeError) as error:
            # No directory record type fits (PS3.3 F.5): ship the file unlisted.
            logger.warning("Instance left out of the DICOMDIR: %s", error)
            unlisted[stored.sop_instance_uid] = f"{_UNLISTED}/I{len(unlisted):07d}"
    try:
        return _write_dicomdir(file_set, unlisted)
    finally:
        # FileSet stages added data sets in a folder of its own; remove it now.
        file_set._stage["t"].cleanup()


def _write_dicomdir(
    file_set: FileSet, unlisted: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="dicomvault-dicomdir-") as folder:
        # FileSet writes the stubs too: headers only, removed with the folder.
        file_set.write(folder)
        dicomdir = (Path(folder) / DICOMDIR_NAME).read_bytes()
        names: dict[str, str] = {
            str(item.SOPInstanceUID): "/".join(Path(item.FileID).parts)
            for item in file_set
        }
    return dicomdir, {**names, **unlisted}


def lay_out(
    instances: list[StoredInstance], dicomdir: bytes, names: dict[str, str]
) -> BatchLayout:
    """Place the DICOMDIR and every instance in one deterministic ZIP."""
    pieces: list[Piece] = []
    central: list[bytes] = []
    digest = hashlib.sha256(_LAYOUT_VERSION + hashlib.sha256(dicomdir).digest())
    offset = 0

    def add(
        entry: ZipEntry, literal: bytes | None, stored: StoredInstance | None
    ) -> None:
        nonlocal offset
        central.append(central_header(entry, offset))
        header = local_header(entry)
        pieces.append(Piece(offset, len(header), literal=header))
        offset += len(header)
        pieces.append(Piece(offset, entry.size, literal=literal, stored=stored))
        offset += entry.size

    add(ZipEntry(DICOMDIR_NAME, len(dicomdir), zlib.crc32(dicomdir)), dicomdir, None)
    for stored in instances:
        assert stored.crc32 is not None, "CRC-32 is filled before the layout"
        name = names[stored.sop_instance_uid]
        add(ZipEntry(name, stored.object_size, stored.crc32), None, stored)
        digest.update(name.encode() + stored.sha256)
    directory = b"".join(central)
    trailer = directory + end_records(len(central), offset, len(directory))
    pieces.append(Piece(offset, len(trailer), literal=trailer))
    size = offset + len(trailer)
    etag = f'"{digest.hexdigest()}"'
    return BatchLayout(pieces, size, etag, len(instances))


async def plan_batch(
    archive: Archive, scopes: list[tuple[str, str | None]]
) -> BatchLayout:
    """The ZIP layout of the given (study, series or None) scopes, in order."""
    instances: list[StoredInstance] = []
    documents: dict[str, dict[str, Any]] = {}
    for study, series in scopes:
        found = await archive.instances(study, series)
        for text in await archive.metadata(study, series):
            document = json.loads(text)
            uid = document[_SOP_INSTANCE_UID]["Value"][0]
            documents[uid] = document
        instances += [
            stored for stored in found if stored.sop_instance_uid in documents
        ]
    instances = [await _with_crc32(archive, stored) for stored in instances]
    dicomdir, names = await asyncio.to_thread(build_dicomdir, instances, documents)
    return lay_out(instances, dicomdir, names)


async def _with_crc32(archive: Archive, stored: StoredInstance) -> StoredInstance:
    """The instance with its CRC-32, computed once for instances ingested before it."""
    if stored.crc32 is not None:
        return stored
    crc32 = 0
    async for chunk in archive.stream(stored):
        crc32 = zlib.crc32(chunk, crc32)
    await archive.index.set_crc32(stored.sop_instance_uid, crc32)
    logger.info("Filled the CRC-32 of an instance stored before it was taken")
    return replace(stored, crc32=crc32)


async def stream_batch(
    archive: Archive, layout: BatchLayout, start: int, end: int
) -> AsyncIterator[bytes]:
    """Bytes [start, end) of the ZIP, instance data read from the store."""
    for piece, low, high in layout.slices(start, end):
        if piece.literal is not None:
            yield piece.literal[low:high]
        else:
            assert piece.stored is not None
            async for chunk in archive.stream(piece.stored, low, high):
                yield chunk
