"""Media types of pixel data by transfer syntax (PS3.18 Table 8.7.3-4, 8.7.3-5)."""

from __future__ import annotations

from collections.abc import Mapping

OCTETS = "application/octet-stream"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
NATIVE_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}
)
BIG_ENDIAN = "1.2.840.10008.1.2.2"

# Each media type's syntaxes, its default first (PS3.18 Table 8.7.3-5).
PIXEL_MEDIA_TYPES: Mapping[str, tuple[str, ...]] = {
    "image/jpeg": (
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    ),
    "image/jls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "image/jp2": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"),
    "image/jpx": ("1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"),
    "image/jphc": (
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    ),
    "image/dicom-rle": ("1.2.840.10008.1.2.5",),
}


def media_type_of(transfer_syntax: str) -> str:
    """The media type of pixel data in a syntax; octet-stream when none is named."""
    for media_type, syntaxes in PIXEL_MEDIA_TYPES.items():
        if transfer_syntax in syntaxes:
            return media_type
    return OCTETS


def syntax_rank(transfer_syntax: str) -> int:
    """Position of a syntax within its media type, 0 for the default."""
    syntaxes = PIXEL_MEDIA_TYPES.get(media_type_of(transfer_syntax), ())
    return syntaxes.index(transfer_syntax) if transfer_syntax in syntaxes else 0
