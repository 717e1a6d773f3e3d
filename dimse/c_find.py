"""C-FIND SCP: Patient Root and Study Root queries through ``Archive.search``.

PS3.4 C.4.1: each match goes out as a pending response as soon as its page
of results arrives from the index; matching is the archive's (the same code
QIDO-RS runs), never this module's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from archive.errors import ArchiveError
from archive.query import CursorValue
from archive.service import Archive
from dimse._bridge import LoopBridge
from dimse._contexts import PATIENT_ROOT
from dimse._identifier import FindRequest, parse_identifier
from dimse._response import response_identifier
from dimse.errors import (
    CANCEL,
    PENDING,
    PENDING_WITH_WARNINGS,
    DimseError,
    Service,
    status_for,
)

logger = logging.getLogger(__name__)

FindYield = tuple[int, Dataset | None]
PAGE_SIZE = 200


class FindHandler:
    """Handles EVT_C_FIND: yields (status, identifier) pairs as pynetdicom asks."""

    def __init__(
        self, archive: Archive, bridge: LoopBridge, ae_title: str, page_size: int
    ) -> None:
        self._archive = archive
        self._bridge = bridge
        self._ae_title = ae_title
        self._page_size = page_size

    def __call__(self, event: Event) -> Iterator[FindYield]:
        """Run one C-FIND; the last yield is a failure, or pynetdicom's Success."""
        caller = event.assoc.requestor.ae_title
        try:
            patient_root = str(event.request.AffectedSOPClassUID) in PATIENT_ROOT
            request = parse_identifier(event.identifier, patient_root)
        except Exception as error:  # noqa: BLE001 - answered as a status
            yield self._failure(error, caller)
            return
        logger.debug("C-FIND at %s level from %s", request.level.value, caller)
        after: tuple[CursorValue, ...] | None = None
        offset = 0
        count = 0
        while True:
            query = replace(
                request.query, limit=self._page_size, after=after, offset=offset
            )
            try:
                result = self._bridge.call(self._archive.search(query))
            except Exception as error:  # noqa: BLE001 - answered as a status
                yield self._failure(error, caller)
                return
            status = PENDING_WITH_WARNINGS if result.unsupported else PENDING
            for match in result.matches:
                if event.is_cancelled:
                    logger.info("C-FIND from %s cancelled after %d", caller, count)
                    yield CANCEL, None
                    return
                yield status, self._identifier(match, request)
                count += 1
            if len(result.matches) < self._page_size:
                break
            # A keyset cursor: matches arriving meanwhile shift nothing.
            if result.cursors:
                after = result.cursors[-1]
            else:
                offset += self._page_size
        logger.info("C-FIND from %s: %d matches", caller, count)

    def _identifier(self, match: dict[str, object], request: FindRequest) -> Dataset:
        return response_identifier(
            match,
            request.requested,
            request.level,
            request.wants_character_set,
            self._ae_title,
        )

    @staticmethod
    def _failure(error: Exception, caller: str) -> FindYield:
        status = status_for(error, Service.FIND)
        if isinstance(error, (ArchiveError, DimseError)):
            logger.warning(
                "C-FIND from %s failed with 0x%04X (%s)",
                caller,
                status,
                type(error).__name__,
            )
            logger.debug("C-FIND failure detail: %s", error)
        else:
            logger.exception("C-FIND from %s failed unexpectedly", caller)
        return status, None
