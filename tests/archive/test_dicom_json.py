"""DICOM JSON (PS3.18 F.2): values, person names, bulk data, and pydicom's own."""

from __future__ import annotations

import base64
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from archive.dicom_json import (
    LEADING_PADDING_VRS,
    dataset_to_json,
    number_value,
    person_name_groups,
)
from archive.errors import ArchiveError
from archive.parse import parse_instance

TESTS_DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"

PATIENT_NAME = Tag("PatientName")
SLICE_THICKNESS = Tag("SliceThickness")
INSTANCE_NUMBER = Tag("InstanceNumber")
PIXEL_DATA = Tag("PixelData")
# A private block (0009,10xx) of creator "DICOMVAULT TEST", and a group length
PRIVATE_CREATOR = Tag(0x0009, 0x0010)
PRIVATE_VALUE = Tag(0x0009, 0x1010)
IDENTIFYING_GROUP_LENGTH = Tag(0x0008, 0x0000)

# Where this archive's text differs from pydicom's on purpose
PYDICOM_TEXT_DIFFERS = {
    # pydicom leaves ESC $ ) A in the decoded names
    "charset/chinese_iso2022_ir58_gb2312.dcm": {"00100010"},
    # ... and reads GB2312 written without ESC $ ) A as Latin-1
    "charset/gen_chinese_iso2022_ir58_3groups_ct.dcm": {"00081030", "00100010"},
    # undeclared bytes: pydicom reads Latin-1, this archive U+FFFD (no fallback set)
    "charset/gen_undeclared_gbk_bytes_ct.dcm": {"00100010"},
}
# Top-level attributes whose value pydicom cannot convert to JSON at all
PYDICOM_CANNOT_CONVERT = {"vr_private/rtdose_bad_vr_values.dcm": {"00280008"}}
# Broken files where pydicom reads other elements' bytes as a value: no reference
PYDICOM_MISREADS = {"broken/gen_malformed_element_length_ct.dcm"}


def raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    """An element as pydicom holds it before conversion (explicit VR LE)."""
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def with_raw(*elements: RawDataElement) -> Dataset:
    """A data set of unconverted elements."""
    ds = Dataset()
    for elem in elements:
        ds[elem.tag] = elem
    return ds


def all_files() -> list[tuple[str, Path]]:
    """(label, file) of tests/data and of the corpus when present."""
    found = []
    for label, base in (("data", TESTS_DATA), ("corpus", CORPUS)):
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and path.name not in ("NOTICE", "MANIFEST.md"):
                    found.append((f"{label}:{path.relative_to(base)}", path))
    return found


def readable(path: Path) -> bool:
    """Whether pydicom reads the file (broken/ holds some it cannot)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any failure means "not a reference"
        return False
    return True


READABLE = [(label, path) for label, path in all_files() if readable(path)]
READABLE_IDS = [label for label, _ in READABLE]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+1.5", 1.5),
        (".5", 0.5),
        ("40.", 40),
        ("007", 7),
        ("-0.25", -0.25),
        ("1e3", 1000),
        ("2.5E-3", 0.0025),
        ("1.2@", "1.2@"),
        ("1A", "1A"),
        ("NaN", "NaN"),
        ("inf", "inf"),
        ("1e999", "1e999"),
        ("1_000", "1_000"),
        ("١٢", "١٢"),
    ],
)
def test_ds_value_is_a_number_only_when_it_parses_as_one(
    text: str, expected: object
) -> None:
    value = number_value(text, "DS")

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("007", 7), ("-12", -12), ("+3", 3), ("40.", 40), ("1.5", "1.5"), ("1A", "1A")],
)
def test_is_value_is_an_integer_or_the_original_string(
    text: str, expected: object
) -> None:
    value = number_value(text, "IS")

    assert value == expected
    assert type(value) is type(expected)


def test_ds_and_is_from_raw_bytes_split_strip_and_stay_valid_json() -> None:
    ds = with_raw(
        raw(SLICE_THICKNESS, "DS", b"+1.5\\.5 \\40.\\007\\1.2@\\NaN "),
        raw(INSTANCE_NUMBER, "IS", b" 1A "),
    )

    result = dataset_to_json(ds)

    assert result[f"{SLICE_THICKNESS:08X}"] == {
        "vr": "DS",
        "Value": [1.5, 0.5, 40, 7, "1.2@", "NaN"],
    }
    assert result[f"{INSTANCE_NUMBER:08X}"] == {"vr": "IS", "Value": ["1A"]}
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_same_input_gives_the_same_json() -> None:
    def make() -> Dataset:
        return with_raw(raw(SLICE_THICKNESS, "DS", b"1.2@\\3"))

    assert dataset_to_json(make()) == dataset_to_json(make())


def test_converted_ds_values_keep_their_original_text() -> None:
    ds = Dataset()
    ds.SliceThickness = "40."
    ds.ImagePositionPatient = ["+1.5", ".5", "007"]

    result = dataset_to_json(ds)

    assert result["00180050"] == {"vr": "DS", "Value": [40]}
    assert result["00200032"] == {"vr": "DS", "Value": [1.5, 0.5, 7]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Yamada^Tarou", {"Alphabetic": "Yamada^Tarou"}),
        (
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            {
                "Alphabetic": "Yamada^Tarou",
                "Ideographic": "山田^太郎",
                "Phonetic": "やまだ^たろう",
            },
        ),
        (
            "Zhang^XiaoDong=张^小东=",
            {"Alphabetic": "Zhang^XiaoDong", "Ideographic": "张^小东"},
        ),
        ("=张^小东", {"Ideographic": "张^小东"}),
        ("==やまだ", {"Phonetic": "やまだ"}),
        ("=", {}),
    ],
)
def test_person_name_groups_leave_out_empty_groups(
    value: str, expected: dict[str, str]
) -> None:
    assert person_name_groups(value) == expected


def test_pn_values_become_group_objects_decoded_with_the_character_set() -> None:
    ds = with_raw(
        raw(Tag("SpecificCharacterSet"), "CS", b"\\ISO 2022 IR 58"),
        raw(
            PATIENT_NAME,
            "PN",
            b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab= ",
        ),
        raw(Tag("OtherPatientNames"), "PN", b"A^B\\\\=C"),
    )

    result = dataset_to_json(ds)

    assert result["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "Zhang^XiaoDong", "Ideographic": "张^小东"}],
    }
    assert result["00101001"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "A^B"}, None, {"Ideographic": "C"}],
    }
    assert result["00080005"] == {"vr": "CS", "Value": [None, "ISO 2022 IR 58"]}


def test_empty_attributes_have_no_value() -> None:
    ds = with_raw(
        raw(PATIENT_NAME, "PN", b""),
        raw(Tag("PatientID"), "LO", b"  "),
        raw(Tag("Rows"), "US", b""),
        raw(Tag("IconImageSequence"), "SQ", b""),
        raw(Tag("EncapsulatedDocument"), "OB", b""),
    )

    assert dataset_to_json(ds) == {
        "00100010": {"vr": "PN"},
        "00100020": {"vr": "LO"},
        "00280010": {"vr": "US"},
        "00880200": {"vr": "SQ"},
        "00420011": {"vr": "OB"},
    }


def test_sequences_hold_item_objects_and_empty_items_are_empty_objects() -> None:
    ds = Dataset()
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.ReferencedSeriesSequence = Sequence([])

    assert dataset_to_json(ds) == {
        "00081115": {"vr": "SQ"},
        "00081140": {
            "vr": "SQ",
            "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}, {}],
        },
    }


def test_at_values_are_hex_strings_and_numbers_are_numbers() -> None:
    ds = Dataset()
    ds.FrameIncrementPointer = [0x00181063, 0x00181065]
    ds.Rows = 512
    ds.add_new(Tag("RealWorldValueFirstValueMapped"), "SS", -5)
    ds.add_new(Tag("RescaleSlope"), "DS", "1")

    result = dataset_to_json(ds)

    assert result["00280009"] == {"vr": "AT", "Value": ["00181063", "00181065"]}
    assert result["00280010"] == {"vr": "US", "Value": [512]}
    assert result["00409216"] == {"vr": "SS", "Value": [-5]}


def test_non_finite_floats_become_strings_so_the_json_stays_valid() -> None:
    ds = Dataset()
    ds.add_new(
        Tag("FloatPixelPaddingValue"), "FL", [math.nan, math.inf, -math.inf, 1.5]
    )

    result = dataset_to_json(ds)

    assert result[f"{Tag('FloatPixelPaddingValue'):08X}"]["Value"] == [
        "NaN",
        "Infinity",
        "-Infinity",
        1.5,
    ]
    json.dumps(result, allow_nan=False)


def test_large_64_bit_integers_become_strings() -> None:
    ds = Dataset()
    ds.add_new(Tag("ExtendedOffsetTableLengths"), "OV", b"")
    ds.add_new(Tag("SelectorUVValue"), "UV", [2**63, 5])

    assert dataset_to_json(ds)[f"{Tag('SelectorUVValue'):08X}"]["Value"] == [
        str(2**63),
        5,
    ]


def test_multi_valued_strings_split_on_backslash_but_text_does_not() -> None:
    ds = with_raw(
        raw(Tag("ImageType"), "CS", b"ORIGINAL\\PRIMARY\\\\AXIAL "),
        raw(Tag("ImageComments"), "LT", b"a\\b "),
    )

    result = dataset_to_json(ds)

    assert result["00080008"]["Value"] == ["ORIGINAL", "PRIMARY", None, "AXIAL"]
    assert result["00204000"]["Value"] == ["a\\b"]


def test_binary_values_are_inline_unless_listed_as_bulk() -> None:
    blob = bytes(range(256)) * 8
    ds = with_raw(
        raw(Tag("EncapsulatedDocument"), "OB", blob),
        raw(PRIVATE_VALUE, "UN", b"\x01\x02"),
        raw(PRIVATE_CREATOR, "LO", b"DICOMVAULT TEST "),
        raw(PIXEL_DATA, "OW", b"\0\1" * 8),
    )

    inline = dataset_to_json(ds)
    bulk = dataset_to_json(
        ds, bulk_uri=lambda path: f"bulk/{path}", bulk_paths={"00420011"}
    )

    assert inline["00420011"] == {
        "vr": "OB",
        "InlineBinary": base64.b64encode(blob).decode(),
    }
    assert inline["00091010"] == {"vr": "UN", "InlineBinary": "AQI="}
    assert inline["00090010"] == {"vr": "LO", "Value": ["DICOMVAULT TEST"]}
    assert inline["7FE00010"]["InlineBinary"] == base64.b64encode(b"\0\1" * 8).decode()
    assert bulk["00420011"] == {"vr": "OB", "BulkDataURI": "bulk/00420011"}
    assert bulk["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}
    assert bulk["00091010"] == inline["00091010"]


def test_nested_bulk_paths_name_item_indexes() -> None:
    item = Dataset()
    item.PixelData = b"\0" * 4
    item["PixelData"].VR = "OB"
    ds = Dataset()
    ds.IconImageSequence = Sequence([item])

    result = dataset_to_json(ds, bulk_uri=lambda path: path, bulk_paths=set())

    assert result["00880200"]["Value"][0]["7FE00010"] == {
        "vr": "OB",
        "BulkDataURI": "00880200/0/7FE00010",
    }


def test_group_lengths_are_dropped() -> None:
    ds = with_raw(
        raw(IDENTIFYING_GROUP_LENGTH, "UL", b"\x04\0\0\0"),
        raw(Tag("Modality"), "CS", b"CT"),
    )

    assert dataset_to_json(ds) == {"00080060": {"vr": "CS", "Value": ["CT"]}}


def test_unread_value_needs_a_bulk_data_uri() -> None:
    unread = RawDataElement(PIXEL_DATA, "OW", 4096, None, 1000, False, True)
    ds = with_raw(unread)

    assert dataset_to_json(ds, lambda path: path, set()) == {
        "7FE00010": {"vr": "OW", "BulkDataURI": "7FE00010"}
    }
    with pytest.raises(ValueError, match="7FE00010"):
        dataset_to_json(ds)


def test_attributes_come_out_in_tag_order() -> None:
    ds = Dataset()
    ds.Modality = "CT"
    ds.PatientID = "1"
    ds.add(DataElement(Tag("AccessionNumber"), "SH", "A"))

    assert list(dataset_to_json(ds)) == ["00080050", "00080060", "00100020"]


def pydicom_json(path: Path) -> tuple[dict[str, Any], set[str]]:
    """pydicom's to_json_dict of every top-level element it can convert."""
    converted: dict[str, Any] = {}
    failed: set[str] = set()
    with warnings.catch_warnings():
        # The reference only: pydicom warns about values it finds invalid.
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        for tag in list(ds.keys()):
            try:
                converted[f"{tag:08X}"] = ds[tag].to_json_dict(None, 2**31)
            except ValueError:
                failed.add(f"{tag:08X}")
    return converted, failed


def to_our_conventions(attributes: dict[str, Any]) -> dict[str, Any]:
    """pydicom's JSON where its conventions differ from this archive's.

    Group lengths go (PS3.18 F.2.2); an empty sequence has no "Value"; empty
    values among several are null (F.2.5); PN leaves out empty groups; leading
    padding spaces go; non-finite floats are strings.
    """
    result = {}
    for key, attribute in attributes.items():
        if key.endswith("0000"):
            continue
        vr, values = attribute["vr"], attribute.get("Value")
        attribute = dict(attribute)
        if vr == "SQ" and values is not None:
            values = [to_our_conventions(item) for item in values]
        elif vr == "PN" and values is not None:
            values = [{k: v for k, v in name.items() if v} or None for name in values]
        elif values is not None:
            values = [_our_scalar(vr, value) for value in values]
        if values:
            attribute["Value"] = values
        else:
            attribute.pop("Value", None)
        result[key] = attribute
    return result


def _our_scalar(vr: str, value: Any) -> Any:
    if isinstance(value, str):
        value = value.lstrip(" ") if vr in LEADING_PADDING_VRS else value
        return value or None
    if isinstance(value, float) and not math.isfinite(value):
        return (
            "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        )
    return value


def corpus_label(label: str) -> str:
    """The corpus path of a labelled file."""
    return label.split(":", 1)[1]


@pytest.mark.parametrize(("label", "path"), READABLE, ids=READABLE_IDS)
def test_json_equals_pydicom_to_json_dict_but_for_known_differences(
    label: str, path: Path
) -> None:
    ours = dataset_to_json(pydicom.dcmread(path))
    json.dumps(ours, allow_nan=False)
    if corpus_label(label) in PYDICOM_MISREADS:
        return
    theirs, failed = pydicom_json(path)
    text_differs = PYDICOM_TEXT_DIFFERS.get(corpus_label(label), set())

    assert failed == PYDICOM_CANNOT_CONVERT.get(corpus_label(label), set())
    for key in failed:
        assert any(isinstance(value, str) for value in ours[key]["Value"])
        theirs[key] = ours[key]
    for key in text_differs:
        assert ours[key] != theirs[key]
        assert "\x1b" not in json.dumps(ours[key], ensure_ascii=False)
        theirs[key] = ours[key]
    assert ours == to_our_conventions(theirs)


def stored(path: Path) -> bool:
    """Whether parse_instance accepts the file."""
    try:
        with path.open("rb") as fp:
            parse_instance(fp, path.stat().st_size)
    except ArchiveError:
        return False
    return True


STORED = [(label, path) for label, path in READABLE if stored(path)]
STORED_IDS = [label for label, _ in STORED]


def json_at(result: dict[str, Any], path: str) -> dict[str, Any]:
    """The attribute object at a bulk path in a DICOM JSON object."""
    parts = path.split("/")
    for index in range(0, len(parts) - 1, 2):
        result = result[parts[index]]["Value"][int(parts[index + 1])]
    attribute: dict[str, Any] = result[parts[-1]]
    return attribute


@pytest.mark.parametrize(("label", "path"), STORED, ids=STORED_IDS)
def test_json_of_a_parsed_instance_is_the_full_json_with_bulk_uris(
    label: str, path: Path
) -> None:
    with path.open("rb") as fp:
        parsed = parse_instance(fp, path.stat().st_size)
    bulk_paths = {bulk.path for bulk in parsed.bulk}

    ours = dataset_to_json(parsed.dataset, lambda p: f"bulk/{p}", bulk_paths)
    full = dataset_to_json(pydicom.dcmread(path))

    for bulk in parsed.bulk:
        attribute = json_at(full, bulk.path)
        assert attribute["vr"] == bulk.vr
        attribute.pop("InlineBinary")
        attribute["BulkDataURI"] = f"bulk/{bulk.path}"
    assert ours == full
