"""C-FIND response identifiers built from archive matches (PS3.4 C.4.1.1.3.2).

Pure logic: a match in DICOM JSON (PS3.18 F.2) becomes a Dataset holding
exactly the requested keys, empty ones with zero length, and Specific
Character Set ISO_IR 192 whenever any returned text is not ASCII.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName
from pynetdicom.dsutils import encode

from archive.attributes import Level
from archive.charset import TEXT_VRS
from dimse._identifier import (
    ASCII_VRS,
    QUERY_RETRIEVE_LEVEL,
    RETRIEVE_AE_TITLE,
    SPECIFIC_CHARACTER_SET,
    RequestedKey,
)

UTF8_CHARACTER_SET = "ISO_IR 192"


def _json_key(key: RequestedKey) -> str:
    return f"{int(key.tag):08X}"


def _empty(key: RequestedKey) -> DataElement:
    if key.vr == "SQ":
        return DataElement(key.tag, "SQ", [])
    return DataElement(key.tag, key.vr, None)


def _filtered_items(value: dict[str, Any], wanted: tuple[RequestedKey, ...]) -> Any:
    tags = {_json_key(item_key) for item_key in wanted}
    items = value.get("Value") or []
    kept = []
    for item in items:
        if not isinstance(item, dict):
            continue
        entry = {tag: attribute for tag, attribute in item.items() if tag in tags}
        for item_key in wanted:
            entry.setdefault(_json_key(item_key), {"vr": item_key.vr})
        kept.append(entry)
    return {"vr": "SQ", "Value": kept}


def _element(key: RequestedKey, attribute: dict[str, Any]) -> DataElement:
    if key.items is not None and attribute.get("vr") == "SQ":
        attribute = _filtered_items(attribute, key.items)
    vr = str(attribute.get("vr") or key.vr)
    value_key = next(
        (
            name
            for name in ("Value", "InlineBinary", "BulkDataURI")
            if name in attribute
        ),
        None,
    )
    if value_key != "Value":
        return _empty(key)
    values = attribute["Value"]
    if isinstance(values, list) and vr in _STRING_VRS:
        has_null = None in values
        # A null in a list is an empty value, never the text "None".
        values = ["" if value is None else value for value in values]
        if (vr in ("IS", "DS") and has_null) or (
            vr in _UNCONVERTED_VRS
            and any(isinstance(value, str) and not value.isascii() for value in values)
        ):
            # pydicom writes these VRs in Latin-1 whatever the character set;
            # the response declares ISO_IR 192, so the bytes must be UTF-8:
            # given their Latin-1 reading, pydicom writes exactly them.
            utf8 = "\\".join(str(value) for value in values).encode("utf-8")
            return DataElement(
                key.tag,
                vr,
                utf8.decode("latin-1"),
                # Kept as stored; whether the VR allows it is not ours to judge.
                validation_mode=config.IGNORE,
            )
    try:
        return DataElement.from_json(Dataset, _json_key(key), vr, values, value_key)
    except (ValueError, TypeError, KeyError):
        # A stored value pydicom cannot rebuild is answered empty, not as a failure.
        return _empty(key)


# VRs that pydicom writes without the character set (PS3.5 6.1.2.3).
_UNCONVERTED_VRS = ASCII_VRS | {"UR"}
# VRs whose JSON values are strings (or numbers, for IS and DS).
_STRING_VRS = _UNCONVERTED_VRS | (TEXT_VRS - {"PN"})


def _text_values(value: Any) -> list[str]:
    if isinstance(value, (MultiValue, list, tuple)):
        return [text for item in value for text in _text_values(item)]
    if isinstance(value, (str, PersonName)):
        return [str(value)]
    if isinstance(value, bytes):
        return [value.decode("utf-8", "replace")]
    return []


def encode_identifier(identifier: Dataset, transfer_syntax: str) -> bytes | None:
    """An identifier encoded in ``transfer_syntax``; None if pydicom cannot."""
    syntax = UID(transfer_syntax)
    return encode(
        identifier,
        syntax.is_implicit_VR,
        syntax.is_little_endian,
        syntax.is_deflated,
    )


def has_non_ascii_text(ds: Dataset) -> bool:
    """Whether any text value in ``ds`` (sequences included) is not ASCII."""
    for element in ds.iterall():
        if element.VR == "SQ":
            continue
        if any(not text.isascii() for text in _text_values(element.value)):
            return True
    return False


def response_identifier(
    match: dict[str, Any],
    requested: tuple[RequestedKey, ...],
    level: Level,
    wants_character_set: bool,
    retrieve_ae_title: str,
) -> Dataset:
    """The pending response identifier of one match."""
    ds = Dataset()
    for key in requested:
        if key.tag == RETRIEVE_AE_TITLE:
            ds.add(DataElement(key.tag, "AE", retrieve_ae_title))
            continue
        attribute = match.get(_json_key(key))
        ds.add(_element(key, attribute) if attribute else _empty(key))
    ds.add(DataElement(QUERY_RETRIEVE_LEVEL, "CS", level.value))
    if has_non_ascii_text(ds):
        ds.add(DataElement(SPECIFIC_CHARACTER_SET, "CS", UTF8_CHARACTER_SET))
    elif wants_character_set:
        ds.add(DataElement(SPECIFIC_CHARACTER_SET, "CS", None))
    return ds


# Transfer syntaxes whose identifiers are written straight from the match.
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Text VRs the direct writer takes (a DS number's text is pydicom's to
# choose), and the struct formats of the binary ones.
_TEXT_VRS = _STRING_VRS - {"DS"}
_BINARY_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
# PS3.5 7.1.2: these VRs have a 4-byte length in Explicit VR.
_LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC"})
_LONG_LENGTH_VRS |= frozenset({"UN", "UR", "UT"})


class _Unwritable(Exception):
    """A value the direct writer leaves to pydicom."""


def _pn_text(value: Any) -> str:
    if not isinstance(value, dict):
        raise _Unwritable("PN value is not an object")
    groups = [value.get(name) or "" for name in ("Alphabetic", "Ideographic")]
    groups.append(value.get("Phonetic") or "")
    if not all(isinstance(group, str) for group in groups):
        raise _Unwritable("PN component group is not a string")
    return "=".join(groups).rstrip("=")


def _text_value(vr: str, value: Any) -> str:
    if value is None:
        return ""
    if vr == "PN":
        return _pn_text(value)
    if vr == "IS" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and vr in _TEXT_VRS:
        return value
    raise _Unwritable(f"{vr} value {type(value).__name__}")


def _value_bytes(vr: str, values: list[Any]) -> tuple[bytes, bool]:
    """The value field (padded to even length) and whether its text is not ASCII."""
    if vr in _BINARY_FORMATS:
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise _Unwritable(f"{vr} value that is no number")
        try:
            packed = struct.pack(f"<{len(values)}{_BINARY_FORMATS[vr]}", *values)
        except (struct.error, OverflowError) as error:
            raise _Unwritable(str(error)) from None
        return packed, False
    if vr != "PN" and vr not in _TEXT_VRS:
        raise _Unwritable(f"VR {vr}")
    text = "\\".join(_text_value(vr, value) for value in values)
    raw = text.encode("utf-8")
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw, not text.isascii()


def _header(tag: int, vr: str, length: int, explicit: bool) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if not explicit:
        return struct.pack("<HHL", group, element, length)
    if vr in _LONG_LENGTH_VRS:
        return struct.pack("<HH2s2xL", group, element, vr.encode(), length)
    if length > 0xFFFF:
        raise _Unwritable(f"{length} bytes in a {vr} value")
    return struct.pack("<HH2sH", group, element, vr.encode(), length)


def write_response_identifier(
    match: dict[str, Any],
    requested: tuple[RequestedKey, ...],
    level: Level,
    wants_character_set: bool,
    retrieve_ae_title: str,
    transfer_syntax: str,
) -> bytes | None:
    """``response_identifier`` encoded, written straight from the match.

    The same elements and bytes as pydicom writes for the data set
    ``response_identifier`` builds (tests compare them), without building
    it. None when pydicom has to: a transfer syntax other than Implicit or
    Explicit VR Little Endian, a sequence, or a value of another kind.
    """
    if transfer_syntax not in (_IMPLICIT_LE, _EXPLICIT_LE):
        return None
    elements: dict[int, tuple[str, bytes]] = {}
    non_ascii = False
    try:
        for key in requested:
            tag = int(key.tag)
            if key.tag == RETRIEVE_AE_TITLE:
                elements[tag] = ("AE", _value_bytes("AE", [retrieve_ae_title])[0])
                continue
            if key.items is not None or key.vr == "SQ":
                return None
            attribute = match.get(f"{tag:08X}")
            if not attribute or "Value" not in attribute:
                elements[tag] = (key.vr, b"")
                continue
            vr = str(attribute.get("vr") or key.vr)
            values = attribute["Value"]
            if not isinstance(values, list):
                return None
            encoded, wide = _value_bytes(vr, values)
            non_ascii = non_ascii or wide
            elements[tag] = (vr, encoded)
        elements[int(QUERY_RETRIEVE_LEVEL)] = (
            "CS",
            _value_bytes("CS", [level.value])[0],
        )
    except _Unwritable:
        return None
    if non_ascii:
        charset = _value_bytes("CS", [UTF8_CHARACTER_SET])[0]
        elements[int(SPECIFIC_CHARACTER_SET)] = ("CS", charset)
    elif wants_character_set:
        elements[int(SPECIFIC_CHARACTER_SET)] = ("CS", b"")
    explicit = transfer_syntax == _EXPLICIT_LE
    parts: list[bytes] = []
    try:
        for tag in sorted(elements):
            vr, value = elements[tag]
            parts.append(_header(tag, vr, len(value), explicit))
            parts.append(value)
    except _Unwritable:
        return None
    return b"".join(parts)
