"""Header-only parse and structural check of one Part 10 instance (PS3.10 7).

The first step of ingest (ARCHITECTURE.md, "Ingest, the hot path"). One pass over
the element headers, seeking past values, checks that every declared length fits
inside the file and its enclosing item, at every nesting level and through
encapsulated Pixel Data, and records where each bulk value lies. pydicom then
reads the data set with the large values left unread; pydicom alone is lenient
about truncated or overrunning elements, which is why the pass comes first.
"""

from __future__ import annotations

import io
import itertools
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag, private_dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    MPEGTransferSyntaxes,
)

from archive.charset import TextReport, check_text, fix_dataset_text
from archive.errors import InvalidInstance, MissingAttribute
from archive.uids import check_uid, is_acceptable_uid

logger = logging.getLogger(__name__)

BULK_THRESHOLD_BYTES = 1024
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PREAMBLE_BYTES = 128
PREFIX = b"DICM"
MAX_NESTING = 64
UNDEFINED_LENGTH = 0xFFFFFFFF

ITEM = Tag("Item")
ITEM_DELIMITATION_ITEM = Tag("ItemDelimitationItem")
SEQUENCE_DELIMITATION_ITEM = Tag("SequenceDelimitationItem")
FILE_META_GROUP = 0x0002
TRANSFER_SYNTAX_UID = Tag("TransferSyntaxUID")
MEDIA_STORAGE_SOP_INSTANCE_UID = Tag("MediaStorageSOPInstanceUID")
SOP_CLASS_UID = Tag("SOPClassUID")
SOP_INSTANCE_UID = Tag("SOPInstanceUID")
STUDY_INSTANCE_UID = Tag("StudyInstanceUID")
SERIES_INSTANCE_UID = Tag("SeriesInstanceUID")
IDENTITY_TAGS = (
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    SERIES_INSTANCE_UID,
)
NUMBER_OF_FRAMES = Tag("NumberOfFrames")
EXTENDED_OFFSET_TABLE = Tag("ExtendedOffsetTable")
EXTENDED_OFFSET_TABLE_LENGTHS = Tag("ExtendedOffsetTableLengths")
PIXEL_DATA = Tag("PixelData")
PIXEL_DATA_TAGS = frozenset(
    {Tag("FloatPixelData"), Tag("DoubleFloatPixelData"), PIXEL_DATA}
)

# Explicit VRs with a reserved field and a 32-bit length (PS3.5 7.1.2)
_LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# First bytes of a compressed frame: JPEG and JPEG-LS SOI, JPEG 2000 SOC + SIZ,
# the JP2 signature box
_FRAME_STARTS = (b"\xff\xd8", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Span = tuple[int, int]
Frames = tuple[tuple[Span, ...], ...]


@dataclass(frozen=True)
class BulkElement:
    """Where a bulk value lies: ``path`` as tags and item indexes joined by '/'."""

    path: str
    vr: str
    offset: int
    length: int


@dataclass(frozen=True)
class ParsedInstance:
    """One Part 10 instance, parsed without its bulk values and checked.

    ``dataset`` holds every attribute with text decoded as :mod:`archive.charset`
    does; values in ``bulk`` at the top level are left unread (pydicom deferred
    elements). ``bulk`` lists every binary value over ``BULK_THRESHOLD_BYTES`` and
    any non-empty Pixel Data; its offsets are file offsets, except when
    ``offsets_valid`` is False (deflated transfer syntaxes), where they count in
    the inflated data set. ``frames`` gives, for encapsulated Pixel Data, the
    file spans of each frame's fragments; it is None for native Pixel Data, for
    video transfer syntaxes, and when frame boundaries cannot be found (logged).
    """

    dataset: Dataset
    file_meta: FileMetaDataset
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    size: int
    offsets_valid: bool
    bulk: tuple[BulkElement, ...]
    frames: Frames | None
    text: TextReport = field(default_factory=TextReport)
    # Where the data set starts, after the file meta information.
    data_set_offset: int = 0


def parse_instance(
    fp: BinaryIO, size: int, *, fallback_charset: str | None = None
) -> ParsedInstance:
    """Parse and check the Part 10 instance held by the ``size`` bytes of ``fp``.

    ``fp`` must be seekable and at offset 0. ``fallback_charset`` is the
    Specific Character Set term to decode text with when the instance declares
    none yet holds bytes beyond ASCII that are not UTF-8, or declares ISO_IR 192
    and holds bytes that are not UTF-8 (``ParsedInstance.text`` tells).

    Raises
    ------
    InvalidInstance
        The bytes are not a complete, well-formed Part 10 instance.
    MissingAttribute
        SOP Class, SOP Instance, Study or Series Instance UID is absent or empty.
    InvalidUID
        One of those four is not a UID.
    """
    if size < PREAMBLE_BYTES + len(PREFIX):
        raise InvalidInstance(
            f"The file holds {size} bytes, too few for the 128-byte preamble and "
            "'DICM' prefix of a DICOM Part 10 file"
        )
    fp.seek(0)
    _check_prefix(fp.read(PREAMBLE_BYTES + len(PREFIX)))
    meta = _read_file_meta(fp, size)
    transfer_syntax_uid = _transfer_syntax(meta)
    walk = _walk_data_set(fp, size, meta.data_set_offset, transfer_syntax_uid)
    ds = _read_dataset(fp, walk)

    sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid = (
        _identity_uid(ds, tag) for tag in IDENTITY_TAGS
    )
    stored_uid = _strip_uid(meta.values.get(MEDIA_STORAGE_SOP_INSTANCE_UID))
    if stored_uid and stored_uid != sop_instance_uid:
        # PS3.10 7.1 wants them equal, but devices get it wrong; the data set's
        # SOP Instance UID is the one every service keys on.
        logger.warning(
            "File meta MediaStorageSOPInstanceUID differs from the data set's "
            "SOPInstanceUID; the data set's is used"
        )

    text = check_text(ds, fallback_charset)
    fix_dataset_text(ds, fallback=fallback_charset, mislabelled=text.mislabelled)
    frames = _frames(fp, ds, walk, transfer_syntax_uid)
    logger.debug(
        "Parsed instance %s: %d bytes, %d bulk values",
        sop_instance_uid,
        size,
        len(walk.bulk),
    )
    return ParsedInstance(
        dataset=ds,
        file_meta=ds.file_meta,
        transfer_syntax_uid=transfer_syntax_uid,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        size=size,
        offsets_valid=not walk.deflated,
        bulk=tuple(walk.bulk),
        frames=frames,
        text=text,
        data_set_offset=meta.data_set_offset,
    )


def _check_prefix(head: bytes) -> None:
    if head[PREAMBLE_BYTES:] == PREFIX:
        return
    if head.startswith(_PNG_SIGNATURE):
        found = "it is a PNG image"
    elif head.startswith(PREFIX):
        found = "it starts with 'DICM' but lacks the 128-byte preamble"
    else:
        found = f"bytes 128-131 are {head[PREAMBLE_BYTES:]!r}"
    raise InvalidInstance(
        f"Not a DICOM Part 10 file: {found}; expected a 128-byte preamble then "
        "'DICM' (PS3.10 7.1)"
    )


@dataclass(frozen=True)
class _FileMeta:
    values: dict[int, bytes]
    data_set_offset: int


def _read_file_meta(fp: BinaryIO, size: int) -> _FileMeta:
    offset = PREAMBLE_BYTES + len(PREFIX)
    values: dict[int, bytes] = {}
    while offset + 8 <= size:
        fp.seek(offset)
        header = fp.read(8)
        group, element, vr_bytes, short_length = struct.unpack("<HH2sH", header)
        if group != FILE_META_GROUP:
            break
        tag = group << 16 | element
        vr = vr_bytes.decode("latin_1")
        length, value_offset = short_length, offset + 8
        if vr in _LONG_LENGTH_VRS:
            length = struct.unpack("<I", _read(fp, offset + 8, 4, size, tag))[0]
            value_offset += 4
        elif not vr_bytes.isalpha():
            raise InvalidInstance(
                f"File meta element {_name(tag)} has VR {vr_bytes!r}; File Meta "
                "Information is Explicit VR Little Endian (PS3.10 7.1)"
            )
        if length == UNDEFINED_LENGTH:
            raise InvalidInstance(f"File meta element {_name(tag)} has no length")
        if tag in (TRANSFER_SYNTAX_UID, MEDIA_STORAGE_SOP_INSTANCE_UID):
            values[tag] = _read(fp, value_offset, length, size, tag)
        elif value_offset + length > size:
            raise _truncated(tag, value_offset, length, size)
        offset = value_offset + length
    if offset == PREAMBLE_BYTES + len(PREFIX):
        raise InvalidInstance(
            "No File Meta Information (group 0002) follows 'DICM'; a Part 10 file "
            "needs it (PS3.10 7.1)"
        )
    return _FileMeta(values, offset)


def _transfer_syntax(meta: _FileMeta) -> str:
    uid = _strip_uid(meta.values.get(TRANSFER_SYNTAX_UID))
    if not uid:
        raise InvalidInstance(
            "File Meta Information has no TransferSyntaxUID (0002,0010), so the "
            "data set cannot be read (PS3.10 7.1)"
        )
    if not is_acceptable_uid(uid):
        raise InvalidInstance(f"TransferSyntaxUID {uid!r} is not a UID (PS3.5 9.1)")
    return uid


def _strip_uid(value: bytes | None) -> str:
    return "" if value is None else value.decode("latin_1").rstrip("\0 ")


@dataclass(frozen=True)
class _PixelElement:
    """The first top-level pixel data element, where pydicom stops reading."""

    tag: int
    vr: str | None
    length: int
    value_offset: int
    end: int


@dataclass
class _Walk:
    """What the structural pass found."""

    deflated: bool
    implicit: bool
    little: bool
    size: int
    bulk: list[BulkElement]
    pixel_element: _PixelElement | None
    # (value offset, length) of the Basic Offset Table and of each fragment
    pixel_items: list[Span] | None
    tables: dict[int, bytes]


# Deflate reaches ratios of 1000:1; a small upload must not cost gigabytes.
MAX_INFLATED_BYTES = 128 * 1024 * 1024


def _walk_data_set(fp: BinaryIO, size: int, offset: int, uid: str) -> _Walk:
    deflated = uid == DeflatedExplicitVRLittleEndian
    source, end, start = fp, size, offset
    if deflated:
        fp.seek(offset)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            # One byte over the cap is enough to tell a deflate bomb.
            data = inflater.decompress(fp.read(size - offset), MAX_INFLATED_BYTES + 1)
        except zlib.error as error:
            raise InvalidInstance(
                f"The deflated data set does not inflate: {error}"
            ) from error
        if len(data) > MAX_INFLATED_BYTES:
            raise InvalidInstance(
                f"The deflated data set inflates beyond {MAX_INFLATED_BYTES} bytes; "
                "send it uncompressed or in another transfer syntax"
            )
        if not inflater.eof:
            raise InvalidInstance(
                "The deflated data set ends before its deflate stream does; the "
                "file is truncated"
            )
        source, end, start = io.BytesIO(data), len(data), 0
    little = uid != ExplicitVRBigEndian
    walker = _Walker(source, end, little)
    walker.data_set(start, end, uid == ImplicitVRLittleEndian, "", 0)
    return _Walk(
        deflated=deflated,
        implicit=walker.implicit,
        little=little,
        size=end,
        bulk=walker.bulk,
        pixel_element=walker.pixel_element,
        pixel_items=walker.pixel_items,
        tables=walker.tables,
    )


class _Walker:
    """Reads element headers, seeking past values, and raises on bad framing."""

    def __init__(self, fp: BinaryIO, size: int, little: bool) -> None:
        self._fp = fp
        self._size = size
        endian = "<" if little else ">"
        self._tag_length = struct.Struct(f"{endian}HHI")
        self._explicit = struct.Struct(f"{endian}HH2sH")
        self._long = struct.Struct(f"{endian}I")
        self.implicit = False
        self.bulk: list[BulkElement] = []
        self.pixel_element: _PixelElement | None = None
        self.pixel_items: list[Span] | None = None
        self.tables: dict[int, bytes] = {}

    def data_set(
        self, offset: int, end: int | None, implicit: bool, prefix: str, depth: int
    ) -> int:
        """Walk elements to ``end``, or to an Item Delimitation Item when None."""
        if depth > MAX_NESTING:
            raise InvalidInstance(
                f"Sequences nest deeper than {MAX_NESTING} levels at offset {offset}"
            )
        limit = self._size if end is None else end
        found = self._looks_implicit(offset, limit, implicit, depth)
        if depth == 0 and found != implicit:
            # A reader trusts the transfer syntax: such a file cannot be served.
            raise InvalidInstance(
                "The data set is encoded in "
                f"{'implicit' if found else 'explicit'} VR but its transfer syntax "
                f"declares {'implicit' if implicit else 'explicit'} VR (PS3.5 7.1)"
            )
        implicit = found
        if depth == 0:
            self.implicit = implicit
        creators: dict[int, str] = {}
        while end is None or offset < end:
            header = self._header(offset, limit, end is None)
            group, element, length = self._tag_length.unpack(header)
            tag = group << 16 | element
            if tag == ITEM_DELIMITATION_ITEM and (end is None or offset + 8 == end):
                return offset + 8
            if tag >> 16 == 0xFFFE:
                raise InvalidInstance(
                    f"Unexpected {_name(tag)} at offset {offset} inside a data set"
                )
            vr, value_offset = None, offset + 8
            if not implicit:
                vr, length = self._explicit_vr(header, offset, limit, tag)
                value_offset += 4 if vr in _LONG_LENGTH_VRS else 0
            path = f"{prefix}{tag:08X}"
            if length == UNDEFINED_LENGTH:
                offset = self._undefined(tag, vr, value_offset, implicit, path, depth)
            elif value_offset + length > limit:
                raise self._overrun(tag, value_offset, length, limit)
            else:
                offset = self._defined(
                    tag, vr, length, value_offset, implicit, path, depth, creators
                )
            if depth == 0 and tag in PIXEL_DATA_TAGS and self.pixel_element is None:
                self.pixel_element = _PixelElement(
                    tag, vr, length, value_offset, offset
                )
        if end is None:
            raise InvalidInstance(
                "The file ends inside a sequence item of undefined length; it is "
                "truncated"
            )
        return offset

    def _defined(
        self,
        tag: int,
        vr: str | None,
        length: int,
        value_offset: int,
        implicit: bool,
        path: str,
        depth: int,
        creators: dict[int, str],
    ) -> int:
        """Check one element of defined length; return the offset after it."""
        group, element = tag >> 16, tag & 0xFFFF
        resolved = self._vr(tag, vr, length, creators, depth)
        if resolved == "SQ":
            # PS3.5 6.2.2: a sequence encoded as UN holds implicit VR items
            items_implicit = implicit or vr == "UN"
            self._sequence(value_offset, length, items_implicit, path, depth)
        elif (tag in PIXEL_DATA_TAGS and length) or (
            length > BULK_THRESHOLD_BYTES and resolved in BULK_VRS
        ):
            self.bulk.append(BulkElement(path, resolved, value_offset, length))
        if group & 1 and 0x10 <= element <= 0xFF:
            creators[tag] = self._text(value_offset, length)
        elif depth == 0 and tag in (
            EXTENDED_OFFSET_TABLE,
            EXTENDED_OFFSET_TABLE_LENGTHS,
        ):
            self.tables[tag] = self._read(value_offset, length)
        return value_offset + length

    def _looks_implicit(
        self, offset: int, limit: int, implicit: bool, depth: int
    ) -> bool:
        # Some writers encode sequence items in the other VR encoding; pydicom
        # reads them, so the walk follows the same guess below the top level.
        if offset + 6 > limit or (implicit and depth):
            return implicit
        vr = self._read(offset + 4, 2)
        return not (vr.isalpha() and vr.isupper())

    def _explicit_vr(
        self, header: bytes, offset: int, limit: int, tag: int
    ) -> tuple[str, int]:
        vr_bytes, length = self._explicit.unpack(header)[2:]
        if not (vr_bytes.isalpha() and vr_bytes.isupper()):
            raise InvalidInstance(
                f"Element {_name(tag)} at offset {offset} has VR {vr_bytes!r}, not "
                "two capital letters; the data set is malformed"
            )
        vr = vr_bytes.decode("ascii")
        if vr in _LONG_LENGTH_VRS:
            long_length = self._header(offset + 8, limit, False, 4)
            length = self._long.unpack(long_length)[0]
        return vr, int(length)

    def _undefined(
        self,
        tag: int,
        vr: str | None,
        offset: int,
        implicit: bool,
        path: str,
        depth: int,
    ) -> int:
        if vr in ("SQ", "UN"):
            return self._sequence(offset, None, implicit or vr == "UN", path, depth)
        resolved = vr or self._vr(tag, vr, UNDEFINED_LENGTH, {}, depth)
        if resolved in ("OB", "OW"):
            return self._fragments(tag, resolved, offset, path, depth)
        if vr is None and resolved in ("SQ", "UN"):
            return self._sequence(offset, None, implicit, path, depth)
        raise InvalidInstance(
            f"Element {_name(tag)} with VR {vr} has undefined length, which only "
            "SQ, UN and encapsulated OB may have (PS3.5 7.1)"
        )

    def _sequence(
        self, offset: int, length: int | None, implicit: bool, path: str, depth: int
    ) -> int:
        end = None if length is None else offset + length
        limit = self._size if end is None else end
        index = 0
        while end is None or offset < end:
            header = self._header(offset, limit, end is None)
            group, element, item_length = self._tag_length.unpack(header)
            tag = group << 16 | element
            if tag == SEQUENCE_DELIMITATION_ITEM and end is None:
                return offset + 8
            if tag != ITEM:
                raise InvalidInstance(
                    f"Sequence {path} holds {_name(tag)} at offset {offset} where "
                    "an Item (FFFE,E000) belongs; the data set is malformed"
                )
            prefix = f"{path}/{index}/"
            if item_length == UNDEFINED_LENGTH:
                offset = self.data_set(offset + 8, None, implicit, prefix, depth + 1)
            else:
                item_end = offset + 8 + item_length
                if item_end > limit:
                    raise self._overrun(ITEM, offset + 8, item_length, limit)
                self.data_set(offset + 8, item_end, implicit, prefix, depth + 1)
                offset = item_end
            index += 1
        return offset

    def _fragments(self, tag: int, vr: str, offset: int, path: str, depth: int) -> int:
        position = offset
        items: list[Span] = []
        while True:
            header = self._header(position, self._size, True)
            group, element, length = self._tag_length.unpack(header)
            item_tag = group << 16 | element
            if item_tag == SEQUENCE_DELIMITATION_ITEM:
                break
            if item_tag != ITEM or length == UNDEFINED_LENGTH:
                raise InvalidInstance(
                    f"Encapsulated {_name(tag)} holds {_name(item_tag)} at offset "
                    f"{position} where an Item of defined length belongs "
                    "(PS3.5 A.4)"
                )
            if position + 8 + length > self._size:
                raise self._overrun(ITEM, position + 8, length, self._size)
            items.append((position + 8, length))
            position += 8 + length
        self.bulk.append(BulkElement(path, vr, offset, position - offset))
        if depth == 0 and tag == PIXEL_DATA:
            self.pixel_items = items
        return position + 8

    @staticmethod
    def _vr(
        tag: int, vr: str | None, length: int, creators: dict[int, str], depth: int
    ) -> str:
        """The VR pydicom gives the element (pydicom.hooks.raw_element_vr)."""
        if vr is not None and vr != "UN":
            return vr
        group, element = tag >> 16, tag & 0xFFFF
        found: str | None = None
        if group & 1:
            creator = creators.get(tag & 0xFFFF0000 | element >> 8)
            if 0x10 <= element <= 0xFF:
                found = "LO"
            elif creator:
                found = _private_vr(tag, creator)
        elif vr is None or depth == 0 or length < 0xFFFF:
            # pydicom keeps UN on a standard element of 64 KiB or more that it
            # has read, and it reads every value inside a sequence.
            found = _standard_vr(tag)
        if found is None:
            return "UN"
        return settled_vr(found, tag, length == UNDEFINED_LENGTH)

    def _header(
        self, offset: int, limit: int, to_delimiter: bool, count: int = 8
    ) -> bytes:
        if offset + count > limit:
            if to_delimiter or limit == self._size:
                raise InvalidInstance(
                    f"The file ends at offset {self._size} before the element or "
                    f"delimiter expected at offset {offset}; it is truncated"
                )
            raise InvalidInstance(
                f"An element header at offset {offset} runs past the end of its "
                f"enclosing item or sequence at offset {limit}; the data set is "
                "malformed"
            )
        return self._read(offset, count)

    def _read(self, offset: int, count: int) -> bytes:
        self._fp.seek(offset)
        data = self._fp.read(count)
        if len(data) != count:
            raise InvalidInstance(
                f"The file ends at offset {offset + len(data)}, before the "
                f"{self._size} bytes it was said to hold; it is truncated"
            )
        return data

    def _text(self, offset: int, length: int) -> str:
        return self._read(offset, length).decode("latin_1").strip(" \0")

    def _overrun(
        self, tag: int, offset: int, length: int, limit: int
    ) -> InvalidInstance:
        if limit == self._size:
            return _truncated(tag, offset, length, limit)
        return InvalidInstance(
            f"{_name(tag)} declares {length} bytes at offset {offset}, past the end "
            f"of its enclosing item or sequence at offset {limit}; the data set is "
            "malformed"
        )


def _truncated(tag: int, offset: int, length: int, size: int) -> InvalidInstance:
    return InvalidInstance(
        f"{_name(tag)} declares {length} bytes at offset {offset} but the file ends "
        f"at offset {size}; the file is truncated or the length is corrupt"
    )


def _read(fp: BinaryIO, offset: int, length: int, size: int, tag: int) -> bytes:
    fp.seek(offset)
    data = fp.read(length) if offset + length <= size else b""
    if len(data) != length:
        raise _truncated(tag, offset, length, min(size, offset + len(data)))
    return data


def settled_vr(vr: str, tag: int, undefined_length: bool) -> str:
    """An ambiguous dictionary VR ('OB or OW') as pydicom settles it unread.

    Encapsulated Pixel Data is OB (PS3.5 A.4); otherwise an OB or OW value is OW,
    as Implicit VR Little Endian encodes it (PS3.5 A.1).
    """
    if " or " not in vr:
        return vr
    if tag == PIXEL_DATA and undefined_length:
        return "OB"
    return "OW" if "OW" in vr else vr.split(" or ")[0]


def _standard_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UL" if tag & 0xFFFF == 0 else None


def _private_vr(tag: int, creator: str) -> str | None:
    try:
        return str(private_dictionary_VR(tag, creator))
    except KeyError:
        return None


def _label(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _name(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    return f"{keyword} {_label(tag)}" if keyword else f"element {_label(tag)}"


def _read_dataset(fp: BinaryIO, walk: _Walk) -> Dataset:
    fp.seek(0)
    try:
        if walk.deflated:
            # Deflated values cannot be read later at a file offset: read them all.
            return dcmread(fp)
        pixels = walk.pixel_element
        ds = dcmread(
            fp, defer_size=BULK_THRESHOLD_BYTES, stop_before_pixels=pixels is not None
        )
        if pixels is not None:
            _add_pixel_data_and_after(fp, ds, pixels, walk)
    except Exception as error:
        # pydicom reports malformed input through many exception types.
        raise InvalidInstance(f"pydicom cannot read the data set: {error}") from error
    bulk_paths = {element.path for element in walk.bulk}
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if not isinstance(elem, RawDataElement) or elem.value is not None:
            continue
        if f"{tag:08X}" not in bulk_paths:
            # Large text, numbers or sequences: read now, while the file is open.
            fp.seek(elem.value_tell)
            ds[tag] = elem._replace(value=fp.read(elem.length))
    return ds


def _add_pixel_data_and_after(
    fp: BinaryIO, ds: Dataset, pixels: _PixelElement, walk: _Walk
) -> None:
    """Add the unread pixel data element where pydicom stopped, then the rest.

    pydicom would otherwise scan all of encapsulated Pixel Data for its end.
    """
    ds[pixels.tag] = RawDataElement(
        Tag(pixels.tag),
        pixels.vr,
        pixels.length,
        None if pixels.length else b"",
        pixels.value_offset,
        walk.implicit,
        walk.little,
    )
    if pixels.end == walk.size:
        return
    fp.seek(pixels.end)
    rest = read_dataset(
        fp,
        walk.implicit,
        walk.little,
        defer_size=BULK_THRESHOLD_BYTES,
        parent_encoding=ds.original_character_set,
    )
    bulk_paths = {element.path for element in walk.bulk}
    for tag in list(rest.keys()):
        elem = rest.get_item(tag, keep_deferred=True)
        if (
            isinstance(elem, RawDataElement)
            and elem.value is None
            and Tag(tag).is_private
            and f"{tag:08X}" not in bulk_paths
        ):
            # pydicom converts a private element as it is set: it needs the value.
            fp.seek(elem.value_tell)
            elem = elem._replace(value=fp.read(elem.length))
        ds[tag] = elem


def _identity_uid(ds: Dataset, tag: int) -> str:
    elem = ds.get_item(tag)
    keyword = keyword_for_tag(tag)
    if elem is None:
        raise MissingAttribute(
            f"The data set has no {keyword} {_label(tag)}; every stored instance "
            "needs one"
        )
    value = elem.value
    if isinstance(value, bytes):
        text = value.decode("latin_1")
    else:
        text = "" if value is None else str(value)
    text = text.rstrip("\0 ")
    if not text:
        raise MissingAttribute(f"{keyword} is empty; every stored instance needs one")
    return check_uid(text, keyword)


def _frames(fp: BinaryIO, ds: Dataset, walk: _Walk, uid: str) -> Frames | None:
    if walk.pixel_items is None or walk.deflated or uid in MPEGTransferSyntaxes:
        return None
    fragments = walk.pixel_items[1:]
    if not fragments:
        raise InvalidInstance("Encapsulated Pixel Data holds no fragments (PS3.5 A.4)")
    count = _number_of_frames(ds)
    if len(fragments) < count:
        raise InvalidInstance(
            f"Encapsulated Pixel Data holds {len(fragments)} fragments for "
            f"{count} frames; every frame needs at least one (PS3.5 A.4)"
        )
    by_table = _frames_by_table(fp, walk, fragments, count)
    if by_table is not None:
        return by_table
    if count == 1:
        return (tuple(fragments),)
    if len(fragments) == count:
        return tuple((fragment,) for fragment in fragments)
    starts = [_starts_frame(fp, fragment) for fragment in fragments]
    if starts[0] and sum(starts) == count:
        bounds = [index for index, start in enumerate(starts) if start]
        bounds.append(len(fragments))
        return tuple(
            tuple(fragments[start:stop]) for start, stop in itertools.pairwise(bounds)
        )
    logger.warning(
        "Frame boundaries not found: %d fragments for %d frames, no offset table",
        len(fragments),
        count,
    )
    return None


def _number_of_frames(ds: Dataset) -> int:
    elem = ds.get_item(NUMBER_OF_FRAMES)
    if elem is None or not elem.value:
        return 1
    value = elem.value
    text = value.decode("latin_1") if isinstance(value, bytes) else str(value)
    try:
        count = int(text.strip(" \0"))
    except ValueError:
        count = 0
    if count < 1:
        raise InvalidInstance(
            f"NumberOfFrames is {text!r}, not a positive integer, so the frames of "
            "the encapsulated Pixel Data cannot be found"
        )
    return count


def _frames_by_table(
    fp: BinaryIO, walk: _Walk, fragments: list[Span], count: int
) -> Frames | None:
    assert walk.pixel_items is not None
    offsets: tuple[int, ...] = ()
    lengths: tuple[int, ...] = ()
    eot = walk.tables.get(EXTENDED_OFFSET_TABLE)
    eot_lengths = walk.tables.get(EXTENDED_OFFSET_TABLE_LENGTHS)
    if eot and eot_lengths and len(eot) % 8 == 0 and len(eot) == len(eot_lengths):
        offsets = struct.unpack(f"<{len(eot) // 8}Q", eot)
        lengths = struct.unpack(f"<{len(eot) // 8}Q", eot_lengths)
    else:
        table_offset, table_length = walk.pixel_items[0]
        if not table_length:
            return None
        if table_length % 4 == 0:
            fp.seek(table_offset)
            offsets = struct.unpack(f"<{table_length // 4}I", fp.read(table_length))
    base = fragments[0][0]
    index = {offset - base: number for number, (offset, _) in enumerate(fragments)}
    usable = (
        len(offsets) == count
        and offsets[0] == 0
        and all(offset in index for offset in offsets)
        and all(a < b for a, b in itertools.pairwise(offsets))
    )
    if not usable:
        logger.warning("Ignoring an offset table that does not match the fragments")
        return None
    bounds = [index[offset] for offset in offsets] + [len(fragments)]
    frames = [fragments[start:stop] for start, stop in itertools.pairwise(bounds)]
    for number, length in enumerate(lengths):
        # The Extended Offset Table gives each frame's length without padding.
        if len(frames[number]) == 1 and length <= frames[number][0][1]:
            frames[number] = [(frames[number][0][0], length)]
    return tuple(tuple(frame) for frame in frames)


def _starts_frame(fp: BinaryIO, fragment: Span) -> bool:
    offset, length = fragment
    fp.seek(offset)
    head = fp.read(min(length, 8))
    return head.startswith(_FRAME_STARTS)
