"""C-MOVE SCP: send what the identifier selects to a known peer (PS3.4 C.4.2).

pynetdicom drives the exchange: the handler yields the destination, then the
number of sub-operations, then one data set per C-STORE sub-operation; it
counts their outcomes and sends the final status (Success, 0xB000 when some
failed, 0xA702 when all failed) with the Failed SOP Instance UID List. The
association to the destination is the archive's own (``dimse.store_scu``),
which sends each instance's stored bytes without decoding them.

A known destination that cannot be reached, refuses the association or
accepts none of the proposed contexts is no unknown destination: every
sub-operation fails (0xA702, PS3.4 C.4.2.1.5). pynetdicom would answer 0xA801
itself, so the listener's AE (:class:`MoveSourceAE`) tells the handler, which
answers the failure with its counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from archive.index import StoredInstance
from archive.peers import PeerDirectory
from dimse._bridge import LoopBridge
from dimse._retrieve import Retriever, as_stored, refused, storage_contexts
from dimse.errors import OUT_OF_RESOURCES_SUBOPERATIONS, Service
from dimse.store_scu import StoreAssociation, StoreAssociationError

logger = logging.getLogger(__name__)

MoveYield = tuple[Any, ...] | int | tuple[int, Dataset | None]


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
    identifier = Dataset()
    identifier.FailedSOPInstanceUIDList = [item.sop_instance_uid for item in instances]
    return identifier


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
        peer = self._bridge.call(self._peers.get(destination))
        if peer is None:
            logger.warning(
                "C-MOVE from %s to unknown destination %r refused (0xA801)",
                caller,
                destination,
            )
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
            logger.warning(
                "C-MOVE from %s: destination %s at %s:%d %s; %d sub-operations "
                "failed (0x%04X)",
                caller,
                destination,
                peer.host,
                peer.port,
                failures[0],
                len(instances),
                OUT_OF_RESOURCES_SUBOPERATIONS,
            )
            yield OUT_OF_RESOURCES_SUBOPERATIONS, _all_failed(instances)
            return
        yield from self._retriever.sub_operations(event, instances, as_stored)

    def _association_options(
        self, instances: list[StoredInstance], failures: list[str]
    ) -> dict[str, Any]:
        return {
            "contexts": storage_contexts(instances),
            "on_failure": failures.append,
        }
