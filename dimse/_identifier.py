"""C-FIND, C-MOVE and C-GET identifiers as archive queries (PS3.4 C.2.2, C.4).

Pure logic: a decoded request identifier becomes a ``Query`` in DICOM string
form (the form QIDO-RS uses too), plus the list of keys the response must
carry. Matching itself happens in the archive, never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from archive.attributes import Level
from archive.charset import REPLACEMENT, TEXT_VRS, dataset_charsets, decode_value
from archive.query import Query
from dimse.errors import InvalidIdentifier

QUERY_RETRIEVE_LEVEL = Tag("QueryRetrieveLevel")
SPECIFIC_CHARACTER_SET = Tag("SpecificCharacterSet")
RETRIEVE_AE_TITLE = Tag("RetrieveAETitle")
# Keys that steer the query rather than match (PS3.4 C.4.1.1.3, C.6.1.1.1).
_CONTROL_KEYS = frozenset(
    {
        QUERY_RETRIEVE_LEVEL,
        SPECIFIC_CHARACTER_SET,
        RETRIEVE_AE_TITLE,
        Tag("QueryRetrieveView"),
        Tag("TimezoneOffsetFromUTC"),
    }
)
# VRs whose values are ASCII whatever the character set (PS3.5 6.2).
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_PATIENT_ROOT_LEVELS = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)
_STUDY_ROOT_LEVELS = (Level.STUDY, Level.SERIES, Level.IMAGE)
# PS3.4 C.2.2.2.4: the wildcard characters, which no retrieve key may hold.
_WILDCARDS = frozenset("*?")
# PS3.4 C.6.1.1 / C.6.2.1: the unique key of each level.
UNIQUE_KEYS: dict[Level, str] = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}


@dataclass(frozen=True)
class RequestedKey:
    """One key the caller asked for; ``items`` holds a sequence's item keys.

    ``items`` is None when every item attribute is wanted (a sequence sent
    with no item or with one empty item, PS3.4 C.2.2.1.3).
    """

    tag: BaseTag
    vr: str
    items: tuple[RequestedKey, ...] | None = None


@dataclass(frozen=True)
class FindRequest:
    """A decoded identifier: the query, the keys to return, the level."""

    query: Query
    requested: tuple[RequestedKey, ...]
    wants_character_set: bool

    @property
    def level(self) -> Level:
        """The Query/Retrieve Level of the request."""
        return self.query.level


def _level(identifier: Dataset, patient_root: bool) -> Level:
    raw = identifier.get("QueryRetrieveLevel")
    text = str(raw or "").strip().upper()
    allowed = _PATIENT_ROOT_LEVELS if patient_root else _STUDY_ROOT_LEVELS
    for level in allowed:
        if text == level.value:
            return level
    model = "Patient Root" if patient_root else "Study Root"
    raise InvalidIdentifier(
        f"Query/Retrieve Level {text!r} is not one of "
        f"{[level.value for level in allowed]} of the {model} model"
    )


def _vr_of(element: DataElement | RawDataElement) -> str:
    if element.VR:
        return str(element.VR).split(" or ")[0]
    try:
        return str(dictionary_VR(element.tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def _text_of_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(_text_of_value(item) for item in value)
    return str(value)


def _decoded(data: bytes, tag: BaseTag, vr: str, charsets: Sequence[str]) -> str:
    """Decode raw value bytes; refuse bytes the character set cannot decode.

    Text goes through the archive's decoder, the one ingest uses, so that ISO
    2022 escapes (which pydicom leaves in the text) decode alike on both
    sides. A U+FFFD in the result marks bytes the declared character set has
    no character for: matching them would find nothing, or the wrong thing.
    """
    if vr in ASCII_VRS:
        text = data.decode("ascii", errors="replace")
    else:
        text = decode_value(data, charsets, vr)
    if REPLACEMENT in text:
        name = keyword_for_tag(tag) or str(tag)
        declared = "\\".join(charsets) or "the default repertoire"
        raise InvalidIdentifier(
            f"{name} holds bytes that {declared!r} cannot decode; encode it in the "
            "Specific Character Set the identifier declares"
        )
    return text


def _text(identifier: Dataset, tag: BaseTag, vr: str, charsets: Sequence[str]) -> str:
    """The value in DICOM string form, decoded with the identifier's charset."""
    # An empty value needs no conversion (which an ambiguous VR would fail).
    raw = identifier.get_item(tag, keep_deferred=True)
    if vr in _BINARY_VRS or (isinstance(raw, RawDataElement) and not raw.value):
        return ""
    if isinstance(raw, RawDataElement) and (vr in ASCII_VRS or vr in TEXT_VRS):
        return _decoded(raw.value, tag, vr, charsets).strip(" \x00")
    try:
        value = identifier[tag].value
    except (ValueError, LookupError, UnicodeError, AttributeError) as error:
        # AttributeError: pydicom cannot resolve an ambiguous VR (e.g. US or SS).
        name = keyword_for_tag(tag) or str(tag)
        raise InvalidIdentifier(f"{name} cannot be decoded: {error}") from None
    return _text_of_value(value).strip(" \x00")


def _sequence_keys(
    identifier: Dataset,
    tag: BaseTag,
    keyword: str,
    keys: dict[str, str],
    charsets: Sequence[str],
) -> RequestedKey:
    items = identifier[tag].value or []
    if not items or len(items[0]) == 0:
        keys[keyword] = ""
        return RequestedKey(tag, "SQ", None)
    item = items[0]
    # PS3.5 6.1.2.5.3: an item may declare a character set of its own.
    item_charsets = dataset_charsets(item, charsets)
    wanted: list[RequestedKey] = []
    for element in item:
        item_tag = element.tag
        item_vr = _vr_of(element)
        wanted.append(RequestedKey(item_tag, item_vr))
        item_keyword = keyword_for_tag(item_tag)
        if not item_keyword or item_vr == "SQ":
            continue
        text = _text(item, item_tag, item_vr, item_charsets)
        if text:
            keys[f"{keyword}.{item_keyword}"] = text
    if not any("." in key and key.startswith(keyword + ".") for key in keys):
        keys[keyword] = ""
    return RequestedKey(tag, "SQ", tuple(wanted))


def parse_identifier(identifier: Dataset, patient_root: bool) -> FindRequest:
    """Turn a decoded C-FIND identifier into a ``FindRequest``.

    Raises ``InvalidIdentifier`` for a missing or wrong Query/Retrieve Level
    or a value that cannot be decoded in the identifier's Specific Character
    Set (PS3.5 6.1).
    """
    level = _level(identifier, patient_root)
    charsets = dataset_charsets(identifier)
    keys: dict[str, str] = {}
    requested: list[RequestedKey] = []
    for tag in sorted(identifier.keys()):
        if tag.element == 0 or tag in _CONTROL_KEYS:
            continue
        vr = _vr_of(identifier.get_item(tag, keep_deferred=True))
        keyword = keyword_for_tag(tag)
        if not keyword or tag.is_private:
            requested.append(RequestedKey(tag, vr))
            continue
        if vr == "SQ":
            requested.append(_sequence_keys(identifier, tag, keyword, keys, charsets))
            continue
        keys[keyword] = _text(identifier, tag, vr, charsets)
        requested.append(RequestedKey(tag, vr))
    if RETRIEVE_AE_TITLE in identifier:
        requested.append(RequestedKey(RETRIEVE_AE_TITLE, "AE"))
    return FindRequest(
        query=Query(level=level, keys=keys),
        requested=tuple(requested),
        wants_character_set=SPECIFIC_CHARACTER_SET in identifier,
    )


def _unique_value(keyword: str, value: str, list_allowed: bool) -> str:
    """A unique key of a retrieve identifier, refused unless it names exactly.

    PS3.4 C.4.2.2.1: unique keys match by single value, and the unique key
    of the retrieve level, a UID, may hold a list of UIDs; wildcards and
    universal matching do not apply (nor ranges, which only dates and times
    have).
    """
    if _WILDCARDS.intersection(value):
        raise InvalidIdentifier(
            f"{keyword} holds a wildcard ('*' or '?'): a C-MOVE or C-GET selects "
            "by exact unique key values only (PS3.4 C.4.2.2.1)"
        )
    values = value.split("\\")
    if len(values) > 1 and not list_allowed:
        raise InvalidIdentifier(
            f"{keyword} holds {len(values)} values: only the unique key of the "
            "retrieve level, a UID, may hold a list (PS3.4 C.4.2.2.1)"
        )
    if not all(part.strip() for part in values):
        raise InvalidIdentifier(f"{keyword} holds an empty value in its list")
    return value


def retrieve_query(identifier: Dataset, patient_root: bool) -> Query:
    """The image-level query selecting what a C-MOVE or C-GET asks for.

    Only the unique keys of the requested level and the levels above it
    select (PS3.4 C.4.2.2.1); the unique key of the level itself is required.
    Raises ``InvalidIdentifier`` for a key that does not name exactly: a
    wildcard, or a list anywhere but in the UID of the retrieve level.
    """
    request = parse_identifier(identifier, patient_root)
    levels = _PATIENT_ROOT_LEVELS if patient_root else _STUDY_ROOT_LEVELS
    in_scope = levels[: levels.index(request.level) + 1]
    own_key = UNIQUE_KEYS[request.level]
    if not request.query.keys.get(own_key):
        raise InvalidIdentifier(
            f"A {request.level.value} level retrieve needs a value for {own_key}"
        )
    keys: dict[str, str] = {}
    for level in in_scope:
        keyword = UNIQUE_KEYS[level]
        value = request.query.keys.get(keyword, "")
        if value:
            # Patient ID is LO: a backslash in it is a second value, never a list.
            list_allowed = level is request.level and level is not Level.PATIENT
            keys[keyword] = _unique_value(keyword, value, list_allowed)
    return Query(
        level=Level.IMAGE,
        keys=keys,
        include=frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}),
    )
