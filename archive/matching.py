"""Attribute matching of PS3.4 C.2.2.2, shared by QIDO-RS and C-FIND.

A query value becomes a ``Matcher``: universal, single value, wildcard, UID
list, range, or a list of these (multiple value matching). Matchers are pure
data; ``archive/_sql.py`` turns them into SQL.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from archive.errors import InvalidQuery
from archive.uids import is_acceptable_uid

_DATE = re.compile(r"^[0-9]{8}$")
_TIME = re.compile(r"^([0-9]{2})([0-9]{2})?([0-9]{2})?(?:\.([0-9]{1,6}))?$")
# PS3.5 6.2 DT: YYYY[MM[DD[HH[MM[SS[.F{1-6}]]]]]][&ZZXX], no gaps before the offset.
_DATE_TIME = re.compile(
    r"^([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
    r"(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?)?)?)?(?:([+-])([0-9]{2})([0-9]{2}))?$"
)
# PS3.5 6.2: offsets from UTC run from -12:00 to +14:00, in minutes here.
_OFFSET_MIN, _OFFSET_MAX = -12 * 60, 14 * 60
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
    """Range matching on normalised DA, TM or DT text; None is an open end.

    DA is YYYYMMDD, TM is HHMMSS.FFFFFF and DT is YYYYMMDDHHMMSS.FFFFFF in UTC
    (see ``datetime_bounds``); both ends are inclusive. For TM, ``low`` greater
    than ``high`` is a range across midnight: it matches times at or after
    ``low`` and times at or before ``high``.
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


def _utc_text(moment: datetime, offset_minutes: int) -> str:
    """Shift a local moment to UTC and write it as YYYYMMDDHHMMSS.FFFFFF."""
    try:
        utc = moment - timedelta(minutes=offset_minutes)
    except OverflowError:
        # Within a day of year 1 or 9999: the open end of the calendar is the bound.
        utc = datetime.min if offset_minutes > 0 else datetime.max
    return (
        f"{utc.year:04d}{utc.month:02d}{utc.day:02d}"
        f"{utc.hour:02d}{utc.minute:02d}{utc.second:02d}.{utc.microsecond:06d}"
    )


def _offset_minutes(sign: str | None, hours: str | None, minutes: str | None) -> int:
    if sign is None or hours is None or minutes is None:
        # No &ZZXX suffix: the value is taken as UTC (see ``datetime_bounds``).
        return 0
    if int(minutes) > 59:
        raise ValueError(minutes)
    offset = int(hours) * 60 + int(minutes)
    offset = -offset if sign == "-" else offset
    if not _OFFSET_MIN <= offset <= _OFFSET_MAX:
        raise ValueError(offset)
    return offset


def datetime_bounds(value: str) -> tuple[str, str] | None:
    """The first and last instant a DT value names, in UTC; None if it is not DT.

    A value names a period as long as its precision (PS3.4 C.2.2.2.5.1): ``2011``
    is all of 2011, ``201105251456`` one minute, ``20110525145628.35`` ten
    milliseconds. Both bounds are YYYYMMDDHHMMSS.FFFFFF in UTC: a value with an
    ``&ZZXX`` suffix is shifted by it, a value without one is taken as UTC, so
    two values without offsets compare as written. Timezone Offset From UTC
    (0008,0201) is not applied. The date must exist, hours run to 23, minutes
    to 59, seconds to 60 (a leap second, read as the end of second 59).
    """
    match = _DATE_TIME.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, *offset = match.groups()
    try:
        offset_minutes = _offset_minutes(*offset)
        first_month, last_month = (int(month), int(month)) if month else (1, 12)
        first_day = int(day) if day else 1
        last_day = int(day) if day else calendar.monthrange(int(year), last_month)[1]
        first = datetime(int(year), first_month, first_day)
        last = datetime(int(year), last_month, last_day)
    except ValueError:
        return None

    hours, minutes = int(hour or 0), int(minute or 0)
    seconds = int(second or 0)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None

    first = first.replace(hour=hours, minute=minutes, second=min(seconds, 59))
    last = last.replace(
        hour=hours if hour else 23,
        minute=minutes if minute else 59,
        second=min(seconds, 59) if second else 59,
    )

    if seconds == 60:
        low_fraction = high_fraction = "999999"
    else:
        low_fraction = (fraction or "").ljust(6, "0")
        high_fraction = (fraction or "").ljust(6, "9")
    first = first.replace(microsecond=int(low_fraction))
    last = last.replace(microsecond=int(high_fraction))
    return _utc_text(first, offset_minutes), _utc_text(last, offset_minutes)


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


def _datetime_range(value: str) -> Range | None:
    """Read ``value`` as a DT range, or None when no hyphen separates two ends.

    A hyphen may also start a negative offset (``20110525-0500``): each hyphen is
    tried as the separator in turn, and the first that leaves two valid ends in
    order wins.
    """
    for index, char in enumerate(value):
        if char != "-":
            continue
        low_text, high_text = value[:index].strip(), value[index + 1 :].strip()
        if not low_text and not high_text:
            continue
        low = datetime_bounds(low_text) if low_text else None
        high = datetime_bounds(high_text) if high_text else None
        if (low_text and low is None) or (high_text and high is None):
            continue
        if low is not None and high is not None and low[0] > high[1]:
            continue
        return Range(low[0] if low else None, high[1] if high else None)
    return None


def _datetime_matcher(keyword: str, value: str) -> Range:
    """DT single value or range matching (PS3.4 C.2.2.2.5, C.2.2.2.5.1)."""
    matcher = _datetime_range(value)
    if matcher is not None:
        return matcher
    # A single value matches every instant within its precision, like TM.
    bounds = datetime_bounds(value)
    if bounds is None:
        raise InvalidQuery(
            f"{keyword} value {value!r} is not a date-time "
            "YYYYMMDDHHMMSS.FFFFFF&ZZXX (precision may be shorter, the offset may "
            "be left out) or a range of two such values that does not end before "
            "it starts (either end may be left out)"
        )
    return Range(*bounds)


def _text_matcher(value: str) -> Single | Wildcard:
    if _WILDCARDS & set(value):
        return Wildcard(like_pattern(value))
    return Single(value)


def _one(keyword: str, vr: str, value: str) -> Single | Wildcard | Range:
    if vr == "DA":
        return _date_matcher(keyword, value)
    if vr == "TM":
        return _time_matcher(keyword, value)
    if vr == "DT":
        return _datetime_matcher(keyword, value)
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
