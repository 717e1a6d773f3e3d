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

import io
import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from dimse._part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dimse._stored import split_part10, stored_dataset

logger = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1
# PS3.8 9.3.1: PDU types.
_ASSOCIATE_AC, _ASSOCIATE_RJ, _P_DATA = 0x02, 0x03, 0x04
_RELEASE_RQ, _RELEASE_RP, _ABORT = 0x05, 0x06, 0x07
_PDU_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
# Message Control Header (PS3.8 E.2): bit 0 command, bit 1 last fragment.
_COMMAND, _LAST = 0x01, 0x02
_C_STORE_RQ, _C_STORE_RSP = 0x0001, 0x8001
_DATA_SET_PRESENT = 0x0001  # any value but 0x0101 (PS3.7 E.1-1)
# What this archive accepts in one PDU, and sends when the peer sets no limit.
RECEIVE_MAX_PDU = 1 << 20
UNLIMITED_SEND_PDU = 1 << 20
# PS3.8 D.1: a peer's Maximum Length counts the PDV items, each with 6 bytes
# (item length and presentation context ID, message control header).
_PDV_OVERHEAD = 6


class StoreAssociationError(Exception):
    """The association failed: refused, aborted, closed or timed out."""


class NotSendable(Exception):
    """This instance cannot go on this association; the next one may."""


@dataclass(frozen=True)
class StoredObject:
    """A stored instance to send: its Part 10 bytes and what the index knows."""

    sop_class_uid: str
    sop_instance_uid: str
    part10: bytes


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


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" * (len(raw) % 2)


def _ae(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " * (len(raw) % 2)


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def store_request_command(
    sop_class_uid: str,
    sop_instance_uid: str,
    message_id: int,
    originator_ae_title: str | None,
    originator_message_id: int | None,
) -> bytes:
    """A C-STORE-RQ command set (PS3.7 9.3.1.1), Implicit VR Little Endian."""
    body = b"".join(
        [
            _element(0x00000002, _ui(sop_class_uid)),
            _element(0x00000100, _us(_C_STORE_RQ)),
            _element(0x00000110, _us(message_id)),
            _element(0x00000700, _us(0)),  # Priority: MEDIUM
            _element(0x00000800, _us(_DATA_SET_PRESENT)),
            _element(0x00001000, _ui(sop_instance_uid)),
        ]
    )
    if originator_ae_title is not None and originator_message_id is not None:
        body += _element(0x00001030, _ae(originator_ae_title))
        body += _element(0x00001031, _us(originator_message_id))
    return _element(0x00000000, struct.pack("<L", len(body))) + body


def p_data_pdus(context_id: int, control: int, payload: bytes, max_pdu: int) -> bytes:
    """``payload`` as P-DATA-TF PDUs of one PDV each (PS3.8 9.3.5, E.2)."""
    fragment = max_pdu - _PDV_OVERHEAD if max_pdu else UNLIMITED_SEND_PDU
    view = memoryview(payload)
    parts: list[bytes | memoryview] = []
    offset = 0
    while True:
        chunk = view[offset : offset + fragment]
        offset += len(chunk)
        last = offset >= len(payload)
        parts.append(_PDU_HEADER.pack(_P_DATA, len(chunk) + _PDV_OVERHEAD))
        parts.append(
            _PDV_HEADER.pack(
                len(chunk) + 2, context_id, control | (_LAST if last else 0)
            )
        )
        parts.append(chunk)
        if last:
            return b"".join(parts)


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
        command = store_request_command(
            stored.sop_class_uid,
            stored.sop_instance_uid,
            msg_id,
            originator_aet,
            originator_id,
        )
        try:
            self._sock.sendall(
                p_data_pdus(context_id, _COMMAND, command, self._peer_max_pdu)
                + p_data_pdus(context_id, 0, encoded, self._peer_max_pdu)
            )
            response = self._read_command()
        except (OSError, StoreAssociationError) as error:
            self._close()
            raise StoreAssociationError(f"C-STORE failed: {error}") from None
        if (
            response.get("CommandField") != _C_STORE_RSP
            or response.get("MessageIDBeingRespondedTo") != msg_id
            or "Status" not in response
        ):
            self.abort()
            raise StoreAssociationError("the peer's answer is no C-STORE-RSP to it")
        return response

    def _encoded_for_peer(self, stored: StoredObject) -> tuple[int, bytes]:
        """The context to send on and the data set encoded for it."""
        meta, offset = split_part10(stored.part10)
        syntax = str(meta.get("TransferSyntaxUID", ""))
        usable = {
            context_id: accepted
            for context_id, (abstract, accepted) in self._accepted.items()
            if abstract == stored.sop_class_uid
        }
        for context_id, accepted in usable.items():
            if accepted == syntax:
                return context_id, stored.part10[offset:]
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
            if kind == _ABORT:
                self.is_established = False
                raise StoreAssociationError("the peer aborted the association")
            if kind != _P_DATA:
                raise StoreAssociationError(f"unexpected PDU type 0x{kind:02X}")
            for control, value in _pdv_items(body):
                if control & _COMMAND:
                    fragments.append(value)
                    if control & _LAST:
                        return read_dataset(io.BytesIO(b"".join(fragments)), True, True)

    def release(self) -> None:
        """A-RELEASE (PS3.8 7.2): ask, wait for the reply, close."""
        if not self.is_established:
            return
        try:
            self._sock.sendall(_PDU_HEADER.pack(_RELEASE_RQ, 4) + b"\x00" * 4)
            while True:
                kind, _ = _read_pdu(self._sock)
                if kind in (_RELEASE_RP, _ABORT):
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
    primitive.application_context_name = UID(APPLICATION_CONTEXT)
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
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = RECEIVE_MAX_PDU
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = UID(IMPLEMENTATION_CLASS_UID)
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    primitive.user_information = [maximum, implementation, version]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def _negotiated(
    pdu: tuple[int, bytes], proposed: dict[int, PresentationContext]
) -> tuple[dict[int, tuple[str, str]], int]:
    """Accepted contexts and the peer's Maximum Length from its answer."""
    kind, body = pdu
    raw = _PDU_HEADER.pack(kind, len(body)) + body
    if kind == _ASSOCIATE_RJ:
        rejection = A_ASSOCIATE_RJ()
        rejection.decode(raw)
        answer = rejection.to_primitive()
        raise StoreAssociationError(
            f"rejected the association ({answer.result_str}, {answer.source_str}, "
            f"{answer.reason_str})"
        )
    if kind == _ABORT:
        raise StoreAssociationError("aborted the association request")
    if kind != _ASSOCIATE_AC:
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
    if 0 < peer_max <= _PDV_OVERHEAD:
        raise StoreAssociationError(f"offered a Maximum Length of {peer_max} bytes")
    return accepted, peer_max


def _pdv_items(body: bytes) -> list[tuple[int, bytes]]:
    """(message control header, fragment) of each PDV item of a P-DATA-TF."""
    items = []
    offset = 0
    while offset < len(body):
        if offset + _PDV_HEADER.size > len(body):
            raise StoreAssociationError("a P-DATA-TF PDU ends inside a PDV header")
        length, _context, control = _PDV_HEADER.unpack_from(body, offset)
        end = offset + 4 + length
        if length < 2 or end > len(body):
            raise StoreAssociationError("a PDV item's length runs past its PDU")
        items.append((control, body[offset + _PDV_HEADER.size : end]))
        offset = end
    return items


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
    kind, length = _PDU_HEADER.unpack(_read_exactly(sock, _PDU_HEADER.size))
    if length > RECEIVE_MAX_PDU:
        raise StoreAssociationError(
            f"a {length}-byte PDU of type 0x{kind:02X} exceeds our Maximum Length"
        )
    return kind, _read_exactly(sock, length)


def _send_abort(sock: socket.socket) -> None:
    pdu = A_ABORT_RQ()
    pdu.source, pdu.reason_diagnostic = 0x00, 0x00  # service user, no reason
    try:
        sock.sendall(bytes(pdu.encode()))
    except OSError:
        pass
