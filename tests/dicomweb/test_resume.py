"""Resuming a STOW-RS upload cut off mid-request, as README 'Resumable upload' says."""

from __future__ import annotations

import io
import secrets
import socket
import time

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import RunningServer
from tests.dicomweb.stow_helpers import multipart_body
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(120)

SOP_INSTANCE_UID = "00080018"


def _send_and_drop(
    server: RunningServer, study: str, body: bytes, cut: int, boundary: str
) -> None:
    """Send the head of a STOW request announcing the whole body, then hang up."""
    host, port = server.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /dicom-web/studies/{study} HTTP/1.1\r\nHost: {host}\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}\r\n'
        f"Content-Length: {len(body)}\r\nAccept: application/dicom+json\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body[:cut])
        time.sleep(0.5)
        # An abortive close (RST), as when a link drops mid-transfer.
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )


def _stored_uids(client: DICOMwebClient, study: str) -> set[str]:
    found = client.search_for_instances(study_instance_uid=study)
    return {match[SOP_INSTANCE_UID]["Value"][0] for match in found}


def test_a_dropped_upload_resumes_with_only_the_missing_instances(
    server: RunningServer,
) -> None:
    study, series = new_uid(), new_uid()
    instances = [
        make_ct(study=study, series=series, InstanceNumber=n, rows=64, columns=64)
        for n in range(1, 7)
    ]
    files = [part10(ds) for ds in instances]
    boundary = secrets.token_hex(8)
    body = multipart_body(files, boundary, "application/dicom")
    # Cut inside the fourth part: three parts and the start of the fourth arrive.
    cut = body.index(files[3]) + len(files[3]) // 2
    _send_and_drop(server, study, body, cut, boundary)

    client = DICOMwebClient(server.dicomweb_url)
    deadline = time.monotonic() + 10
    stored: set[str] = set()
    while time.monotonic() < deadline:
        try:
            stored = _stored_uids(client, study)
        except Exception:  # noqa: BLE001 - the study may not exist yet
            stored = set()
        if len(stored) >= 3:
            break
        time.sleep(0.2)
    assert stored == {ds.SOPInstanceUID for ds in instances[:3]}

    # The resume step of the protocol: send only what the server does not list.
    missing = [ds for ds in instances if ds.SOPInstanceUID not in stored]
    assert len(missing) == 3
    answer = client.store_instances(
        [pydicom.dcmread(io.BytesIO(part10(ds))) for ds in missing],
        study_instance_uid=study,
    )
    assert len(answer.ReferencedSOPSequence) == 3
    assert _stored_uids(client, study) == {ds.SOPInstanceUID for ds in instances}
    log = server.log().split("STOW upload cut off by the client after 3 stored")
    assert len(log) == 2 and "Traceback" not in log[-1]
