"""Media types and Accept negotiation for DICOMweb (PS3.18 8.7, RFC 7231 5.3.2)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "InvalidMediaType",
    "MediaRange",
    "Offer",
    "negotiate",
    "parse_accept",
    "parse_content_type",
    "quote_parameter",
]

# RFC 7230 3.2.6 token
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# RFC 7231 wants a token or a quoted-string, but clients send type=application/dicom
# unquoted, so an unquoted value is anything without space, quote, backslash, ; or ,
_BARE_VALUE = re.compile(r'[^\s";,\\]+')

# PS3.5 9.1: digits and dots, at most 64 characters
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")

_ANY = "*"


class InvalidMediaType(ValueError):
    """A media type or one of its parameters breaks RFC 7231 3.1.1.1."""


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One element of an Accept header (RFC 7231 5.3.2), names lowercased."""

    type: str
    subtype: str
    params: Mapping[str, str] = field(default_factory=dict)
    q: float = 1.0


@dataclass(frozen=True, slots=True)
class Offer:
    """A representation the server can send (PS3.18 8.7.3).

    ``part_type`` is the default part type of a ``multipart/*`` offer, which a range
    without a ``type`` parameter selects. ``transfer_syntax`` is the UID sent when
    the client names none (PS3.18 8.7.3.5.2 makes Explicit VR Little Endian the
    default of ``application/dicom``); None, or ``"*"`` which becomes None, stands
    for "as stored".
    """

    media_type: str
    part_type: str | None = None
    transfer_syntax: str | None = None

    def __post_init__(self) -> None:
        _check_plain_media_type(self.media_type, "offer media type")
        is_multipart = self.media_type.lower().startswith("multipart/")
        if is_multipart and self.part_type is None:
            raise ValueError(
                f"Offer {self.media_type!r} needs a part_type such as "
                "'application/dicom' (PS3.18 8.7.3.1)"
            )
        if not is_multipart and self.part_type is not None:
            raise ValueError(
                f"Offer {self.media_type!r} is not multipart, so part_type "
                f"{self.part_type!r} has no meaning; leave it None"
            )
        if self.part_type is not None:
            _check_plain_media_type(self.part_type, "offer part type")
        if self.transfer_syntax == _ANY:
            object.__setattr__(self, "transfer_syntax", None)
        elif self.transfer_syntax is not None:
            _check_uid(self.transfer_syntax)


@dataclass(frozen=True, slots=True)
class _Match:
    """How well one Accept element fits one concrete offer."""

    q: float
    range_index: int
    specificity: int
    offer_index: int
    offer: Offer


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into its lowercased media type and its parameters.

    Parameter names are lowercased and quoted-strings unquoted (RFC 7231 3.1.1.1);
    values keep their case, since a boundary is case-sensitive. An empty value, as
    for a request without Content-Type, gives ``("", {})``.

    Raises:
        InvalidMediaType: the value has no type/subtype, a wildcard, a malformed or
            repeated parameter.
    """
    if not value.strip():
        return "", {}
    main, sub, pairs = _parse_media_type(value)
    if _ANY in (main, sub):
        raise InvalidMediaType(
            f"Content-Type {value!r} has a wildcard; name one media type such as "
            "'application/dicom'"
        )
    params: dict[str, str] = {}
    for name, param_value in pairs:
        if name in params:
            raise InvalidMediaType(
                f"Content-Type {value!r} repeats the parameter {name!r}; send it once"
            )
        params[name] = param_value
    return f"{main}/{sub}", params


def quote_parameter(value: str) -> str:
    """Return value as a token, or as a quoted-string when it needs one."""
    if _TOKEN.fullmatch(value):
        return value
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(
            f"Parameter value {value!r} holds a control character; HTTP headers "
            "cannot carry it (RFC 7230 3.2.6)"
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def parse_accept(header: str | None) -> list[MediaRange]:
    """Return the media ranges of an Accept header in the client's order.

    An absent or empty header, or one with no element that parses, means ``*/*``
    (RFC 7231 5.3.2 lets a server disregard a header it cannot use). Elements that do
    not parse, including those whose q is not a number from 0 to 1, are skipped.
    """
    ranges: list[MediaRange] = []
    for element in _split_unquoted(header or "", ","):
        media_range = _parse_range(element)
        if media_range is not None:
            ranges.append(media_range)
    return ranges or [MediaRange(_ANY, _ANY)]


def negotiate(
    header: str | None,
    offers: Sequence[Offer],
    allowed_transfer_syntaxes: Collection[str] = (),
) -> Offer | None:
    """Pick the offer the client prefers most, or None to answer 406.

    Parameters:
        header: the Accept header, None when absent.
        offers: what the server can send, its own preference first; ``*/*`` and an
            absent header pick ``offers[0]``.
        allowed_transfer_syntaxes: UIDs the server can convert to. A range asking
            for another UID than the offer's (PS3.18 8.7.3.5.2) matches only if it
            is one of these; ``transfer-syntax=*`` lets the server choose and gives
            ``transfer_syntax=None``, meaning "as stored".

    Each concrete offer gets the q of the most specific ranges matching it (RFC 7231
    5.3.2); a q of 0 there refuses it. The winner has the highest q, then the
    earliest range in the header, then the most specific range, then comes first
    in ``offers``. The returned offer carries the transfer syntax to send.
    """
    matches: dict[tuple[int, Offer], _Match] = {}
    for range_index, media_range in enumerate(parse_accept(header)):
        for offer_index, offer in enumerate(offers):
            found = _match(media_range, offer, allowed_transfer_syntaxes)
            if found is None:
                continue
            specificity, concrete = found
            key = (offer_index, concrete)
            match = _Match(
                media_range.q, range_index, specificity, offer_index, concrete
            )
            current = matches.get(key)
            if current is None or specificity > current.specificity:
                matches[key] = match
            elif specificity == current.specificity and media_range.q == 0:
                # Of two equally specific ranges, the one refusing the offer wins
                matches[key] = replace(current, q=0.0)

    acceptable = [match for match in matches.values() if match.q > 0]
    if not acceptable:
        return None
    best = min(
        acceptable,
        key=lambda m: (-m.q, m.range_index, -m.specificity, m.offer_index),
    )
    return best.offer


def _match(
    media_range: MediaRange, offer: Offer, allowed: Collection[str]
) -> tuple[int, Offer] | None:
    """Return the specificity of a range for an offer and the offer it selects."""
    offer_type, _, offer_subtype = offer.media_type.lower().partition("/")
    if media_range.type == _ANY:
        specificity = 0
    elif media_range.type != offer_type:
        return None
    elif media_range.subtype == _ANY:
        specificity = 1
    elif media_range.subtype != offer_subtype:
        return None
    else:
        specificity = 2

    part_type = media_range.params.get("type")
    if part_type is not None and offer.part_type is not None:
        if part_type.lower() != offer.part_type.lower():
            return None
        specificity += 1

    requested = media_range.params.get("transfer-syntax")
    if requested is None:
        return specificity, offer
    if requested == _ANY:
        return specificity, replace(offer, transfer_syntax=None)
    if requested == offer.transfer_syntax or requested in allowed:
        return specificity + 1, replace(offer, transfer_syntax=requested)
    return None


def _parse_range(element: str) -> MediaRange | None:
    """Parse one Accept element, or return None when it is garbage."""
    head, separator, rest = element.partition(";")
    if head.strip() == _ANY:
        # Old Java clients send a bare "*" for "*/*"
        element = f"*/*{separator}{rest}"
    elif not head.strip():
        return None
    try:
        main, sub, pairs = _parse_media_type(element)
    except InvalidMediaType:
        return None
    if main == _ANY and sub != _ANY:
        return None

    params: dict[str, str] = {}
    q = 1.0
    # Parameters after q are accept-ext, which nothing here uses (RFC 7231 5.3.2)
    for name, value in pairs:
        if name == "q":
            weight = _parse_weight(value)
            if weight is None:
                return None
            q = weight
            break
        params[name] = value
    return MediaRange(main, sub, params, q)


def _parse_weight(value: str) -> float | None:
    """Return a q value from 0 to 1, or None when it is not one (RFC 7231 5.3.1)."""
    try:
        weight = float(value)
    except ValueError:
        return None
    # Also refuses NaN, for which both comparisons are false
    return weight if 0.0 <= weight <= 1.0 else None


def _parse_media_type(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Split 'type/subtype; name=value' into lowercased names and unquoted values."""
    head, *pieces = _split_unquoted(text, ";")
    main, slash, sub = head.strip().partition("/")
    if not slash or not _TOKEN.fullmatch(main) or not _TOKEN.fullmatch(sub):
        raise InvalidMediaType(
            f"Media type {text!r} does not start with type/subtype, "
            "e.g. 'application/dicom'"
        )

    pairs: list[tuple[str, str]] = []
    for piece in pieces:
        # RFC 9110 8.3.1 allows empty parameters, as in 'application/dicom;'
        if not piece.strip():
            continue
        name, equals, value = piece.partition("=")
        name = name.strip()
        if not equals or not _TOKEN.fullmatch(name):
            raise InvalidMediaType(
                f"Media type {text!r} has the parameter {piece.strip()!r}; "
                "expected name=value"
            )
        pairs.append((name.lower(), _unquote(value.strip(), text)))
    return main.lower(), sub.lower(), pairs


def _unquote(value: str, text: str) -> str:
    """Return a parameter value without its quoted-string quoting (RFC 7230 3.2.6)."""
    if not value.startswith('"'):
        if not _BARE_VALUE.fullmatch(value):
            raise InvalidMediaType(
                f"Media type {text!r} has the parameter value {value!r}; quote "
                "a value that is empty or holds spaces"
            )
        return value

    chars: list[str] = []
    escaped = False
    for index, char in enumerate(value[1:], start=1):
        if escaped:
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            if index != len(value) - 1:
                break
            return "".join(chars)
        else:
            chars.append(char)
    raise InvalidMediaType(
        f"Media type {text!r} has the quoted value {value!r} that does not end "
        "at its closing quote"
    )


def _split_unquoted(text: str, separator: str) -> list[str]:
    """Split text at each separator that stands outside a quoted-string."""
    pieces: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            pieces.append(text[start:index])
            start = index + 1
    pieces.append(text[start:])
    return pieces


def _check_plain_media_type(value: str, what: str) -> None:
    """Raise ValueError unless value is a bare type/subtype without wildcards."""
    main, slash, sub = value.partition("/")
    if not slash or not _TOKEN.fullmatch(main) or not _TOKEN.fullmatch(sub):
        raise ValueError(f"The {what} {value!r} is not type/subtype")
    if _ANY in (main, sub):
        raise ValueError(f"The {what} {value!r} has a wildcard; name one type")


def _check_uid(value: str) -> None:
    """Raise ValueError unless value is a UID (PS3.5 9.1)."""
    if len(value) > 64 or not _UID.fullmatch(value):
        raise ValueError(
            f"Transfer syntax {value!r} is not a UID of digits and dots of at "
            "most 64 characters (PS3.5 9.1)"
        )
