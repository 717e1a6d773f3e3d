"""Argument checks for byte offsets, lengths and piece sizes."""

from __future__ import annotations

from storage.errors import InvalidRange


def check_read_range(offset: int, length: int | None) -> None:
    """Raise InvalidRange unless offset >= 0 and length is None or >= 0."""
    if offset < 0:
        raise InvalidRange(f"Read offset {offset!r} is negative; expected >= 0")
    if length is not None and length < 0:
        raise InvalidRange(f"Read length {length!r} is negative; expected >= 0 or None")


def check_piece_bytes(piece_bytes: int) -> None:
    """Raise InvalidRange unless a streaming piece size is positive."""
    if piece_bytes < 1:
        raise InvalidRange(f"Piece size {piece_bytes!r} bytes is not positive")
