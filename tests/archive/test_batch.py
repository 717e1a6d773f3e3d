"""Batch ZIP planning with an in-memory archive twin: layout, ranges, CRC backfill."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
import zlib
from collections.abc import AsyncIterator
from typing import Any, cast

from archive.batch import plan_batch, stream_batch
from archive.dicom_json import dataset_to_json
from archive.index import StoredInstance
from archive.service import Archive
from tests.factory import make_ct, new_uid, part10


class _Index:
    def __init__(self) -> None:
        self.filled: dict[str, int] = {}

    async def set_crc32(self, sop_instance_uid: str, crc32: int) -> None:
        self.filled[sop_instance_uid] = crc32


class _Twin:
    """Just what plan_batch and stream_batch call on the Archive."""

    def __init__(self, files: list[bytes], known_crc: bool) -> None:
        self.index = _Index()
        self.data: dict[str, bytes] = {}
        self.stored: list[StoredInstance] = []
        self.documents: list[str] = []
        for number, data in enumerate(files):
            ds = make_ct(study="1.2.3", sop=f"1.2.3.{number}")
            ds.PixelData = data
            content = part10(ds)
            self.data[ds.SOPInstanceUID] = content
            self.documents.append(json.dumps(dataset_to_json(ds)))
            self.stored.append(
                StoredInstance(
                    study_instance_uid="1.2.3",
                    series_instance_uid=ds.SeriesInstanceUID,
                    sop_instance_uid=ds.SOPInstanceUID,
                    sop_class_uid=ds.SOPClassUID,
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    object_key=new_uid(),
                    object_size=len(content),
                    sha256=bytes(32),
                    content_sha256=None,
                    offsets_valid=True,
                    number_of_frames=None,
                    rows=8,
                    columns=8,
                    bits_allocated=16,
                    samples_per_pixel=1,
                    bulk=[],
                    frames=None,
                    crc32=zlib.crc32(content) if known_crc else None,
                )
            )

    async def instances(self, study: str, series: str | None) -> list[StoredInstance]:
        return self.stored

    async def metadata(self, study: str, series: str | None) -> list[str]:
        return self.documents

    async def stream(
        self, stored: StoredInstance, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        data = self.data[stored.sop_instance_uid]
        yield data[start : len(data) if end is None else end]


def _zip(twin: _Twin, start: int = 0, end: int | None = None) -> tuple[bytes, Any]:
    async def run() -> tuple[bytes, Any]:
        archive = cast(Archive, twin)
        layout = await plan_batch(archive, [("1.2.3", None)])
        stop = layout.size if end is None else end
        chunks = [c async for c in stream_batch(archive, layout, start, stop)]
        return b"".join(chunks), layout

    return asyncio.run(run())


def test_missing_crc32_is_computed_once_and_recorded() -> None:
    twin = _Twin([b"a" * 128, b"b" * 128], known_crc=False)
    data, layout = _zip(twin)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert len(archive.namelist()) == 3
    assert twin.index.filled == {
        uid: zlib.crc32(content) for uid, content in twin.data.items()
    }
    assert layout.size == len(data)


def test_any_byte_range_is_a_slice_of_the_whole() -> None:
    twin = _Twin([bytes(range(256)) * 8, b"z" * 300], known_crc=True)
    whole, layout = _zip(twin)
    for start, end in (
        (0, 1),
        (5, 700),
        (1000, layout.size),
        (layout.size - 1, layout.size),
    ):
        assert _zip(twin, start, end)[0] == whole[start:end]
