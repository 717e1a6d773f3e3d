"""C-FIND response identifiers built from archive matches (PS3.4 C.4.1.1.3.2).

Pure logic: a match in DICOM JSON (PS3.18 F.2) becomes a Dataset holding
exactly the requested keys, empty ones with zero length, and Specific
Character Set ISO_IR 192 whenever any returned text is not ASCII.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from archive.attributes import Level
from dimse._identifier import (
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
    try:
        return DataElement.from_json(
            Dataset, _json_key(key), vr, attribute["Value"], value_key
        )
    except (ValueError, TypeError, KeyError):
        # A stored value pydicom cannot rebuild is answered empty, not as a failure.
        return _empty(key)


def _text_values(value: Any) -> list[str]:
    if isinstance(value, (MultiValue, list, tuple)):
        return [text for item in value for text in _text_values(item)]
    if isinstance(value, (str, PersonName)):
        return [str(value)]
    return []


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
