"""C-MOVE SCP: send what the identifier selects to a known peer (PS3.4 C.4.2).

pynetdicom drives the exchange: the handler yields the destination, then the
number of sub-operations, then one data set per C-STORE sub-operation; it
counts their outcomes and sends the final status (Success, 0xB000 when some
failed, 0xA702 when all failed) with the Failed SOP Instance UID List.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

from archive.index import StoredInstance
from archive.peers import PeerDirectory
from dimse._bridge import LoopBridge
from dimse._retrieve import Retriever, refused, storage_contexts
from dimse.errors import Service

logger = logging.getLogger(__name__)

MoveYield = tuple[Any, ...] | int | tuple[int, Dataset | None]


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
        yield peer.host, peer.port, self._association_options(instances)
        logger.info(
            "C-MOVE from %s to %s: %d instances", caller, destination, len(instances)
        )
        yield len(instances)
        yield from self._retriever.sub_operations(event, instances)

    def _association_options(self, instances: list[StoredInstance]) -> dict[str, Any]:
        return {
            "contexts": storage_contexts(instances),
            "evt_handlers": [(evt.EVT_CONN_OPEN, self._on_open)],
        }
