"""Associations served on the event loop (dimse.loop_scp, dimse.loop_session).

Which associations the gate takes (the rest stay pynetdicom's), and how the
archive's own path answers a peer that breaks PS3.8: an A-ABORT, with nothing
already stored lost or changed. The raw peers here are the archive's own
storage requestor (``dimse.store_scu``) driven past its rules.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import build_context

from archive.peers import PeerDirectory
from archive.service import Archive
from dimse import _wire as wire
from dimse._contexts import STUDY_ROOT_GET, VERIFICATION
from dimse.listener import DimseListener, ListenerConfig
from dimse.loop_scp import plan_association
from dimse.loop_session import SPOOL_BYTES, Upload
from dimse.store_scu import (
    StoreAssociation,
    StoreAssociationError,
    StoredInstanceDataset,
    StoredObject,
)
from tests.conftest import RunningServer
from tests.dimse.helpers import dataset_bytes, new_ae, wado_instance
from tests.factory import make_ct, part10

pytestmark = pytest.mark.timeout(60)

APPLICATION_CONTEXT = UID("1.2.840.10008.3.1.1.1")


def _request(
    contexts: list[tuple[str, list[str]]], *extra: object, application: str = ""
) -> A_ASSOCIATE:
    request = A_ASSOCIATE()
    request.application_context_name = UID(application or APPLICATION_CONTEXT)
    request.calling_ae_title = "MODALITY"
    request.called_ae_title = "DICOMVAULT"
    proposed = []
    for index, (abstract, syntaxes) in enumerate(contexts):
        context = build_context(abstract, syntaxes)
        context.context_id = 2 * index + 1
        proposed.append(context)
    request.presentation_context_definition_list = proposed
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = UID("1.2.3.4")
    items: list[Any] = [maximum, implementation, *extra]
    request.user_information = items
    return request


def test_a_plain_storage_request_is_planned_with_the_callers_first_syntax() -> None:
    plan = plan_association(
        _request(
            [
                (CTImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian]),
                (VERIFICATION, [ImplicitVRLittleEndian]),
                ("1.2.3.4.5.6", [ImplicitVRLittleEndian]),
                (CTImageStorage, ["1.2.3.999"]),
            ]
        )
    )
    assert plan is not None
    assert plan.accepted == {
        1: (CTImageStorage, ImplicitVRLittleEndian),
        3: (VERIFICATION, ImplicitVRLittleEndian),
    }
    results = {int(c.context_id or 0): c.result for c in plan.results}
    # PS3.8 9.3.3.2: abstract syntax (3) and transfer syntaxes (4) not supported.
    assert results == {1: 0, 3: 0, 5: 3, 7: 4}
    assert plan.peer_max_pdu == 16384
    assert plan.calling_ae_title == "MODALITY"


def _role() -> SCP_SCU_RoleSelectionNegotiation:
    item = SCP_SCU_RoleSelectionNegotiation()
    item.sop_class_uid = CTImageStorage
    item.scu_role, item.scp_role = True, True
    return item


def _window() -> AsynchronousOperationsWindowNegotiation:
    item = AsynchronousOperationsWindowNegotiation()
    item.maximum_number_operations_invoked = 2
    item.maximum_number_operations_performed = 2
    return item


def _identity() -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = 1
    item.primary_field = b"someone"
    return item


@pytest.mark.parametrize(
    ("contexts", "extra", "application"),
    [
        (
            [
                (CTImageStorage, [ExplicitVRLittleEndian]),
                (STUDY_ROOT_GET, [ExplicitVRLittleEndian]),
            ],
            (),
            "",
        ),
        ([(CTImageStorage, [ExplicitVRLittleEndian])], (_role(),), ""),
        ([(CTImageStorage, [ExplicitVRLittleEndian])], (_window(),), ""),
        ([(CTImageStorage, [ExplicitVRLittleEndian])], (_identity(),), ""),
        ([(CTImageStorage, [ExplicitVRLittleEndian])], (), "1.2.3.4"),
        ([(CTImageStorage, ["1.2.3.999"])], (), ""),
        ([("1.2.3.4.5.6", [ExplicitVRLittleEndian])], (), ""),
    ],
    ids=["get", "role", "window", "identity", "context", "no-syntax", "no-class"],
)
def test_anything_but_plain_storage_is_left_to_pynetdicom(
    contexts: list[tuple[str, list[str]]], extra: tuple[object, ...], application: str
) -> None:
    assert plan_association(_request(contexts, *extra, application=application)) is None


def test_duplicate_context_ids_are_left_to_pynetdicom() -> None:
    request = _request([(CTImageStorage, [ExplicitVRLittleEndian])] * 2)
    first, second = request.presentation_context_definition_list
    second.context_id = first.context_id
    assert plan_association(request) is None


def _stored(ds_bytes: bytes, sop_class: str, sop: str) -> StoredInstanceDataset:
    return StoredInstanceDataset.of(StoredObject.read(sop_class, sop, ds_bytes))


def _associate(
    server: RunningServer, syntax: str = ExplicitVRLittleEndian
) -> StoreAssociation:
    return StoreAssociation.request(
        ("127.0.0.1", server.dimse_port),
        "RAWPEER",
        server.ae_title,
        [build_context(CTImageStorage, [syntax])],
        30,
    )


def _answer(assoc: StoreAssociation) -> int:
    """The type of the next PDU the server sends (0 when it closed)."""
    sock = assoc._sock
    sock.settimeout(30)
    header = sock.recv(6)
    return header[0] if header else 0


def _send_one(
    server: RunningServer,
    data: bytes,
    sop: str,
    *,
    msg_id: int = 1,
    syntax: str = ExplicitVRLittleEndian,
    max_pdu: int | None = None,
    sent_as: str | None = None,
) -> Dataset:
    """One C-STORE on a fresh association; the C-STORE-RSP.

    ``max_pdu`` overrides the PDU size the archive asked for; ``sent_as``
    makes the sender believe its context was accepted in that syntax.
    """
    assoc = _associate(server, syntax)
    try:
        if max_pdu is not None:
            assoc._peer_max_pdu = max_pdu
        if sent_as is not None:
            (context_id,) = assoc._accepted
            assoc._accepted[context_id] = (CTImageStorage, sent_as)
        return assoc.send_c_store(_stored(data, CTImageStorage, sop), msg_id=msg_id)
    finally:
        assoc.release()


def _still_stores(server: RunningServer) -> None:
    ds = make_ct()
    assert int(_send_one(server, part10(ds), ds.SOPInstanceUID).Status) == 0x0000


def test_a_store_cut_into_small_pdus_arrives_whole(server: RunningServer) -> None:
    ds = make_ct(rows=64, columns=64)
    data = part10(ds)
    # As if the archive had asked for small PDUs.
    status = _send_one(server, data, ds.SOPInstanceUID, msg_id=7, max_pdu=4096)
    assert int(status.Status) == 0x0000
    assert status.MessageIDBeingRespondedTo == 7
    assert status.AffectedSOPInstanceUID == ds.SOPInstanceUID
    stored = wado_instance(
        server, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert dataset_bytes(stored) == dataset_bytes(data)


def test_a_data_set_larger_than_memory_holds_is_spooled_and_stored_whole(
    server: RunningServer,
) -> None:
    # 2048 x 2304 x 16 bits: 9.4 MB, past the 8 MiB kept in memory.
    ds = make_ct(rows=2048, columns=2304)
    data = part10(ds)
    assert len(data) > SPOOL_BYTES
    status = _send_one(server, data, ds.SOPInstanceUID, max_pdu=1 << 20)
    assert int(status.Status) == 0x0000
    stored = wado_instance(
        server, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert dataset_bytes(stored) == dataset_bytes(data)


def test_a_large_data_set_for_a_refused_command_is_read_and_refused() -> None:
    # A malformed SOP Instance UID: the data set is consumed, nothing kept.
    upload = Upload(None, ValueError("bad UID"))
    asyncio.run(upload.add(memoryview(bytes(SPOOL_BYTES + 1))))
    assert upload.size == 0 and not upload.spooled
    upload.close()


@pytest.mark.parametrize(
    "hostile",
    [
        "unaccepted context",
        "data before command",
        "query command",
        "echo on a storage context",
        "message ID of two values",
        "not a PDU type",
    ],
)
def test_a_peer_breaking_the_protocol_is_aborted_and_nothing_is_lost(
    server: RunningServer, hostile: str
) -> None:
    kept = make_ct()
    assoc = _associate(server)
    assert (
        int(
            assoc.send_c_store(
                _stored(part10(kept), CTImageStorage, kept.SOPInstanceUID), msg_id=1
            ).Status
        )
        == 0
    )
    context_id = next(iter(assoc._accepted))
    command = wire.c_store_rq(CTImageStorage, "1.2.3", 2, None, None)
    if hostile == "unaccepted context":
        sent = wire.p_data_pdus(99, wire.COMMAND, command, 0)
    elif hostile == "data before command":
        sent = wire.p_data_pdus(context_id, 0, b"\x08\x00\x18\x00", 0)
    elif hostile in ("query command", "echo on a storage context"):
        other = Dataset()
        other.CommandGroupLength = 0
        other.AffectedSOPClassUID = CTImageStorage
        other.MessageID = 2
        if hostile == "query command":
            other.CommandField = 0x0020  # C-FIND-RQ
            other.Priority = 0
            other.CommandDataSetType = 0x0001
        else:
            other.CommandField = 0x0030  # C-ECHO-RQ
            other.CommandDataSetType = 0x0101
        encoded = encode(other, True, True)
        assert encoded is not None
        sent = wire.p_data_pdus(context_id, wire.COMMAND, encoded, 0)
    elif hostile == "message ID of two values":
        # (0000,0110) US with a 4-byte value: two Message IDs.
        at = command.index(b"\x00\x00\x10\x01\x02\x00\x00\x00")
        twice = command[:at] + b"\x00\x00\x10\x01\x04\x00\x00\x00\x02\x00\x02\x00"
        twice += command[at + 10 :]
        sent = wire.p_data_pdus(context_id, wire.COMMAND, twice, 0)
    else:
        sent = b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00"
    assoc._sock.sendall(sent)
    assert _answer(assoc) == wire.ABORT
    assoc._sock.close()
    stored = wado_instance(
        server, kept.StudyInstanceUID, kept.SeriesInstanceUID, kept.SOPInstanceUID
    )
    assert dataset_bytes(stored) == dataset_bytes(part10(kept))
    _still_stores(server)


def test_a_store_cut_off_midway_stores_nothing_and_can_be_sent_again(
    server: RunningServer,
) -> None:
    ds = make_ct(rows=64, columns=64)
    data = part10(ds)
    assoc = _associate(server)
    context_id = next(iter(assoc._accepted))
    command = wire.c_store_rq(CTImageStorage, ds.SOPInstanceUID, 1, None, None)
    pdus = wire.p_data_pdus(context_id, 0, data[200:], 1024)
    assoc._sock.sendall(
        wire.p_data_pdus(context_id, wire.COMMAND, command, 0) + pdus[: len(pdus) // 2]
    )
    assoc._sock.close()
    url = (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    assert httpx.get(url, timeout=30).status_code == 404
    assert int(_send_one(server, data, ds.SOPInstanceUID).Status) == 0x0000


def test_a_data_set_in_another_syntax_than_its_context_is_refused_c000(
    server: RunningServer,
) -> None:
    ds = make_ct()
    # Explicit VR bytes on a context accepted for Implicit VR Little Endian.
    explicit = part10(ds, ExplicitVRLittleEndian)
    status = _send_one(
        server,
        explicit,
        ds.SOPInstanceUID,
        syntax=ImplicitVRLittleEndian,
        sent_as=ExplicitVRLittleEndian,
    )
    assert int(status.Status) == 0xC000


def test_a_compressed_syntax_is_accepted_only_if_proposed(
    server: RunningServer,
) -> None:
    assoc = _associate(server, JPEGBaseline8Bit)
    try:
        assert list(assoc._accepted.values()) == [(CTImageStorage, JPEGBaseline8Bit)]
    finally:
        assoc.release()


@pytest.fixture
def small_listener(
    tmp_path: Path,
) -> Iterator[tuple[DimseListener, asyncio.AbstractEventLoop]]:
    """A listener allowing one association, serving C-ECHO only (no archive)."""
    loop = asyncio.new_event_loop()
    config = ListenerConfig(
        host="127.0.0.1", port=0, ae_title="SMALL", max_associations=1
    )
    listener = DimseListener(
        cast(Archive, object()), cast(PeerDirectory, object()), config, loop
    )
    runner = _LoopThread(loop)
    runner.call(listener.start())
    yield listener, loop
    runner.call(listener.stop())
    runner.stop()


class _LoopThread:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, object]) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _verify(port: int) -> StoreAssociation:
    return StoreAssociation.request(
        ("127.0.0.1", port), "PROBE", "SMALL", [build_context(VERIFICATION)], 30
    )


def test_the_association_limit_counts_the_storage_associations(
    small_listener: tuple[DimseListener, asyncio.AbstractEventLoop],
) -> None:
    listener, _ = small_listener
    first = _verify(listener.port)
    try:
        with pytest.raises(StoreAssociationError, match="rejected"):
            _verify(listener.port)
    finally:
        first.release()
    for _ in range(100):  # the release is seen by the loop shortly after
        try:
            _verify(listener.port).release()
            break
        except StoreAssociationError:
            time.sleep(0.05)
    else:
        pytest.fail("a new association is still refused after the release")


def test_a_command_split_over_two_contexts_is_aborted(server: RunningServer) -> None:
    assoc = StoreAssociation.request(
        ("127.0.0.1", server.dimse_port),
        "RAWPEER",
        server.ae_title,
        [build_context(VERIFICATION), build_context(CTImageStorage)],
        30,
    )
    first, second = sorted(assoc._accepted)
    echo = wire.c_echo_rsp(VERIFICATION, 1)  # any command bytes will do
    head = wire.p_data_pdus(first, wire.COMMAND, echo[:20], 0)
    # Clear the last-fragment bit: more of this command is to come.
    head = head[:11] + bytes([wire.COMMAND]) + head[12:]
    assoc._sock.sendall(head + wire.p_data_pdus(second, wire.COMMAND, echo[20:], 0))
    assert _answer(assoc) == wire.ABORT
    assoc._sock.close()
    _still_stores(server)


def _query_association(port: int) -> tuple[AE, Association]:
    """A pynetdicom association for C-GET: one the gate leaves to pynetdicom."""
    ae = new_ae("QUERY")
    query = ae.associate(
        "127.0.0.1", port, contexts=[build_context(STUDY_ROOT_GET)], ae_title="SMALL"
    )
    return ae, query


def test_the_association_limit_also_refuses_query_associations(
    small_listener: tuple[DimseListener, asyncio.AbstractEventLoop],
) -> None:
    listener, _ = small_listener
    stored = _verify(listener.port)
    try:
        ae, query = _query_association(listener.port)
        ae.shutdown()
        assert query.is_rejected
    finally:
        stored.release()


def test_a_query_association_keeps_a_blocking_socket(
    small_listener: tuple[DimseListener, asyncio.AbstractEventLoop],
) -> None:
    """The gate reads with timeouts; pynetdicom gets the socket as accepted."""
    listener, _ = small_listener
    ae, query = _query_association(listener.port)
    try:
        assert query.is_established
        (served,) = listener.ae.active_associations
        assert served.dul.socket is not None
        assert served.dul.socket.socket is not None
        assert served.dul.socket.socket.gettimeout() is None
    finally:
        query.release()
        ae.shutdown()


def test_connections_that_send_nothing_are_limited_too(
    small_listener: tuple[DimseListener, asyncio.AbstractEventLoop],
) -> None:
    listener, _ = small_listener
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as idle:
        idle.sendall(b"\x01\x00")  # half a PDU header, then nothing
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as more:
            more.sendall(b"\x01\x00")
            # Closed at once (reset: its bytes were unread): one is reading already.
            try:
                assert more.recv(10) == b""
            except ConnectionResetError:
                pass


def test_an_upload_past_the_limit_moves_to_the_encrypted_spool() -> None:
    header, body = b"H" * 10, bytes(range(256)) * (SPOOL_BYTES // 256 + 1)

    async def received() -> bytes:
        upload = Upload(header, None)
        half = len(body) // 2
        await upload.add(memoryview(body)[:half])
        assert not upload.spooled
        await upload.add(memoryview(body)[half:])
        assert upload.spooled and upload.size == len(header) + len(body)
        try:
            return upload.part10().read()
        finally:
            upload.close()

    assert asyncio.run(received()) == header + body
