"""Bulk data URIs (PS3.18 10.4.1.1.5): nested paths, compressed pixels, ranges.

httpx, not dicomweb-client: the latter sends a Host header without the port,
so the absolute BulkDataURIs it is given point at port 80.
"""

from __future__ import annotations

import re

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.conftest import TESTS_DATA, RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, part10

pytestmark = pytest.mark.timeout(120)

JPEG_FILE = TESTS_DATA / "multiframe" / "us_multiframe_30frames_jpeg_baseline.dcm"
ICON = "00880200"
PIXEL_DATA = "7FE00010"
OCTETS = {"Accept": "application/octet-stream"}
MULTIPART = {"Accept": 'multipart/related; type="application/octet-stream"'}


def _metadata(server: RunningServer, ds: pydicom.Dataset) -> dict[str, object]:
    url = (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/metadata"
    )
    [document] = httpx.get(url).json()
    assert isinstance(document, dict)
    return document


def _only_part(response: httpx.Response) -> tuple[bytes, bytes]:
    boundary = re.search(r"boundary=([^;]+)", response.headers["content-type"])
    assert boundary is not None
    [part] = response.content.split(b"--" + boundary.group(1).encode())[1:-1]
    head, body = part.split(b"\r\n\r\n", 1)
    return head, body[:-2]


def test_nested_bulk_data_resolves_with_byte_ranges(server: RunningServer) -> None:
    ds = make_ct()
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 64, 64, 1
    icon.BitsAllocated, icon.BitsStored, icon.HighBit = 8, 8, 7
    icon.PhotometricInterpretation, icon.PixelRepresentation = "MONOCHROME2", 0
    icon.PixelData = bytes(range(256)) * 16
    ds.IconImageSequence = Sequence([icon])
    assert post_instances(server.dicomweb_url, [part10(ds)]).status_code == 200
    item = _metadata(server, ds)[ICON]["Value"][0]  # type: ignore[index]
    uri = item[PIXEL_DATA]["BulkDataURI"]
    assert uri.endswith(f"/bulk/{ICON}/0/{PIXEL_DATA}")
    assert httpx.get(uri, headers=OCTETS).content == icon.PixelData
    ranged = httpx.get(uri, headers={**OCTETS, "Range": "bytes=100-355"})
    assert ranged.status_code == 206 and ranged.content == icon.PixelData[100:356]
    head, body = _only_part(
        httpx.get(uri, headers={**MULTIPART, "Range": "bytes=4000-"})
    )
    assert body == icon.PixelData[4000:]
    assert b"Content-Range: bytes 4000-4095/4096" in head
    for accept in (OCTETS, MULTIPART):
        beyond = httpx.get(uri, headers={**accept, "Range": "bytes=999999-"})
        # RFC 9110 15.5.17: the length, so that the client can ask again.
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == "bytes */4096"


def test_compressed_pixel_data_resolves_whole_and_in_ranges(
    server: RunningServer,
) -> None:
    original = pydicom.dcmread(JPEG_FILE)
    assert (
        post_instances(server.dicomweb_url, [JPEG_FILE.read_bytes()]).status_code == 200
    )
    uri = _metadata(server, original)[PIXEL_DATA]["BulkDataURI"]  # type: ignore[index]
    whole = httpx.get(uri, headers=OCTETS)
    assert whole.content == original.PixelData
    tail = httpx.get(uri, headers={**OCTETS, "Range": "bytes=-1000"})
    assert tail.status_code == 206 and tail.content == original.PixelData[-1000:]
    _, body = _only_part(httpx.get(uri, headers=MULTIPART))
    assert body == original.PixelData
