"""ZIP records of STORED entries whose sizes and CRC-32 are known in advance.

Pure byte layout (PKWARE APPNOTE 6.3.10, sections 4.3 and 4.5.3): every header
can be written before the entry's data is read, so an archive has the same
bytes on each request and a byte range of it can be served on its own. ZIP64
records are used only where a size, offset or count does not fit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ZIP64_LIMIT = 0xFFFFFFFF
_COUNT_LIMIT = 0xFFFF
_UTF8_NAMES = 0x0800
_STORED = 0
_VERSION_PLAIN = 20
_VERSION_ZIP64 = 45
# 1980-01-01 00:00:00, the MS-DOS epoch: a fixed time keeps the bytes fixed.
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1


@dataclass(frozen=True)
class ZipEntry:
    """One file of the archive: its name, length and CRC-32."""

    name: str
    size: int
    crc32: int


def local_header(entry: ZipEntry, limit: int = ZIP64_LIMIT) -> bytes:
    """The local file header that precedes an entry's data (4.3.7)."""
    name = entry.name.encode("utf-8")
    zip64 = entry.size >= limit
    extra = struct.pack("<HHQQ", 1, 16, entry.size, entry.size) if zip64 else b""
    size = ZIP64_LIMIT if zip64 else entry.size
    return (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            _VERSION_ZIP64 if zip64 else _VERSION_PLAIN,
            _UTF8_NAMES,
            _STORED,
            _DOS_TIME,
            _DOS_DATE,
            entry.crc32,
            size,
            size,
            len(name),
            len(extra),
        )
        + name
        + extra
    )


def central_header(entry: ZipEntry, offset: int, limit: int = ZIP64_LIMIT) -> bytes:
    """The central directory header of an entry whose local header is at offset."""
    name = entry.name.encode("utf-8")
    big_size, big_offset = entry.size >= limit, offset >= limit
    fields = [entry.size, entry.size] if big_size else []
    fields += [offset] if big_offset else []
    extra = b""
    if fields:
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields)
    version = _VERSION_ZIP64 if fields else _VERSION_PLAIN
    size = ZIP64_LIMIT if big_size else entry.size
    return (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            version,
            version,
            _UTF8_NAMES,
            _STORED,
            _DOS_TIME,
            _DOS_DATE,
            entry.crc32,
            size,
            size,
            len(name),
            len(extra),
            0,
            0,
            0,
            0o100644 << 16,
            ZIP64_LIMIT if big_offset else offset,
        )
        + name
        + extra
    )


def end_records(
    count: int, directory_offset: int, directory_size: int, limit: int = ZIP64_LIMIT
) -> bytes:
    """The end of central directory record, with its ZIP64 forms if needed."""
    zip64 = (
        count >= min(limit, _COUNT_LIMIT)
        or directory_offset >= limit
        or directory_size >= limit
    )
    records = b""
    if zip64:
        end64_offset = directory_offset + directory_size
        records += struct.pack(
            "<IQHHIIQQQQ",
            0x06064B50,
            44,
            _VERSION_ZIP64,
            _VERSION_ZIP64,
            0,
            0,
            count,
            count,
            directory_size,
            directory_offset,
        )
        records += struct.pack("<IIQI", 0x07064B50, 0, end64_offset, 1)
    records += struct.pack(
        "<IHHHHIIH",
        0x06054B50,
        0,
        0,
        _COUNT_LIMIT if zip64 else count,
        _COUNT_LIMIT if zip64 else count,
        ZIP64_LIMIT if zip64 else directory_size,
        ZIP64_LIMIT if zip64 else directory_offset,
        0,
    )
    return records
