"""C-STORE SCP: the Storage Service Class onto ``Archive.store`` (PS3.4 B.2).

The data set is stored as received: the Part 10 file is the File Meta
Information for the negotiated transfer syntax followed by the encoded data
set bytes of the request, never decoded and encoded again.
"""

from __future__ import annotations

import io
import logging
from typing import BinaryIO

from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from archive.errors import ArchiveError
from archive.ingest import Outcome
from archive.service import Archive
from archive.uids import check_uid
from dimse._bridge import LoopBridge
from dimse._part10 import file_meta, part10_header
from dimse.errors import SUCCESS, ContextMismatch, DimseError, Service, status_for

logger = logging.getLogger(__name__)


def check_context(sop_class_uid: str, abstract_syntax: str) -> None:
    """Refuse a C-STORE whose SOP class is not its presentation context's.

    PS3.8 7.1.1.13: the abstract syntax of a context is the SOP class of the
    messages sent on it; another SOP class was never negotiated, so it is
    refused as not supported (PS3.7 C.5, 0x0122), as pynetdicom's own
    storage SCP does.
    """
    if sop_class_uid != abstract_syntax:
        raise ContextMismatch(
            f"The C-STORE request names SOP Class UID {sop_class_uid!r} on a "
            f"presentation context negotiated for {abstract_syntax!r}; propose a "
            "context for that SOP class"
        )


def header_for(
    sop_class_uid: str,
    sop_instance_uid: str,
    abstract_syntax: str,
    transfer_syntax_uid: str,
) -> bytes:
    """What goes before a received data set in its Part 10 file, once the
    command is checked; raises for a command that cannot be stored.

    The data set is not decoded here: ingest parses it once, refusing one
    that cannot be read (0xC000) or whose UIDs contradict the command
    (PS3.4 B.2.3, 0xA900).
    """
    check_uid(sop_class_uid, "Affected SOP Class UID")
    check_uid(sop_instance_uid, "Affected SOP Instance UID")
    check_context(sop_class_uid, abstract_syntax)
    # A data set in the other VR encoding than the context's is refused
    # by ingest's parser (0xC000), which trusts no guess about it.
    return part10_header(
        file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid)
    )


def prepare(
    sop_class_uid: str,
    sop_instance_uid: str,
    abstract_syntax: str,
    transfer_syntax_uid: str,
    data_set: bytes,
) -> bytes:
    """The Part 10 file of a received data set, once its command is checked."""
    header = header_for(
        sop_class_uid, sop_instance_uid, abstract_syntax, transfer_syntax_uid
    )
    return header + data_set


class StoreHandler:
    """Stores one received instance and answers its C-STORE status (PS3.4 B.2.3).

    Called as pynetdicom's EVT_C_STORE handler on an association's thread,
    and awaited (``stored_file``) by the associations served on the loop.
    """

    def __init__(self, archive: Archive, bridge: LoopBridge) -> None:
        self._archive = archive
        self._bridge = bridge

    def __call__(self, event: Event) -> int:
        """Store one instance and return its C-STORE status (PS3.4 B.2.3)."""
        caller = str(event.assoc.requestor.ae_title).strip()
        request = event.request
        assert isinstance(request, C_STORE), type(request)
        sop_class_uid = str(request.AffectedSOPClassUID or "")
        sop_instance_uid = str(request.AffectedSOPInstanceUID or "")
        try:
            part10 = prepare(
                sop_class_uid,
                sop_instance_uid,
                str(event.context.abstract_syntax),
                str(event.context.transfer_syntax),
                event.encoded_dataset(include_meta=False),
            )
            return self._bridge.call(
                self._store(
                    caller,
                    io.BytesIO(part10),
                    len(part10),
                    sop_class_uid,
                    sop_instance_uid,
                )
            )
        except Exception as error:  # noqa: BLE001 - every failure is a status
            return refusal(caller, error)

    async def stored_file(
        self,
        caller: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        part10: BinaryIO,
        size: int,
    ) -> int:
        """Store one received Part 10 file (``header_for`` + data set); its status."""
        try:
            return await self._store(
                caller, part10, size, sop_class_uid, sop_instance_uid
            )
        except Exception as error:  # noqa: BLE001 - every failure is a status
            return refusal(caller, error)

    async def _store(
        self,
        caller: str,
        part10: BinaryIO,
        size: int,
        sop_class_uid: str,
        sop_instance_uid: str,
    ) -> int:
        # The calling AE title picks the character set rule for mislabelled text.
        part10.seek(0)
        result = await self._archive.store(
            part10,
            size,
            source=caller,
            expected_sop_class=sop_class_uid,
            expected_sop_instance=sop_instance_uid,
        )
        logger.debug("C-STORE of %s: %s", result.sop_instance_uid, result.outcome.value)
        if result.outcome is Outcome.REPLACED:
            logger.info("C-STORE replaced an instance under the 'replace' policy")
        return SUCCESS


def refusal(caller: str, error: Exception) -> int:
    """Log why a C-STORE failed; its status."""
    status = status_for(error, Service.STORE)
    if not isinstance(error, (ArchiveError, DimseError)):
        logger.exception("C-STORE from %s failed unexpectedly", caller)
    else:
        logger.warning(
            "C-STORE from %s refused with 0x%04X (%s)",
            caller,
            status,
            type(error).__name__,
        )
        logger.debug("C-STORE refusal detail: %s", error)
    return status
