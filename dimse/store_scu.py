"""A storage association this archive requests: C-STORE of stored bytes as P-DATA.

C-MOVE sends what it selects to the move destination over an association of
its own (PS3.4 C.4.2.3). pynetdicom's requestor decodes and re-encodes each
data set and moves every 16 kB fragment through its queues and polling
threads; here a stored instance's data set goes on the wire as it was stored,
cut into P-DATA-TF PDUs that fit the peer's Maximum Length (PS3.8 9.3.5,
D.1), one ``sendall`` per instance.

pynetdicom still encodes and decodes the association PDUs (A-ASSOCIATE-RQ/AC/RJ,
PS3.8 9.3.2-9.3.4); pydicom decodes the C-STORE-RSP command set. A data set is
converted only when the peer accepted its SOP class in another uncompressed
transfer syntax than the stored one.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from dimse import _wire as wire
from dimse._stored import split_part10, stored_dataset

logger = logging.getLogger(__name__)

# What this archive accepts in one PDU on the associations it requests.
RECEIVE_MAX_PDU = 1 << 20


class StoreAssociationError(Exception):
    """The association failed: refused, aborted, closed or timed out."""


class NotSendable(Exception):
    """This instance cannot go on this association; the next one may."""


@dataclass(frozen=True)
class StoredObject:
    """A stored instance to send: its Part 10 bytes, read once for what it holds."""

    sop_class_uid: str
    sop_instance_uid: str
    part10: bytes
    # From the File Meta Information: the data set's syntax and where it starts.
    transfer_syntax_uid: str
    data_set_offset: int

    @classmethod
    def read(
        cls, sop_class_uid: str, sop_instance_uid: str, part10: bytes
    ) -> StoredObject:
        """Read the File Meta Information; raises for an unreadable object."""
        meta, offset = split_part10(part10)
        syntax = str(meta.get("TransferSyntaxUID", ""))
        return cls(sop_class_uid, sop_instance_uid, part10, syntax, offset)


class StoredInstanceDataset(Dataset):
    """A data set carrying a stored instance for a C-MOVE sub-operation.

    pynetdicom's C-MOVE SCP passes the handler's data sets on to the store
    association and lists the SOP Instance UID of each that failed; the
    Part 10 bytes ride along untouched in ``stored``.
    """

    stored: StoredObject

    @classmethod
    def of(cls, stored: StoredObject) -> StoredInstanceDataset:
        """The data set for ``stored``, holding only its UIDs as elements."""
        dataset = cls()
        dataset.SOPClassUID = stored.sop_class_uid
        dataset.SOPInstanceUID = stored.sop_instance_uid
        object.__setattr__(dataset, "stored", stored)
        return dataset


def _native(syntax: str) -> bool:
    uid = UID(syntax)
    return uid.is_transfer_syntax and not uid.is_compressed and not uid.is_deflated


class StoreAssociation:
    """An established association on which this archive is the storage SCU.

    Made by :meth:`request`; ``send_c_store``, ``release`` and ``abort`` have
    the names and meaning of pynetdicom's, so that its C-MOVE SCP can drive it.
    """

    def __init__(
        self,
        sock: socket.socket,
        accepted: dict[int, tuple[str, str]],
        peer_max_pdu: int,
    ) -> None:
        self._sock = sock
        # context ID -> (abstract syntax, accepted transfer syntax)
        self._accepted = accepted
        self._peer_max_pdu = peer_max_pdu
        self.is_established = True

    @classmethod
    def request(
        cls,
        address: tuple[str, int],
        calling_ae_title: str,
        called_ae_title: str,
        contexts: Sequence[PresentationContext],
        timeout_s: float,
    ) -> StoreAssociation:
        """Connect and negotiate; raise ``StoreAssociationError`` saying why not."""
        proposed = {2 * index + 1: context for index, context in enumerate(contexts)}
        try:
            sock = socket.create_connection(address, timeout=timeout_s)
        except OSError as error:
            raise StoreAssociationError(f"could not be reached ({error})") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(
                _associate_request(calling_ae_title, called_ae_title, proposed)
            )
            accepted, peer_max = _negotiated(_read_pdu(sock), proposed)
        except BaseException as error:
            sock.close()
            if isinstance(error, OSError):
                raise StoreAssociationError(f"failed ({error})") from None
            raise
        if not accepted:
            _send_abort(sock)
            raise StoreAssociationError("accepted no proposed presentation context")
        return cls(sock, accepted, peer_max)

    def send_c_store(
        self,
        dataset: Dataset,
        msg_id: int = 1,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        """Send one C-STORE-RQ; the C-STORE-RSP command set (has ``Status``).

        Raises ``StoreAssociationError`` when the association fails and
        ``NotSendable`` when no accepted context can carry the instance: either
        is a failed sub-operation to pynetdicom's C-MOVE SCP.
        """
        if not self.is_established:
            raise StoreAssociationError("the association is no longer established")
        stored = getattr(dataset, "stored", None)
        if not isinstance(stored, StoredObject):
            # The retriever's placeholder for an instance it could not read.
            raise NotSendable("The instance could not be read from the archive")
        context_id, encoded = self._encoded_for_peer(stored)
        command = wire.c_store_rq(
            stored.sop_class_uid,
            stored.sop_instance_uid,
            msg_id,
            originator_aet,
            originator_id,
        )
        try:
            self._sock.sendall(
                wire.p_data_pdus(context_id, wire.COMMAND, command, self._peer_max_pdu)
            )
            self._sock.sendall(
                wire.p_data_pdus(context_id, 0, encoded, self._peer_max_pdu)
            )
            response = self._read_command()
        except (OSError, StoreAssociationError, wire.WireError) as error:
            self._close()
            raise StoreAssociationError(f"C-STORE failed: {error}") from None
        if (
            response.get("CommandField") != wire.C_STORE_RSP
            or response.get("MessageIDBeingRespondedTo") != msg_id
            or "Status" not in response
        ):
            self.abort()
            raise StoreAssociationError("the peer's answer is no C-STORE-RSP to it")
        return response

    def _encoded_for_peer(self, stored: StoredObject) -> tuple[int, bytes | memoryview]:
        """The context to send on and the data set encoded for it."""
        syntax = stored.transfer_syntax_uid
        usable = {
            context_id: accepted
            for context_id, (abstract, accepted) in self._accepted.items()
            if abstract == stored.sop_class_uid
        }
        for context_id, accepted in usable.items():
            if accepted == syntax:
                return context_id, memoryview(stored.part10)[stored.data_set_offset :]
        if _native(syntax) or UID(syntax).is_deflated:
            for context_id, accepted in usable.items():
                if _native(accepted):
                    target = UID(accepted)
                    dataset = stored_dataset(stored.part10)
                    encoded = encode(
                        dataset, target.is_implicit_VR, target.is_little_endian
                    )
                    if encoded is not None:
                        return context_id, encoded
        raise NotSendable(
            f"No accepted presentation context for {stored.sop_class_uid} "
            f"in {syntax} or a conversion of it"
        )

    def _read_command(self) -> Dataset:
        """Read P-DATA-TF PDUs until a whole command set has arrived."""
        fragments: list[bytes] = []
        while True:
            kind, body = _read_pdu(self._sock)
            if kind == wire.ABORT:
                self.is_established = False
                raise StoreAssociationError("the peer aborted the association")
            if kind != wire.P_DATA:
                raise StoreAssociationError(f"unexpected PDU type 0x{kind:02X}")
            for _, control, value in wire.pdv_items(body):
                if control & wire.COMMAND:
                    fragments.append(bytes(value))
                    if control & wire.LAST:
                        return wire.decode_command(b"".join(fragments))

    def release(self) -> None:
        """A-RELEASE (PS3.8 7.2): ask, wait for the reply, close."""
        if not self.is_established:
            return
        try:
            self._sock.sendall(wire.release_rq())
            while True:
                kind, _ = _read_pdu(self._sock)
                if kind in (wire.RELEASE_RP, wire.ABORT):
                    break
        except (OSError, StoreAssociationError) as error:
            logger.debug("Release of a storage association failed: %s", error)
        self._close()

    def abort(self) -> None:
        """A-ABORT (PS3.8 7.3.1), then close."""
        if self.is_established:
            _send_abort(self._sock)
        self._close()

    def _close(self) -> None:
        self.is_established = False
        self._sock.close()


def _associate_request(
    calling: str, called: str, proposed: dict[int, PresentationContext]
) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = wire.APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    contexts = []
    for context_id, context in proposed.items():
        copy = PresentationContext()
        copy.context_id = context_id
        copy.abstract_syntax = context.abstract_syntax
        copy.transfer_syntax = list(context.transfer_syntax)
        contexts.append(copy)
    primitive.presentation_context_definition_list = contexts
    primitive.user_information = wire.user_information(  # type: ignore[assignment]
        RECEIVE_MAX_PDU
    )
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _negotiated(
    pdu: tuple[int, bytes], proposed: dict[int, PresentationContext]
) -> tuple[dict[int, tuple[str, str]], int]:
    """Accepted contexts and the peer's Maximum Length from its answer."""
    kind, body = pdu
    raw = wire.PDU_HEADER.pack(kind, len(body)) + body
    if kind == wire.ASSOCIATE_RJ:
        rejection = A_ASSOCIATE_RJ()
        rejection.decode(raw)
        answer = rejection.to_primitive()
        raise StoreAssociationError(
            f"rejected the association ({answer.result_str}, {answer.source_str}, "
            f"{answer.reason_str})"
        )
    if kind == wire.ABORT:
        raise StoreAssociationError("aborted the association request")
    if kind != wire.ASSOCIATE_AC:
        raise StoreAssociationError(f"answered with PDU type 0x{kind:02X}")
    acceptance = A_ASSOCIATE_AC()
    acceptance.decode(raw)
    answer = acceptance.to_primitive()
    accepted: dict[int, tuple[str, str]] = {}
    for result in answer.presentation_context_definition_results_list:
        context = proposed.get(int(result.context_id or 0))
        syntaxes = [str(syntax) for syntax in result.transfer_syntax]
        if context is None or result.result != 0 or not syntaxes:
            continue  # PS3.8 9.3.3.2: result 0 is acceptance
        if syntaxes[0] in [str(syntax) for syntax in context.transfer_syntax]:
            accepted[int(result.context_id or 0)] = (
                str(context.abstract_syntax),
                syntaxes[0],
            )
    peer_max = 0
    for item in answer.user_information:
        if isinstance(item, MaximumLengthNotification):
            peer_max = int(item.maximum_length_received or 0)
    if 0 < peer_max <= wire.PDV_OVERHEAD:
        raise StoreAssociationError(f"offered a Maximum Length of {peer_max} bytes")
    return accepted, peer_max


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            raise StoreAssociationError("the peer closed the connection")
        received += count
    return bytes(buffer)


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    kind, length = wire.PDU_HEADER.unpack(_read_exactly(sock, wire.PDU_HEADER.size))
    if length > RECEIVE_MAX_PDU:
        raise StoreAssociationError(
            f"a {length}-byte PDU of type 0x{kind:02X} exceeds our Maximum Length"
        )
    return kind, _read_exactly(sock, length)


def _send_abort(sock: socket.socket) -> None:
    try:
        sock.sendall(wire.abort(source=0x00, reason=0x00))  # service user
    except OSError:
        pass
