"""Associations served on the event loop (PS3.4 B, C.4.1, C.4.2; PS3.7 9; PS3.8 9).

Most associations a modality, a PACS or a viewer opens send instances,
search or move: they propose Storage SOP classes, Verification, and the
Patient or Study Root FIND and MOVE SOP classes, with no extended
negotiation. Such an association is served here, as a task of the server's
event loop: P-DATA is reassembled as it arrives, each C-STORE goes straight
to ingest, each C-FIND and C-MOVE runs as a task of its own while the
association is still read for its C-CANCEL, and every response is encoded
here, with no threads of pynetdicom's and no polling.

Every other association goes to pynetdicom exactly as before: C-GET, SCP/SCU
role selection or any other extended negotiation, a caller the policy
refuses, an association request that does not decode or in which no context
could be accepted. The decision is made on the A-ASSOCIATE-RQ read with
MSG_PEEK, so pynetdicom still finds it on the socket.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode, encode
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
from dimse.errors import OUT_OF_RESOURCES, SOP_CLASS_NOT_SUPPORTED
from storage.spool import SpooledCipherFile

logger = logging.getLogger(__name__)

# A C-STORE data set larger than this waits in an encrypted temporary file.
SPOOL_BYTES = 8 << 20
# An A-ASSOCIATE-RQ larger than this is refused unread (128 contexts fit).
MAX_REQUEST_BYTES = 1 << 16
# How often a connection still being read checks that the listener goes on.
_STOP_CHECK_S = 0.2
# PS3.8 9.3.3.2 presentation context results.
_ACCEPTED, _ABSTRACT_NOT_SUPPORTED, _SYNTAXES_NOT_SUPPORTED = 0, 3, 4
# A-ABORT from the service provider (PS3.8 9.3.8): unexpected PDU, or
# unrecognised PDU parameter.
_PROVIDER = 2
_UNEXPECTED_PDU, _UNRECOGNISED_PARAMETER = 2, 6


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
    and MOVE among the abstract syntaxes this listener serves, and no user information but
    the Maximum Length and implementation items. Each context gets the
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
    association request over ``MAX_REQUEST_BYTES`` is ``Unserved``. Each peek
    waits, without spinning, until the bytes it wants are there (SO_RCVLOWAT).
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
            if kind == wire.ASSOCIATE_RQ and length > MAX_REQUEST_BYTES:
                # 128 presentation contexts fit in far less; not read at all.
                raise Unserved(
                    f"an association request of {length} bytes, over the "
                    f"{MAX_REQUEST_BYTES} taken"
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
            self._end(session)
            sock.close()
            return True
        logger.info(
            "Association accepted from %s at %s:%d", plan.calling_ae_title, *address
        )
        try:
            asyncio.run_coroutine_threadsafe(session.run(sock), self._loop)
        except RuntimeError:  # the event loop is closing
            self._end(session)
            sock.close()
        return True

    def _end(self, session: LoopSession) -> None:
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


class Upload:
    """One C-STORE's Part 10 file as its data set arrives: File Meta
    Information first, then each fragment.

    Fragments are kept as they came up to ``SPOOL_BYTES`` and joined once;
    past that everything goes to an encrypted temporary file
    (``storage.spool``), written from a worker thread: a data set of any size
    costs bounded memory and never reaches the disk in clear.
    """

    def __init__(self, header: bytes | None, refusal: Exception | None) -> None:
        self.refusal = refusal
        self._parts: list[bytes | memoryview] = [] if header is None else [header]
        self.size = 0 if header is None else len(header)
        self._spool: SpooledCipherFile | None = None

    @property
    def spooled(self) -> bool:
        """Whether the bytes went to the encrypted temporary file."""
        return self._spool is not None

    async def add(self, fragment: memoryview) -> None:
        """Append a fragment (dropped when the C-STORE is to be refused)."""
        if self.refusal is not None:
            return
        self.size += len(fragment)
        if self._spool is None and self.size <= SPOOL_BYTES:
            self._parts.append(fragment)
            return
        if self._spool is None:
            self._spool = SpooledCipherFile(0)
            held, self._parts = [*self._parts, fragment], []
            await asyncio.to_thread(self._spool.writelines, held)
        else:
            await asyncio.to_thread(self._spool.write, fragment)

    def part10(self) -> BinaryIO:
        """The whole file, to be read from its start."""
        if self._spool is not None:
            self._spool.seek(0)
            return cast(BinaryIO, self._spool)
        return io.BytesIO(b"".join(self._parts))

    def close(self) -> None:
        """Forget the bytes."""
        self._parts = []
        if self._spool is not None:
            self._spool.close()


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


class LoopSession:
    """One plain association, served on the event loop."""

    def __init__(
        self, gate: AssociationGate, plan: AssociationPlan, address: tuple[str, int]
    ) -> None:
        self._gate = gate
        self._plan = plan
        self._address = address
        self._writer: asyncio.StreamWriter | None = None
        # The C-FIND or C-MOVE running, its Message ID and its cancel flag.
        self._operation: asyncio.Task[None] | None = None
        self._operation_id = -1
        self._operation_context = 0
        self._cancelled = threading.Event()
        # Set once this side aborts: nothing more is read or answered.
        self._aborted = False
        # The data set of the C-STORE arriving now.
        self._upload: Upload | None = None

    @property
    def transport_socket(self) -> Any:
        """The event loop's view of the association's socket, once served."""
        return None if self._writer is None else self._writer.get_extra_info("socket")

    @property
    def calling_ae_title(self) -> str:
        """The caller's AE title."""
        return self._plan.calling_ae_title

    def abort(self) -> None:
        """Abort the association now (from the event loop's thread).

        A-ABORT, then the connection closes; nothing more is read from it.
        """
        self._aborted = True
        if self._writer is not None and not self._writer.is_closing():
            _close(self._writer, wire.abort(_PROVIDER, 0))

    async def run(self, sock: socket.socket) -> None:
        """Serve the association until it is released, aborted or idle too long."""
        who = (self._plan.calling_ae_title, *self._address)
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            self._gate._end(self)
            return
        self._writer = writer
        # The last PDU to send before closing, if any.
        last: bytes | None = None
        try:
            await self._serve(reader, writer)
            logger.info("Association released by %s at %s:%d", *who)
        except wire.WireError as error:
            logger.warning("Association with %s at %s:%d aborted: %s", *who, error)
            reason = (
                _UNEXPECTED_PDU if "PDU type" in str(error) else _UNRECOGNISED_PARAMETER
            )
            last = wire.abort(_PROVIDER, reason)
        except TimeoutError:
            logger.warning("Association with %s at %s:%d idle too long, aborted", *who)
            last = wire.abort(_PROVIDER, 0)
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            logger.info("Association with %s at %s:%d ended: %s", *who, error)
        except _Aborted:
            logger.info("Association aborted with %s at %s:%d", *who)
        except _AbortedHere:
            pass  # logged where it was decided
        except Exception:
            logger.exception("Association with %s at %s:%d failed; aborted", *who)
            last = wire.abort(_PROVIDER, 0)
        finally:
            if self._operation is not None:
                self._operation.cancel()
            if self._upload is not None:
                self._upload.close()
            self._gate._end(self)
            if not writer.is_closing():
                _close(writer, last)

    def _busy(self) -> bool:
        return self._operation is not None and not self._operation.done()

    async def _read_pdu(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        timeout_s = self._gate.timeout_s()
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    # Bytes stay buffered when the wait times out.
                    header = await reader.readexactly(wire.PDU_HEADER.size)
                break
            except TimeoutError:
                # A long C-FIND or C-MOVE keeps the association busy, not idle.
                if not self._busy():
                    raise
        kind, length = wire.PDU_HEADER.unpack(header)
        limit = self._gate.max_pdu()
        if kind == wire.P_DATA and limit and length > limit:
            raise wire.WireError(
                f"A {length}-byte P-DATA-TF PDU exceeds the Maximum Length {limit}"
            )
        if kind != wire.P_DATA and length > MAX_REQUEST_BYTES:
            raise wire.WireError(f"A {length}-byte PDU of type 0x{kind:02X}")
        async with asyncio.timeout(timeout_s):
            return kind, await reader.readexactly(length)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Fragments as views of their PDUs: joined once, copied once.
        command_parts: list[memoryview] = []
        command_context = 0
        data_parts: list[memoryview] = []
        # The request whose data set is arriving, and its context.
        waiting: tuple[int, Dataset] | None = None
        while True:
            if self._aborted:
                raise _AbortedHere
            kind, body = await self._read_pdu(reader)
            if kind == wire.RELEASE_RQ:
                await self._finish_operation()
                writer.write(wire.release_rp())
                await writer.drain()
                return
            if kind == wire.ABORT:
                raise _Aborted
            if kind != wire.P_DATA:
                raise wire.WireError(f"Unexpected PDU type 0x{kind:02X}")
            for context_id, control, fragment in wire.pdv_items(body):
                if context_id not in self._plan.accepted:
                    raise wire.WireError(
                        f"A PDV on presentation context {context_id}, not accepted"
                    )
                if control & wire.COMMAND:
                    if waiting is not None:
                        raise wire.WireError("A command arrived before the data set")
                    if command_parts and command_context != context_id:
                        raise wire.WireError(
                            "The fragments of one command came on two contexts"
                        )
                    command_context = context_id
                    command_parts.append(fragment)
                    if not control & wire.LAST:
                        continue
                    command = wire.decode_command(b"".join(command_parts))
                    command_parts = []
                    waiting = await self._on_command(context_id, command, writer)
                    if waiting is not None and command.CommandField == wire.C_STORE_RQ:
                        self._upload = self._gate.upload(self._plan, *waiting)
                else:
                    if waiting is None or waiting[0] != context_id:
                        raise wire.WireError("A data set arrived without its command")
                    if self._upload is not None:
                        await self._upload.add(fragment)
                    else:
                        data_parts.append(fragment)
                    if control & wire.LAST:
                        if self._upload is not None:
                            await self._on_store(*waiting, self._upload, writer)
                        else:
                            data, data_parts = b"".join(data_parts), []
                            await self._on_data_set(*waiting, data, writer)
                        waiting = None

    async def _on_command(
        self, context_id: int, command: Dataset, writer: asyncio.StreamWriter
    ) -> tuple[int, Dataset] | None:
        """Answer a command without a data set; or the request awaiting its own."""
        field = _us_value(command, "CommandField")
        if field == wire.C_CANCEL_RQ:
            self._cancel(context_id, _us_value(command, "MessageIDBeingRespondedTo"))
            return None
        _us_value(command, "MessageID")
        # Without an Asynchronous Operations Window (PS3.7 D.3.3.3) a caller
        # has one operation outstanding; a request sent early waits for it.
        await self._finish_operation()
        if self._aborted:
            raise _AbortedHere
        has_data = _us_value(command, "CommandDataSetType") != wire.NO_DATA_SET
        abstract, _ = self._plan.accepted[context_id]
        if has_data and (
            field == wire.C_STORE_RQ
            or (field == wire.C_FIND_RQ and abstract in FIND_SOP_CLASSES)
            or (field == wire.C_MOVE_RQ and abstract in MOVE_SOP_CLASSES)
        ):
            return context_id, command
        if field == wire.C_ECHO_RQ and not has_data and abstract == VERIFICATION:
            response = wire.c_echo_rsp(abstract, int(command.MessageID))
            await self._send(context_id, response, writer)
            return None
        raise wire.WireError(
            f"Command 0x{field:04X} is not served on presentation context "
            f"{context_id} ({abstract})"
        )

    def _cancel(self, context_id: int, message_id: int) -> None:
        """C-CANCEL-RQ (PS3.7 9.3.2.3): stop the operation it names, if running.

        It names the request by Message ID and comes on the request's context.
        """
        if (
            self._busy()
            and message_id == self._operation_id
            and context_id == self._operation_context
        ):
            logger.info(
                "C-CANCEL from %s for message %d",
                self._plan.calling_ae_title,
                message_id,
            )
            self._cancelled.set()
        else:
            logger.debug("C-CANCEL for message %d, not running: ignored", message_id)

    async def _finish_operation(self) -> None:
        if self._operation is not None:
            await self._operation
            self._operation = None

    async def _on_data_set(
        self,
        context_id: int,
        command: Dataset,
        data_set: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Start the C-FIND or C-MOVE whose identifier has arrived."""
        self._operation_id = int(command.MessageID)
        self._operation_context = context_id
        self._cancelled = threading.Event()
        self._operation = asyncio.create_task(
            self._run_operation(context_id, command, data_set, writer)
        )

    async def _on_store(
        self,
        context_id: int,
        command: Dataset,
        upload: Upload,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            status = await self._gate.store(self._plan, command, upload)
        finally:
            self._upload = None
            if upload.spooled:
                # An ingest that timed out may still be reading the file: its
                # close waits for that read, off the loop.
                await asyncio.to_thread(upload.close)
            else:
                upload.close()
        # The UIDs are echoed only when they can be (PS3.7 9.3.1.2: optional).
        response = wire.c_store_rsp(
            _echoable(command.get("AffectedSOPClassUID")),
            _echoable(command.get("AffectedSOPInstanceUID")),
            int(command.MessageID),
            status,
        )
        await self._send(context_id, response, writer)

    async def _run_operation(
        self,
        context_id: int,
        command: Dataset,
        identifier: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        """A C-FIND or C-MOVE with its responses; a failure to send aborts."""
        abstract, syntax = self._plan.accepted[context_id]
        message_id = int(command.MessageID)
        find = command.CommandField == wire.C_FIND_RQ
        try:
            async with asyncio.timeout(None) as deadline:
                # PS3.8 7.1.1.13: a context's messages are of its abstract syntax.
                if str(command.get("AffectedSOPClassUID", "")) != abstract:
                    status = SOP_CLASS_NOT_SUPPORTED
                    refused = (
                        wire.c_find_rsp(abstract, message_id, status, False)
                        if find
                        else wire.c_move_rsp(abstract, message_id, status, None, False)
                    )
                    await self._respond(context_id, refused, writer, deadline)
                elif find:
                    await self._find(
                        _Request(context_id, abstract, syntax, message_id),
                        identifier,
                        writer,
                        deadline,
                    )
                else:
                    await self._move(
                        _Request(context_id, abstract, syntax, message_id),
                        str(command.get("MoveDestination", "")),
                        identifier,
                        writer,
                        deadline,
                    )
        except (TimeoutError, ConnectionError) as error:
            logger.warning(
                "Responses to %s could not be sent (%s); association aborted",
                self._plan.calling_ae_title,
                type(error).__name__,
            )
            self.abort()
        except Exception:
            logger.exception(
                "A request from %s failed; association aborted",
                self._plan.calling_ae_title,
            )
            self.abort()

    async def _find(
        self,
        request: _Request,
        identifier: bytes,
        writer: asyncio.StreamWriter,
        deadline: asyncio.Timeout,
    ) -> None:
        responses = self._gate.find.responses(
            self._plan.calling_ae_title,
            request.abstract,
            lambda: _decoded(identifier, request.syntax),
            request.syntax,
            self._cancelled.is_set,
        )
        async with aclosing(responses):
            async for batch in responses:
                messages = [
                    (
                        wire.c_find_rsp(
                            request.abstract,
                            request.message_id,
                            status,
                            encoded is not None,
                        ),
                        encoded,
                    )
                    for status, encoded in batch
                ]
                await self._respond_all(request.context_id, messages, writer, deadline)

    async def _move(
        self,
        request: _Request,
        destination: str,
        identifier: bytes,
        writer: asyncio.StreamWriter,
        deadline: asyncio.Timeout,
    ) -> None:
        responses = self._gate.move.responses(
            self._plan.calling_ae_title,
            request.abstract,
            request.message_id,
            destination,
            lambda: _decoded(identifier, request.syntax),
            self._cancelled,
        )
        # Closed when this task ends early: the sub-operations stop too.
        async with aclosing(responses):
            async for status, counts, failed in responses:
                encoded = None if failed is None else _encoded(failed, request.syntax)
                command_set = wire.c_move_rsp(
                    request.abstract,
                    request.message_id,
                    status,
                    counts,
                    encoded is not None,
                )
                await self._respond(
                    request.context_id, command_set, writer, deadline, encoded
                )

    async def _respond(
        self,
        context_id: int,
        command: bytes,
        writer: asyncio.StreamWriter,
        deadline: asyncio.Timeout,
        identifier: bytes | None = None,
    ) -> None:
        """Send one response; the requester has the DIMSE timeout to take it."""
        await self._respond_all(context_id, [(command, identifier)], writer, deadline)

    async def _respond_all(
        self,
        context_id: int,
        messages: list[tuple[bytes, bytes | None]],
        writer: asyncio.StreamWriter,
        deadline: asyncio.Timeout,
    ) -> None:
        """Send responses (command, identifier) in one write, within the timeout."""
        max_pdu = self._plan.peer_max_pdu
        writer.write(
            b"".join(
                wire.p_data_message(context_id, command, identifier, max_pdu)
                for command, identifier in messages
            )
        )
        deadline.reschedule(asyncio.get_running_loop().time() + self._gate.timeout_s())
        await writer.drain()
        deadline.reschedule(None)

    async def _send(
        self, context_id: int, command: bytes, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(
            wire.p_data_pdus(context_id, wire.COMMAND, command, self._plan.peer_max_pdu)
        )
        await writer.drain()


def _decoded(identifier: bytes, syntax: str) -> Dataset:
    """A request's identifier in its context's transfer syntax."""
    uid = UID(syntax)
    return decode(
        io.BytesIO(identifier),
        uid.is_implicit_VR,
        uid.is_little_endian,
        uid.is_deflated,
    )


def _encoded(identifier: Dataset, syntax: str) -> bytes | None:
    """A response's identifier in the context's transfer syntax; None if it cannot be."""
    uid = UID(syntax)
    return encode(identifier, uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated)


def _us_value(command: Dataset, keyword: str) -> int:
    """A mandatory US element of a command set (PS3.7 9.3, E.1)."""
    value = command.get(keyword)
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise wire.WireError(f"The command has no single US value for {keyword}")
    return value


def _echoable(value: object) -> str | None:
    """A UID from a request as it may go back in a response, or None."""
    text = "" if value is None else str(value)
    if not text.isascii() or len(text) > 64:
        return None
    return text


@dataclass(frozen=True)
class _Request:
    """The request a C-FIND or C-MOVE answers: where and in what syntax."""

    context_id: int
    abstract: str
    syntax: str
    message_id: int


class _Aborted(Exception):
    """The peer sent A-ABORT."""


class _AbortedHere(Exception):
    """This side aborted the association (and logged why)."""


# How long a closing connection may take to send its last PDU.
_CLOSE_GRACE_S = 2.0


def _close(writer: asyncio.StreamWriter, last: bytes | None) -> None:
    """Close the connection after ``last``; reset it if the peer is not reading.

    Unsent data left means the peer stopped taking what is sent: a graceful
    close would wait for it forever, holding the socket and its buffer.
    """
    transport = writer.transport
    if transport.get_write_buffer_size():
        transport.abort()
        return
    if last is not None:
        writer.write(last)
    writer.close()
    if transport.get_write_buffer_size():
        asyncio.get_running_loop().call_later(_CLOSE_GRACE_S, transport.abort)
