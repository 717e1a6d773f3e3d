"""One plain association served on the event loop (PS3.4 B, C.4.1, C.4.2; PS3.8 9).

``dimse.loop_scp`` decides which associations come here and accepts them;
this module serves one once accepted: it reassembles P-DATA as it arrives,
stores each C-STORE's data set as it comes (``Upload``), runs each C-FIND and
C-MOVE as a task while the association is still read for its C-CANCEL,
encodes every response, and aborts a peer that breaks PS3.8.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode

from dimse import _wire as wire
from dimse._contexts import FIND_SOP_CLASSES, MOVE_SOP_CLASSES, VERIFICATION
from dimse._response import encode_identifier
from dimse.errors import SOP_CLASS_NOT_SUPPORTED
from storage.spool import SpooledCipherFile

if TYPE_CHECKING:
    from dimse.loop_scp import AssociationGate, AssociationPlan

logger = logging.getLogger(__name__)

# A C-STORE data set larger than this waits in an encrypted temporary file.
SPOOL_BYTES = 8 << 20
# A-ABORT from the service provider (PS3.8 9.3.8): unexpected PDU, or
# unrecognised PDU parameter.
_PROVIDER = 2
_UNEXPECTED_PDU, _UNRECOGNISED_PARAMETER = 2, 6


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


class LoopSession:
    """One plain association, served on the event loop."""

    def __init__(
        self, gate: AssociationGate, plan: AssociationPlan, address: tuple[str, int]
    ) -> None:
        self._gate = gate
        self._plan = plan
        self._address = address
        self._writer: asyncio.StreamWriter | None = None
        # The C-FIND or C-MOVE started last (running or done).
        self._operation: _Running | None = None
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
            self._gate.end(self)
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
            # Why was logged where it was decided; this closes the account.
            logger.debug("Association with %s at %s:%d closed after abort", *who)
        except Exception:
            logger.exception("Association with %s at %s:%d failed; aborted", *who)
            last = wire.abort(_PROVIDER, 0)
        finally:
            if self._operation is not None:
                self._operation.task.cancel()
            if self._upload is not None:
                self._upload.close()
            self._gate.end(self)
            if not writer.is_closing():
                _close(writer, last)

    def _busy(self) -> bool:
        return self._operation is not None and not self._operation.task.done()

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
        if kind != wire.P_DATA and length > wire.MAX_CONTROL_PDU_BYTES:
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
            await self._respond(context_id, response, writer)
            return None
        raise wire.WireError(
            f"Command 0x{field:04X} is not served on presentation context "
            f"{context_id} ({abstract})"
        )

    def _cancel(self, context_id: int, message_id: int) -> None:
        """C-CANCEL-RQ (PS3.7 9.3.2.3): stop the operation it names, if running.

        It names the request by Message ID and comes on the request's context.
        """
        running = self._operation
        if (
            running is not None
            and not running.task.done()
            and message_id == running.request.message_id
            and context_id == running.request.context_id
        ):
            logger.info(
                "C-CANCEL from %s for message %d",
                self._plan.calling_ae_title,
                message_id,
            )
            running.cancelled.set()
        else:
            logger.debug("C-CANCEL for message %d, not running: ignored", message_id)

    async def _finish_operation(self) -> None:
        if self._operation is not None:
            await self._operation.task
            self._operation = None

    async def _on_data_set(
        self,
        context_id: int,
        command: Dataset,
        data_set: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Start the C-FIND or C-MOVE whose identifier has arrived."""
        abstract, syntax = self._plan.accepted[context_id]
        request = _Request(context_id, abstract, syntax, int(command.MessageID))
        cancelled = threading.Event()
        task = asyncio.create_task(
            self._run_operation(request, command, data_set, cancelled, writer)
        )
        self._operation = _Running(request, task, cancelled)

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
        await self._respond(context_id, response, writer)

    async def _run_operation(
        self,
        request: _Request,
        command: Dataset,
        identifier: bytes,
        cancelled: threading.Event,
        writer: asyncio.StreamWriter,
    ) -> None:
        """A C-FIND or C-MOVE with its responses; a failure to send aborts."""
        find = command.CommandField == wire.C_FIND_RQ
        try:
            # PS3.8 7.1.1.13: a context's messages are of its abstract syntax.
            if str(command.get("AffectedSOPClassUID", "")) != request.abstract:
                status, abstract = SOP_CLASS_NOT_SUPPORTED, request.abstract
                refused = (
                    wire.c_find_rsp(abstract, request.message_id, status, False)
                    if find
                    else wire.c_move_rsp(
                        abstract, request.message_id, status, None, False
                    )
                )
                await self._respond(request.context_id, refused, writer)
            elif find:
                await self._find(request, identifier, cancelled, writer)
            else:
                destination = str(command.get("MoveDestination", ""))
                await self._move(request, destination, identifier, cancelled, writer)
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
        cancelled: threading.Event,
        writer: asyncio.StreamWriter,
    ) -> None:
        responses = self._gate.find.responses(
            self._plan.calling_ae_title,
            request.abstract,
            lambda: _decoded(identifier, request.syntax),
            request.syntax,
            cancelled.is_set,
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
                await self._respond_all(request.context_id, messages, writer)

    async def _move(
        self,
        request: _Request,
        destination: str,
        identifier: bytes,
        cancelled: threading.Event,
        writer: asyncio.StreamWriter,
    ) -> None:
        responses = self._gate.move.responses(
            self._plan.calling_ae_title,
            request.abstract,
            request.message_id,
            destination,
            lambda: _decoded(identifier, request.syntax),
            cancelled,
        )
        # Closed when this task ends early: the sub-operations stop too.
        async with aclosing(responses):
            async for status, counts, failed in responses:
                encoded = (
                    None
                    if failed is None
                    else encode_identifier(failed, request.syntax)
                )
                command_set = wire.c_move_rsp(
                    request.abstract,
                    request.message_id,
                    status,
                    counts,
                    encoded is not None,
                )
                await self._respond(request.context_id, command_set, writer, encoded)

    async def _respond(
        self,
        context_id: int,
        command: bytes,
        writer: asyncio.StreamWriter,
        identifier: bytes | None = None,
    ) -> None:
        """Send one response (command, then identifier if any)."""
        await self._respond_all(context_id, [(command, identifier)], writer)

    async def _respond_all(
        self,
        context_id: int,
        messages: list[tuple[bytes, bytes | None]],
        writer: asyncio.StreamWriter,
    ) -> None:
        """Send responses in one write; the peer has the DIMSE timeout to take them.

        Raises ``TimeoutError`` when it does not.
        """
        max_pdu = self._plan.peer_max_pdu
        writer.write(
            b"".join(
                wire.p_data_message(context_id, command, identifier, max_pdu)
                for command, identifier in messages
            )
        )
        async with asyncio.timeout(self._gate.timeout_s()):
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


@dataclass(frozen=True)
class _Running:
    """A C-FIND or C-MOVE started on the association, which a C-CANCEL names."""

    request: _Request
    task: asyncio.Task[None]
    cancelled: threading.Event


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
