"""Pure DIMSE pieces: statuses, contexts, Part 10 framing, stored data sets."""

from __future__ import annotations

import asyncio
import io
import threading
import zlib

import pydicom
import pytest
from pydicom.filereader import data_element_generator
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pynetdicom import build_context
from pynetdicom.dsutils import encode

from archive.errors import (
    DuplicateConflict,
    InstanceMismatch,
    InvalidInstance,
    InvalidQuery,
    InvalidUID,
    MissingAttribute,
    StoreUnavailable,
    StudyMismatch,
)
from archive.peers import InvalidPeer, make_peer, parse_peer
from dimse._bridge import LoopBridge
from dimse._contexts import accepted_contexts, in_requestor_order
from dimse._part10 import file_meta, part10_header
from dimse._stored import stored_dataset
from dimse.errors import (
    InvalidIdentifier,
    LoopUnavailable,
    Service,
    status_for,
)
from dimse.listener import refusal_reason
from tests.dimse.helpers import first_of_each_instance, valid_corpus
from tests.factory import make_ct, part10

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StoreUnavailable("x"), 0xA700),
        (LoopUnavailable("x"), 0xA700),
        (InvalidUID("x"), 0xA900),
        (MissingAttribute("x"), 0xA900),
        (InstanceMismatch("x"), 0xA900),
        (StudyMismatch("x"), 0xA900),
        (InvalidInstance("x"), 0xC000),
        (DuplicateConflict("x"), 0x0111),
        (RuntimeError("x"), 0x0110),
    ],
)
def test_store_failures_map_to_ps3_4_b_2_3_statuses(
    error: Exception, status: int
) -> None:
    assert status_for(error, Service.STORE) == status


@pytest.mark.parametrize(
    ("service", "error", "status"),
    [
        (Service.FIND, StoreUnavailable("x"), 0xA700),
        (Service.FIND, InvalidQuery("x"), 0xA900),
        (Service.FIND, InvalidIdentifier("x"), 0xA900),
        (Service.FIND, RuntimeError("x"), 0xC000),
        (Service.MOVE, StoreUnavailable("x"), 0xA701),
        (Service.MOVE, InvalidIdentifier("x"), 0xA900),
        (Service.GET, LoopUnavailable("x"), 0xA701),
        (Service.GET, RuntimeError("x"), 0xC000),
    ],
)
def test_query_retrieve_failures_map_to_their_statuses(
    service: Service, error: Exception, status: int
) -> None:
    assert status_for(error, service) == status


def test_allow_list_refuses_only_unknown_callers() -> None:
    assert refusal_reason("ANY", ()) is None
    assert refusal_reason("MODALITY1", ("MODALITY1", "PACS")) is None
    assert refusal_reason("INTRUDER", ("MODALITY1",)) is not None


def test_storage_contexts_let_callers_take_the_scp_role_for_c_get() -> None:
    storage = [c for c in accepted_contexts() if c.abstract_syntax == CTImageStorage]
    assert len(storage) == 1 and storage[0].scp_role_for_caller


def test_requestor_order_wins_over_ours() -> None:
    ours = build_context(CTImageStorage, [ExplicitVRLittleEndian, JPEGBaseline8Bit])
    theirs = build_context(CTImageStorage, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    (ordered,) = in_requestor_order([theirs], [ours])
    assert ordered.transfer_syntax == [JPEGBaseline8Bit, ExplicitVRLittleEndian]


def test_part10_header_frames_the_dataset_unchanged() -> None:
    ds = make_ct()
    body = encode(ds, False, True)
    assert body is not None
    meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    data = part10_header(meta) + body
    assert data.endswith(body)
    read = pydicom.dcmread(io.BytesIO(data))
    assert read.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert read.file_meta.ImplementationVersionName == "DICOMVAULT_01"
    assert read.SOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.parametrize(
    "syntax",
    [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ],
)
def test_stored_dataset_is_written_back_byte_for_byte(syntax: str) -> None:
    data = part10(make_ct(), syntax)
    ds = stored_dataset(data)
    body = data[len(data) - len(_body(data)) :]
    if syntax == DeflatedExplicitVRLittleEndian:
        body = zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
    uid = pydicom.uid.UID(syntax)
    assert encode(ds, uid.is_implicit_VR, uid.is_little_endian) == body


def _body(data: bytes) -> bytes:
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    return data[132 + 12 + int(meta.FileMetaInformationGroupLength) :]


_UN_ENCODED_STANDARD_ELEMENTS = frozenset({"ct_explicit_vr_un_elements_j2k.dcm"})


@pytest.mark.corpus
@pytest.mark.usefixtures("lenient_pydicom")
def test_stored_dataset_round_trips_the_corpus() -> None:
    files = first_of_each_instance(valid_corpus())
    if not files:
        pytest.skip("../shared/testdata is absent")
    for item in files:
        data = item.path.read_bytes()
        body = _body(data)
        uid = pydicom.uid.UID(item.transfer_syntax_uid)
        if uid.is_deflated:
            body = zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
        written = encode(stored_dataset(data), uid.is_implicit_VR, uid.is_little_endian)
        assert written is not None
        if item.path.name in _UN_ENCODED_STANDARD_ELEMENTS:
            # pydicom gives the elements it reads (UIDs, character set) their VR.
            continue
        # pydicom never writes retired group lengths (gggg,0000), PS3.5 7.2.
        assert written == _without_group_lengths(body, uid), item.path


def _without_group_lengths(body: bytes, uid: pydicom.uid.UID) -> bytes:
    fp = io.BytesIO(body)
    kept: list[bytes] = []
    start = 0
    for element in data_element_generator(fp, uid.is_implicit_VR, uid.is_little_endian):
        end = fp.tell()
        if not (element.tag.element == 0 and element.tag.group > 6):
            kept.append(body[start:end])
        start = end
    return b"".join(kept)


def test_peer_parsing_checks_every_field() -> None:
    assert parse_peer("ORTHANC@127.0.0.1:4242").port == 4242
    with pytest.raises(InvalidPeer, match="AE title"):
        make_peer("BAD\\TITLE", "127.0.0.1", 104)
    with pytest.raises(InvalidPeer, match="port"):
        make_peer("PACS", "127.0.0.1", 70000)
    with pytest.raises(InvalidPeer, match="host"):
        make_peer("PACS", "a b", 104)


def _loop_in_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def test_bridge_returns_results_and_raises_errors_from_the_loop() -> None:
    loop, thread = _loop_in_thread()
    try:
        bridge = LoopBridge(loop, timeout_s=5)

        async def answer() -> int:
            return 42

        async def refuse() -> int:
            raise StoreUnavailable("down")

        assert bridge.call(answer()) == 42
        with pytest.raises(StoreUnavailable):
            bridge.call(refuse())
    finally:
        _stop(loop, thread)


def test_bridge_gives_up_after_its_timeout_and_cancels_the_work() -> None:
    loop, thread = _loop_in_thread()
    cancelled = threading.Event()
    try:
        bridge = LoopBridge(loop, timeout_s=0.2)

        async def slow() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(LoopUnavailable, match="dimse_timeout_s"):
            bridge.call(slow())
        assert cancelled.wait(timeout=5)
    finally:
        _stop(loop, thread)


def test_bridge_refuses_work_once_the_loop_is_closed() -> None:
    loop, thread = _loop_in_thread()
    _stop(loop, thread)

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(LoopUnavailable, match="closed"):
        LoopBridge(loop, timeout_s=1).call(never())
