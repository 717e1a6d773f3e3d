"""DIMSE errors and the one place where any error becomes a DIMSE status.

Statuses per PS3.4 B.2.3 (C-STORE), C.4.1.1.4 (C-FIND), C.4.2.1.5 (C-MOVE),
C.4.3.1.4 (C-GET) and the general statuses of PS3.7 C.
"""

from __future__ import annotations

from enum import Enum

from archive.errors import (
    ArchiveError,
    InvalidQuery,
    InvalidUID,
    StoreUnavailable,
)

SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WITH_WARNINGS = 0xFF01
CANCEL = 0xFE00
# PS3.7 C.4: the general failure for an error the peer cannot act on.
PROCESSING_FAILURE = 0x0110
# PS3.7 C.5: refused, the SOP class is not supported (here: on that context).
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
OUT_OF_RESOURCES_MATCHES = 0xA701
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
SUBOPERATIONS_WARNING = 0xB000


class DimseError(Exception):
    """Base of the errors the DIMSE front-end raises itself."""


class LoopUnavailable(DimseError):
    """The archive could not be reached from a pynetdicom thread in time."""


class InvalidIdentifier(DimseError):
    """A C-FIND, C-MOVE or C-GET identifier cannot be turned into a query."""


class ContextMismatch(DimseError):
    """A C-STORE names another SOP class than its presentation context negotiated.

    PS3.8 7.1.1.13: a presentation context carries one abstract syntax, the
    SOP class of every message sent on it.
    """


class UnreadableDataSet(DimseError):
    """A stored object cannot be read far enough to send it again (C-MOVE, C-GET)."""


class RetrieveRefused(DimseError):
    """A C-MOVE or C-GET that fails before its sub-operations are counted.

    pynetdicom answers it with a status of its own in the Unable to Process
    range (0xC514 for C-MOVE, 0xC413 for C-GET, PS3.4 C.4.2.1.5, C.4.3.1.4)
    and opens no association; the message carries the status we map to.
    """


class Service(str, Enum):
    """The DIMSE-C services whose failures map to different status codes."""

    STORE = "C-STORE"
    FIND = "C-FIND"
    MOVE = "C-MOVE"
    GET = "C-GET"


def _store_status(error: BaseException) -> int:
    if isinstance(error, ArchiveError):
        return error.status
    if isinstance(error, LoopUnavailable):
        return OUT_OF_RESOURCES
    if isinstance(error, ContextMismatch):
        return SOP_CLASS_NOT_SUPPORTED
    return PROCESSING_FAILURE


def _query_status(error: BaseException, out_of_resources: int) -> int:
    if isinstance(error, (StoreUnavailable, LoopUnavailable)):
        return out_of_resources
    if isinstance(error, (InvalidQuery, InvalidUID, InvalidIdentifier)):
        return IDENTIFIER_DOES_NOT_MATCH
    return UNABLE_TO_PROCESS


def status_for(error: BaseException, service: Service) -> int:
    """The status a failed request of ``service`` answers for ``error``."""
    if service is Service.STORE:
        return _store_status(error)
    if service is Service.FIND:
        return _query_status(error, OUT_OF_RESOURCES)
    return _query_status(error, OUT_OF_RESOURCES_MATCHES)
