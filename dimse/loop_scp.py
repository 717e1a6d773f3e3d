"""Associations served on the event loop (PS3.4 B, C.4.1, C.4.2; PS3.7 9; PS3.8 9).

Most associations a modality, a PACS or a viewer opens send instances,
search or move: they propose Storage SOP classes, Verification, and the
Patient or Study Root FIND and MOVE SOP classes, with no extended
negotiation. Such an association is accepted here and served as a task of
the server's event loop (``dimse.loop_session``), with no threads of
pynetdicom's and no polling.

Every other association goes to pynetdicom exactly as before: C-GET, SCP/SCU
role selection or any other extended negotiation, a caller the policy
refuses, an association request that does not decode or in which no context
could be accepted. The decision is made on the A-ASSOCIATE-RQ read with
MSG_PEEK, so pynetdicom still finds it on the socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from dimse import _wire as wire
from dimse._contexts import (
    FIND_SOP_CLASSES,
    MOVE_SOP_CLASSES,
    STORAGE_SOP_CLASSES,
    VERIFICATION,
    accepted_contexts,
)
from dimse.c_find import FindHandler
from dimse.c_move import MoveService
from dimse.c_store import StoreHandler, header_for, refusal
from dimse.errors import OUT_OF_RESOURCES
from dimse.loop_session import LoopSession, Upload

logger = logging.getLogger(__name__)

# How often a connection still being read checks that the listener goes on.
_STOP_CHECK_S = 0.2
# PS3.8 9.3.3.2 presentation context results.
_ACCEPTED, _ABSTRACT_NOT_SUPPORTED, _SYNTAXES_NOT_SUPPORTED = 0, 3, 4


@dataclass(frozen=True)
class AssociationPlan:
    """How a plain association is accepted."""

    calling_ae_title: str
    # Presentation context ID -> (abstract syntax, accepted transfer syntax).
    accepted: dict[int, tuple[str, str]]
    # Every proposed context with its result, for the A-ASSOCIATE-AC.
    results: list[PresentationContext]
    # The caller's Maximum Length (0: none).
    peer_max_pdu: int


def _supported() -> dict[str, tuple[str, ...]]:
    served = {*STORAGE_SOP_CLASSES, VERIFICATION, *FIND_SOP_CLASSES, *MOVE_SOP_CLASSES}
    return {
        context.abstract_syntax: context.transfer_syntaxes
        for context in accepted_contexts()
        if context.abstract_syntax in served
    }


_SUPPORTED = _supported()
_SERVED_ELSEWHERE = frozenset(
    context.abstract_syntax
    for context in accepted_contexts()
    if context.abstract_syntax not in _SUPPORTED
)


def plan_association(request: A_ASSOCIATE) -> AssociationPlan | None:
    """The plan for a plain association, or None to leave it to pynetdicom.

    Plain: the DICOM application context, only Storage, Verification, FIND
    and MOVE among the abstract syntaxes this listener serves, and no user
    information but the Maximum Length and implementation items. Each context gets the
    caller's first proposed transfer syntax that the listener supports for it
    (as pynetdicom does here, see ``in_requestor_order``).
    """
    if str(request.application_context_name) != wire.APPLICATION_CONTEXT:
        return None
    peer_max = None
    for item in request.user_information:
        if isinstance(item, MaximumLengthNotification):
            peer_max = int(item.maximum_length_received or 0)
        elif not isinstance(
            item,
            (ImplementationClassUIDNotification, ImplementationVersionNameNotification),
        ):
            return None  # role selection, extended negotiation, user identity...
    if peer_max is None or 0 < peer_max <= wire.PDV_OVERHEAD:
        return None
    accepted: dict[int, tuple[str, str]] = {}
    results: list[PresentationContext] = []
    proposals = request.presentation_context_definition_list
    ids = [int(proposed.context_id or 0) for proposed in proposals]
    if len(set(ids)) != len(ids) or any(i % 2 == 0 for i in ids):
        return None  # PS3.8 9.3.2.2: unique odd IDs
    for proposed in proposals:
        abstract = str(proposed.abstract_syntax)
        if abstract in _SERVED_ELSEWHERE:
            return None
        offered = [str(syntax) for syntax in proposed.transfer_syntax]
        ours = _SUPPORTED.get(abstract, ())
        chosen = next((syntax for syntax in offered if syntax in ours), None)
        result = PresentationContext()
        result.context_id = proposed.context_id
        result.abstract_syntax = abstract
        if chosen is not None:
            result.transfer_syntax = [chosen]
            result.result = _ACCEPTED
            accepted[int(proposed.context_id or 0)] = (abstract, chosen)
        else:
            result.transfer_syntax = [*offered[:1]] or [wire.APPLICATION_CONTEXT]
            result.result = (
                _SYNTAXES_NOT_SUPPORTED
                if abstract in _SUPPORTED
                else _ABSTRACT_NOT_SUPPORTED
            )
        results.append(result)
    if not accepted:
        return None
    return AssociationPlan(
        calling_ae_title=str(request.calling_ae_title).strip(),
        accepted=accepted,
        results=results,
        peer_max_pdu=peer_max,
    )


def associate_ac(request: A_ASSOCIATE, plan: AssociationPlan, max_pdu: int) -> bytes:
    """The A-ASSOCIATE-AC for ``plan`` (PS3.8 9.3.3), with our Maximum Length."""
    answer = A_ASSOCIATE()
    answer.application_context_name = wire.APPLICATION_CONTEXT
    answer.calling_ae_title = request.calling_ae_title
    answer.called_ae_title = request.called_ae_title
    answer.result = 0x00
    answer.result_source = 0x01
    answer.presentation_context_definition_results_list = plan.results
    answer.user_information = wire.user_information(max_pdu)  # type: ignore[assignment]
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(answer)
    return bytes(pdu.encode())


class Unserved(Exception):
    """The connection ends before an association: closed, stalled or shutting down."""


def peek_request(
    sock: socket.socket, timeout_s: float, stopping: threading.Event
) -> bytes | None:
    """The whole first PDU if it is an A-ASSOCIATE-RQ, left unread on the socket.

    None when the first PDU is another (pynetdicom answers it). An
    association request over ``wire.MAX_CONTROL_PDU_BYTES`` is ``Unserved``.
    Each peek waits, without spinning, until the bytes it wants are there
    (SO_RCVLOWAT).
    Raises ``Unserved`` when the peer closes, sends no whole request within
    ``timeout_s`` (the ARTIM timer, PS3.8 9.1.5) or ``stopping`` is set.
    """
    deadline = time.monotonic() + timeout_s
    wanted = wire.PDU_HEADER.size
    try:
        while True:
            if stopping.is_set():
                raise Unserved("the listener is stopping")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unserved(f"no whole association request within {timeout_s} s")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, wanted)
            sock.settimeout(min(_STOP_CHECK_S, left))
            try:
                head = sock.recv(wanted, socket.MSG_PEEK)
            except TimeoutError:
                continue
            if len(head) < wanted:
                raise Unserved("closed before a whole association request")
            kind, length = wire.PDU_HEADER.unpack_from(head)
            if kind == wire.ASSOCIATE_RQ and length > wire.MAX_CONTROL_PDU_BYTES:
                # 128 presentation contexts fit in far less; not read at all.
                raise Unserved(
                    f"an association request of {length} bytes, over the "
                    f"{wire.MAX_CONTROL_PDU_BYTES} taken"
                )
            if kind != wire.ASSOCIATE_RQ:
                return None
            if len(head) == wire.PDU_HEADER.size + length:
                return head
            wanted = wire.PDU_HEADER.size + length
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


class AssociationGate:
    """Takes plain associations off pynetdicom's hands (see module doc).

    ``take`` runs on the thread pynetdicom's server started for the
    connection; ``others`` counts the associations pynetdicom is serving, so
    that the limit on associations holds for both together.
    """

    def __init__(
        self,
        store: StoreHandler,
        find: FindHandler,
        move: MoveService,
        loop: asyncio.AbstractEventLoop,
        *,
        max_pdu: int,
        timeout_s: float,
        max_associations: int,
        refuses: Callable[[str], bool],
        others: Callable[[], int],
    ) -> None:
        self._store = store
        self.find = find
        self.move = move
        self._loop = loop
        self._max_pdu = max_pdu
        self._timeout_s = timeout_s
        self._max_associations = max_associations
        self._refuses = refuses
        self._others = others
        self._lock = threading.Lock()
        self._sessions: set[LoopSession] = set()
        self._stopping = threading.Event()
        # Connections whose association request is still being read.
        self._reading = 0

    @property
    def active(self) -> int:
        """Associations served here now."""
        with self._lock:
            return len(self._sessions)

    def take(self, sock: socket.socket, address: tuple[str, int]) -> bool:
        """Serve the connection here and return True, or return False for pynetdicom.

        Connections still sending their request count against the association
        limit too: beyond it a new one is closed at once. Any association
        request is refused here (local limit exceeded) when the associations
        of both paths together reach the limit.
        """
        before = sock.gettimeout()
        with self._lock:
            crowded = self._reading >= self._max_associations
            self._reading += 0 if crowded else 1
        if crowded:
            logger.warning(
                "Connection from %s:%d closed: %d connections are still sending "
                "their association request (dimse_max_associations)",
                *address,
                self._max_associations,
            )
            sock.close()
            return True
        try:
            raw = peek_request(sock, self._timeout_s, self._stopping)
        except Unserved as error:
            logger.info("Connection from %s:%d closed: %s", *address, error)
            sock.close()
            return True
        except OSError:
            sock.settimeout(before)
            return False  # pynetdicom meets the same broken connection
        finally:
            with self._lock:
                self._reading -= 1
        request, plan = _planned(raw)
        if raw is None or request is None:
            sock.settimeout(before)
            return False
        if plan is not None and not self._refuses(plan.calling_ae_title):
            return self._accept(sock, address, raw, request, plan)
        if self._full():
            self._refuse_full(sock, str(request.calling_ae_title).strip(), address, raw)
            return True
        sock.settimeout(before)
        return False

    def _full(self) -> bool:
        with self._lock:
            return len(self._sessions) + self._others() >= self._max_associations

    def _refuse_full(
        self, sock: socket.socket, caller: str, address: tuple[str, int], raw: bytes
    ) -> None:
        """A-ASSOCIATE-RJ for the request ``raw`` still waiting on ``sock``."""
        logger.warning(
            "Association refused from %r at %s:%d: %d associations open "
            "(dimse_max_associations)",
            caller,
            *address,
            self._max_associations,
        )
        try:
            sock.settimeout(self._timeout_s)
            _consume(sock, len(raw))
            # Rejected-transient, service provider (presentation), local limit.
            sock.sendall(wire.reject(0x02, 0x03, 0x02))
        except OSError:
            pass
        sock.close()

    def _accept(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        raw: bytes,
        request: A_ASSOCIATE,
        plan: AssociationPlan,
    ) -> bool:
        """Take a place under the association limit, or refuse; then A-ASSOCIATE-AC."""
        session = LoopSession(self, plan, address)
        with self._lock:
            full = len(self._sessions) + self._others() >= self._max_associations
            if not full:
                self._sessions.add(session)
        if full:
            self._refuse_full(sock, plan.calling_ae_title, address, raw)
            return True
        try:
            sock.settimeout(self._timeout_s)
            _consume(sock, len(raw))
            sock.sendall(associate_ac(request, plan, self._max_pdu))
        except OSError as error:
            logger.info("Association request from %s:%d failed: %s", *address, error)
            self.end(session)
            sock.close()
            return True
        logger.info(
            "Association accepted from %s at %s:%d", plan.calling_ae_title, *address
        )
        try:
            asyncio.run_coroutine_threadsafe(session.run(sock), self._loop)
        except RuntimeError:  # the event loop is closing
            self.end(session)
            sock.close()
        return True

    def end(self, session: LoopSession) -> None:
        """Forget a session that has ended."""
        with self._lock:
            self._sessions.discard(session)

    def stop_taking(self) -> None:
        """Stop reading association requests (server shutdown)."""
        self._stopping.set()

    async def close(self, grace_s: float) -> None:
        """Give open associations ``grace_s`` to finish, then abort them (shutdown)."""
        deadline = time.monotonic() + grace_s
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            logger.warning(
                "Aborting association with %s on shutdown", session.calling_ae_title
            )
            session.abort()

    def sockets(self) -> list[Any]:
        """The sockets of the associations served here now (for their options)."""
        with self._lock:
            sessions = list(self._sessions)
        return [sock for session in sessions if (sock := session.transport_socket)]

    def max_pdu(self) -> int:
        """The Maximum Length this listener announced."""
        return self._max_pdu

    def timeout_s(self) -> float:
        """Idle time after which an association is aborted."""
        return self._timeout_s

    def upload(
        self, plan: AssociationPlan, context_id: int, command: Dataset
    ) -> Upload:
        """Where the data set of a C-STORE-RQ goes as it arrives.

        A command that cannot be stored (a malformed UID, a SOP class other
        than its context's) gets an upload that keeps nothing: the data set
        is still read, then refused.
        """
        abstract, syntax = plan.accepted[context_id]
        try:
            header = header_for(
                str(command.get("AffectedSOPClassUID", "")),
                str(command.get("AffectedSOPInstanceUID", "")),
                abstract,
                syntax,
            )
        except Exception as error:  # noqa: BLE001 - answered as a status
            return Upload(None, error)
        return Upload(header, None)

    async def store(
        self, plan: AssociationPlan, command: Dataset, upload: Upload
    ) -> int:
        """The status of one C-STORE (the listener's C-STORE handler decides)."""
        if upload.refusal is not None:
            return refusal(plan.calling_ae_title, upload.refusal)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._store.stored_file(
                    plan.calling_ae_title,
                    str(command.get("AffectedSOPClassUID", "")),
                    str(command.get("AffectedSOPInstanceUID", "")),
                    upload.part10(),
                    upload.size,
                )
        except TimeoutError:
            logger.warning(
                "C-STORE from %s refused with 0x%04X: the archive did not answer "
                "within %s s (dimse_timeout_s)",
                plan.calling_ae_title,
                OUT_OF_RESOURCES,
                self._timeout_s,
            )
            return OUT_OF_RESOURCES


def _planned(raw: bytes | None) -> tuple[A_ASSOCIATE | None, AssociationPlan | None]:
    """The decoded request and its plan; None for what does not decode."""
    if raw is None:
        return None, None
    try:
        decoded = A_ASSOCIATE_RQ()
        decoded.decode(raw)
        request = decoded.to_primitive()
    except Exception:  # noqa: BLE001 - whatever does not decode is pynetdicom's
        return None, None
    return request, plan_association(request)


def _consume(sock: socket.socket, size: int) -> None:
    received = 0
    while received < size:
        chunk = sock.recv(size - received)
        if not chunk:
            raise ConnectionError("closed while the request was read")
        received += len(chunk)
