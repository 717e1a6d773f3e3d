"""Upper layer PDUs and DIMSE command sets as bytes (PS3.8 9.3, PS3.7 9.3, E).

What the archive's own association paths send and read: P-DATA-TF PDUs of one
PDV each, the release and abort PDUs, and the C-STORE, C-ECHO, C-FIND and
C-MOVE command sets in Implicit VR Little Endian. The association PDUs
(A-ASSOCIATE-RQ/AC) are pynetdicom's encoders, given this archive's User
Information items.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom.pdu_primitives import (
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)

from dimse._part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

APPLICATION_CONTEXT = UID("1.2.840.10008.3.1.1.1")  # PS3.7 A.2.1

# PS3.8 9.3.1: PDU types.
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
PDU_HEADER = struct.Struct(">BxL")
PDV_HEADER = struct.Struct(">LBB")
# Message Control Header (PS3.8 E.2): bit 0 command, bit 1 last fragment.
COMMAND, LAST = 0x01, 0x02
# PS3.8 D.1: a Maximum Length counts the PDV items, each with 6 bytes of its
# own (item length, presentation context ID, message control header).
PDV_OVERHEAD = 6
# The largest PDU other than P-DATA-TF this archive reads: an association
# request with 128 presentation contexts fits.
MAX_CONTROL_PDU_BYTES = 1 << 16
# Fragments sent to a peer that sets no Maximum Length (0).
UNLIMITED_FRAGMENT = 1 << 20

# PS3.7 E.1-1: Command Field values.
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_CANCEL_RQ = 0x0FFF
NO_DATA_SET = 0x0101
_DATA_SET_PRESENT = 0x0001  # any value but 0x0101


UserItem = (
    MaximumLengthNotification
    | ImplementationClassUIDNotification
    | ImplementationVersionNameNotification
)


def user_information(max_pdu: int) -> list[UserItem]:
    """This archive's User Information items (PS3.7 D.3.3).

    Maximum Length, Implementation Class UID and Implementation Version Name.
    """
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = max_pdu
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = UID(IMPLEMENTATION_CLASS_UID)
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    return [maximum, implementation, version]


class WireError(Exception):
    """Bytes on the wire that break PS3.8: the association is aborted."""


def p_data_pdus(
    context_id: int, control: int, payload: bytes | memoryview, max_pdu: int
) -> bytes:
    """``payload`` as P-DATA-TF PDUs of one PDV each (PS3.8 9.3.5, E.2).

    ``max_pdu`` is the peer's Maximum Length (0: none); ``control`` is 0 for
    a data set and COMMAND for a command set; the last fragment gets LAST.
    """
    fragment = max_pdu - PDV_OVERHEAD if max_pdu else UNLIMITED_FRAGMENT
    view = memoryview(payload)
    parts: list[bytes | memoryview] = []
    offset = 0
    while True:
        chunk = view[offset : offset + fragment]
        offset += len(chunk)
        last = offset >= len(payload)
        parts.append(PDU_HEADER.pack(P_DATA, len(chunk) + PDV_OVERHEAD))
        parts.append(
            PDV_HEADER.pack(len(chunk) + 2, context_id, control | (LAST if last else 0))
        )
        parts.append(chunk)
        if last:
            return b"".join(parts)


def p_data_message(
    context_id: int, command: bytes, data_set: bytes | None, max_pdu: int
) -> bytes:
    """A whole message: its command set, then its data set if it has one.

    When both fit within ``max_pdu`` (0: no limit) they travel as two PDVs of
    one P-DATA-TF PDU (PS3.8 9.3.5), the receiver's one read for the message.
    """
    if data_set is None:
        return p_data_pdus(context_id, COMMAND, command, max_pdu)
    size = len(command) + len(data_set) + 2 * PDV_OVERHEAD
    if max_pdu and size > max_pdu or size > UNLIMITED_FRAGMENT:
        return p_data_pdus(context_id, COMMAND, command, max_pdu) + p_data_pdus(
            context_id, 0, data_set, max_pdu
        )
    return b"".join(
        (
            PDU_HEADER.pack(P_DATA, size),
            PDV_HEADER.pack(len(command) + 2, context_id, COMMAND | LAST),
            command,
            PDV_HEADER.pack(len(data_set) + 2, context_id, LAST),
            data_set,
        )
    )


def pdv_items(body: bytes | memoryview) -> list[tuple[int, int, memoryview]]:
    """(presentation context ID, message control header, fragment) of each PDV."""
    view = memoryview(body)
    items = []
    offset = 0
    while offset < len(view):
        if offset + PDV_HEADER.size > len(view):
            raise WireError("A P-DATA-TF PDU ends inside a PDV item header")
        length, context_id, control = PDV_HEADER.unpack_from(view, offset)
        end = offset + 4 + length
        if length < 2 or end > len(view):
            raise WireError("A PDV item's length runs past its PDU")
        items.append((context_id, control, view[offset + PDV_HEADER.size : end]))
        offset = end
    if not items:
        raise WireError("A P-DATA-TF PDU holds no PDV item")
    return items


def release_rq() -> bytes:
    """A-RELEASE-RQ (PS3.8 9.3.6)."""
    return PDU_HEADER.pack(RELEASE_RQ, 4) + b"\x00" * 4


def release_rp() -> bytes:
    """A-RELEASE-RP (PS3.8 9.3.7)."""
    return PDU_HEADER.pack(RELEASE_RP, 4) + b"\x00" * 4


def abort(source: int, reason: int) -> bytes:
    """A-ABORT (PS3.8 9.3.8): source 0 service user, 2 service provider."""
    return PDU_HEADER.pack(ABORT, 4) + bytes([0, 0, source, reason])


def reject(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4)."""
    return PDU_HEADER.pack(ASSOCIATE_RJ, 4) + bytes([0, result, source, reason])


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


def _command(elements: list[bytes]) -> bytes:
    body = b"".join(elements)
    return _element(0x00000000, struct.pack("<L", len(body))) + body


def c_store_rq(
    sop_class_uid: str,
    sop_instance_uid: str,
    message_id: int,
    originator_ae_title: str | None,
    originator_message_id: int | None,
) -> bytes:
    """A C-STORE-RQ command set (PS3.7 9.3.1.1), Priority MEDIUM."""
    elements = [
        _element(0x00000002, _ui(sop_class_uid)),
        _element(0x00000100, _us(C_STORE_RQ)),
        _element(0x00000110, _us(message_id)),
        _element(0x00000700, _us(0)),
        _element(0x00000800, _us(_DATA_SET_PRESENT)),
        _element(0x00001000, _ui(sop_instance_uid)),
    ]
    if originator_ae_title is not None and originator_message_id is not None:
        elements.append(_element(0x00001030, _ae(originator_ae_title)))
        elements.append(_element(0x00001031, _us(originator_message_id)))
    return _command(elements)


def c_store_rsp(
    sop_class_uid: str | None,
    sop_instance_uid: str | None,
    message_id: int,
    status: int,
) -> bytes:
    """A C-STORE-RSP command set (PS3.7 9.3.1.2); a UID of None is left out."""
    elements = [
        _element(0x00000100, _us(C_STORE_RSP)),
        _element(0x00000120, _us(message_id)),
        _element(0x00000800, _us(NO_DATA_SET)),
        _element(0x00000900, _us(status)),
    ]
    if sop_class_uid is not None:
        elements.insert(0, _element(0x00000002, _ui(sop_class_uid)))
    if sop_instance_uid is not None:
        elements.append(_element(0x00001000, _ui(sop_instance_uid)))
    return _command(elements)


def _response(
    field: int, sop_class_uid: str, message_id: int, status: int, identifier: bool
) -> list[bytes]:
    """The elements every C-ECHO, C-FIND and C-MOVE response starts with."""
    return [
        _element(0x00000002, _ui(sop_class_uid)),
        _element(0x00000100, _us(field)),
        _element(0x00000120, _us(message_id)),
        _element(0x00000800, _us(_DATA_SET_PRESENT if identifier else NO_DATA_SET)),
        _element(0x00000900, _us(status)),
    ]


def c_echo_rsp(sop_class_uid: str, message_id: int) -> bytes:
    """A C-ECHO-RSP command set with status Success (PS3.7 9.3.5.2)."""
    return _command(_response(C_ECHO_RSP, sop_class_uid, message_id, 0x0000, False))


@dataclass(frozen=True)
class SubOperations:
    """The sub-operation counts of a C-MOVE response (PS3.7 9.3.4.2).

    ``remaining`` is None where the response leaves it out (PS3.4 C.4.2.1.6:
    only pending and cancel responses carry it).
    """

    remaining: int | None
    completed: int
    failed: int
    warning: int


def c_find_rsp(
    sop_class_uid: str, message_id: int, status: int, identifier: bool
) -> bytes:
    """A C-FIND-RSP command set (PS3.7 9.1.2.1); ``identifier`` says one follows."""
    return _command(
        _response(C_FIND_RSP, sop_class_uid, message_id, status, identifier)
    )


def c_move_rsp(
    sop_class_uid: str,
    message_id: int,
    status: int,
    counts: SubOperations | None,
    identifier: bool,
) -> bytes:
    """A C-MOVE-RSP command set (PS3.7 9.3.4.2); ``identifier`` says one follows."""
    elements = _response(C_MOVE_RSP, sop_class_uid, message_id, status, identifier)
    if counts is not None:
        if counts.remaining is not None:
            elements.append(_element(0x00001020, _us(counts.remaining)))
        elements.append(_element(0x00001021, _us(counts.completed)))
        elements.append(_element(0x00001022, _us(counts.failed)))
        elements.append(_element(0x00001023, _us(counts.warning)))
    return _command(elements)


def decode_command(encoded: bytes) -> Dataset:
    """A command set (always Implicit VR Little Endian, PS3.7 6.3.1)."""
    try:
        return read_dataset(io.BytesIO(encoded), True, True)
    except Exception as error:  # noqa: BLE001 - pydicom fails in many ways
        raise WireError(f"A command set cannot be decoded: {error}") from None
