"""C-MOVE SCP: send what the identifier selects to a known peer (PS3.4 C.4.2).

pynetdicom drives the exchange: the handler yields the destination, then the
number of sub-operations, then one data set per C-STORE sub-operation; it
counts their outcomes and sends the final status (Success, 0xB000 when some
failed, 0xA702 when all failed) with the Failed SOP Instance UID List.

A known destination that cannot be reached, refuses the association or
accepts none of the proposed contexts is no unknown destination: every
sub-operation fails (0xA702, PS3.4 C.4.2.1.5). pynetdicom would answer 0xA801
itself, so the listener's AE (:class:`MoveSourceAE`) tells the handler, which
answers the failure with its counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event

from archive.index import StoredInstance
from archive.peers import PeerDirectory
from dimse._bridge import LoopBridge
from dimse._retrieve import Retriever, refused, storage_contexts
from dimse.errors import OUT_OF_RESOURCES_SUBOPERATIONS, Service

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


def _why_not_established(assoc: Association) -> str:
    if assoc.is_rejected:
        return "rejected the association"
    if assoc.is_aborted:
        # pynetdicom aborts an association in which no context was accepted.
        return "accepted no proposed presentation context, or aborted"
    return "could not be reached"


class MoveSourceAE(AE):
    """The listener's AE; it requests associations only as a C-MOVE source.

    An association request carrying ``on_failure`` (a callable) that is not
    established calls it with the reason, closes the socket and returns a
    stand-in, so that the handler, not pynetdicom, answers the C-MOVE.
    """

    def associate(
        self,
        *args: Any,
        on_failure: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> Association:
        """Request an association (pynetdicom's ``AE.associate``), see above."""
        assoc = super().associate(*args, **kwargs)
        if assoc.is_established or on_failure is None:
            return assoc
        on_failure(_why_not_established(assoc))
        # As pynetdicom does after a failed request: its socket stays open.
        if assoc.dul.socket is not None:
            assoc.dul.socket.close()
        return cast(Association, _UnopenedAssociation())


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
        on_connection_open: Callable[[Event], None],
    ) -> None:
        self._retriever = retriever
        self._peers = peers
        self._bridge = bridge
        self._on_open = on_connection_open

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
        yield from self._retriever.sub_operations(event, instances)

    def _association_options(
        self, instances: list[StoredInstance], failures: list[str]
    ) -> dict[str, Any]:
        return {
            "contexts": storage_contexts(instances),
            "evt_handlers": [(evt.EVT_CONN_OPEN, self._on_open)],
            "on_failure": failures.append,
        }
