"""Debian's Orthanc as the peer PACS: C-STORE, C-FIND, C-MOVE back, byte-identical."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.conftest import CORPUS, RunningServer, free_port
from tests.dimse.helpers import dataset_bytes, put_peer

pytestmark = pytest.mark.timeout(180)

ORTHANC = Path("/usr/sbin/Orthanc")
STUDY_FOLDER = CORPUS / "study" / "phantom1_siemens_mr_2series"
START_TIMEOUT_S = 30.0


@dataclass
class Orthanc:
    """An Orthanc process on loopback ports, driven through its REST API."""

    process: subprocess.Popen[bytes]
    url: str
    dicom_port: int
    ae_title: str
    log_path: Path

    def call(self, method: str, path: str, body: object = None) -> object:
        """One REST call; the decoded JSON answer."""
        content = None if body is None else json.dumps(body)
        response = httpx.request(method, self.url + path, content=content, timeout=60)
        assert response.status_code == 200, (path, response.text, self.log())
        return response.json() if response.content else None

    def log(self) -> str:
        """Orthanc's own log, for failure messages."""
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def orthanc(server: RunningServer, tmp_path: Path) -> Iterator[Orthanc]:
    """Orthanc with dicomvault configured as its modality "vault"."""
    if not ORTHANC.exists():
        pytest.skip("Orthanc is not installed (apt-get install orthanc)")
    http_port, dicom_port = free_port(), free_port()
    ae_title = f"ORTHANC{secrets.token_hex(2).upper()}"
    config = {
        "Name": "dicomvault-test",
        "StorageDirectory": str(tmp_path / "db"),
        "IndexDirectory": str(tmp_path / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomModalities": {"vault": [server.ae_title, "127.0.0.1", server.dimse_port]},
        "DicomAlwaysAllowStore": True,
        "SynchronousCMove": True,
    }
    config_path = tmp_path / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log_path = tmp_path / "orthanc.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(ORTHANC), str(config_path)], stdout=log, stderr=subprocess.STDOUT
        )
    running = Orthanc(
        process, f"http://127.0.0.1:{http_port}", dicom_port, ae_title, log_path
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            assert process.poll() is None, running.log()
            try:
                if httpx.get(running.url + "/system", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            assert time.monotonic() < deadline, running.log()
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.corpus
def test_orthanc_stores_finds_and_moves_a_study_back_byte_identical(
    server: RunningServer, orthanc: Orthanc
) -> None:
    files = sorted(STUDY_FOLDER.glob("*.dcm")) if STUDY_FOLDER.is_dir() else []
    if not files:
        pytest.skip("../shared/testdata is absent")
    originals = {}
    for path in files:
        data = path.read_bytes()
        response = httpx.post(orthanc.url + "/instances", content=data, timeout=60)
        assert response.status_code == 200, response.text
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        originals[str(uid)] = data
    studies = orthanc.call("GET", "/studies")
    assert isinstance(studies, list) and len(studies) == 1
    study_id = str(studies[0])
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)

    stored = orthanc.call("POST", "/modalities/vault/store", study_id)
    assert isinstance(stored, dict) and stored["FailedInstancesCount"] == 0

    query = orthanc.call(
        "POST",
        "/modalities/vault/query",
        {"Level": "Study", "Query": {"StudyInstanceUID": study_uid, "PatientID": ""}},
    )
    assert isinstance(query, dict)
    answers = orthanc.call("GET", f"/queries/{query['ID']}/answers?expand&simplify")
    assert isinstance(answers, list) and len(answers) == 1
    assert answers[0]["StudyInstanceUID"] == study_uid

    orthanc.call("DELETE", f"/studies/{study_id}")
    assert orthanc.call("GET", "/instances") == []
    put_peer(server, orthanc.ae_title, orthanc.dicom_port)
    orthanc.call(
        "POST",
        f"/queries/{query['ID']}/retrieve",
        {"TargetAet": orthanc.ae_title, "Synchronous": True},
    )

    back = orthanc.call("GET", "/instances")
    assert isinstance(back, list) and len(back) == len(files)
    for instance_id in back:
        response = httpx.get(f"{orthanc.url}/instances/{instance_id}/file", timeout=60)
        received = response.content
        meta = pydicom.dcmread(pydicom.filebase.DicomBytesIO(received)).file_meta
        original = originals[str(meta.MediaStorageSOPInstanceUID)]
        # The data set is what Orthanc sent; the file meta is Orthanc's own (PS3.10).
        assert dataset_bytes(received) == dataset_bytes(original)
        assert (
            meta.TransferSyntaxUID
            == pydicom.dcmread(
                pydicom.filebase.DicomBytesIO(original)
            ).file_meta.TransferSyntaxUID
        )
