"""Several worker processes on one node: shared ports, one archive, clean stops."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from pydicom import dcmread

from dicomvault.workers import stopped_cleanly
from dimse._stored import split_part10
from tests.conftest import RunningServer, start_server, stop_server
from tests.dicomweb.stow_helpers import multipart_body
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(240)

ECHOSCU = "/usr/bin/echoscu"
STORESCU = "/usr/bin/storescu"
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=w'


def _workers(server: RunningServer) -> list[psutil.Process]:
    """The worker processes the supervisor started."""
    children = psutil.Process(server.process.pid).children()
    # The spawn start method also runs a resource tracker: not a worker.
    return [p for p in children if "spawn_main" in " ".join(p.cmdline())]


def _get(
    server: RunningServer, path: str, accept: str = "*/*"
) -> tuple[int, int, bytes]:
    """GET on a fresh connection: the worker that held it, the status, the body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": accept})
        response = connection.getresponse()
        body = response.read()
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        for worker in _workers(server):
            for held in worker.net_connections(kind="tcp"):
                if held.raddr and held.raddr.port == client_port:
                    return worker.pid, response.status, body
    finally:
        connection.close()
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def _serving_pids(server: RunningServer, connections: int) -> set[int]:
    """Which workers answered several fresh connections."""
    pids = set()
    for _ in range(connections):
        pid, status, _ = _get(server, "/readyz")
        assert status == 200
        pids.add(pid)
    return pids


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("workers") / "data", {"DICOMVAULT_WORKERS": "2"}
    )
    # /readyz answered by one worker; wait until both serve.
    deadline = time.monotonic() + 60
    while len(_serving_pids(running, 8)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    yield running
    assert stop_server(running) == 0, running.log()


def test_both_workers_answer_on_the_one_http_port(two_workers: RunningServer) -> None:
    assert len(_workers(two_workers)) == 2
    assert _serving_pids(two_workers, 24) == {p.pid for p in _workers(two_workers)}


def test_what_one_worker_stores_every_worker_serves(two_workers: RunningServer) -> None:
    study = new_uid()
    ds = make_ct(study=study)
    stored = httpx.post(
        f"{two_workers.dicomweb_url}/studies",
        content=multipart_body([part10(ds)], "w", "application/dicom"),
        headers={"Content-Type": STOW_TYPE},
        timeout=30,
    )
    assert stored.status_code == 200
    seen = set()
    for _ in range(24):
        pid, status, body = _get(
            two_workers,
            f"/dicom-web/studies?StudyInstanceUID={study}",
            "application/dicom+json",
        )
        assert status == 200
        assert len(json.loads(body)) == 1
        seen.add(pid)
    assert len(seen) == 2


@pytest.mark.skipif(not os.path.exists(STORESCU), reason="DCMTK is not installed")
def test_dimse_associations_are_served_on_the_shared_port(
    two_workers: RunningServer, tmp_path: Path
) -> None:
    study = new_uid()
    files = []
    for number in range(8):
        path = tmp_path / f"{number}.dcm"
        path.write_bytes(part10(make_ct(study=study)))
        files.append(path)
    port = str(two_workers.dimse_port)
    env = dict(os.environ, TCP_NODELAY="1")
    for _ in range(4):
        echo = subprocess.run(
            [ECHOSCU, "-aec", "DICOMVAULT", "127.0.0.1", port],
            env=env, capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert echo.returncode == 0, echo.stderr
    senders = [
        subprocess.Popen(
            [STORESCU, "-aec", "DICOMVAULT", "127.0.0.1", port, *map(str, pair)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for pair in (files[0:4], files[4:8])
    ]
    for sender in senders:
        output, _ = sender.communicate(timeout=60)
        assert sender.returncode == 0, output
    found = httpx.get(
        f"{two_workers.dicomweb_url}/studies/{study}/instances",
        headers={"Accept": "application/dicom+json"},
        timeout=30,
    )
    assert len(found.json()) == 8
    sent = files[0].read_bytes()
    _, data_set_offset = split_part10(sent)
    ds = dcmread(files[0])
    instance = (
        f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    body = httpx.get(
        two_workers.dicomweb_url + instance,
        headers={"Accept": 'multipart/related; type="application/dicom"'},
        timeout=30,
    )
    assert body.status_code == 200
    # Stored as received: the data set bytes behind our own file meta.
    assert sent[data_set_offset:] in body.content


def test_a_worker_that_dies_is_started_again(two_workers: RunningServer) -> None:
    victim = _workers(two_workers)[0]
    victim.kill()
    victim.wait(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = [p for p in _workers(two_workers) if p.pid != victim.pid]
        if len(alive) == 2 and len(_serving_pids(two_workers, 12)) == 2:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no replacement worker:\n{two_workers.log()[-3000:]}")
    assert f"exited with -{int(signal.SIGKILL)}" in two_workers.log()


def test_stopping_the_supervisor_stops_workers_and_postgres(tmp_path: Path) -> None:
    running = start_server(tmp_path / "data", {"DICOMVAULT_WORKERS": "2"})
    workers = _workers(running)
    assert len(workers) == 2
    assert stop_server(running, signal.SIGINT) == 0, running.log()
    for worker in workers:
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    assert "Embedded PostgreSQL detached" in running.log() or os.environ.get(
        "DICOMVAULT_TEST_DATABASE_URL"
    )
    assert running.log().count("dicomvault stopped") == 2


def _sleep() -> None:
    time.sleep(60)


def test_a_worker_ended_by_the_stop_while_starting_counts_as_stopped() -> None:
    # A worker still importing has no SIGTERM handler yet: the signal ends it.
    starting = multiprocessing.get_context("spawn").Process(target=_sleep)
    starting.start()
    starting.terminate()
    starting.join(30)
    assert starting.exitcode == -signal.SIGTERM
    assert stopped_cleanly(starting.exitcode)
    assert stopped_cleanly(0)
    assert not stopped_cleanly(1)
    assert not stopped_cleanly(-signal.SIGKILL)
    assert not stopped_cleanly(None)
