"""Header-only parse of Part 10 instances: refusals, bulk spans, frames, speed."""

from __future__ import annotations

import io
import statistics
import struct
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from archive.errors import ArchiveError, InvalidInstance, InvalidUID, MissingAttribute
from archive.parse import (
    BULK_THRESHOLD_BYTES,
    BULK_VRS,
    ParsedInstance,
    parse_instance,
)
from tests.factory import make_ct, new_uid, part10

TESTS_DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
PREAMBLE_AND_PREFIX = 132
PIXEL_DATA_PATH = "7FE00010"

# What parse_instance raises for each file that it refuses; every other corpus
# file parses. broken/ct_bad_file_meta.dcm only lacks MediaStorageSOPClassUID.
REFUSED: dict[str, type[ArchiveError]] = {
    "broken/ct_no_preamble_no_file_meta.dcm": InvalidInstance,
    "broken/gen_malformed_element_length_ct.dcm": InvalidInstance,
    "broken/gen_missing_sopinstanceuid_ct.dcm": MissingAttribute,
    "broken/gen_no_preamble_dicm_prefix_ct.dcm": InvalidInstance,
    "broken/gen_not_dicom_png.dcm": InvalidInstance,
    "broken/gen_truncated_mid_dataset_ct.dcm": InvalidInstance,
    "broken/meta_missing_transfer_syntax.dcm": InvalidInstance,
    "broken/mr_truncated_pixeldata.dcm": InvalidInstance,
    # Well-formed, but not storable: no SOP Class, Study or Series Instance UID
    "charset/sequence_with_different_charset.dcm": MissingAttribute,
    "dicomdir/DICOMDIR_implicit_vr_standalone": MissingAttribute,
    "dicomdir/fileset/DICOMDIR": MissingAttribute,
    "transfer_syntax/ts_htj2k_lossy_rgb_sc.dcm": MissingAttribute,
    "transfer_syntax/ts_jpeg_ls_near_lossless_16bit.dcm": MissingAttribute,
    "vr_private/nested_private_sq_implicit.dcm": MissingAttribute,
    "vr_private/private_sq_implicit_no_meta.dcm": MissingAttribute,
    "vr_private/un_vr_sequence.dcm": MissingAttribute,
}


def instance_files() -> list[tuple[str, Path]]:
    """(label, file) of tests/data, then of the corpus when present."""
    found = []
    for label, base in (("data", TESTS_DATA), ("corpus", CORPUS)):
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and path.name not in ("NOTICE", "MANIFEST.md"):
                    found.append((f"{label}:{path.relative_to(base)}", path))
    return found


FILES = instance_files()
FILE_IDS = [label for label, _ in FILES]


def relative(label: str) -> str:
    """The corpus path of a labelled file."""
    return label.split(":", 1)[1]


def parse_file(path: Path) -> ParsedInstance:
    """parse_instance on a file as ingest hands it over."""
    with path.open("rb") as fp:
        return parse_instance(fp, path.stat().st_size)


def parse_bytes(data: bytes) -> ParsedInstance:
    """parse_instance on bytes held in memory."""
    return parse_instance(io.BytesIO(data), len(data))


def read_full(path: Path) -> Dataset:
    """The whole data set as pydicom reads it, every value converted."""
    with warnings.catch_warnings():
        # The reference read only: pydicom warns about values it finds invalid.
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        for elem in ds.iterall():
            assert elem.VR
    return ds


STORED = [(label, path) for label, path in FILES if relative(label) not in REFUSED]
STORED_IDS = [label for label, _ in STORED]


def value_at(ds: Dataset, path: str) -> Any:
    """The pydicom element at a bulk path."""
    parts = path.split("/")
    for index in range(0, len(parts) - 1, 2):
        ds = ds[int(parts[index], 16)].value[int(parts[index + 1])]
    return ds[int(parts[-1], 16)]


def binary_paths(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, str, bytes]]:
    """(path, VR, value) of every binary value pydicom reads, at any depth."""
    for elem in ds:
        path = f"{prefix}{elem.tag:08X}"
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                yield from binary_paths(item, f"{path}/{index}/")
        elif elem.VR in BULK_VRS:
            yield path, elem.VR, elem.value or b""


def data_set_bytes(path: Path, parsed: ParsedInstance) -> bytes:
    """The bytes bulk offsets count in: the file, or the inflated data set."""
    data = path.read_bytes()
    if parsed.offsets_valid:
        return data
    meta_length = parsed.file_meta.FileMetaInformationGroupLength
    return zlib.decompress(data[PREAMBLE_AND_PREFIX + 12 + meta_length :], -15)


@pytest.mark.parametrize(("label", "path"), FILES, ids=FILE_IDS)
def test_corpus_file_parses_or_is_refused_as_expected(label: str, path: Path) -> None:
    expected = REFUSED.get(relative(label))
    if expected is not None:
        with pytest.raises(ArchiveError) as raised:
            parse_file(path)
        assert type(raised.value) is expected, raised.value
        return

    parsed = parse_file(path)
    full = read_full(path)

    assert parsed.size == path.stat().st_size
    assert parsed.transfer_syntax_uid == full.file_meta.TransferSyntaxUID
    assert parsed.sop_class_uid == full.SOPClassUID
    assert parsed.sop_instance_uid == full.SOPInstanceUID
    assert parsed.study_instance_uid == full.StudyInstanceUID
    assert parsed.series_instance_uid == full.SeriesInstanceUID
    assert parsed.offsets_valid == (
        full.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian
    )


def test_every_broken_file_but_the_bad_file_meta_one_is_refused() -> None:
    broken = [label for label, _ in FILES if relative(label).startswith("broken/")]
    if not broken:
        pytest.skip("no broken/ files in tests/data or the corpus")
    for label in broken:
        if relative(label) == "broken/ct_bad_file_meta.dcm":
            assert relative(label) not in REFUSED
        else:
            assert issubclass(REFUSED[relative(label)], InvalidInstance), label


@pytest.mark.parametrize(("label", "path"), STORED, ids=STORED_IDS)
def test_bulk_spans_hold_exactly_the_bytes_pydicom_reads(
    label: str, path: Path
) -> None:
    parsed = parse_file(path)
    full = read_full(path)
    data = data_set_bytes(path, parsed)

    for bulk in parsed.bulk:
        elem = value_at(full, bulk.path)
        assert data[bulk.offset : bulk.offset + bulk.length] == elem.value, bulk
        assert bulk.vr == elem.VR, bulk


@pytest.mark.parametrize(("label", "path"), STORED, ids=STORED_IDS)
def test_bulk_lists_every_large_binary_value_and_pixel_data(
    label: str, path: Path
) -> None:
    parsed = parse_file(path)
    expected = {
        path
        for path, _, value in binary_paths(read_full(path))
        if len(value) > BULK_THRESHOLD_BYTES
        or (path.endswith(PIXEL_DATA_PATH) and value)
    }

    assert {bulk.path for bulk in parsed.bulk} == expected


@pytest.mark.parametrize(("label", "path"), STORED, ids=STORED_IDS)
def test_top_level_bulk_values_are_left_unread(label: str, path: Path) -> None:
    parsed = parse_file(path)

    for bulk in parsed.bulk:
        if "/" in bulk.path:
            continue
        elem = parsed.dataset.get_item(int(bulk.path, 16), keep_deferred=True)
        if not parsed.offsets_valid:
            # A deflated data set is read whole: nothing can be read later.
            assert elem.value is not None
        elif bulk.length > BULK_THRESHOLD_BYTES:
            assert isinstance(elem, RawDataElement)
            assert elem.value is None


@pytest.mark.parametrize(("label", "path"), STORED, ids=STORED_IDS)
def test_frames_reassemble_to_pydicom_frames(label: str, path: Path) -> None:
    parsed = parse_file(path)
    full = read_full(path)
    if parsed.frames is None:
        assert not full.file_meta.TransferSyntaxUID.is_encapsulated
        return
    count = int(full.get("NumberOfFrames") or 1)
    data = path.read_bytes()

    ours = [
        b"".join(data[start : start + size] for start, size in frame)
        for frame in parsed.frames
    ]

    assert ours == list(generate_frames(full.PixelData, number_of_frames=count))


def test_multiframe_jpeg_files_have_one_span_list_per_frame() -> None:
    multiframe = [
        (label, path)
        for label, path in STORED
        if "multiframe" in label and "jpeg" in label
    ]
    if not multiframe:
        pytest.skip("no multi-frame JPEG file in tests/data or the corpus")
    for _, path in multiframe:
        parsed = parse_file(path)
        assert parsed.frames is not None
        assert len(parsed.frames) == int(read_full(path).NumberOfFrames)


def synthetic_ct(**attributes: Any) -> Dataset:
    """A small CT with a nested sequence and a private block."""
    ds = make_ct(**attributes)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Buc^Jérôme"
    inner = Dataset()
    inner.ReferencedSOPClassUID = ds.SOPClassUID
    inner.ReferencedSOPInstanceUID = new_uid()
    item = Dataset()
    item.SeriesInstanceUID = new_uid()
    item.ReferencedInstanceSequence = Sequence([inner])
    ds.ReferencedSeriesSequence = Sequence([item])
    ds.ReferencedSeriesSequence.is_undefined_length = True
    block = ds.private_block(0x0009, "DICOMVAULT TEST", create=True)
    block.add_new(0x10, "OB", bytes(range(256)) * 5)
    block.add_new(0x11, "LO", "private text")
    return ds


def encapsulated_ct(frames: list[bytes], pixel_data: bytes) -> Dataset:
    """A synthetic CT whose Pixel Data is the given encapsulated value."""
    ds = synthetic_ct(frames=len(frames))
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def jpeg_like(number: int, size: int = 40) -> bytes:
    """Bytes that start and end like a JPEG codestream."""
    return b"\xff\xd8" + bytes([number]) * size + b"\xff\xd9"


def test_synthetic_ct_bulk_and_unread_pixel_data() -> None:
    ds = synthetic_ct(rows=64, columns=64)
    data = part10(ds)

    parsed = parse_bytes(data)

    paths = {bulk.path: bulk for bulk in parsed.bulk}
    assert set(paths) == {"00091010", PIXEL_DATA_PATH}
    pixels = paths[PIXEL_DATA_PATH]
    assert data[pixels.offset : pixels.offset + pixels.length] == ds.PixelData
    assert pixels.vr == "OW"
    assert parsed.frames is None
    assert str(parsed.dataset.PatientName) == "Buc^Jérôme"


def test_elements_after_encapsulated_pixel_data_are_read() -> None:
    frames = [jpeg_like(number) for number in range(2)]
    ds = encapsulated_ct(frames, encapsulate(frames))
    block = ds.private_block(0x7FE1, "DICOMVAULT TEST", create=True)
    block.add_new(0x01, "LO", "after the pixels")
    ds.DataSetTrailingPadding = b"\0" * 2000
    data = part10(ds, JPEGBaseline8Bit)

    parsed = parse_bytes(data)

    assert parsed.dataset[block.get_tag(0x01)].value == "after the pixels"
    padding = next(bulk for bulk in parsed.bulk if bulk.path == "FFFCFFFC")
    assert data[padding.offset : padding.offset + padding.length] == b"\0" * 2000
    trailing = parsed.dataset.get_item("DataSetTrailingPadding", keep_deferred=True)
    assert trailing.value is None


def test_small_pixel_data_is_listed_as_bulk() -> None:
    parsed = parse_bytes(part10(synthetic_ct(rows=4, columns=4)))

    assert [bulk.length for bulk in parsed.bulk if bulk.path == PIXEL_DATA_PATH] == [32]


def test_implicit_vr_pixel_data_is_ow() -> None:
    parsed = parse_bytes(part10(synthetic_ct(), ImplicitVRLittleEndian))

    # pydicom knows no VR for an unknown private element in implicit VR: UN
    assert [bulk.vr for bulk in parsed.bulk] == ["UN", "OW"]


def test_frames_follow_the_basic_offset_table() -> None:
    frames = [jpeg_like(number) for number in range(3)]
    data = part10(encapsulated_ct(frames, encapsulate(frames, 2)), JPEGBaseline8Bit)

    parsed = parse_bytes(data)

    assert parsed.frames is not None
    assert [len(frame) for frame in parsed.frames] == [2, 2, 2]
    assert [b"".join(data[o : o + n] for o, n in f) for f in parsed.frames] == frames


def test_frames_follow_the_extended_offset_table() -> None:
    frames = [jpeg_like(number, 41) for number in range(3)]
    pixel_data, offsets, lengths = encapsulate_extended(frames)
    ds = encapsulated_ct(frames, pixel_data)
    ds.ExtendedOffsetTable = offsets
    ds.ExtendedOffsetTableLengths = lengths
    data = part10(ds, JPEGBaseline8Bit)
    expected = generate_frames(pixel_data, extended_offsets=(offsets, lengths))

    parsed = parse_bytes(data)

    assert parsed.frames is not None
    assert [b"".join(data[o : o + n] for o, n in f) for f in parsed.frames] == list(
        expected
    )


def test_extended_offset_table_lengths_leave_out_fragment_padding() -> None:
    frames = [jpeg_like(number, 41) for number in range(3)]
    pixel_data, offsets, _ = encapsulate_extended(frames)
    ds = encapsulated_ct(frames, pixel_data)
    ds.ExtendedOffsetTable = offsets
    ds.ExtendedOffsetTableLengths = struct.pack("<3Q", *(len(f) for f in frames))
    data = part10(ds, JPEGBaseline8Bit)

    parsed = parse_bytes(data)

    assert parsed.frames is not None
    assert [b"".join(data[o : o + n] for o, n in f) for f in parsed.frames] == frames


def test_frames_without_offset_table_split_at_frame_start_markers() -> None:
    frames = [jpeg_like(number, 60) for number in range(3)]
    pixel_data = encapsulate(frames, 3, has_bot=False)
    data = part10(encapsulated_ct(frames, pixel_data), JPEGBaseline8Bit)

    parsed = parse_bytes(data)

    assert parsed.frames is not None
    assert [b"".join(data[o : o + n] for o, n in f) for f in parsed.frames] == frames


def test_frames_of_one_fragment_each_need_no_offset_table() -> None:
    frames = [b"\x00" * 64 + bytes([number]) * 4 for number in range(4)]
    data = part10(
        encapsulated_ct(frames, encapsulate(frames, has_bot=False)), RLELossless
    )

    parsed = parse_bytes(data)

    assert parsed.frames is not None
    assert [b"".join(data[o : o + n] for o, n in f) for f in parsed.frames] == frames


def test_fewer_fragments_than_frames_is_refused() -> None:
    frames = [jpeg_like(number) for number in range(2)]
    ds = encapsulated_ct(frames, encapsulate(frames[:1], has_bot=False))

    with pytest.raises(InvalidInstance, match="2 frames"):
        parse_bytes(part10(ds, JPEGBaseline8Bit))


def top_level_ends(data: bytes) -> set[int]:
    """Offsets where a top-level element ends, in an explicit VR LE file."""
    fp = io.BytesIO(data)
    fp.seek(PREAMBLE_AND_PREFIX)
    ends = {PREAMBLE_AND_PREFIX}
    for _ in data_element_generator(fp, False, True):
        ends.add(fp.tell())
    return ends


def test_every_cut_inside_an_element_or_sequence_is_refused() -> None:
    frames = [jpeg_like(number) for number in range(2)]
    ds = encapsulated_ct(frames, encapsulate(frames, 2))
    ds.ReferencedSeriesSequence[0].is_undefined_length_sequence_item = True
    data = part10(ds, JPEGBaseline8Bit)
    ends = top_level_ends(data)

    for cut in range(len(data)):
        try:
            parse_bytes(data[:cut])
        except MissingAttribute:
            assert cut in ends, cut
        except InvalidInstance as error:
            assert type(error) is InvalidInstance, (cut, error)
        else:
            assert cut in ends, cut


def test_a_file_shorter_than_its_stated_size_is_refused() -> None:
    data = part10(synthetic_ct())

    with pytest.raises(InvalidInstance, match="truncated"):
        parse_instance(io.BytesIO(data), len(data) + 10)


def element(tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """One explicit VR little endian element; ``length`` may lie."""
    stated = len(value) if length is None else length
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return head + struct.pack("<HI", 0, stated) + value
    return head + struct.pack("<H", stated) + value


def item(content: bytes, length: int | None = None) -> bytes:
    """A sequence item of defined length."""
    return (
        struct.pack("<HHI", 0xFFFE, 0xE000, len(content) if length is None else length)
        + content
    )


def handmade(body: bytes) -> bytes:
    """A Part 10 file whose data set is the identity UIDs, then ``body``."""
    ds = make_ct()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    encoded_meta = DicomBytesIO()
    write_file_meta_info(encoded_meta, meta)
    uids = b"".join(
        element(
            Tag(keyword),
            "UI",
            ds[keyword].value.encode() + b"\0" * (len(ds[keyword].value) % 2),
        )
        for keyword in IDENTITY
    )
    return b"\0" * 128 + b"DICM" + encoded_meta.getvalue() + uids + body


REFERENCED_SERIES_SEQUENCE = Tag("ReferencedSeriesSequence")
REFERENCED_SOP_CLASS_UID = Tag("ReferencedSOPClassUID")


def test_handmade_file_parses() -> None:
    inner = element(REFERENCED_SOP_CLASS_UID, "UI", b"1.2.3\0")
    parsed = parse_bytes(
        handmade(element(REFERENCED_SERIES_SEQUENCE, "SQ", item(inner)))
    )

    assert parsed.dataset.ReferencedSeriesSequence[0].ReferencedSOPClassUID == "1.2.3"


def test_element_overrunning_its_item_is_refused() -> None:
    inner = element(REFERENCED_SOP_CLASS_UID, "UI", b"1.2.3\0", length=40)
    data = handmade(element(REFERENCED_SERIES_SEQUENCE, "SQ", item(inner)) + b"\0" * 60)

    with pytest.raises(InvalidInstance, match="enclosing item"):
        parse_bytes(data)


def test_item_overrunning_its_sequence_is_refused() -> None:
    inner = element(REFERENCED_SOP_CLASS_UID, "UI", b"1.2.3\0")
    sequence = item(inner, length=len(inner) + 8) + b"\0" * 8
    data = handmade(
        element(REFERENCED_SERIES_SEQUENCE, "SQ", sequence, length=len(inner) + 8)
    )

    with pytest.raises(InvalidInstance, match="enclosing item or sequence"):
        parse_bytes(data)


def test_a_non_item_inside_a_sequence_is_refused() -> None:
    inner = element(REFERENCED_SOP_CLASS_UID, "UI", b"1.2.3\0")
    data = handmade(element(REFERENCED_SERIES_SEQUENCE, "SQ", inner))

    with pytest.raises(InvalidInstance, match="where an Item"):
        parse_bytes(data)


def test_empty_input_is_refused() -> None:
    with pytest.raises(InvalidInstance, match="0 bytes"):
        parse_instance(io.BytesIO(b""), 0)


def test_missing_dicm_prefix_is_refused() -> None:
    data = part10(synthetic_ct())

    with pytest.raises(InvalidInstance, match="preamble"):
        parse_bytes(data[:128] + b"DICN" + data[132:])


def test_png_is_refused_as_png() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 200

    with pytest.raises(InvalidInstance, match="PNG"):
        parse_bytes(png)


def test_missing_transfer_syntax_is_refused() -> None:
    data = part10(synthetic_ct())
    ts = str(ExplicitVRLittleEndian).encode() + b"\0"
    patched = data.replace(b"\x02\x00\x10\x00UI" + struct.pack("<H", len(ts)) + ts, b"")

    assert patched != data
    with pytest.raises(InvalidInstance, match="TransferSyntaxUID"):
        parse_bytes(patched)


IDENTITY = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]


@pytest.mark.parametrize("keyword", IDENTITY)
def test_missing_identity_uid_raises_missing_attribute(keyword: str) -> None:
    ds = synthetic_ct()
    part10(ds)
    delattr(ds, keyword)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)

    with pytest.raises(MissingAttribute, match=keyword):
        parse_bytes(buffer.getvalue())


@pytest.mark.parametrize("keyword", IDENTITY)
def test_empty_identity_uid_raises_missing_attribute(keyword: str) -> None:
    ds = synthetic_ct()
    part10(ds)
    setattr(ds, keyword, "")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()

    with pytest.raises(MissingAttribute, match=keyword):
        parse_bytes(data)


def test_malformed_identity_uid_raises_invalid_uid() -> None:
    with warnings.catch_warnings():
        # pydicom warns about the invalid UID it is asked to write.
        warnings.simplefilter("ignore")
        data = part10(synthetic_ct(study="1.2.3/../../x"))

    with pytest.raises(InvalidUID, match="StudyInstanceUID"):
        parse_bytes(data)


def test_leading_zero_components_are_accepted() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = part10(synthetic_ct(series="1.2.246.352.91.0000217.2005"))

    assert parse_bytes(data).series_instance_uid == "1.2.246.352.91.0000217.2005"


def test_data_set_sop_instance_uid_wins_over_a_different_file_meta_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ds = synthetic_ct()
    data = part10(ds)
    uid = str(ds.SOPInstanceUID)
    other = uid[:-1] + ("1" if uid[-1] != "1" else "2")
    patched = data.replace(uid.encode(), other.encode(), 1)

    assert parse_bytes(patched).sop_instance_uid == uid
    assert "MediaStorageSOPInstanceUID differs" in caplog.text


def test_deflated_data_set_parses_with_offsets_into_the_inflated_data() -> None:
    ds = synthetic_ct()
    data = part10(ds, DeflatedExplicitVRLittleEndian)

    parsed = parse_bytes(data)

    assert not parsed.offsets_valid
    pixels = next(bulk for bulk in parsed.bulk if bulk.path == PIXEL_DATA_PATH)
    inflated = data_set_bytes_of(data, parsed)
    assert inflated[pixels.offset : pixels.offset + pixels.length] == ds.PixelData


def data_set_bytes_of(data: bytes, parsed: ParsedInstance) -> bytes:
    """The inflated data set of a deflated Part 10 file held in memory."""
    meta_length = parsed.file_meta.FileMetaInformationGroupLength
    return zlib.decompress(data[PREAMBLE_AND_PREFIX + 12 + meta_length :], -15)


def test_truncated_deflate_stream_is_refused() -> None:
    data = part10(synthetic_ct(), DeflatedExplicitVRLittleEndian)

    with pytest.raises(InvalidInstance, match="truncated"):
        parse_bytes(data[:-20])


class CountingReader(io.BytesIO):
    """A file in memory that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        """Read as BytesIO does, counting."""
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_parse_reads_headers_not_native_pixel_data() -> None:
    data = part10(synthetic_ct(rows=512, columns=512))
    fp = CountingReader(data)

    parse_instance(fp, len(data))

    assert fp.bytes_read < 16 * 1024 < len(data) // 32


def test_parse_reads_headers_not_encapsulated_pixel_data() -> None:
    frames = [jpeg_like(number, 20000) for number in range(20)]
    data = part10(encapsulated_ct(frames, encapsulate(frames, 2)), JPEGBaseline8Bit)
    fp = CountingReader(data)

    parsed = parse_instance(fp, len(data))

    assert parsed.frames is not None
    assert fp.bytes_read < 16 * 1024 < len(data) // 16


def median_parse_ms(data: bytes, runs: int = 25) -> float:
    """The median wall time of parse_instance on ``data``, in milliseconds."""
    fp = io.BytesIO(data)
    times = []
    for _ in range(runs):
        fp.seek(0)
        start = time.perf_counter()
        parse_instance(fp, len(data))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def test_parse_of_a_512_by_512_ct_takes_well_under_5_ms() -> None:
    data = part10(synthetic_ct(rows=512, columns=512))

    assert median_parse_ms(data) < 5.0


def test_parse_of_the_corpus_512_by_512_philips_ct_takes_well_under_5_ms() -> None:
    path = CORPUS / "ct_mr" / "ct_philips_512_explicit_le_undef_len_sq.dcm"
    if not path.is_file():
        pytest.skip("the corpus is not next to this checkout")

    assert median_parse_ms(path.read_bytes()) < 5.0


def test_deflate_bomb_is_refused_before_it_inflates_in_full() -> None:
    import zlib

    from archive import parse

    ds = synthetic_ct()
    data = part10(ds, DeflatedExplicitVRLittleEndian)
    # File meta: preamble, 'DICM', then FileMetaInformationGroupLength's value.
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    body = b"".join(
        compressor.compress(zeros)
        for _ in range(parse.MAX_INFLATED_BYTES // len(zeros) + 2)
    )
    bomb = data[:meta_end] + body + compressor.flush()
    with pytest.raises(InvalidInstance, match="inflates beyond"):
        parse_bytes(bomb)
