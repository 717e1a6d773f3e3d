"""Attribute matching of PS3.4 C.2.2.2, shared by QIDO-RS and C-FIND.

A query value becomes a ``Matcher``: universal, single value, wildcard, UID
list, range, or a list of these (multiple value matching). Matchers are pure
data; ``archive/_sql.py`` turns them into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from archive.errors import InvalidQuery
from archive.uids import is_acceptable_uid

_DATE = re.compile(r"^[0-9]{8}$")
_TIME = re.compile(r"^([0-9]{2})([0-9]{2})?([0-9]{2})?(?:\.([0-9]{1,6}))?$")
_WILDCARDS = frozenset("*?")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class Universal:
    """An empty value: every entity matches and the key is returned."""


@dataclass(frozen=True)
class Single:
    """Single value matching; ``case_insensitive`` for person names."""

    value: str


@dataclass(frozen=True)
class Wildcard:
    """Wildcard matching as a SQL LIKE pattern with ``\\`` as the escape."""

    pattern: str


@dataclass(frozen=True)
class UidList:
    """List of UID matching (PS3.4 C.2.2.2.2)."""

    uids: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """Range matching on normalised DA or TM text; None is an open end.

    For TM, ``low`` greater than ``high`` is a range across midnight: it matches
    times at or after ``low`` and times at or before ``high``.
    """

    low: str | None
    high: str | None

    @property
    def crosses_midnight(self) -> bool:
        """True when the range wraps past 24:00 (TM only)."""
        return self.low is not None and self.high is not None and self.low > self.high


@dataclass(frozen=True)
class AnyOf:
    """Multiple value matching: any of the listed matchers."""

    matchers: tuple[Single | Wildcard | Range, ...]


Matcher = Universal | Single | Wildcard | UidList | Range | AnyOf


def normalize_date(value: str) -> str | None:
    """Return YYYYMMDD for a valid DA value, else None (ACR-NEMA dots accepted)."""
    text = value.strip().replace(".", "") if len(value.strip()) == 10 else value.strip()
    if not _DATE.match(text):
        return None
    month, day = int(text[4:6]), int(text[6:8])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return text


def is_calendar_date(text: str) -> bool:
    """True when YYYYMMDD text names a day that exists (20240229 does, 20240230 not)."""
    try:
        date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


def _query_date(value: str) -> str | None:
    """A DA query value as YYYYMMDD, or None unless it is a real calendar date."""
    normalized = normalize_date(value)
    if normalized is None or not is_calendar_date(normalized):
        return None
    return normalized


def normalize_time(value: str, upper: bool = False) -> str | None:
    """Return HHMMSS.FFFFFF for a valid TM value, else None.

    Missing precision is filled with zeros, or with the largest value when
    ``upper`` is set, so that '-1200' includes 12:00:59.
    """
    text = value.strip().replace(":", "")
    match = _TIME.match(text)
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        return None
    filler_two = "59" if upper else "00"
    minutes = minutes if minutes is not None else filler_two
    seconds = seconds if seconds is not None else filler_two
    if fraction is None:
        fraction = "999999" if upper else "000000"
    else:
        fraction = fraction.ljust(6, "9" if upper else "0")
    return f"{hours}{minutes}{seconds}.{fraction}"


def like_pattern(value: str) -> str:
    """Turn a DICOM wildcard value into a LIKE pattern (escape ``\\``)."""
    out: list[str] = []
    for char in value:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in "%_\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _date_range(keyword: str, value: str) -> Range:
    low_text, _, high_text = value.partition("-")
    low = _query_date(low_text) if low_text else None
    high = _query_date(high_text) if high_text else None
    if (low_text and low is None) or (high_text and high is None):
        raise InvalidQuery(
            f"{keyword} range {value!r} is not YYYYMMDD-YYYYMMDD of real calendar "
            "dates (either end may be left out)"
        )
    if low is not None and high is not None and low > high:
        raise InvalidQuery(f"{keyword} range {value!r} ends before it starts")
    return Range(low, high)


def _time_range(keyword: str, value: str) -> Range:
    low_text, _, high_text = value.partition("-")
    low = normalize_time(low_text) if low_text else None
    high = normalize_time(high_text, upper=True) if high_text else None
    if (low_text and low is None) or (high_text and high is None):
        raise InvalidQuery(
            f"{keyword} range {value!r} is not HHMMSS.FFFFFF-HHMMSS.FFFFFF "
            "(either end may be left out, precision may be shorter)"
        )
    return Range(low, high)


def _date_matcher(keyword: str, value: str) -> Single | Range:
    if "-" in value:
        if value == "-":
            raise InvalidQuery(f"{keyword} range {value!r} has neither end")
        return _date_range(keyword, value)
    normalized = _query_date(value)
    if normalized is None:
        raise InvalidQuery(
            f"{keyword} value {value!r} is not a real calendar date YYYYMMDD"
        )
    return Single(normalized)


def _time_matcher(keyword: str, value: str) -> Range:
    if "-" in value:
        if value == "-":
            raise InvalidQuery(f"{keyword} range {value!r} has neither end")
        return _time_range(keyword, value)
    # A single time matches every time within its precision: 1200 is 12:00:xx.
    low, high = normalize_time(value), normalize_time(value, upper=True)
    if low is None or high is None:
        raise InvalidQuery(f"{keyword} value {value!r} is not a time HHMMSS.FFFFFF")
    return Range(low, high)


def _text_matcher(value: str) -> Single | Wildcard:
    if _WILDCARDS & set(value):
        return Wildcard(like_pattern(value))
    return Single(value)


def _one(keyword: str, vr: str, value: str) -> Single | Wildcard | Range:
    if vr == "DA":
        return _date_matcher(keyword, value)
    if vr == "TM":
        return _time_matcher(keyword, value)
    if vr in ("IS", "US", "UL", "SS", "SL"):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        # isdigit() alone admits '²' and other Unicode digits; DICOM means ASCII.
        if not (digits.isascii() and digits.isdigit()):
            raise InvalidQuery(f"{keyword} value {value!r} is not a whole number")
        number = int(text)
        if not _INT32_MIN <= number <= _INT32_MAX:
            raise InvalidQuery(
                f"{keyword} value {value!r} is outside the range of the index "
                f"({_INT32_MIN}..{_INT32_MAX})"
            )
        return Single(str(number))
    if vr == "PN":
        return _text_matcher(value.lower())
    return _text_matcher(value)


def build_matcher(keyword: str, vr: str, value: str | None) -> Matcher:
    """Turn one query value into a matcher, or raise ``InvalidQuery``.

    UI values are a backslash-separated UID list; other values separated by
    backslashes are matched as alternatives (multiple value matching).
    """
    if value is None or value == "":
        return Universal()
    if "\x00" in value:
        raise InvalidQuery(f"{keyword} value {value!r} holds a NUL character")
    if vr == "UI":
        uids = tuple(uid.strip() for uid in value.split("\\"))
        bad = [uid for uid in uids if not is_acceptable_uid(uid)]
        if bad:
            raise InvalidQuery(
                f"{keyword} holds {bad[0]!r}, which is not a UID (digits and dots, "
                "at most 64 characters)"
            )
        return UidList(uids)
    # A value that is only wildcards matches everything, including empty values.
    if set(value) <= {"*"}:
        return Universal()
    parts = [part for part in value.split("\\") if part != ""]
    if not parts:
        # Only separators: a list of empty values, which is universal matching.
        return Universal()
    if len(parts) == 1:
        return _one(keyword, vr, parts[0])
    return AnyOf(tuple(_one(keyword, vr, part) for part in parts))
