"""Errors of the archive domain, each carrying the PS3.4 status it maps to.

Front-ends map these in one place each: DICOMweb to an HTTP status and a STOW
FailureReason (PS3.18 10.5.3), DIMSE to a C-STORE/C-FIND status (PS3.4 B.2.3,
C.4.1.1.4).
"""

from __future__ import annotations

# PS3.4 B.2.3 C-STORE failure statuses, also the STOW-RS FailureReason values
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
DUPLICATE_SOP_INSTANCE = 0x0111


class ArchiveError(Exception):
    """Base of every archive error; ``status`` is the PS3.4 status code."""

    status: int = PROCESSING_FAILURE


class InvalidInstance(ArchiveError):
    """The bytes are not a DICOM instance the archive can understand."""

    status = CANNOT_UNDERSTAND


class MissingAttribute(InvalidInstance):
    """A required attribute (SOP Class/Instance, Study or Series UID) is absent."""

    status = DATA_SET_DOES_NOT_MATCH_SOP_CLASS


class InvalidUID(ArchiveError):
    """A UID is not digits and dots of at most 64 characters (PS3.5 9.1)."""

    status = DATA_SET_DOES_NOT_MATCH_SOP_CLASS


class InstanceMismatch(ArchiveError):
    """The data set's SOP Class or Instance UID is not the one its request names."""

    status = DATA_SET_DOES_NOT_MATCH_SOP_CLASS


class StudyMismatch(ArchiveError):
    """The instance belongs to another study than the one it was sent to."""

    status = DATA_SET_DOES_NOT_MATCH_SOP_CLASS


class SeriesMismatch(ArchiveError):
    """The Series Instance UID is already filed under another study."""

    status = DATA_SET_DOES_NOT_MATCH_SOP_CLASS


class DuplicateConflict(ArchiveError):
    """A known SOP Instance UID arrived with other content, and policy rejects it."""

    status = DUPLICATE_SOP_INSTANCE


class StoreUnavailable(ArchiveError):
    """The index or the object store cannot take the instance now."""

    status = OUT_OF_RESOURCES


class NotFound(ArchiveError):
    """No study, series, instance or frame with the given identifiers."""

    status = 0xC000


class InvalidQuery(ArchiveError):
    """A query key or value cannot be understood (PS3.18 8.3.4, PS3.4 C.2.2)."""

    status = 0xA900


class InvalidRange(ArchiveError):
    """A byte range or frame list cannot be satisfied."""

    status = 0xC000


class TranscodeFailed(ArchiveError):
    """Pixel data cannot be decoded or encoded in the transfer syntax asked for."""

    status = PROCESSING_FAILURE
