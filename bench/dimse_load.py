"""DIMSE load: C-MOVE to DCMTK's storescp, C-FIND latency through pynetdicom.

C-STORE lives in ``bench/dimse_store.py``; this module calls DCMTK by its
/usr/bin path (pynetdicom installs commands of the same names) with
TCP_NODELAY=1 in its environment (Debian's DCMTK 3.6.7 leaves Nagle on).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.events import Event

STORESCP = Path("/usr/bin/storescp")
MOVESCU = Path("/usr/bin/movescu")
STORESCU = Path("/usr/bin/storescu")
CALLING_AE_TITLE = "BENCHSCU"
# Study Root Query/Retrieve Information Model - FIND (PS3.4 C.6.2).
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")


def dcmtk_env() -> dict[str, str]:
    """The environment for DCMTK tools: ours, with Nagle's algorithm off."""
    return {**os.environ, "TCP_NODELAY": "1"}


def dcmtk_available() -> bool:
    """Whether DCMTK's storescu, storescp and movescu are installed."""
    return all(tool.exists() for tool in (STORESCP, MOVESCU, STORESCU))


class Receiver:
    """DCMTK's storescp as a C-MOVE destination, writing into a folder."""

    def __init__(self, folder: Path, ae_title: str, port: int) -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start listening; the output folder starts empty."""
        self.clear()
        command = [
            str(STORESCP),
            "--aetitle",
            self.ae_title,
            "--output-directory",
            str(self.folder),
            str(self.port),
        ]
        with open(self.folder.parent / "storescp.log", "wb") as log:
            self._process = subprocess.Popen(
                command, env=dcmtk_env(), stdout=log, stderr=subprocess.STDOUT
            )
        time.sleep(0.3)
        if self._process.poll() is not None:
            raise RuntimeError(
                f"storescp exited at once with {self._process.returncode}; "
                f"see {self.folder.parent / 'storescp.log'}"
            )

    def clear(self) -> None:
        """Empty the output folder."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)

    def received(self) -> tuple[int, int]:
        """Files and bytes received so far."""
        files = [p for p in self.folder.iterdir() if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    def stop(self) -> None:
        """Stop storescp by its process id."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@dataclass(frozen=True)
class MoveResult:
    """One timed C-MOVE of a study."""

    seconds: float
    instances: int
    bytes: int
    returncode: int
    output: str


def move_study(
    host: str,
    port: int,
    called_ae_title: str,
    destination: Receiver,
    study_instance_uid: str,
) -> MoveResult:
    """C-MOVE one study (Study Root) to ``destination``, timed with movescu."""
    destination.clear()
    command = [
        str(MOVESCU),
        "--study",
        "--aetitle",
        CALLING_AE_TITLE,
        "--call",
        called_ae_title,
        "--move",
        destination.ae_title,
        "--key",
        "QueryRetrieveLevel=STUDY",
        "--key",
        f"StudyInstanceUID={study_instance_uid}",
        host,
        str(port),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, env=dcmtk_env(), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    # storescp may still be writing the last file when movescu returns.
    time.sleep(0.2)
    files, size = destination.received()
    output = (done.stdout + done.stderr)[-2000:]
    return MoveResult(seconds, files, size, done.returncode, output)


@dataclass(frozen=True)
class FindQuery:
    """One named study-level C-FIND identifier."""

    name: str
    keys: dict[str, str]


def _identifier(keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in (
        "StudyInstanceUID",
        "PatientName",
        "PatientID",
        "StudyDate",
        "AccessionNumber",
        "ModalitiesInStudy",
        "StudyDescription",
        "NumberOfStudyRelatedInstances",
    ):
        setattr(ds, keyword, "")
    if any(ord(c) > 127 for value in keys.values() for c in value):
        ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _no_delay(event: Event) -> None:
    """Nagle off on our side too, or each C-FIND waits for a delayed ACK."""
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def find_latencies(
    host: str, port: int, called_ae_title: str, queries: list[FindQuery], runs: int
) -> dict[str, list[float]]:
    """Milliseconds per C-FIND of each query, over one association, after a warm-up.

    Raises:
        RuntimeError: when the association is refused or a C-FIND fails.
    """
    ae = AE(ae_title=CALLING_AE_TITLE)
    ae.add_requested_context(STUDY_ROOT_FIND)
    assoc = ae.associate(
        host,
        port,
        ae_title=called_ae_title,
        evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)],
    )
    if not assoc.is_established:
        raise RuntimeError(f"C-FIND association to {called_ae_title} was refused")
    times: dict[str, list[float]] = {}
    try:
        for query in queries:
            identifier = _identifier(query.keys)
            for run in range(runs + 1):
                started = time.perf_counter()
                for status, _ in assoc.send_c_find(identifier, STUDY_ROOT_FIND):
                    code = int(getattr(status, "Status", -1))
                    if code not in (0x0000, 0xFF00, 0xFF01):
                        raise RuntimeError(
                            f"C-FIND {query.name!r} ended with status 0x{code:04X}"
                        )
                if run > 0:
                    elapsed = (time.perf_counter() - started) * 1000.0
                    times.setdefault(query.name, []).append(elapsed)
    finally:
        assoc.release()
        ae.shutdown()
    return times
