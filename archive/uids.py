"""UID syntax (PS3.5 9.1): the strict rule and the one ingest lives with."""

from __future__ import annotations

import re

from archive.errors import InvalidUID

MAX_UID_LENGTH = 64

# ASCII digits only: "\d" would also match other Unicode digits.
_STRICT_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_ACCEPTABLE_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def is_valid_uid(text: str) -> bool:
    """Whether ``text`` is a UID as PS3.5 9.1 defines it."""
    return 0 < len(text) <= MAX_UID_LENGTH and _STRICT_UID.fullmatch(text) is not None


def is_acceptable_uid(text: str) -> bool:
    """Whether ingest takes ``text`` as a UID: PS3.5 9.1 but leading zeros allowed.

    Real devices write components such as ``0000217``; refusing them would refuse
    their instances, and every such UID stays safe as a path segment or key.
    """
    return (
        0 < len(text) <= MAX_UID_LENGTH and _ACCEPTABLE_UID.fullmatch(text) is not None
    )


def check_uid(text: str, what: str) -> str:
    """Return ``text`` if ingest would accept it as a UID, else raise ``InvalidUID``.

    The rule is :func:`is_acceptable_uid`, so that every UID the archive has
    stored can be asked for again.
    """
    if not is_acceptable_uid(text):
        raise InvalidUID(
            f"{what} {text!r} is not a UID: expected 1 to {MAX_UID_LENGTH} "
            "characters of digits separated by single dots (PS3.5 9.1)"
        )
    return text
