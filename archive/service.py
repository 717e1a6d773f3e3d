"""The Archive service: the one entry point every front-end calls."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
import pydicom
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from archive._sql import json_tag
from archive.attributes import DEFAULT_RETURN, PATIENT_KEYWORDS, Level
from archive.errors import InvalidRange, NotFound
from archive.index import Index, StoredInstance
from archive.ingest import Ingestor, StoreResult
from archive.query import CursorValue, Query
from archive.transcode import PixelFormat, targets, transcode_instance
from storage.base import ObjectStore
from storage.envelope import SealedReader, open_range
from storage.keys import KeyProvider

PIXEL_DATA_PATH = "7FE00010"
_PIECE_BYTES = 1 << 20
_LEVEL_JSON = {
    Level.STUDY: ("study_attributes",),
    Level.SERIES: ("study_attributes", "series_attributes"),
    Level.IMAGE: ("study_attributes", "series_attributes", "instance_metadata"),
}


_IDENTIFYING = {
    Level.PATIENT: ("PatientID",),
    Level.STUDY: ("StudyInstanceUID",),
    Level.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    Level.IMAGE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
    ),
}


@dataclass(frozen=True)
class SearchResult:
    """Matches as DICOM JSON objects, and the keys that could not be matched.

    ``cursors`` holds the keyset position of each match: pass one as
    ``Query.after`` to continue after that match.
    """

    matches: list[dict[str, Any]]
    unsupported: tuple[str, ...]
    cursors: list[tuple[CursorValue, ...]] = field(default_factory=list)


def without_bulk_data(attributes: dict[str, Any]) -> dict[str, Any]:
    """DICOM JSON without the elements ingest kept as bulk data, at any depth."""
    kept: dict[str, Any] = {}
    for tag, element in attributes.items():
        if "BulkDataURI" in element:
            continue
        if element.get("vr") == "SQ" and element.get("Value"):
            element = dict(
                element, Value=[without_bulk_data(item) for item in element["Value"]]
            )
        kept[tag] = element
    return kept


def _number(vr: str, value: int) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


def _strings(vr: str, values: list[str]) -> dict[str, Any]:
    return {"vr": vr, "Value": values} if values else {"vr": vr}


class Archive:
    """Ingest, query and retrieve over one index and one sealed object store."""

    def __init__(
        self, index: Index, store: ObjectStore, keys: KeyProvider, ingestor: Ingestor
    ) -> None:
        self.index = index
        self._store = store
        self._keys = keys
        self._ingestor = ingestor

    async def store(
        self,
        fp: BinaryIO,
        size: int,
        expected_study: str | None = None,
        source: str | None = None,
        *,
        expected_sop_class: str | None = None,
        expected_sop_instance: str | None = None,
    ) -> StoreResult:
        """Store one Part 10 instance (see ``Ingestor.store``)."""
        return await self._ingestor.store(
            fp,
            size,
            expected_study,
            source,
            expected_sop_class=expected_sop_class,
            expected_sop_instance=expected_sop_instance,
        )

    async def ready(self) -> bool:
        """Tell whether the index answers and the store can be listed."""
        if not await self.index.ping():
            return False
        try:
            await asyncio.to_thread(self._store.exists, "readyz/probe")
        except OSError:
            return False
        return True

    async def search(self, query: Query) -> SearchResult:
        """Run a query and build each match's attributes (PS3.18 10.6.3)."""
        wanted = self._return_tags(query)
        rows, compiled = await self.index.search(query, wanted)
        cursors = [
            tuple(row[column] for column in compiled.cursor_columns) for row in rows
        ]
        if query.level == Level.PATIENT:
            matches = await self._patient_matches(rows, wanted)
            return SearchResult(matches, compiled.unsupported, cursors)
        matches = []
        for row in rows:
            merged: dict[str, Any] = {}
            for column in _LEVEL_JSON[query.level]:
                merged.update(orjson.loads(row[column]))
            matches.append(merged)
        await self._add_computed(query.level, rows, matches)
        if wanted is None:
            matches = [without_bulk_data(match) for match in matches]
        else:
            matches = [{t: v for t, v in m.items() if t in wanted} for m in matches]
        return SearchResult(matches, compiled.unsupported, cursors)

    async def count(self, query: Query) -> tuple[int, tuple[str, ...]]:
        """How many matches a query has, whatever its paging; and unmatched keys."""
        return await self.index.count(query)

    def _return_tags(self, query: Query) -> set[str] | None:
        if query.include_all:
            return None
        keywords: set[str] = set(DEFAULT_RETURN[query.level])
        if (
            query.level in (Level.SERIES, Level.IMAGE)
            and query.study_instance_uid is None
        ):
            keywords |= set(DEFAULT_RETURN[Level.STUDY])
        if query.level == Level.IMAGE and query.series_instance_uid is None:
            keywords |= set(DEFAULT_RETURN[Level.SERIES])
        # The UIDs of the level and above, so that each match can be retrieved.
        keywords |= set(_IDENTIFYING[query.level])
        keywords |= set(query.include)
        keywords |= {key.partition(".")[0] for key in query.keys}
        return {json_tag(keyword) for keyword in keywords}

    async def _add_computed(
        self, level: Level, rows: list[Any], matches: list[dict[str, Any]]
    ) -> None:
        study_pks = sorted({row["study_pk"] for row in rows})
        counts = await self.index.study_counts(study_pks) if study_pks else {}
        series_counts: dict[int, int] = {}
        if level in (Level.SERIES, Level.IMAGE):
            series_counts = await self.index.series_counts(
                sorted({row["series_pk"] for row in rows})
            )
        for row, match in zip(rows, matches):
            study = counts.get(row["study_pk"])
            match[json_tag("NumberOfStudyRelatedSeries")] = _number(
                "IS", study["series_count"] if study else 0
            )
            match[json_tag("NumberOfStudyRelatedInstances")] = _number(
                "IS", study["instance_count"] if study else 0
            )
            match[json_tag("ModalitiesInStudy")] = _strings(
                "CS", sorted(study["modalities"]) if study else []
            )
            match[json_tag("SOPClassesInStudy")] = _strings(
                "UI", sorted(study["sop_classes"]) if study else []
            )
            match[json_tag("InstanceAvailability")] = {"vr": "CS", "Value": ["ONLINE"]}
            if level in (Level.SERIES, Level.IMAGE):
                match[json_tag("NumberOfSeriesRelatedInstances")] = _number(
                    "IS", series_counts.get(row["series_pk"], 0)
                )

    async def _patient_matches(
        self, rows: list[Any], wanted: set[str] | None
    ) -> list[dict[str, Any]]:
        patient_tags = {json_tag(keyword) for keyword in PATIENT_KEYWORDS}
        patient_tags.add(json_tag("SpecificCharacterSet"))
        keys = [(row["patient_id"], row["issuer_of_patient_id"]) for row in rows]
        counts = await self.index.patient_counts(keys) if keys else {}
        matches: list[dict[str, Any]] = []
        for row, key in zip(rows, keys):
            attributes = orjson.loads(row["study_attributes"])
            match = {t: v for t, v in attributes.items() if t in patient_tags}
            found = counts.get(key)
            match[json_tag("NumberOfPatientRelatedStudies")] = _number(
                "IS", found["studies"] if found else 0
            )
            match[json_tag("NumberOfPatientRelatedSeries")] = _number(
                "IS", found["series"] if found else 0
            )
            match[json_tag("NumberOfPatientRelatedInstances")] = _number(
                "IS", found["instances"] if found else 0
            )
            if wanted is not None:
                match = {t: v for t, v in match.items() if t in wanted}
            matches.append(match)
        return matches

    async def instances(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[StoredInstance]:
        """The stored instances in scope; ``NotFound`` when there are none."""
        found = await self.index.stored_instances(
            study_instance_uid, series_instance_uid, sop_instance_uid
        )
        if not found:
            raise NotFound(
                _scope_text(study_instance_uid, series_instance_uid, sop_instance_uid)
            )
        return found

    async def metadata(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[str]:
        """DICOM JSON text of each instance in scope, from the index alone."""
        found = await self.index.metadata(
            study_instance_uid, series_instance_uid, sop_instance_uid
        )
        if not found:
            raise NotFound(
                _scope_text(study_instance_uid, series_instance_uid, sop_instance_uid)
            )
        return found

    async def read(
        self, stored: StoredInstance, start: int = 0, end: int | None = None
    ) -> bytes:
        """Plaintext bytes [start, end) of a stored instance."""
        return await asyncio.to_thread(self.read_here, stored, start, end)

    def read_here(
        self, stored: StoredInstance, start: int = 0, end: int | None = None
    ) -> bytes:
        """As :meth:`read`, on the calling thread: for threads other than the loop's.

        A DIMSE association's thread reads what it sends this way, without
        two trips through the event loop per instance.
        """
        return open_range(self._store, stored.object_key, self._keys, start, end)

    async def stream(
        self, stored: StoredInstance, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Plaintext of a stored instance in pieces, decrypting as it goes.

        Opening and the first piece share one trip to the thread pool, and the
        last piece is known by its length: an instance of one piece costs one
        trip instead of three.
        """

        def first_piece() -> tuple[Iterator[bytes], bytes | None]:
            reader = SealedReader.open(self._store, stored.object_key, self._keys)
            pieces = reader.iter_read(start, end, piece_bytes=_PIECE_BYTES)
            return pieces, next(pieces, None)

        pieces, piece = await asyncio.to_thread(first_piece)
        remaining = (stored.object_size if end is None else end) - start
        while piece is not None:
            yield piece
            remaining -= len(piece)
            if remaining <= 0:
                return
            piece = await asyncio.to_thread(next, pieces, None)

    async def frames(self, stored: StoredInstance, numbers: list[int]) -> list[bytes]:
        """Pixel data of the given 1-based frames, as stored (PS3.18 10.4.1.1.4)."""
        count = stored.number_of_frames or 1
        pixel = _bulk_entry(stored, PIXEL_DATA_PATH)
        if pixel is None:
            raise NotFound("The instance holds no Pixel Data, so it has no frames")
        bad = [n for n in numbers if not 1 <= n <= count]
        if bad:
            raise NotFound(f"Frame {bad[0]} does not exist; the instance has {count}")
        encapsulated = UID(stored.transfer_syntax_uid).is_encapsulated
        if not stored.offsets_valid or (encapsulated and stored.frames is None):
            # Deflated data, or fragments whose frame boundaries ingest could
            # not tell: read the whole object and let pydicom find the frames.
            return await asyncio.to_thread(self._frames_by_parsing, stored, numbers)
        if stored.frames is not None:
            return [
                await self._read_spans(stored, stored.frames[n - 1]) for n in numbers
            ]
        size = _native_frame_bytes(stored)
        _, _, offset, length = pixel
        if size * count > length:
            raise InvalidRange(
                f"Pixel Data holds {length} bytes, fewer than {count} frames of {size}"
            )
        return [
            await self.read(stored, offset + (n - 1) * size, offset + n * size)
            for n in numbers
        ]

    def transcode_targets(self, stored: StoredInstance) -> frozenset[str]:
        """Transfer syntaxes this instance can be converted to, and its own."""
        has_pixels = _bulk_entry(stored, PIXEL_DATA_PATH) is not None
        found = targets(
            stored.transfer_syntax_uid,
            has_pixels,
            stored.bits_allocated,
            stored.samples_per_pixel,
        )
        return found | {stored.transfer_syntax_uid}

    async def transcoded(self, stored: StoredInstance, target: str) -> bytes:
        """The whole instance re-encoded in ``target`` (held in memory)."""
        data = await self.read(stored)
        return await asyncio.to_thread(transcode_instance, data, target)

    async def pixel_format(self, stored: StoredInstance) -> PixelFormat:
        """The Image Pixel attributes, read from the header ahead of Pixel Data."""
        return PixelFormat.of(await self.pixel_header(stored))

    async def pixel_header(self, stored: StoredInstance) -> pydicom.Dataset:
        """The data set up to Pixel Data, read from the object (not the index)."""
        pixel = _bulk_entry(stored, PIXEL_DATA_PATH)
        if pixel is None:
            raise NotFound("The instance holds no Pixel Data")
        end = pixel[2] if stored.offsets_valid else None
        header = await self.read(stored, 0, end)
        return await asyncio.to_thread(
            pydicom.dcmread, io.BytesIO(header), stop_before_pixels=True
        )

    def bulk_span(self, stored: StoredInstance, path: str) -> tuple[int, int] | None:
        """(offset, length) of a bulk value in the stored bytes, when known.

        None means the value must be read by parsing (deflated data sets); an
        unknown path raises ``NotFound``.
        """
        entry = _bulk_entry(stored, path)
        if entry is None:
            raise NotFound(f"The instance has no bulk data at {path!r}")
        if not stored.offsets_valid:
            return None
        return int(entry[2]), int(entry[3])

    async def bulk(self, stored: StoredInstance, path: str) -> bytes:
        """The value bytes of one bulk data element, by its tag path."""
        entry = _bulk_entry(stored, path)
        if entry is None:
            raise NotFound(f"The instance has no bulk data at {path!r}")
        if not stored.offsets_valid:
            return await asyncio.to_thread(self._bulk_by_parsing, stored, path)
        _, _, offset, length = entry
        return await self.read(stored, offset, offset + length)

    async def _read_spans(
        self, stored: StoredInstance, spans: list[list[int]]
    ) -> bytes:
        parts = [await self.read(stored, start, start + size) for start, size in spans]
        return b"".join(parts)

    def _full_dataset(self, stored: StoredInstance) -> pydicom.Dataset:
        data = open_range(self._store, stored.object_key, self._keys)
        return pydicom.dcmread(io.BytesIO(data))

    def _frames_by_parsing(
        self, stored: StoredInstance, numbers: list[int]
    ) -> list[bytes]:
        ds = self._full_dataset(stored)
        count = stored.number_of_frames or 1
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        else:
            size = _native_frame_bytes(stored)
            frames = [ds.PixelData[i * size : (i + 1) * size] for i in range(count)]
        return [frames[n - 1] for n in numbers]

    def _bulk_by_parsing(self, stored: StoredInstance, path: str) -> bytes:
        item: Any = self._full_dataset(stored)
        parts = path.split("/")
        for index, part in enumerate(parts):
            if index % 2 == 0:
                item = item[int(part, 16)]
                item = item.value
            else:
                item = item[int(part)]
        return bytes(item)


def _bulk_entry(stored: StoredInstance, path: str) -> list[Any] | None:
    for entry in stored.bulk:
        if entry[0] == path:
            return entry
    return None


def _native_frame_bytes(stored: StoredInstance) -> int:
    rows, columns = stored.rows or 0, stored.columns or 0
    samples, bits = stored.samples_per_pixel or 1, stored.bits_allocated or 8
    return (rows * columns * samples * bits + 7) // 8


def _scope_text(study: str, series: str | None, sop: str | None) -> str:
    if sop is not None:
        return f"No instance {sop!r} in series {series!r} of study {study!r}"
    if series is not None:
        return f"No series {series!r} in study {study!r}"
    return f"No study {study!r}"
