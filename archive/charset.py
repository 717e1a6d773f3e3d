"""Text values decoded under Specific Character Set (PS3.5 6.1, PS3.3 C.12.1.1.2).

Every defined term is decoded here rather than by pydicom: pydicom 3.0.2 leaves
the ISO 2022 IR 58 escape sequence (ESC $ ) A) inside the text it returns.
:func:`fix_dataset_text` puts the right Unicode back into a data set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks
from pydicom.tag import Tag

SPECIFIC_CHARACTER_SET = Tag("SpecificCharacterSet")

# VRs whose values may hold characters beyond the default repertoire (PS3.5 6.1.2.3)
TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
# VRs with a single value, where a backslash is a character, not a delimiter
SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UR", "UT"})

ESCAPE = b"\x1b"
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class _CodedSet:
    """A coded character set as ISO 2022 designates it to G0 or G1."""

    codec: str
    # Bytes a Python ISO 2022 codec needs ahead of 7-bit two-byte characters
    escape: bytes = b""

    def decode(self, data: bytes) -> str:
        """Decode bytes of this set; whatever does not decode becomes U+FFFD."""
        if not self.escape:
            return data.decode(self.codec, "replace")
        parts = []
        for run in _GRAPHIC_OR_NOT.findall(data):
            if 0x21 <= run[0] <= 0x7E:
                parts.append((self.escape + run).decode(self.codec, "replace"))
            else:
                parts.append(run.decode("ascii", "replace"))
        return "".join(parts)


_GL_OR_GR = re.compile(rb"[\x00-\x7f]+|[\x80-\xff]+")
_GRAPHIC_OR_NOT = re.compile(rb"[\x21-\x7e]+|[^\x21-\x7e]+")

# ISO-IR 6 (ASCII); also stands for JIS X 0201 Romaji (ISO-IR 14), which DICOM
# reads as ASCII so that 05/12 stays the value delimiter.
_ASCII = _CodedSet("ascii")
_KATAKANA = _CodedSet("shift_jis")
_JIS_X_0208 = _CodedSet("iso2022_jp", b"\x1b$B")
_JIS_X_0212 = _CodedSet("iso2022_jp_2", b"\x1b$(D")
_KS_X_1001 = _CodedSet("euc_kr")
_GB2312 = _CodedSet("gb2312")
_ISO_8859 = {
    100: _CodedSet("latin_1"),
    101: _CodedSet("iso8859_2"),
    109: _CodedSet("iso8859_3"),
    110: _CodedSet("iso8859_4"),
    144: _CodedSet("iso8859_5"),
    127: _CodedSet("iso8859_6"),
    126: _CodedSet("iso8859_7"),
    138: _CodedSet("iso8859_8"),
    148: _CodedSet("iso8859_9"),
    166: _CodedSet("iso8859_11"),
    203: _CodedSet("iso8859_15"),
}

_G0, _G1 = 0, 1
_Designation = tuple[_CodedSet, _CodedSet | None]

# Escape sequences without ESC, PS3.3 Tables C.12-3 and C.12-4
_ESCAPES: dict[bytes, tuple[int, _CodedSet]] = {
    b"(B": (_G0, _ASCII),
    b"(J": (_G0, _ASCII),
    b")I": (_G1, _KATAKANA),
    b"-A": (_G1, _ISO_8859[100]),
    b"-B": (_G1, _ISO_8859[101]),
    b"-C": (_G1, _ISO_8859[109]),
    b"-D": (_G1, _ISO_8859[110]),
    b"-L": (_G1, _ISO_8859[144]),
    b"-G": (_G1, _ISO_8859[127]),
    b"-F": (_G1, _ISO_8859[126]),
    b"-H": (_G1, _ISO_8859[138]),
    b"-M": (_G1, _ISO_8859[148]),
    b"-T": (_G1, _ISO_8859[166]),
    b"-b": (_G1, _ISO_8859[203]),
    b"$B": (_G0, _JIS_X_0208),
    b"$(D": (_G0, _JIS_X_0212),
    b"$)C": (_G1, _KS_X_1001),
    b"$)A": (_G1, _GB2312),
}

# What each term designates before any escape sequence (PS3.3 C.12.1.1.2); the
# JIS X 0208 and 0212 sets come into use only through their escape sequences.
_INITIAL: dict[str, _Designation] = {
    "": (_ASCII, None),
    "ISO_IR 6": (_ASCII, None),
    "ISO 2022 IR 6": (_ASCII, None),
    "ISO_IR 13": (_ASCII, _KATAKANA),
    "ISO 2022 IR 13": (_ASCII, _KATAKANA),
    "ISO 2022 IR 87": (_ASCII, None),
    "ISO 2022 IR 159": (_ASCII, None),
    "ISO 2022 IR 149": (_ASCII, _KS_X_1001),
    "ISO 2022 IR 58": (_ASCII, _GB2312),
}
for _number, _coded_set in _ISO_8859.items():
    _INITIAL[f"ISO_IR {_number}"] = (_ASCII, _coded_set)
    _INITIAL[f"ISO 2022 IR {_number}"] = (_ASCII, _coded_set)

# Terms that allow no code extensions, decoded by one codec (PS3.3 C.12-5)
UTF_8 = "ISO_IR 192"
_STAND_ALONE = {UTF_8: "utf_8", "GB18030": "gb18030", "GBK": "gbk"}
# Terms that declare nothing beyond ASCII
_ASCII_TERMS = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"})
# Every defined term of PS3.3 C.12.1.1.2 ('' is the default repertoire)
DEFINED_TERMS = frozenset(_INITIAL) | frozenset(_STAND_ALONE)

# Where the designation returns to the initial one (PS3.5 6.1.2.5.3)
_PN_RESETS = re.compile(rb"[\\^=\t\n\f\r]")
_VALUE_RESETS = re.compile(rb"[\\\t\n\f\r]")
_TEXT_RESETS = re.compile(rb"[\t\n\f\r]")

_SLOPPY_TERM = re.compile(r"ISO[ _-]?(2022[ _-]?)?IR[ _-]?([0-9]+)")


def normalize_term(term: str) -> str:
    """The defined term meant by ``term``, mending 'ISO IR 100' and its kin."""
    text = term.strip().upper()
    match = _SLOPPY_TERM.fullmatch(text)
    if match is None:
        return text
    prefix = "ISO 2022 IR" if match.group(1) else "ISO_IR"
    return f"{prefix} {int(match.group(2))}"


def decode_value(
    raw: bytes, charsets: Sequence[str], vr: str, *, fallback: str | None = None
) -> str:
    """Decode the bytes of one element value, delimiters kept, to Unicode.

    ``charsets`` are the values of Specific Character Set in force (empty for
    the default repertoire). A value holding bytes beyond ASCII that no
    declared character set has room for (a modality that writes GBK and
    declares nothing) is read as UTF-8 when it is valid UTF-8, else as the
    defined term ``fallback``. Bytes that do not decode never raise: they
    become U+FFFD.
    """
    terms = [normalize_term(term) for term in charsets] or [""]
    for term in terms:
        if term in _STAND_ALONE:
            return raw.decode(_STAND_ALONE[term], "replace")
    has_escape = ESCAPE in raw
    if not has_escape and raw.isascii():
        return raw.decode("ascii")
    declared = [_INITIAL[term] for term in terms if term in _INITIAL]
    if not has_escape and all(g1 is None for _, g1 in declared):
        return _undeclared(raw, vr, fallback)
    initial = _INITIAL.get(terms[0], (_ASCII, None))
    # Writers that omit ESC $ ) A still mean the G1 set they declared.
    spare_g1 = next((g1 for _, g1 in declared if g1 is not None), None)
    return _decode_iso_2022(raw, initial, spare_g1, _resets_for(vr))


def _undeclared(raw: bytes, vr: str, fallback: str | None) -> str:
    if is_utf_8(raw):
        return raw.decode("utf_8")
    if fallback is not None:
        return decode_value(raw, [fallback], vr)
    return raw.decode("ascii", "replace")


def is_utf_8(raw: bytes) -> bool:
    """Tell whether ``raw`` is valid UTF-8."""
    try:
        raw.decode("utf_8")
    except UnicodeDecodeError:
        return False
    return True


def _resets_for(vr: str) -> re.Pattern[bytes]:
    if vr == "PN":
        return _PN_RESETS
    if vr in SINGLE_VALUE_VRS:
        return _TEXT_RESETS
    return _VALUE_RESETS


def _decode_iso_2022(
    raw: bytes,
    initial: _Designation,
    spare_g1: _CodedSet | None,
    resets: re.Pattern[bytes],
) -> str:
    chunks = raw.split(ESCAPE)
    parts = [_decode_run(chunks[0], initial, spare_g1)]
    g0, g1 = initial
    for chunk in chunks[1:]:
        sequence = chunk[:3] if chunk[:3] in _ESCAPES else chunk[:2]
        if sequence in _ESCAPES:
            element, coded_set = _ESCAPES[sequence]
            g0, g1 = (coded_set, g1) if element == _G0 else (g0, coded_set)
            chunk = chunk[len(sequence) :]
        else:
            parts.append(REPLACEMENT)
        reset = None if g0.escape else resets.search(chunk)
        if reset is None:
            parts.append(_decode_run(chunk, (g0, g1), spare_g1))
            continue
        parts.append(_decode_run(chunk[: reset.start()], (g0, g1), spare_g1))
        parts.append(_decode_run(chunk[reset.start() :], initial, spare_g1))
        g0, g1 = initial
    return "".join(parts)


def _decode_run(
    data: bytes, designation: _Designation, spare_g1: _CodedSet | None
) -> str:
    g0, g1 = designation
    g1 = g1 or spare_g1
    parts = []
    for run in _GL_OR_GR.findall(data):
        if run[0] < 0x80:
            parts.append(g0.decode(run))
        elif g1 is None:
            parts.append(REPLACEMENT * len(run))
        else:
            parts.append(g1.decode(run))
    return "".join(parts)


def dataset_charsets(ds: Dataset, inherited: Sequence[str] = ()) -> list[str]:
    """The Specific Character Set values in force in ``ds``: its own, else inherited.

    A sequence item may declare its own (PS3.5 6.1.2.5.3, PS3.3 C.12.1.1.2).
    """
    elem = ds.get_item(SPECIFIC_CHARACTER_SET)
    if elem is None:
        return list(inherited)
    if isinstance(elem, RawDataElement):
        text = (elem.value or b"").decode("ascii", "replace")
        return [term.strip() for term in text.split("\\")]
    value = elem.value
    if isinstance(value, str):
        return [value.strip()]
    return [str(term).strip() for term in value or ()]


def element_vr(raw: RawDataElement, ds: Dataset) -> str:
    """The VR pydicom gives ``raw`` in ``ds``, found without reading its value.

    It may still be ambiguous ('OB or OW', 'US or SS'): pydicom settles those
    only when it converts the value.
    """
    found: dict[str, Any] = {}
    hooks.raw_element_vr(raw, found, ds=ds)
    return str(found["VR"])


def text_element(tag: int, vr: str, text: str) -> DataElement:
    """A data element holding decoded ``text``, split into values as ``vr`` says."""
    if vr in SINGLE_VALUE_VRS:
        value: str | list[str] = text.rstrip(" \0")
    else:
        values = [part.rstrip(" \0") for part in text.rstrip(" \0").split("\\")]
        value = values[0] if len(values) == 1 else values
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


@dataclass
class TextReport:
    """What decoding the text of one data set found; it holds no values.

    ``undeclared``: bytes beyond ASCII with no character set declared for them.
    ``mislabelled``: the declared term (ISO_IR 192) whose bytes did not decode.
    ``fallback``: the term used instead, when one was given and needed.
    ``replaced``: bytes were needed a fallback and none was given (U+FFFD).
    """

    undeclared: bool = False
    mislabelled: str | None = None
    fallback: str | None = None
    replaced: bool = False


def _text_values(
    ds: Dataset, inherited: Sequence[str]
) -> list[tuple[bytes, list[str]]]:
    """Raw text values beyond ASCII with the character set in force for each."""
    charsets = dataset_charsets(ds, inherited)
    found: list[tuple[bytes, list[str]]] = []
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            if elem.value is None:
                continue
            vr = element_vr(elem, ds)
            if vr in TEXT_VRS and not elem.value.isascii():
                found.append((elem.value, charsets))
            if vr != "SQ":
                continue
            elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                found += _text_values(item, charsets)
    return found


def check_text(ds: Dataset, fallback: str | None = None) -> TextReport:
    """Find text bytes the declared character set cannot explain (PS3.5 6.1).

    Invalid UTF-8 under ISO_IR 192 is the tell of a device that declares UTF-8
    and writes another encoding (often GB18030): then every text value of the
    data set is to be read as ``fallback`` instead.
    """
    report = TextReport()
    for raw, charsets in _text_values(ds, ()):
        terms = [normalize_term(term) for term in charsets]
        if UTF_8 in terms and not is_utf_8(raw):
            report.mislabelled = UTF_8
        elif ESCAPE not in raw and all(term in _ASCII_TERMS for term in terms):
            report.undeclared = True
            if not is_utf_8(raw):
                report.fallback = fallback
                report.replaced = fallback is None
    if report.mislabelled is not None:
        report.fallback = fallback
        report.replaced = fallback is None
    return report


def fix_dataset_text(
    ds: Dataset,
    inherited: Sequence[str] = (),
    *,
    fallback: str | None = None,
    mislabelled: str | None = None,
) -> None:
    """Decode, in place, every text value whose bytes the character set matters to.

    Values of PN, LO, SH, ST, LT, UT and UC that hold an escape or a byte beyond
    ASCII and that pydicom has not converted yet are replaced by elements holding
    :func:`decode_value`'s text; sequence items are visited with the character
    set they declare or inherit. ``mislabelled`` names a declared term found
    wrong by :func:`check_text`: values under it are decoded as ``fallback``.
    Bulk values left unread stay unread.
    """
    charsets = dataset_charsets(ds, inherited)
    effective = charsets
    if mislabelled is not None and fallback is not None:
        effective = [
            fallback if normalize_term(term) == mislabelled else term
            for term in charsets
        ]
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            if elem.value is None:
                continue
            vr = element_vr(elem, ds)
            if vr in TEXT_VRS:
                raw: bytes = elem.value
                if ESCAPE in raw or not raw.isascii():
                    text = decode_value(raw, effective, vr, fallback=fallback)
                    ds[tag] = text_element(tag, vr, text)
                continue
            if vr != "SQ":
                continue
            elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                fix_dataset_text(
                    item, charsets, fallback=fallback, mislabelled=mislabelled
                )
