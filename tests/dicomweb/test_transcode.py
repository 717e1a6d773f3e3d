"""Transcoding on Accept (PS3.18 8.7.3.5) against a real server."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from tests.conftest import TESTS_DATA, RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(180)

MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
JPEG_FILE = TESTS_DATA / "multiframe" / "us_multiframe_30frames_jpeg_baseline.dcm"


def _parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    boundary = re.search(r'boundary="?([^";]+)"?', response.headers["content-type"])
    assert boundary is not None
    pieces = response.content.split(b"--" + boundary.group(1).encode())[1:-1]
    found = []
    for piece in pieces:
        head, body = piece.split(b"\r\n\r\n", 1)
        content_type = re.search(rb"Content-Type: ([^\r]+)", head)
        assert content_type is not None
        found.append((content_type.group(1).decode(), body[:-2]))
    return found


def _url(server: RunningServer, ds: pydicom.Dataset) -> str:
    return (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )


def _client(server: RunningServer) -> DICOMwebClient:
    return DICOMwebClient(server.dicomweb_url)


def _store(server: RunningServer, *files: bytes) -> None:
    response = post_instances(server.dicomweb_url, list(files))
    assert response.status_code == 200, response.text


def _ct(**attributes: Any) -> pydicom.Dataset:
    ds = make_ct(rows=32, columns=32, **attributes)
    pixels = (np.arange(32 * 32, dtype="<u2") * 37 % 4096).astype("<u2")
    ds.PixelData = pixels.tobytes()
    ds.BitsStored, ds.HighBit = 12, 11
    return ds


def test_default_syntax_of_application_dicom_is_explicit_vr_little_endian(
    server: RunningServer,
) -> None:
    ds = _ct()
    stored = part10(ds, ImplicitVRLittleEndian)
    _store(server, stored)
    response = httpx.get(_url(server, ds), headers={"Accept": MULTIPART_DICOM})
    assert response.status_code == 200
    [(content_type, body)] = _parts(response)
    assert (
        content_type == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
    )
    back = pydicom.dcmread(io.BytesIO(body))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert back.PixelData == ds.PixelData
    single = httpx.get(_url(server, ds), headers={"Accept": "application/dicom"})
    assert single.status_code == 200 and single.content == body
    assert "1.2.840.10008.1.2.1" in single.headers["content-type"]


def test_transfer_syntax_star_returns_the_stored_bytes(server: RunningServer) -> None:
    ds = _ct()
    stored = part10(ds, ImplicitVRLittleEndian)
    _store(server, stored)
    accept = MULTIPART_DICOM + "; transfer-syntax=*"
    response = httpx.get(_url(server, ds), headers={"Accept": accept})
    [(content_type, body)] = _parts(response)
    assert body == stored
    assert content_type.endswith(f"transfer-syntax={ImplicitVRLittleEndian}")


@pytest.mark.parametrize("target", [JPEG2000Lossless, JPEGLSLossless, RLELossless])
def test_dicomweb_client_gets_a_lossless_compressed_instance(
    server: RunningServer, target: str
) -> None:
    ds = _ct()
    _store(server, part10(ds))
    back = _client(server).retrieve_instance(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        media_types=(("application/dicom", target),),
    )
    assert back.file_meta.TransferSyntaxUID == target
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(back.pixel_array, ds.pixel_array)


def test_eight_bit_instance_converts_to_jpeg_baseline(server: RunningServer) -> None:
    ds = make_ct(rows=64, columns=64)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    gradient = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8) * 2
    ds.PixelData = gradient.tobytes()
    _store(server, part10(ds))
    back = _client(server).retrieve_instance(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        media_types=(("application/dicom", JPEGBaseline8Bit),),
    )
    assert back.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert back.LossyImageCompression == "01"
    difference = np.abs(back.pixel_array.astype(int) - gradient.astype(int))
    assert difference.mean() < 2


def test_sixteen_bit_instance_cannot_become_jpeg_baseline(
    server: RunningServer,
) -> None:
    ds = _ct()
    _store(server, part10(ds))
    accept = f"{MULTIPART_DICOM}; transfer-syntax={JPEGBaseline8Bit}"
    response = httpx.get(_url(server, ds), headers={"Accept": accept})
    assert response.status_code == 406
    assert JPEG2000Lossless in response.json()["error"]


def test_series_of_mixed_syntaxes_comes_out_in_one(server: RunningServer) -> None:
    study, series = new_uid(), new_uid()
    first = _ct(study=study, series=series, InstanceNumber=1)
    second = _ct(study=study, series=series, InstanceNumber=2)
    compressed = _ct(study=study, series=series, InstanceNumber=3)
    part10(compressed)  # gives it the file meta that compress() reads
    compressed.compress(JPEGLSLossless, generate_instance_uid=False)
    _store(
        server,
        part10(first, ImplicitVRLittleEndian),
        part10(second),
        part10(compressed, JPEGLSLossless),
    )
    found = _client(server).retrieve_series(
        study, series, media_types=(("application/dicom", ExplicitVRLittleEndian),)
    )
    assert len(found) == 3
    for ds in found:
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(ds.pixel_array, first.pixel_array)


def test_compressed_frames_come_out_native_by_default(server: RunningServer) -> None:
    original = pydicom.dcmread(JPEG_FILE)
    _store(server, JPEG_FILE.read_bytes())
    frames = _client(server).retrieve_instance_frames(
        original.StudyInstanceUID,
        original.SeriesInstanceUID,
        original.SOPInstanceUID,
        frame_numbers=[1, 30],
        media_types=(("application/octet-stream", ExplicitVRLittleEndian),),
    )
    pixels = original.pixel_array
    assert frames == [pixels[0].tobytes(), pixels[29].tobytes()]


def test_native_frames_convert_to_jpeg_2000(server: RunningServer) -> None:
    ds = _ct(frames=1)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    _store(server, part10(ds))
    response = httpx.get(
        _url(server, ds) + "/frames/2",
        headers={"Accept": 'multipart/related; type="image/jp2"'},
    )
    assert response.status_code == 200, response.text
    [(content_type, body)] = _parts(response)
    assert content_type == f"image/jp2; transfer-syntax={JPEG2000Lossless}"
    assert body.startswith(b"\xff\x4f\xff\x51")  # a J2K codestream (ISO 15444-1 A.4)
    as_dataset = pydicom.dcmread(io.BytesIO(part10(ds)))
    as_dataset.PixelData = pydicom.encaps.encapsulate([body])
    as_dataset.NumberOfFrames = 1
    as_dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
    assert np.array_equal(as_dataset.pixel_array, ds.pixel_array[1])


def test_stored_jpeg_frames_come_as_image_jpeg(server: RunningServer) -> None:
    original = pydicom.dcmread(JPEG_FILE)
    _store(server, JPEG_FILE.read_bytes())
    response = httpx.get(
        _url(server, original) + "/frames/2",
        headers={"Accept": 'multipart/related; type="image/jpeg"'},
    )
    assert response.status_code == 200
    [(content_type, body)] = _parts(response)
    assert content_type == f"image/jpeg; transfer-syntax={JPEGBaseline8Bit}"
    expected = list(generate_frames(original.PixelData, number_of_frames=30))[1]
    assert body == expected


def test_frames_in_a_syntax_nobody_can_write_answer_406(server: RunningServer) -> None:
    ds = _ct()
    _store(server, part10(ds))
    accept = 'multipart/related; type="image/jpx"'
    response = httpx.get(_url(server, ds) + "/frames/1", headers={"Accept": accept})
    assert response.status_code == 406
