"""Helpers of the DIMSE tests: DCMTK tools, pynetdicom callers, the corpus."""

from __future__ import annotations

import io
import socket
import subprocess
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.presentation import AllStoragePresentationContexts, PresentationContext

from tests.conftest import CORPUS, RunningServer

DCMTK_BIN = Path("/usr/bin")
TOOL_TIMEOUT_S = 120.0
STORAGE_SOP_CLASSES = frozenset(
    str(context.abstract_syntax) for context in AllStoragePresentationContexts
)
# DCMTK 3.6.7 storescu proposes a compressed syntax only when told which one.
STORESCU_OPTION = {
    "1.2.840.10008.1.2": "-x=",
    "1.2.840.10008.1.2.1": "-x=",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def dcmtk(tool: str) -> str:
    """The path of a DCMTK tool (pynetdicom installs commands of the same name)."""
    return str(DCMTK_BIN / tool)


def has_dcmtk() -> bool:
    """Whether Debian's DCMTK tools are installed."""
    return all((DCMTK_BIN / tool).exists() for tool in ("echoscu", "storescu"))


def run_tool(
    args: Sequence[str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with a timeout; fail with its output when it fails."""
    done = subprocess.run(
        list(args),
        check=False,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TOOL_TIMEOUT_S,
        cwd=cwd,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{args[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    """Wait until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"Nothing listens on port {port} after {timeout_s} s")


def dataset_bytes(part10: bytes) -> bytes:
    """The data set part of a Part 10 file (inflated when deflated)."""
    fp = io.BytesIO(part10)
    ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=[])
    meta = ds.file_meta
    offset = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    body = part10[offset:]
    if UID(meta.TransferSyntaxUID).is_deflated:
        body = zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
    return body


def transfer_syntax_of(part10: bytes) -> str:
    """The Transfer Syntax UID of a Part 10 file's meta."""
    ds = pydicom.dcmread(io.BytesIO(part10), stop_before_pixels=True)
    return str(ds.file_meta.TransferSyntaxUID)


def wado_instance(server: RunningServer, study: str, series: str, sop: str) -> bytes:
    """The Part 10 bytes of one instance as stored (PS3.18 8.7.3.5.2: "*")."""
    url = f"{server.dicomweb_url}/studies/{study}/series/{series}/instances/{sop}"
    accept = "application/dicom; transfer-syntax=*"
    response = httpx.get(url, headers={"Accept": accept}, timeout=60)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response.content


def qido(server: RunningServer, path: str, params: dict[str, str]) -> list[Any]:
    """One QIDO-RS search; the DICOM JSON matches."""
    response = httpx.get(
        f"{server.dicomweb_url}/{path}",
        params=params,
        headers={"Accept": "application/dicom+json"},
        timeout=60,
    )
    assert response.status_code in (200, 204), (response.status_code, response.text)
    return response.json() if response.content else []


@dataclass(frozen=True)
class CorpusFile:
    """A valid corpus file that a storage SCU can send."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str


def valid_corpus() -> list[CorpusFile]:
    """Corpus files outside broken/ with a storage SOP class and file meta."""
    if not CORPUS.is_dir():
        return []
    found: list[CorpusFile] = []
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.name == "MANIFEST.md" or "broken" in path.parts:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue
        syntax = ds.file_meta.get("TransferSyntaxUID")
        sop_class = ds.get("SOPClassUID")
        if syntax is None or sop_class not in STORAGE_SOP_CLASSES:
            continue
        if not ds.get("SOPInstanceUID") or not ds.get("StudyInstanceUID"):
            continue
        found.append(
            CorpusFile(
                path,
                str(sop_class),
                str(ds.SOPInstanceUID),
                str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID),
                str(syntax),
            )
        )
    return found


def first_of_each_instance(files: Iterable[CorpusFile]) -> list[CorpusFile]:
    """One file per SOP Instance UID (the corpus reuses some UIDs on purpose)."""
    seen: dict[str, CorpusFile] = {}
    for item in files:
        seen.setdefault(item.sop_instance_uid, item)
    return list(seen.values())


def new_ae(ae_title: str = "PYSCU") -> AE:
    """A pynetdicom AE with short timeouts for tests."""
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


@contextmanager
def associate(
    server: RunningServer,
    contexts: Sequence[PresentationContext],
    ae_title: str = "PYSCU",
    max_pdu: int = 16382,
    ext_neg: list[Any] | None = None,
    evt_handlers: list[Any] | None = None,
) -> Iterator[Association]:
    """An established association with the server, released afterwards."""
    ae = new_ae(ae_title)
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        contexts=list(contexts),
        ae_title=server.ae_title,
        max_pdu=max_pdu,
        ext_neg=ext_neg,
        evt_handlers=evt_handlers,
    )
    assert assoc.is_established, "the listener refused the association"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def contexts_for(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """One context per (SOP class, transfer syntax)."""
    return [build_context(sop, [syntax]) for sop, syntax in dict.fromkeys(pairs)]


def store_datasets(server: RunningServer, datasets: Sequence[Dataset]) -> list[int]:
    """C-STORE data sets (each with file_meta) over one association."""
    pairs = [(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets]
    with associate(server, contexts_for(pairs)) as assoc:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]


def send_raw_c_store(
    assoc: Association,
    context: PresentationContext,
    sop_class_uid: str,
    sop_instance_uid: str,
    data_set: bytes,
) -> int:
    """Send one C-STORE exactly as given on ``context``; the status answered.

    Unlike ``send_c_store``, nothing is checked or encoded here, so a test
    can send what a faulty SCU would: another SOP class than the context's,
    or data set bytes in another encoding.
    """
    request = C_STORE()
    request.MessageID = 1
    request.Priority = 2
    request.AffectedSOPClassUID = UID(sop_class_uid)
    request.AffectedSOPInstanceUID = UID(sop_instance_uid)
    request.DataSet = io.BytesIO(data_set)
    # As send_c_store does: the reactor must not take the response off the queue.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assert context.context_id is not None
        assoc.dimse.send_msg(request, context.context_id)
        _, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    assert response is not None, "no C-STORE response within the DIMSE timeout"
    assert isinstance(response, C_STORE), type(response)
    return int(response.Status or 0)


def with_meta(ds: Dataset, transfer_syntax: str) -> Dataset:
    """Give a data set the file meta pynetdicom needs to choose a context."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    return ds


@dataclass
class ScriptedStorage:
    """A pynetdicom storage SCP for C-MOVE tests, answering a chosen status."""

    ae_title: str
    sop_classes: Sequence[str]
    status_for: dict[str, int] = field(default_factory=dict)
    default_status: int = 0x0000
    transfer_syntaxes: Sequence[str] = ()
    max_pdu: int = 16382
    calling_ae_titles: Sequence[str] = ()
    # Abort the association instead of answering the C-STORE of these instances.
    abort_on: set[str] = field(default_factory=set)
    # Each received instance as a Part 10 file, and its data set as it came.
    received: list[bytes] = field(default_factory=list)
    received_wire: list[bytes] = field(default_factory=list)
    received_syntaxes: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._ae = new_ae(self.ae_title)
        self._ae.maximum_pdu_size = self.max_pdu
        self._ae.require_calling_aet = list(self.calling_ae_titles)
        for sop_class in self.sop_classes:
            self._ae.add_supported_context(
                sop_class, list(self.transfer_syntaxes or ALL_SYNTAXES)
            )
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_CONN_OPEN, self._opened),
        ]
        server = self._ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=handlers
        )
        assert server is not None
        self._server = server
        self.port = int(server.server_address[1])

    def _opened(self, event: Event) -> None:
        self.connections += 1

    def _store(self, event: Event) -> int:
        uid = str(getattr(event.request, "AffectedSOPInstanceUID", ""))
        if uid in self.abort_on:
            event.assoc.abort()
            return 0xA700  # never sent: the association is gone
        self.received.append(event.encoded_dataset())
        request = event.request
        assert isinstance(request, C_STORE) and request.DataSet is not None
        self.received_wire.append(request.DataSet.getvalue())
        self.received_syntaxes.append(str(event.context.transfer_syntax))
        return self.status_for.get(uid, self.default_status)

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._ae.shutdown()


ALL_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.5",
]


def put_peer(server: RunningServer, ae_title: str, port: int) -> None:
    """Register a C-MOVE destination through the admin API."""
    response = httpx.put(
        f"{server.base_url}/api/dimse/peers/{ae_title}",
        json={"ae_title": ae_title, "host": "127.0.0.1", "port": port},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
