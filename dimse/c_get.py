"""C-GET SCP: send what the identifier selects back over the same association.

PS3.4 C.4.3: the caller proposed storage contexts with the SCP role (PS3.7
D.3.3.4); pynetdicom sends each yielded data set as a C-STORE sub-operation,
counts the outcomes and sends the final status with the Failed SOP Instance
UID List, as for C-MOVE.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from dimse._retrieve import Retriever, decoded, refused
from dimse.errors import Service

logger = logging.getLogger(__name__)

GetYield = int | tuple[int, Dataset | None]


class GetHandler:
    """Handles EVT_C_GET."""

    def __init__(self, retriever: Retriever) -> None:
        self._retriever = retriever

    def __call__(self, event: Event) -> Iterator[GetYield]:
        """Yield the sub-operation count, then (status, data set) pairs."""
        caller = event.assoc.requestor.ae_title
        try:
            instances = self._retriever.select(event)
        except Exception as error:  # noqa: BLE001 - answered as a status
            raise refused(error, Service.GET, caller) from None
        logger.info("C-GET from %s: %d instances", caller, len(instances))
        yield len(instances)
        yield from self._retriever.sub_operations(
            lambda: bool(event.is_cancelled), instances, decoded
        )
