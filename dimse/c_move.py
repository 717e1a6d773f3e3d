"""C-MOVE SCP: send what the identifier selects to a known peer (PS3.4 C.4.2).

Two drivers share the selection and the sending. On an association served on
the event loop (``dimse.loop_scp``), :class:`MoveService` runs the whole
exchange: it counts the sub-operations, sends a pending response after each
and the final status (Success, 0xB000 when some failed or warned, 0xA702
when all failed, 0xFE00 when cancelled) with the Failed SOP Instance UID
List. The sub-operations run on a thread of their own, which blocks on the
destination's answers, never the loop.

On any other association pynetdicom drives the exchange: the handler
yields the destination, then the number of sub-operations, then one data
set per C-STORE sub-operation; it counts their outcomes and sends the
final status (Success, 0xB000 when some failed, 0xA702 when all failed)
with the Failed SOP Instance UID List. The association to the destination
is the archive's own (``dimse.store_scu``), which sends each instance's
stored bytes without decoding them.

A known destination that cannot be reached, refuses the association or
accepts none of the proposed contexts is no unknown destination: every
sub-operation fails (0xA702, PS3.4 C.4.2.1.5). pynetdicom would answer 0xA801
itself, so the listener's AE (:class:`MoveSourceAE`) tells the handler, which
answers the failure with its counts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing, closing
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import code_to_category

from archive.index import StoredInstance
from archive.peers import Peer, PeerDirectory
from dimse._bridge import LoopBridge
from dimse._retrieve import (
    Retriever,
    as_stored,
    failure,
    refused,
    storage_contexts,
)
from dimse._wire import SubOperations
from dimse.errors import (
    CANCEL,
    MOVE_DESTINATION_UNKNOWN,
    OUT_OF_RESOURCES_MATCHES,
    OUT_OF_RESOURCES_SUBOPERATIONS,
    PENDING,
    SUBOPERATIONS_WARNING,
    SUCCESS,
    Service,
)
from dimse.store_scu import NotSendable, StoreAssociation, StoreAssociationError

logger = logging.getLogger(__name__)

MoveYield = tuple[Any, ...] | int | tuple[int, Dataset | None]
# A C-MOVE response: status, sub-operation counts, identifier.
MoveResponse = tuple[int, SubOperations | None, Dataset | None]
# PS3.7 9.3.4.2: the counts are US, so one C-MOVE sends at most this many.
MAX_SUB_OPERATIONS = 0xFFFF


class _UnopenedAssociation:
    """Stands in for a sub-association that was not established; sends nothing.

    pynetdicom's C-MOVE SCP only resumes the handler with an established
    association; handed this one, it does, and the handler's final failure
    releases it.
    """

    is_established = True

    def release(self) -> None:
        """Nothing to release: no connection is open."""


class MoveSourceAE(AE):
    """The listener's AE; it requests associations only as a C-MOVE source.

    pynetdicom's C-MOVE SCP asks it for the association to the destination;
    it gets a :class:`StoreAssociation`, which sends each stored data set as
    it is. One that is not established calls ``on_failure`` with the reason
    and returns a stand-in, so that the handler, not pynetdicom, answers the
    C-MOVE (0xA702, not pynetdicom's 0xA801).
    """

    def associate(  # type: ignore[override]
        self,
        addr: str,
        port: int,
        contexts: list[PresentationContext],
        ae_title: str,
        *,
        on_failure: Callable[[str], None],
    ) -> StoreAssociation | _UnopenedAssociation:
        """Request a storage association with the move destination."""
        try:
            return StoreAssociation.request(
                (addr, port),
                self.ae_title,
                ae_title,
                contexts,
                float(self.network_timeout or 30),
            )
        except StoreAssociationError as error:
            on_failure(str(error))
            return _UnopenedAssociation()


def _all_failed(instances: list[StoredInstance]) -> Dataset:
    return _failed_list([item.sop_instance_uid for item in instances])


class MoveHandler:
    """Handles EVT_C_MOVE for destinations known by AE title."""

    def __init__(
        self,
        retriever: Retriever,
        peers: PeerDirectory,
        bridge: LoopBridge,
    ) -> None:
        self._retriever = retriever
        self._peers = peers
        self._bridge = bridge

    def __call__(self, event: Event) -> Iterator[MoveYield]:
        """Yield destination, sub-operation count, then (status, data set) pairs."""
        caller = event.assoc.requestor.ae_title
        destination = str(event.move_destination or "").strip()
        # A failed look-up raises: pynetdicom logs it and answers 0xC514.
        peer = (
            self._bridge.call(self._peers.get(destination))
            if is_ae_title(destination)
            else None
        )
        if peer is None:
            _log_unknown(caller, destination)
            yield None, None
            return
        try:
            instances = self._retriever.select(event)
        except Exception as error:  # noqa: BLE001 - answered as a status
            raise refused(error, Service.MOVE, caller) from None
        # Why the association to the destination was not established, if it was not.
        failures: list[str] = []
        yield peer.host, peer.port, self._association_options(instances, failures)
        logger.info(
            "C-MOVE from %s to %s: %d instances", caller, destination, len(instances)
        )
        yield len(instances)
        if failures:
            _log_unreachable(caller, destination, peer, failures[0], len(instances))
            yield OUT_OF_RESOURCES_SUBOPERATIONS, _all_failed(instances)
            return
        yield from self._retriever.sub_operations(
            lambda: bool(event.is_cancelled), instances, as_stored
        )

    def _association_options(
        self, instances: list[StoredInstance], failures: list[str]
    ) -> dict[str, Any]:
        return {
            "contexts": storage_contexts(instances),
            "on_failure": failures.append,
        }


@dataclass
class _Tally:
    """The outcomes of one C-MOVE's sub-operations so far."""

    total: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.warning

    def record(self, sop_instance_uid: str, category: str) -> None:
        """Count one sub-operation by its C-STORE status category."""
        if category == "Success":
            self.completed += 1
        elif category == "Warning":
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance_uid)

    def counts(self, with_remaining: bool) -> SubOperations:
        remaining = self.total - self.done if with_remaining else None
        return SubOperations(remaining, self.completed, self.failed, self.warning)

    def failed_list(self) -> Dataset:
        return _failed_list(self.failed_uids)


def _log_unknown(caller: str, destination: str) -> None:
    logger.warning(
        "C-MOVE from %s to unknown destination %r refused (0xA801)",
        caller,
        destination,
    )


def _log_unreachable(
    caller: str, destination: str, peer: Peer, why: str, count: int
) -> None:
    logger.warning(
        "C-MOVE from %s: destination %s at %s:%d %s; %d sub-operations "
        "failed (0x%04X)",
        caller,
        destination,
        peer.host,
        peer.port,
        why,
        count,
        OUT_OF_RESOURCES_SUBOPERATIONS,
    )


def is_ae_title(text: str) -> bool:
    """Whether ``text`` can be an AE title.

    PS3.5 6.2: at most 16 characters of the default repertoire, without
    backslash or control characters.
    """
    return 0 < len(text) <= 16 and all(" " <= c <= "~" and c != "\\" for c in text)


def _abort_when_open(connecting: asyncio.Future[StoreAssociation]) -> None:
    """Abort an association to a destination that nobody waits for any more."""
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result().abort()


def _failed_list(uids: list[str]) -> Dataset:
    identifier = Dataset()
    identifier.FailedSOPInstanceUIDList = uids
    return identifier


class MoveService:
    """Runs C-MOVE requests on the event loop (see the module's doc)."""

    def __init__(
        self,
        retriever: Retriever,
        peers: PeerDirectory,
        ae_title: str,
        timeout_s: float,
    ) -> None:
        self._retriever = retriever
        self._peers = peers
        self._ae_title = ae_title
        self._timeout_s = timeout_s

    async def responses(
        self,
        caller: str,
        sop_class: str,
        message_id: int,
        destination: str,
        identifier: Callable[[], Dataset],
        cancelled: threading.Event,
    ) -> AsyncGenerator[MoveResponse, None]:
        """Every response to one C-MOVE-RQ; the last is the final one.

        ``identifier`` decodes the request's identifier; ``cancelled`` is set
        when a C-CANCEL-MOVE-RQ arrives.
        """
        destination = destination.strip()
        try:
            peer = (
                await self._peers.get(destination) if is_ae_title(destination) else None
            )
            if peer is None:
                _log_unknown(caller, destination)
                yield MOVE_DESTINATION_UNKNOWN, None, None
                return
            instances = await self._retriever.selected(sop_class, identifier)
        except Exception as error:  # noqa: BLE001 - answered as a status
            yield failure(error, Service.MOVE, caller), None, None
            return
        logger.info(
            "C-MOVE from %s to %s: %d instances", caller, destination, len(instances)
        )
        if not instances:
            yield SUCCESS, SubOperations(None, 0, 0, 0), None
            return
        if len(instances) > MAX_SUB_OPERATIONS:
            logger.warning(
                "C-MOVE from %s refused (0x%04X): %d instances, more than one "
                "C-MOVE can count; ask for less at a time",
                caller,
                OUT_OF_RESOURCES_MATCHES,
                len(instances),
            )
            yield OUT_OF_RESOURCES_MATCHES, None, None
            return
        connecting = asyncio.ensure_future(
            asyncio.to_thread(
                StoreAssociation.request,
                (peer.host, peer.port),
                self._ae_title,
                destination,
                storage_contexts(instances),
                self._timeout_s,
            )
        )
        try:
            association = await asyncio.shield(connecting)
        except StoreAssociationError as error:
            _log_unreachable(caller, destination, peer, str(error), len(instances))
            yield OUT_OF_RESOURCES_SUBOPERATIONS, SubOperations(
                None, 0, len(instances), 0
            ), _all_failed(instances)
            return
        except BaseException:
            # The requester went away while the destination was being reached.
            connecting.add_done_callback(_abort_when_open)
            raise
        tally = _Tally(len(instances))
        progress = self._progress(
            association, instances, caller, message_id, cancelled, tally
        )
        async with aclosing(progress):
            async for counts in progress:
                yield PENDING, counts, None
        if cancelled.is_set() and tally.done < tally.total:
            logger.info("C-MOVE from %s cancelled after %d", caller, tally.done)
            yield CANCEL, tally.counts(with_remaining=True), tally.failed_list()
        elif not tally.failed and not tally.warning:
            yield SUCCESS, tally.counts(with_remaining=False), None
        elif tally.failed == tally.total:
            yield OUT_OF_RESOURCES_SUBOPERATIONS, tally.counts(
                with_remaining=False
            ), tally.failed_list()
        else:
            yield SUBOPERATIONS_WARNING, tally.counts(
                with_remaining=False
            ), tally.failed_list()

    async def _progress(
        self,
        association: StoreAssociation,
        instances: list[StoredInstance],
        caller: str,
        message_id: int,
        cancelled: threading.Event,
        tally: _Tally,
    ) -> AsyncGenerator[SubOperations, None]:
        """Run the sub-operations on a thread; their counts after each one."""
        loop = asyncio.get_running_loop()
        reports: asyncio.Queue[SubOperations | None] = asyncio.Queue()

        def report() -> None:
            loop.call_soon_threadsafe(
                reports.put_nowait, tally.counts(with_remaining=True)
            )

        work = asyncio.ensure_future(
            asyncio.to_thread(
                self._send_all,
                association,
                instances,
                caller,
                message_id,
                cancelled,
                tally,
                report,
            )
        )
        work.add_done_callback(lambda _: reports.put_nowait(None))
        try:
            while (counts := await reports.get()) is not None:
                yield counts
            await work
        finally:
            if not work.done():
                # The requesting association ended: stop sending.
                cancelled.set()

    def _send_all(
        self,
        association: StoreAssociation,
        instances: list[StoredInstance],
        caller: str,
        message_id: int,
        cancelled: threading.Event,
        tally: _Tally,
        report: Callable[[], None],
    ) -> None:
        """Send each instance as stored, counting outcomes; then release."""
        operations = self._retriever.sub_operations(
            cancelled.is_set, instances, as_stored
        )
        try:
            with closing(operations):
                for status, dataset in operations:
                    if status == CANCEL or dataset is None:
                        return
                    uid = str(dataset.SOPInstanceUID)
                    try:
                        response = association.send_c_store(
                            dataset,
                            msg_id=tally.done % MAX_SUB_OPERATIONS + 1,
                            originator_aet=caller,
                            originator_id=message_id,
                        )
                        category = code_to_category(int(response.Status))
                    except NotSendable as error:
                        logger.warning("C-MOVE sub-operation failed: %s", error)
                        category = "Failure"
                    except StoreAssociationError as error:
                        logger.warning(
                            "C-MOVE from %s: the association to the destination "
                            "failed (%s); the %d sub-operations left fail",
                            caller,
                            error,
                            tally.total - tally.done,
                        )
                        for item in instances[tally.done :]:
                            tally.record(item.sop_instance_uid, "Failure")
                        report()
                        return
                    tally.record(uid, category)
                    report()
        finally:
            association.release()
