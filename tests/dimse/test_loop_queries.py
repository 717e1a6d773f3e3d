"""C-FIND and C-MOVE on associations served on the event loop (dimse.loop_scp).

The requester here is written by hand, so that it can do what pynetdicom's
cannot: send a C-CANCEL-RQ in the same write as its request, send a second
request before the first is answered, or break the rules on purpose. The
ordinary exchanges are in test_c_find.py and test_c_move.py, which run on the
same path.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pynetdicom.dimse_messages import C_CANCEL_RQ, C_ECHO_RQ, C_FIND_RQ, C_MOVE_RQ
from pynetdicom.dimse_primitives import C_CANCEL, C_ECHO, C_FIND, C_MOVE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.presentation import build_context

from dimse import _wire as wire
from dimse._contexts import (
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
)
from dimse.c_move import is_ae_title
from dimse.loop_scp import plan_association
from dimse.loop_session import _close
from dimse.store_scu import (
    StoreAssociationError,
    _associate_request,
    _negotiated,
    _read_pdu,
)
from tests.conftest import RunningServer
from tests.dimse.helpers import (
    ScriptedStorage,
    associate,
    contexts_for,
    put_peer,
    store_datasets,
    with_meta,
)
from tests.dimse.test_loop_scp import _request
from tests.factory import UID_ROOT, make_ct

pytestmark = pytest.mark.timeout(60)

FIND, MOVE, ECHO = 1, 3, 5
_CONTEXTS = {
    FIND: STUDY_ROOT_FIND,
    MOVE: STUDY_ROOT_MOVE,
    ECHO: VERIFICATION,
}


def _uid() -> str:
    return str(generate_uid(prefix=UID_ROOT))


@dataclass(frozen=True)
class Stored:
    """A stored study of three instances under one Patient ID."""

    patient_id: str
    study: str
    sops: tuple[str, ...]


@pytest.fixture(scope="module")
def stored(server: RunningServer) -> Stored:
    patient = f"LQ{secrets.token_hex(4).upper()}"
    study = _uid()
    datasets = [make_ct(study=study, PatientID=patient) for _ in range(3)]
    sent = [with_meta(ds, ExplicitVRLittleEndian) for ds in datasets]
    assert store_datasets(server, sent) == [0x0000] * 3
    return Stored(patient, study, tuple(str(ds.SOPInstanceUID) for ds in datasets))


class Requester:
    """A raw association proposing FIND, MOVE and Verification (Explicit VR LE)."""

    def __init__(self, server: RunningServer) -> None:
        proposed = {
            context_id: build_context(abstract, [ExplicitVRLittleEndian])
            for context_id, abstract in _CONTEXTS.items()
        }
        self.sock = socket.create_connection(("127.0.0.1", server.dimse_port), 30)
        self.sock.sendall(_associate_request("RAWQR", server.ae_title, proposed))
        accepted, self.peer_max = _negotiated(_read_pdu(self.sock), proposed)
        assert set(accepted) == set(_CONTEXTS)

    def send(self, *messages: bytes) -> None:
        """Send every message in one write."""
        self.sock.sendall(b"".join(messages))

    def responses(self, finals: int = 1) -> list[tuple[Dataset, Dataset | None]]:
        """Responses, each with its identifier, up to the ``finals``-th final one."""
        received: list[tuple[Dataset, Dataset | None]] = []
        command: Dataset | None = None
        command_parts: list[bytes] = []
        data_parts: list[bytes] = []
        while finals:
            kind, body = _read_pdu(self.sock)
            assert kind == wire.P_DATA, f"PDU type 0x{kind:02X}"
            for _, control, fragment in wire.pdv_items(body):
                if control & wire.COMMAND:
                    command_parts.append(bytes(fragment))
                    if not control & wire.LAST:
                        continue
                    command = wire.decode_command(b"".join(command_parts))
                    command_parts = []
                    if command.CommandDataSetType != wire.NO_DATA_SET:
                        continue
                    received.append((command, None))
                else:
                    data_parts.append(bytes(fragment))
                    if not control & wire.LAST:
                        continue
                    assert command is not None
                    identifier = decode(
                        io.BytesIO(b"".join(data_parts)), False, True, False
                    )
                    data_parts = []
                    received.append((command, identifier))
                if received[-1][0].Status not in (0xFF00, 0xFF01):
                    finals -= 1
        return received

    def read_pdu(self) -> tuple[int, bytes]:
        return _read_pdu(self.sock)

    def close(self) -> None:
        try:
            self.sock.sendall(wire.release_rq())
            _read_pdu(self.sock)
        except (OSError, StoreAssociationError):
            pass  # aborted or closed already
        self.sock.close()


@pytest.fixture
def requester(server: RunningServer) -> Iterator[Requester]:
    opened = Requester(server)
    yield opened
    opened.close()


def _encoded(
    message: C_FIND_RQ | C_MOVE_RQ | C_CANCEL_RQ | C_ECHO_RQ, context_id: int
) -> bytes:
    pdus = []
    for primitive in message.encode_msg(context_id, 16384):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(bytes(pdu.encode()))
    return b"".join(pdus)


def _identifier(**keys: str) -> io.BytesIO:
    query = Dataset()
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    encoded = encode(query, False, True)
    assert encoded is not None
    return io.BytesIO(encoded)


def c_find(message_id: int, sop_class: str = STUDY_ROOT_FIND, **keys: str) -> bytes:
    primitive = C_FIND()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = sop_class
    primitive.Priority = 0
    primitive.Identifier = _identifier(**keys)
    message = C_FIND_RQ()
    message.primitive_to_message(primitive)
    return _encoded(message, FIND)


def c_move(message_id: int, destination: str, **keys: str) -> bytes:
    primitive = C_MOVE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = STUDY_ROOT_MOVE
    primitive.Priority = 0
    primitive.MoveDestination = destination
    primitive.Identifier = _identifier(**keys)
    message = C_MOVE_RQ()
    message.primitive_to_message(primitive)
    return _encoded(message, MOVE)


def c_cancel(message_id: int, context_id: int) -> bytes:
    primitive = C_CANCEL()
    primitive.MessageIDBeingRespondedTo = message_id
    message = C_CANCEL_RQ()
    message.primitive_to_message(primitive)
    return _encoded(message, context_id)


def c_echo(message_id: int) -> bytes:
    primitive = C_ECHO()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = VERIFICATION
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    return _encoded(message, ECHO)


def test_find_and_move_associations_are_planned_for_the_loop() -> None:
    plan = plan_association(
        _request(
            [
                (STUDY_ROOT_FIND, [ExplicitVRLittleEndian]),
                (STUDY_ROOT_MOVE, [ExplicitVRLittleEndian]),
                (CTImageStorage, [ExplicitVRLittleEndian]),
            ]
        )
    )
    assert plan is not None
    assert plan.accepted == {
        1: (STUDY_ROOT_FIND, ExplicitVRLittleEndian),
        3: (STUDY_ROOT_MOVE, ExplicitVRLittleEndian),
        5: (CTImageStorage, ExplicitVRLittleEndian),
    }
    # C-GET needs the caller in the storage SCP role: pynetdicom's.
    get = _request([(STUDY_ROOT_GET, [ExplicitVRLittleEndian])])
    assert plan_association(get) is None


def test_study_search_answers_each_match_then_success(
    requester: Requester, stored: Stored
) -> None:
    requester.send(
        c_find(
            7,
            QueryRetrieveLevel="IMAGE",
            StudyInstanceUID=stored.study,
            SeriesInstanceUID="",
            SOPInstanceUID="",
        )
    )
    responses = requester.responses()
    statuses = [int(command.Status) for command, _ in responses]
    assert statuses == [0xFF00] * 3 + [0x0000]
    assert {command.MessageIDBeingRespondedTo for command, _ in responses} == {7}
    assert {str(command.AffectedSOPClassUID) for command, _ in responses} == {
        STUDY_ROOT_FIND
    }
    found = {
        str(identifier.SOPInstanceUID) for _, identifier in responses[:-1] if identifier
    }
    assert found == set(stored.sops)
    assert responses[-1][1] is None


def test_a_cancel_sent_with_the_find_stops_it_before_any_match(
    requester: Requester, stored: Stored
) -> None:
    requester.send(
        c_find(9, QueryRetrieveLevel="STUDY", PatientID=stored.patient_id),
        c_cancel(9, FIND),
    )
    ((command, identifier),) = requester.responses()
    assert int(command.Status) == 0xFE00 and identifier is None
    # The association goes on.
    requester.send(c_echo(10))
    ((echo, _),) = requester.responses()
    assert echo.CommandField == 0x8030 and int(echo.Status) == 0


def test_a_cancel_for_another_message_is_ignored(
    requester: Requester, stored: Stored
) -> None:
    requester.send(
        c_find(11, QueryRetrieveLevel="STUDY", PatientID=stored.patient_id),
        c_cancel(12, FIND),
    )
    statuses = [int(command.Status) for command, _ in requester.responses()]
    assert statuses == [0xFF00, 0x0000]


def test_a_cancel_on_another_context_is_ignored(
    requester: Requester, stored: Stored
) -> None:
    # PS3.7 9.3.2.3: a C-CANCEL comes on the context of the request it names.
    requester.send(
        c_find(13, QueryRetrieveLevel="STUDY", PatientID=stored.patient_id),
        c_cancel(13, MOVE),
    )
    statuses = [int(command.Status) for command, _ in requester.responses()]
    assert statuses == [0xFF00, 0x0000]


def test_a_request_sent_before_the_answer_waits_for_it(
    requester: Requester, stored: Stored
) -> None:
    requester.send(
        c_find(21, QueryRetrieveLevel="STUDY", PatientID=stored.patient_id),
        c_echo(22),
    )
    responses = requester.responses(finals=2)
    assert [
        (int(command.MessageIDBeingRespondedTo), int(command.Status))
        for command, _ in responses
    ] == [(21, 0xFF00), (21, 0x0000), (22, 0x0000)]


def _pdus(message: bytes) -> list[bytes]:
    pdus = []
    offset = 0
    while offset < len(message):
        _, length = wire.PDU_HEADER.unpack_from(message, offset)
        end = offset + wire.PDU_HEADER.size + length
        pdus.append(message[offset:end])
        offset = end
    return pdus


def test_an_identifier_that_does_not_decode_is_refused(requester: Requester) -> None:
    command_pdu, _ = _pdus(c_find(31, QueryRetrieveLevel="STUDY"))
    # The identifier's PDV replaced by bytes that are no data set.
    garbage = b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x01" * 8
    identifier_pdu = (
        wire.PDU_HEADER.pack(wire.P_DATA, len(garbage) + 6)
        + wire.PDV_HEADER.pack(len(garbage) + 2, FIND, wire.LAST)
        + garbage
    )
    requester.send(command_pdu, identifier_pdu)
    ((command, _),) = requester.responses()
    assert int(command.Status) & 0xF000 in (0xA000, 0xC000)


def test_a_find_naming_another_sop_class_than_its_context_is_refused_0122(
    requester: Requester,
) -> None:
    patient_root = "1.2.840.10008.5.1.4.1.2.1.1"
    requester.send(c_find(41, patient_root, QueryRetrieveLevel="STUDY"))
    ((command, _),) = requester.responses()
    assert int(command.Status) == 0x0122


def test_a_find_on_the_move_context_is_aborted(requester: Requester) -> None:
    message = c_find(51, QueryRetrieveLevel="STUDY")
    # The same message on the MOVE context: every PDV's context ID byte.
    retargeted = []
    for pdu in _pdus(message):
        # After the PDU header (6 bytes) and the PDV item length (4).
        retargeted.append(pdu[:10] + bytes([MOVE]) + pdu[11:])
    requester.send(*retargeted)
    kind, _ = requester.read_pdu()
    assert kind == wire.ABORT


@pytest.fixture
def destination(server: RunningServer) -> Iterator[ScriptedStorage]:
    scripted = ScriptedStorage(
        f"LQ{secrets.token_hex(3).upper()}", [CTImageStorage, MRImageStorage]
    )
    put_peer(server, scripted.ae_title, scripted.port)
    yield scripted
    scripted.close()


def test_move_reports_counts_after_each_sub_operation(
    requester: Requester, stored: Stored, destination: ScriptedStorage
) -> None:
    requester.send(
        c_move(
            61,
            destination.ae_title,
            QueryRetrieveLevel="STUDY",
            StudyInstanceUID=stored.study,
        )
    )
    responses = requester.responses()
    pending = [
        (
            command.NumberOfRemainingSuboperations,
            command.NumberOfCompletedSuboperations,
            command.NumberOfFailedSuboperations,
            command.NumberOfWarningSuboperations,
        )
        for command, _ in responses[:-1]
    ]
    assert pending == [(2, 1, 0, 0), (1, 2, 0, 0), (0, 3, 0, 0)]
    final, identifier = responses[-1]
    assert int(final.Status) == 0x0000 and identifier is None
    assert "NumberOfRemainingSuboperations" not in final
    assert final.NumberOfCompletedSuboperations == 3
    assert len(destination.received) == 3


def test_a_cancel_sent_with_the_move_sends_nothing(
    requester: Requester, stored: Stored, destination: ScriptedStorage
) -> None:
    requester.send(
        c_move(
            71,
            destination.ae_title,
            QueryRetrieveLevel="STUDY",
            StudyInstanceUID=stored.study,
        ),
        c_cancel(71, MOVE),
    )
    ((final, identifier),) = requester.responses()
    assert int(final.Status) == 0xFE00
    assert final.NumberOfRemainingSuboperations == 3
    assert final.NumberOfCompletedSuboperations == 0
    assert identifier is not None and list(identifier.FailedSOPInstanceUIDList) == []
    assert destination.received == []


def test_a_requester_gone_mid_move_leaves_the_archive_serving(
    server: RunningServer, stored: Stored, destination: ScriptedStorage
) -> None:
    gone = Requester(server)
    gone.send(
        c_move(
            81,
            destination.ae_title,
            QueryRetrieveLevel="STUDY",
            StudyInstanceUID=stored.study,
        )
    )
    # Gone after the first sub-operation's pending response.
    kind, _ = gone.read_pdu()
    assert kind == wire.P_DATA
    gone.sock.close()
    # The archive still answers a C-FIND on a fresh association.
    with associate(
        server, contexts_for([(STUDY_ROOT_FIND, ExplicitVRLittleEndian)])
    ) as assoc:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = stored.study
        statuses = [int(s.Status) for s, _ in assoc.send_c_find(query, STUDY_ROOT_FIND)]
    assert statuses == [0xFF00, 0x0000]


@pytest.mark.parametrize(
    ("title", "valid"),
    [
        ("STORESCP", True),
        ("A" * 16, True),
        ("MY AE", True),
        ("", False),
        ("A" * 17, False),
        ("DEST\x00", False),
        ("BAD\\AE", False),
        ("TAB\tAE", False),
        ("É", False),
    ],
)
def test_move_destinations_must_be_ae_titles(title: str, valid: bool) -> None:
    # Anything else is an unknown destination (0xA801), not an index error.
    assert is_ae_title(title) is valid


async def _closed_connection(peer_reads: bool) -> bytes | type[BaseException]:
    """What a peer sees when the archive closes on it after sending 8 MiB."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.StreamWriter] = loop.create_future()

    async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.connect(("127.0.0.1", port))
    peer.settimeout(5)
    try:
        writer = await asyncio.wait_for(accepted, 5)
        if peer_reads:
            writer.write(b"data")
            await writer.drain()
            assert peer.recv(10) == b"data"
        else:
            writer.write(b"\x00" * (8 << 20))
            await asyncio.sleep(0.2)
            assert writer.transport.get_write_buffer_size() > 0
        _close(writer, b"last")
        await asyncio.sleep(0.2)
        assert writer.transport.is_closing()
        if not peer_reads:
            received = 0
            try:
                while chunk := await asyncio.to_thread(peer.recv, 1 << 20):
                    received += len(chunk)
            except ConnectionResetError:
                return ConnectionResetError
            # Everything the archive still held was dropped, not sent.
            assert received < 8 << 20
            return b""
        return await asyncio.to_thread(peer.recv, 10)
    finally:
        peer.close()
        server.close()


def test_a_peer_that_stops_reading_is_reset_not_waited_for() -> None:
    assert asyncio.run(_closed_connection(peer_reads=False)) in (
        ConnectionResetError,
        b"",
    )


def test_a_peer_that_reads_gets_the_last_pdu_then_the_end() -> None:
    assert asyncio.run(_closed_connection(peer_reads=True)) == b"last"


def test_a_pdu_over_the_announced_maximum_length_is_aborted(
    requester: Requester,
) -> None:
    # The archive announces 1 MiB by default; only the header is sent.
    requester.send(wire.PDU_HEADER.pack(wire.P_DATA, (1 << 20) + 1))
    kind, _ = requester.read_pdu()
    assert kind == wire.ABORT


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the archive closes ``sock`` within ``seconds`` (reading what comes)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_an_oversized_pdu_on_a_pynetdicom_association_drops_it(
    server: RunningServer,
) -> None:
    # A C-GET context sends the association to pynetdicom's path.
    proposed = {1: build_context(STUDY_ROOT_GET, [ExplicitVRLittleEndian])}
    with socket.create_connection(("127.0.0.1", server.dimse_port), 30) as sock:
        sock.sendall(_associate_request("RAWGET", server.ae_title, proposed))
        accepted, _ = _negotiated(_read_pdu(sock), proposed)
        assert accepted
        # 300 MB announced: not read into memory, the connection is dropped.
        sock.sendall(wire.PDU_HEADER.pack(wire.P_DATA, 300_000_000) + bytes(1000))
        assert _closed_within(sock, 10)


def test_an_oversized_association_request_is_not_read(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.dimse_port), 30) as sock:
        sock.sendall(wire.PDU_HEADER.pack(wire.ASSOCIATE_RQ, 600_000_000) + bytes(1000))
        assert _closed_within(sock, 10)
    # And the archive still serves.
    with associate(
        server, contexts_for([(STUDY_ROOT_FIND, ExplicitVRLittleEndian)])
    ) as assoc:
        assert assoc.is_established
