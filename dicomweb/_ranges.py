"""Byte ranges of HTTP requests (RFC 9110 14)."""

from __future__ import annotations

import re

from dicomweb._errors import HTTPProblem

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One byte range of RFC 7233 as [start, end); None for no/unusable Range."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        if length == 0:
            raise HTTPProblem(
                416, f"Range {header!r} asks for no bytes", _unsatisfied(size)
            )
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        raise HTTPProblem(
            416, f"Range {header!r} lies outside the {size} bytes", _unsatisfied(size)
        )
    return start, end


def _unsatisfied(size: int) -> dict[str, str]:
    """RFC 9110 15.5.17: a 416 names the current length of the representation."""
    return {"Content-Range": f"bytes */{size}"}
