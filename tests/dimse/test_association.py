"""Association policy: C-ECHO, allow-list, max PDU 0, TCP_NODELAY (PS3.8 9.3)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import build_context

from archive.peers import PeerDirectory
from archive.service import Archive
from dimse._contexts import STUDY_ROOT_GET, VERIFICATION
from dimse.listener import DimseListener, ListenerConfig
from tests.conftest import RunningServer, start_server, stop_server
from tests.dimse.helpers import dcmtk, new_ae, run_tool, with_meta
from tests.factory import make_ct

pytestmark = pytest.mark.timeout(120)


@pytest.mark.usefixtures("dcmtk_tools")
def test_echoscu_gets_success(server: RunningServer) -> None:
    done = run_tool(
        [dcmtk("echoscu"), "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port)]
    )
    assert done.returncode == 0


def test_caller_announcing_max_pdu_zero_can_echo_and_store(
    server: RunningServer,
) -> None:
    ds = with_meta(make_ct(), ExplicitVRLittleEndian)
    ae = new_ae("UNLIMITED")
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        contexts=[
            build_context(VERIFICATION),
            build_context(CTImageStorage, ExplicitVRLittleEndian),
        ],
        ae_title=server.ae_title,
        max_pdu=0,
    )
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
        ae.shutdown()


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that lets only MODALITY1 associate."""
    running = start_server(
        tmp_path_factory.mktemp("guarded") / "data",
        {"DICOMVAULT_DIMSE_CALLING_AETS": "MODALITY1"},
    )
    yield running
    assert stop_server(running) == 0, running.log()


@pytest.mark.server
def test_allow_list_accepts_a_listed_caller(guarded_server: RunningServer) -> None:
    ae = new_ae("MODALITY1")
    assoc = ae.associate(
        "127.0.0.1",
        guarded_server.dimse_port,
        contexts=[build_context(VERIFICATION)],
        ae_title=guarded_server.ae_title,
    )
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
        ae.shutdown()


@pytest.mark.server
def test_allow_list_refuses_and_logs_an_unknown_caller(
    guarded_server: RunningServer,
) -> None:
    ae = new_ae("INTRUDER")
    assoc = ae.associate(
        "127.0.0.1",
        guarded_server.dimse_port,
        contexts=[build_context(VERIFICATION)],
        ae_title=guarded_server.ae_title,
    )
    ae.shutdown()
    assert assoc.is_rejected
    deadline = time.monotonic() + 10
    while "INTRUDER" not in guarded_server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    refusals = [line for line in guarded_server.log().splitlines() if "refused" in line]
    assert any("'INTRUDER' at 127.0.0.1:" in line for line in refusals), refusals
    assert any("allow-list" in line for line in refusals)


async def test_listener_sets_tcp_nodelay_on_association_sockets(
    tmp_path: Path,
) -> None:
    config = ListenerConfig(host="127.0.0.1", port=0, ae_title="NODELAY")
    listener = DimseListener(
        cast(Archive, object()),
        cast(PeerDirectory, object()),
        config,
        asyncio.get_running_loop(),
    )
    await listener.start()
    try:
        # A C-GET association is pynetdicom's; a verification-only one the gate's.
        served = await asyncio.to_thread(
            _nodelay_while_associated, listener, STUDY_ROOT_GET
        )
        gated = await asyncio.to_thread(_nodelay_while_associated, listener, None)
    finally:
        await listener.stop()
    assert served == [1]
    assert gated == [1]


def _nodelay_while_associated(
    listener: DimseListener, query_model: str | None
) -> list[int]:
    """TCP_NODELAY of the served sockets while a probe is associated."""
    ae = new_ae("PROBE")
    contexts = [build_context(VERIFICATION)]
    if query_model is not None:
        contexts.append(build_context(query_model))
    assoc = ae.associate(
        "127.0.0.1", listener.port, contexts=contexts, ae_title="NODELAY"
    )
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        sockets: list[Any] = []
        if query_model is None:
            sockets += listener.storage_sockets()
        else:
            for served in listener.ae.active_associations:
                sock = served.dul.socket.socket if served.dul.socket else None
                assert isinstance(sock, socket.socket)
                sockets.append(sock)
        return [
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in sockets
        ]
    finally:
        assoc.release()
        ae.shutdown()
