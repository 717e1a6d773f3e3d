"""C-FIND SCP: Patient Root and Study Root queries through ``Archive.search``.

PS3.4 C.4.1: each match goes out as a pending response as soon as its page
of results arrives from the index; matching is the archive's (the same code
QIDO-RS runs), never this module's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import replace

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from archive.errors import ArchiveError
from archive.query import CursorValue, Query
from archive.service import Archive, SearchResult
from dimse._bridge import LoopBridge
from dimse._contexts import PATIENT_ROOT
from dimse._identifier import FindRequest, parse_identifier
from dimse._response import (
    encode_identifier,
    response_identifier,
    write_response_identifier,
)
from dimse.errors import (
    CANCEL,
    PENDING,
    PENDING_WITH_WARNINGS,
    SUCCESS,
    UNABLE_TO_PROCESS,
    DimseError,
    Service,
    status_for,
)

logger = logging.getLogger(__name__)

FindYield = tuple[int, Dataset | None]
PAGE_SIZE = 200
# Pending responses sent in one write on the event loop's path.
BATCH = 20


class MatchPages:
    """The matches of one C-FIND, a page of the index at a time, as asked for."""

    def __init__(self, archive: Archive, query: Query, page_size: int) -> None:
        self._archive = archive
        self._query = query
        self._page_size = page_size
        self._after: tuple[CursorValue, ...] | None = None
        self._offset = 0
        self._done = False

    async def next(self) -> SearchResult | None:
        """The next page, or None after the last."""
        if self._done:
            return None
        result = await self._archive.search(
            replace(
                self._query,
                limit=self._page_size,
                after=self._after,
                offset=self._offset,
            )
        )
        if len(result.matches) < self._page_size:
            self._done = True
        elif result.cursors:
            # A keyset cursor: matches arriving meanwhile shift nothing.
            self._after = result.cursors[-1]
        else:
            self._offset += self._page_size
        return result


class FindHandler:
    """Runs C-FIND requests: pynetdicom's EVT_C_FIND handler, or awaited on the loop.

    Either way it produces (status, identifier) pairs, one pending pair per
    match and, for a failure, a last pair with its status; pynetdicom
    answers Success itself, ``responses`` ends with it.
    """

    def __init__(
        self, archive: Archive, bridge: LoopBridge, ae_title: str, page_size: int
    ) -> None:
        self._archive = archive
        self._bridge = bridge
        self._ae_title = ae_title
        self._page_size = page_size

    def __call__(self, event: Event) -> Iterator[FindYield]:
        """Run one C-FIND from a pynetdicom thread."""
        caller = event.assoc.requestor.ae_title
        sop_class = str(event.request.AffectedSOPClassUID)
        try:
            request = self._request(sop_class, lambda: event.identifier)
        except Exception as error:  # noqa: BLE001 - answered as a status
            yield self._failure(error, caller)
            return
        pages = MatchPages(self._archive, request.query, self._page_size)
        count = 0
        while True:
            try:
                result = self._bridge.call(pages.next())
            except Exception as error:  # noqa: BLE001 - answered as a status
                yield self._failure(error, caller)
                return
            if result is None:
                break
            status = PENDING_WITH_WARNINGS if result.unsupported else PENDING
            for match in result.matches:
                if event.is_cancelled:
                    logger.info("C-FIND from %s cancelled after %d", caller, count)
                    yield CANCEL, None
                    return
                yield status, self._identifier(match, request)
                count += 1
        logger.info("C-FIND from %s: %d matches", caller, count)

    async def responses(
        self,
        caller: str,
        sop_class: str,
        identifier: Callable[[], Dataset],
        transfer_syntax: str,
        cancelled: Callable[[], bool],
    ) -> AsyncGenerator[list[tuple[int, bytes | None]], None]:
        """Run one C-FIND on the event loop: its responses, a page at a time.

        Each response is (status, identifier encoded in ``transfer_syntax``);
        pending responses go in batches of up to ``BATCH`` (one write each),
        and the last batch ends with the final status. ``identifier`` decodes
        the request's identifier (a failure to is answered like any other);
        ``cancelled`` tells whether a C-CANCEL arrived: between batches the
        event loop gets to read one, so a cancel stops the C-FIND within a
        batch or two.
        """
        try:
            request = self._request(sop_class, identifier)
        except Exception as error:  # noqa: BLE001 - answered as a status
            yield [(self._failure(error, caller)[0], None)]
            return
        pages = MatchPages(self._archive, request.query, self._page_size)
        count = 0
        batch: list[tuple[int, bytes | None]] = []
        while True:
            try:
                result = await pages.next()
            except Exception as error:  # noqa: BLE001 - answered as a status
                yield [*batch, (self._failure(error, caller)[0], None)]
                return
            if result is None:
                break
            status = PENDING_WITH_WARNINGS if result.unsupported else PENDING
            for match in result.matches:
                if len(batch) == BATCH:
                    yield batch
                    batch = []
                    # Lets the association's reader take a C-CANCEL meanwhile.
                    await asyncio.sleep(0)
                if cancelled():
                    logger.info("C-FIND from %s cancelled after %d", caller, count)
                    yield [*batch, (CANCEL, None)]
                    return
                encoded = self._encoded(match, request, transfer_syntax)
                if encoded is None:
                    logger.error("C-FIND from %s: a match cannot be encoded", caller)
                    yield [*batch, (UNABLE_TO_PROCESS, None)]
                    return
                batch.append((status, encoded))
                count += 1
        logger.info("C-FIND from %s: %d matches", caller, count)
        yield [*batch, (SUCCESS, None)]

    def _encoded(
        self, match: dict[str, object], request: FindRequest, transfer_syntax: str
    ) -> bytes | None:
        written = write_response_identifier(
            match,
            request.requested,
            request.level,
            request.wants_character_set,
            self._ae_title,
            transfer_syntax,
        )
        if written is not None:
            return written
        return encode_identifier(self._identifier(match, request), transfer_syntax)

    def _request(
        self, sop_class: str, identifier: Callable[[], Dataset]
    ) -> FindRequest:
        request = parse_identifier(identifier(), sop_class in PATIENT_ROOT)
        logger.debug("C-FIND at %s level", request.level.value)
        return request

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
