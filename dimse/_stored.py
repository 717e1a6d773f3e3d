"""A stored Part 10 instance as a Dataset whose elements stay as they were encoded.

C-MOVE and C-GET sub-operations (PS3.4 C.4.2.3, C.4.3.3) re-send what was
stored. pynetdicom writes the data set it is given; a data set made of raw
elements is written back byte for byte when the negotiated transfer syntax is
the stored one, and converted by pydicom only when the peer accepted another
uncompressed one.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import BinaryIO, cast

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from dimse.errors import UnreadableDataSet

PREAMBLE_BYTES = 128
_PREFIX = b"DICM"
_META_GROUP = 0x0002
_SEQUENCE_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SEQUENCE_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
_UNDEFINED_LENGTH = 0xFFFFFFFF
# PS3.5 7.1.2: these VRs have a 2-byte reserved field and a 4-byte length.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
    | {b"UT", b"UV"}
)


def split_part10(part10: bytes) -> tuple[FileMetaDataset, int]:
    """Read the File Meta Information (PS3.10 7.1); return it and where it ends."""
    if part10[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] != _PREFIX:
        raise UnreadableDataSet("The stored object has no DICM prefix after 128 bytes")
    fp = io.BytesIO(part10)
    fp.seek(PREAMBLE_BYTES + 4)
    meta = FileMetaDataset()
    elements = data_element_generator(
        fp, False, True, stop_when=lambda tag, vr, length: tag.group != _META_GROUP
    )
    for element in elements:
        meta[element.tag] = element
    return meta, fp.tell()


def _header(raw: bytes, implicit: bool, little: bool) -> tuple[str | None, int, int]:
    """VR, header size and length field of one encoded element (PS3.5 7.1)."""
    order = "<" if little else ">"
    if implicit:
        return None, 8, int(struct.unpack(order + "L", raw[4:8])[0])
    vr = raw[4:6]
    if vr in _LONG_VRS:
        return vr.decode("ascii"), 12, int(struct.unpack(order + "L", raw[8:12])[0])
    return vr.decode("ascii"), 8, int(struct.unpack(order + "H", raw[6:8])[0])


def _raw_elements(body: bytes, implicit: bool, little: bool) -> list[RawDataElement]:
    delimiter = _SEQUENCE_DELIMITER_LE if little else _SEQUENCE_DELIMITER_BE
    fp = DicomBytesIO(body)
    fp.is_little_endian, fp.is_implicit_VR = little, implicit
    found: list[RawDataElement] = []
    start = 0
    for element in data_element_generator(cast(BinaryIO, fp), implicit, little):
        end = fp.tell()
        encoded = body[start:end]
        vr, header, length = _header(encoded, implicit, little)
        value = encoded[header:]
        if length == _UNDEFINED_LENGTH:
            if not value.endswith(delimiter):
                raise UnreadableDataSet(
                    f"Element {element.tag} of undefined length does not end with "
                    "a Sequence Delimitation Item"
                )
            value = value[: -len(delimiter)]
        tag: BaseTag = Tag(element.tag)
        found.append(RawDataElement(tag, vr, length, value, start, implicit, little))
        start = end
    if start != len(body) and body[start:].strip(b"\x00"):
        raise UnreadableDataSet(
            f"The stored data set has {len(body) - start} bytes after its last element"
        )
    return found


def stored_dataset(part10: bytes) -> Dataset:
    """The stored instance as a Dataset of raw elements, with its file meta."""
    meta, offset = split_part10(part10)
    syntax = UID(str(meta.get("TransferSyntaxUID", "")))
    if not syntax.is_transfer_syntax:
        raise UnreadableDataSet(
            f"The stored transfer syntax {str(syntax)!r} is unknown"
        )
    body = part10[offset:]
    if syntax.is_deflated:
        body = zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
    implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    ds = Dataset()
    try:
        for element in _raw_elements(body, implicit, little):
            ds[element.tag] = element
    except (EOFError, OSError, struct.error, ValueError, NotImplementedError) as error:
        raise UnreadableDataSet(
            f"The stored data set cannot be read: {error}"
        ) from None
    ds.file_meta = meta
    ds.set_original_encoding(implicit, little, ds._character_set)
    return ds
