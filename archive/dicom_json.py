"""The DICOM JSON model of a data set (PS3.18 F.2), bulk values as URIs.

Text comes from :mod:`archive.charset`, not from pydicom's decoding; numbers in
DS and IS become JSON numbers only when they are numbers, so the output is valid
JSON whatever the values hold.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from archive.charset import (
    SINGLE_VALUE_VRS,
    dataset_charsets,
    decode_value,
    element_vr,
)
from archive.parse import BULK_VRS, PIXEL_DATA_TAGS, UNDEFINED_LENGTH, settled_vr

STRING_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)
# Leading spaces are padding, not content, in these VRs (PS3.5 Table 6.2-1)
LEADING_PADDING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "SH"})
PERSON_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
# The largest integer a JSON number holds exactly in JavaScript (IEEE 754 double)
MAX_SAFE_INTEGER = 2**53 - 1

# PS3.5 Table 6.2-1: DS is a fixed or floating point number, IS an integer
_DECIMAL_STRING = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_STRING = re.compile(r"[+-]?[0-9]+")

BulkURI = Callable[[str], str]
Json = dict[str, Any]


def dataset_to_json(
    ds: Dataset,
    bulk_uri: BulkURI | None = None,
    bulk_paths: Collection[str] = frozenset(),
) -> Json:
    """The DICOM JSON object of ``ds`` (PS3.18 F.2).

    With ``bulk_uri``, Pixel Data and every binary value whose path (as in
    ``archive.parse.BulkElement``) is in ``bulk_paths`` become a "BulkDataURI"
    of ``bulk_uri(path)``; other binary values are "InlineBinary". A value that
    pydicom has left unread must be one of those.
    """
    return _dataset(ds, "", (), bulk_uri, frozenset(bulk_paths))


def _dataset(
    ds: Dataset,
    prefix: str,
    inherited: Sequence[str],
    bulk_uri: BulkURI | None,
    bulk_paths: frozenset[str],
) -> Json:
    charsets = dataset_charsets(ds, inherited)
    result: Json = {}
    for tag in sorted(ds.keys()):
        # Group lengths are encoding detail, not attributes (PS3.18 F.2.2)
        if tag & 0xFFFF == 0:
            continue
        key = f"{tag:08X}"
        path = prefix + key
        is_bulk = path in bulk_paths or tag in PIXEL_DATA_TAGS
        value_uri = bulk_uri if is_bulk else None
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            converted = _raw(ds, elem, path, charsets, value_uri)
            if converted is not None:
                result[key] = converted
                continue
            elem = ds[tag]
        if elem.VR == "SQ":
            items = [
                _dataset(item, f"{path}/{index}/", charsets, bulk_uri, bulk_paths)
                for index, item in enumerate(elem.value or ())
            ]
            result[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        else:
            result[key] = _converted(elem, path, value_uri)
    return result


def _raw(
    ds: Dataset,
    raw: RawDataElement,
    path: str,
    charsets: Sequence[str],
    bulk_uri: BulkURI | None,
) -> Json | None:
    """The JSON of a value pydicom has not converted, or None to let it convert."""
    vr = element_vr(raw, ds)
    if raw.value is None and raw.length:
        vr = settled_vr(vr, raw.tag, raw.length == UNDEFINED_LENGTH)
        if bulk_uri is None:
            raise ValueError(
                f"The value at {path!r} was never read from its file; pass its path "
                "in bulk_paths, with bulk_uri, or read the data set in full"
            )
        return {"vr": vr, "BulkDataURI": bulk_uri(path)}
    if vr in STRING_VRS:
        return _strings(vr, decode_value(raw.value or b"", charsets, vr))
    if vr in BULK_VRS:
        return _binary(vr, raw.value or b"", path, bulk_uri)
    return None


def _converted(elem: DataElement, path: str, bulk_uri: BulkURI | None) -> Json:
    """The JSON of an element pydicom has converted (all but SQ)."""
    vr = elem.VR
    value = elem.value
    if vr in BULK_VRS or isinstance(value, bytes):
        return _binary(vr, value or b"", path, bulk_uri)
    if elem.VM == 0:
        return {"vr": vr}
    values = list(value) if elem.VM > 1 else [value]
    if vr in STRING_VRS:
        return _strings(vr, "\\".join("" if v is None else str(v) for v in values))
    if vr == "AT":
        return {"vr": vr, "Value": [f"{int(v):08X}" for v in values]}
    if vr in ("FL", "FD"):
        return {"vr": vr, "Value": [_float(float(v)) for v in values]}
    return {"vr": vr, "Value": [_integer(int(v)) for v in values]}


def _binary(vr: str, data: bytes, path: str, bulk_uri: BulkURI | None) -> Json:
    if not data:
        return {"vr": vr}
    if bulk_uri is not None:
        return {"vr": vr, "BulkDataURI": bulk_uri(path)}
    return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}


def _strings(vr: str, text: str) -> Json:
    """The JSON of a string value: split, unpadded, typed by its VR."""
    parts = [text] if vr in SINGLE_VALUE_VRS else text.split("\\")
    strip = " \0"
    values = [
        part.strip(strip) if vr in LEADING_PADDING_VRS else part.rstrip(strip)
        for part in parts
    ]
    if not any(values):
        return {"vr": vr}
    return {"vr": vr, "Value": [_string_value(vr, value) for value in values]}


def _string_value(vr: str, value: str) -> Any:
    if not value:
        return None
    if vr == "PN":
        return person_name_groups(value) or None
    if vr in ("DS", "IS"):
        return number_value(value, vr)
    return value


def person_name_groups(value: str) -> dict[str, str]:
    """The non-empty component groups of one PN value (PS3.18 F.2.2)."""
    groups = value.split("=")
    return {name: group for name, group in zip(PERSON_NAME_GROUPS, groups) if group}


def number_value(text: str, vr: str) -> int | float | str:
    """A DS or IS value as a JSON number, or ``text`` itself when it is not one.

    '+1.5' gives 1.5, '40.' gives 40, '007' gives 7; '1.2@', '1A', 'NaN' and
    '1e999' stay strings, so the JSON stays valid and the value is not lost.
    """
    if vr == "IS" and _INTEGER_STRING.fullmatch(text):
        return _integer(int(text))
    if not _DECIMAL_STRING.fullmatch(text):
        return text
    number = float(text)
    if not math.isfinite(number):
        return text
    if number.is_integer() and abs(number) <= MAX_SAFE_INTEGER:
        return int(number)
    return text if vr == "IS" else number


def _float(number: float) -> float | str:
    # JSON has no NaN or infinity; their names keep the value without breaking it.
    if math.isfinite(number):
        return number
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def _integer(number: int) -> int | str:
    # 64-bit values beyond what a JSON number holds exactly go as strings
    return number if abs(number) <= MAX_SAFE_INTEGER else str(number)
