"""C-MOVE destinations from the settings and from /api/dimse/peers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dimse._contexts import STUDY_ROOT_MOVE
from tests.conftest import RunningServer, start_server, stop_server
from tests.dimse.helpers import (
    ScriptedStorage,
    associate,
    contexts_for,
    store_datasets,
    with_meta,
)
from tests.factory import make_ct

pytestmark = [pytest.mark.timeout(120), pytest.mark.server]


@dataclass
class Configured:
    """A server started with one peer in DICOMVAULT_DIMSE_PEERS."""

    server: RunningServer
    peer: ScriptedStorage


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Configured]:
    """A scripted SCP, and a server that knows it from its settings."""
    peer = ScriptedStorage("CONFPEER", [CTImageStorage])
    running = start_server(
        tmp_path_factory.mktemp("peers") / "data",
        {"DICOMVAULT_DIMSE_PEERS": f"CONFPEER@127.0.0.1:{peer.port}"},
    )
    yield Configured(running, peer)
    peer.close()
    assert stop_server(running) == 0, running.log()


def _url(server: RunningServer, ae_title: str = "") -> str:
    base = f"{server.base_url}/api/dimse/peers"
    return f"{base}/{ae_title}" if ae_title else base


def test_settings_peer_is_listed_and_cannot_be_deleted(configured: Configured) -> None:
    server = configured.server
    listed = httpx.get(_url(server), timeout=30).json()
    assert {
        "ae_title": "CONFPEER",
        "host": "127.0.0.1",
        "port": configured.peer.port,
        "source": "settings",
    } in listed
    refused = httpx.delete(_url(server, "CONFPEER"), timeout=30)
    assert refused.status_code == 409
    assert "dimse_peers" in refused.json()["error"]


def test_settings_peer_receives_a_c_move(configured: Configured) -> None:
    server = configured.server
    ds = with_meta(make_ct(), ExplicitVRLittleEndian)
    assert store_datasets(server, [ds]) == [0x0000]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ds.StudyInstanceUID
    with associate(
        server, contexts_for([(STUDY_ROOT_MOVE, ExplicitVRLittleEndian)])
    ) as assoc:
        responses = list(assoc.send_c_move(query, "CONFPEER", STUDY_ROOT_MOVE))
    assert int(responses[-1][0].Status) == 0x0000
    assert len(configured.peer.received) == 1


def test_put_get_delete_round_trip(configured: Configured) -> None:
    server = configured.server
    body = {"ae_title": "PACS1", "host": "pacs.example.org", "port": 104}
    created = httpx.put(_url(server, "PACS1"), json=body, timeout=30)
    assert created.status_code == 201
    assert created.json() == {**body, "source": "database"}
    changed = httpx.put(_url(server, "PACS1"), json={**body, "port": 11112}, timeout=30)
    assert changed.status_code == 200
    shown = httpx.get(_url(server, "PACS1"), timeout=30)
    assert shown.status_code == 200 and shown.json()["port"] == 11112
    assert httpx.delete(_url(server, "PACS1"), timeout=30).status_code == 204
    assert httpx.get(_url(server, "PACS1"), timeout=30).status_code == 404
    assert httpx.delete(_url(server, "PACS1"), timeout=30).status_code == 404


def test_database_peer_overrides_a_settings_peer(configured: Configured) -> None:
    server = configured.server
    body = {"ae_title": "CONFPEER", "host": "127.0.0.1", "port": 1}
    assert httpx.put(_url(server, "CONFPEER"), json=body, timeout=30).status_code == 201
    try:
        shown = httpx.get(_url(server, "CONFPEER"), timeout=30).json()
        assert (shown["port"], shown["source"]) == (1, "database")
    finally:
        httpx.delete(_url(server, "CONFPEER"), timeout=30)
    shown = httpx.get(_url(server, "CONFPEER"), timeout=30).json()
    assert shown["source"] == "settings"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"ae_title": "BAD", "host": "127.0.0.1", "port": 70000}, "port"),
        ({"ae_title": "BAD", "host": "", "port": 104}, "host"),
        ({"ae_title": "OTHER", "host": "127.0.0.1", "port": 104}, "differs"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_put_refuses_bad_peers(
    configured: Configured, body: object, reason: str
) -> None:
    answer = httpx.put(_url(configured.server, "BAD"), json=body, timeout=30)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


def test_put_refuses_an_ae_title_with_a_backslash(configured: Configured) -> None:
    answer = httpx.put(
        _url(configured.server, "A%5CB"),
        json={"host": "127.0.0.1", "port": 104},
        timeout=30,
    )
    assert answer.status_code == 400
    assert "AE title" in answer.json()["error"]
