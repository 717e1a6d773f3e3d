"""What C-MOVE and C-GET share: selecting instances and loading them to re-send.

PS3.4 C.4.2.2 and C.4.3.2: the identifier selects instances through
``Archive.search`` (the index's matching); each is then read back as stored.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context

from archive.errors import ArchiveError, NotFound
from archive.index import StoredInstance
from archive.query import Query
from archive.service import Archive
from dimse._bridge import LoopBridge
from dimse._contexts import PATIENT_ROOT
from dimse._identifier import retrieve_query
from dimse._stored import stored_dataset
from dimse.errors import (
    CANCEL,
    PENDING,
    DimseError,
    RetrieveRefused,
    Service,
    status_for,
)
from dimse.store_scu import StoredInstanceDataset, StoredObject

logger = logging.getLogger(__name__)

RetrieveYield = tuple[int, Dataset | None]
# PS3.8 9.3.2.2: at most 128 presentation contexts in one association request.
MAX_CONTEXTS = 128
# Instances read ahead of the one being sent (each held whole in memory).
READ_AHEAD = 2
_SOP_INSTANCE_UID = "00080018"
_STUDY_INSTANCE_UID = "0020000D"


def _first(match: dict[str, Any], tag: str) -> str | None:
    values = match.get(tag, {}).get("Value")
    return str(values[0]) if values else None


async def select_instances(archive: Archive, query: Query) -> list[StoredInstance]:
    """The stored instances the retrieve query selects, study by study."""
    result = await archive.search(query)
    wanted: dict[str, set[str]] = {}
    for match in result.matches:
        study, sop = _first(match, _STUDY_INSTANCE_UID), _first(
            match, _SOP_INSTANCE_UID
        )
        if study is not None and sop is not None:
            wanted.setdefault(study, set()).add(sop)
    selected: list[StoredInstance] = []
    for study, sops in wanted.items():
        try:
            stored = await archive.instances(study)
        except NotFound:
            # Deleted between the search and now: nothing left to send.
            continue
        selected.extend(item for item in stored if item.sop_instance_uid in sops)
    return selected


def storage_contexts(instances: list[StoredInstance]) -> list[PresentationContext]:
    """Contexts to propose to a C-MOVE destination for these instances.

    One context per stored (SOP class, transfer syntax) so that each instance
    can go as stored, then for uncompressed ones a fallback the destination
    may prefer; at most 128 (PS3.8 9.3.2.2).
    """
    pairs: dict[tuple[str, str], None] = {}
    for item in instances:
        pairs[(item.sop_class_uid, item.transfer_syntax_uid)] = None
    contexts = [build_context(sop, [syntax]) for sop, syntax in pairs]
    native: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    fallback: dict[str, None] = {}
    for sop, syntax in pairs:
        if not UID(syntax).is_compressed:
            fallback[sop] = None
    contexts += [build_context(sop, native) for sop in fallback]
    if len(contexts) > MAX_CONTEXTS:
        logger.warning(
            "Retrieve needs %d presentation contexts, proposing the first %d",
            len(contexts),
            MAX_CONTEXTS,
        )
    return contexts[:MAX_CONTEXTS]


def refused(error: BaseException, service: Service, caller: str) -> RetrieveRefused:
    """Log a retrieve that failed before counting; the error to raise for it."""
    status = failure(error, service, caller)
    return RetrieveRefused(
        f"{service.value} failed before its sub-operations ({type(error).__name__}, "
        f"0x{status:04X} per PS3.4)"
    )


def failure(error: BaseException, service: Service, caller: str) -> int:
    """Log a failed retrieve once and return its status."""
    status = status_for(error, service)
    if isinstance(error, (ArchiveError, DimseError)):
        logger.warning(
            "%s from %s failed with 0x%04X (%s)",
            service.value,
            caller,
            status,
            type(error).__name__,
        )
        logger.debug("%s failure detail: %s", service.value, error)
    else:
        logger.exception("%s from %s failed unexpectedly", service.value, caller)
    return status


class Retriever:
    """Selects and loads instances for one C-MOVE or C-GET request."""

    def __init__(self, archive: Archive, bridge: LoopBridge) -> None:
        self._archive = archive
        self._bridge = bridge

    def select(self, event: Event) -> list[StoredInstance]:
        """The instances the request's identifier names (may be empty)."""
        patient_root = str(event.request.AffectedSOPClassUID) in PATIENT_ROOT
        query = retrieve_query(event.identifier, patient_root)
        return self._bridge.call(select_instances(self._archive, query))

    async def selected(
        self, sop_class: str, identifier: Callable[[], Dataset]
    ) -> list[StoredInstance]:
        """``select`` on the event loop; ``identifier`` decodes the request's."""
        query = retrieve_query(identifier(), sop_class in PATIENT_ROOT)
        return await select_instances(self._archive, query)

    def sub_operations(
        self,
        cancelled: Callable[[], bool],
        instances: list[StoredInstance],
        load: Callable[[StoredInstance, bytes], Dataset],
    ) -> Generator[RetrieveYield, None, None]:
        """One pending yield per instance, each ``load`` of its stored bytes.

        The next instances are read, decrypted and loaded on a thread of
        their own while the current one is sent. An instance that cannot be read is
        yielded without its SOP Class UID, so that its sub-operation fails and
        is listed in Failed SOP Instance UID List (PS3.4 C.4.2.1.4.2) without
        anything being sent.
        """
        todo = iter(instances)
        ahead: deque[Future[Dataset]] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix="dimse-read") as reader:
            try:
                while True:
                    while (
                        len(ahead) < READ_AHEAD
                        and (item := next(todo, None)) is not None
                    ):
                        ahead.append(reader.submit(self._load, item, load))
                    if not ahead:
                        return
                    if cancelled():
                        yield CANCEL, None
                        return
                    yield PENDING, ahead.popleft().result()
            finally:
                for loading in ahead:
                    loading.cancel()

    def _load(
        self, item: StoredInstance, load: Callable[[StoredInstance, bytes], Dataset]
    ) -> Dataset:
        try:
            return load(item, self._archive.read_here(item))
        except (ArchiveError, DimseError, OSError) as error:
            logger.error(
                "Cannot read a stored instance for a sub-operation (%s)",
                type(error).__name__,
            )
            logger.debug("Unreadable instance %s: %s", item.sop_instance_uid, error)
        except Exception:
            logger.exception("Reading a stored instance for a sub-operation failed")
        placeholder = Dataset()
        placeholder.SOPInstanceUID = item.sop_instance_uid
        return placeholder


def decoded(item: StoredInstance, part10: bytes) -> Dataset:
    """The stored instance as a data set pynetdicom can send (C-GET)."""
    return stored_dataset(part10)


def as_stored(item: StoredInstance, part10: bytes) -> Dataset:
    """The stored bytes, to be sent as they are (C-MOVE's store association)."""
    # An unreadable object fails here, before any sending.
    stored = StoredObject.read(item.sop_class_uid, item.sop_instance_uid, part10)
    return StoredInstanceDataset.of(stored)
