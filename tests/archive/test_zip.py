"""ZIP records written ahead of the data, read back by Python's zipfile."""

from __future__ import annotations

import io
import zipfile
import zlib

import pytest

from archive._zip import ZipEntry, central_header, end_records, local_header


def _archive(files: dict[str, bytes], limit: int) -> bytes:
    out, directory = io.BytesIO(), []
    for name, data in files.items():
        entry = ZipEntry(name, len(data), zlib.crc32(data))
        directory.append(central_header(entry, out.tell(), limit))
        out.write(local_header(entry, limit) + data)
    offset = out.tell()
    out.write(b"".join(directory))
    out.write(end_records(len(files), offset, out.tell() - offset, limit))
    return out.getvalue()


@pytest.mark.parametrize("limit", [0xFFFFFFFF, 1], ids=["plain", "zip64"])
def test_zipfile_reads_what_the_records_describe(limit: int) -> None:
    files = {"DICOMDIR": b"dir", "PT000000/ST000000/IM000000": b"x" * 5000, "É": b""}
    data = _archive(files, limit)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert {name: archive.read(name) for name in archive.namelist()} == files
        assert all(
            info.compress_type == zipfile.ZIP_STORED for info in archive.infolist()
        )


def test_zip64_is_used_only_when_needed() -> None:
    entry = ZipEntry("a", 10, 0)
    assert b"\x01\x00\x10\x00" not in local_header(entry)
    assert len(local_header(ZipEntry("a", 2**33, 0))) == len(local_header(entry)) + 20
    assert end_records(3, 100, 50).startswith(b"PK\x05\x06")
    assert end_records(70000, 100, 50).startswith(b"PK\x06\x06")
