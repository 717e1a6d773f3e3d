"""WADO-RS against a real server: instances, ranges, metadata, frames, bulk data."""

from __future__ import annotations

import http.client
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import CORPUS, RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(180)

MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def _get(server: RunningServer, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{server.dicomweb_url}{path}", headers=headers, timeout=60)


def _parts(response: httpx.Response) -> list[bytes]:
    content_type = response.headers["content-type"]
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    assert boundary is not None, content_type
    delimiter = b"--" + boundary.group(1).encode()
    pieces = response.content.split(delimiter)[1:-1]
    return [piece.split(b"\r\n\r\n", 1)[1][:-2] for piece in pieces]


@pytest.fixture(scope="module")
def series(server: RunningServer) -> Iterator[list[pydicom.Dataset]]:
    """One study, one series of three instances (the last with 4 frames)."""
    study, series_uid = new_uid(), new_uid()
    instances = [
        make_ct(study=study, series=series_uid, InstanceNumber=n) for n in (1, 2)
    ] + [make_ct(study=study, series=series_uid, InstanceNumber=3, frames=4)]
    response = post_instances(server.dicomweb_url, [part10(ds) for ds in instances])
    assert response.status_code == 200, response.text
    yield instances


def _path(ds: pydicom.Dataset, level: str = "instance") -> str:
    path = f"/studies/{ds.StudyInstanceUID}"
    if level in ("series", "instance"):
        path += f"/series/{ds.SeriesInstanceUID}"
    if level == "instance":
        path += f"/instances/{ds.SOPInstanceUID}"
    return path


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_retrieve_returns_the_stored_bytes_as_multipart(
    server: RunningServer, series: list[pydicom.Dataset], level: str
) -> None:
    response = _get(server, _path(series[0], level), Accept=MULTIPART_DICOM)
    assert response.status_code == 200
    assert 'type="application/dicom"' in response.headers["content-type"]
    expected = (
        [part10(ds) for ds in series] if level != "instance" else [part10(series[0])]
    )
    assert _parts(response) == expected


def test_boundaries_are_random_per_response(
    server: RunningServer, series: list[pydicom.Dataset]
) -> None:
    first = _get(server, _path(series[0], "series"), Accept=MULTIPART_DICOM)
    second = _get(server, _path(series[0], "series"), Accept=MULTIPART_DICOM)
    assert first.headers["content-type"] != second.headers["content-type"]


def test_dicomweb_client_retrieves_what_was_stored(
    server: RunningServer, series: list[pydicom.Dataset]
) -> None:
    client = DICOMwebClient(server.dicomweb_url)
    found = client.retrieve_series(
        series[0].StudyInstanceUID, series[0].SeriesInstanceUID
    )
    assert sorted(ds.SOPInstanceUID for ds in found) == sorted(
        ds.SOPInstanceUID for ds in series
    )


def test_range_on_a_single_instance_resumes_a_download(
    server: RunningServer, series: list[pydicom.Dataset]
) -> None:
    whole = part10(series[2])
    first = _get(
        server, _path(series[2]), Accept="application/dicom", Range="bytes=0-99"
    )
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-99/{len(whole)}"
    rest = _get(
        server, _path(series[2]), Accept="application/dicom", Range="bytes=100-",
        **{"If-Range": first.headers["etag"]},
    )  # fmt: skip
    assert rest.status_code == 206
    assert first.content + rest.content == whole
    beyond = _get(
        server, _path(series[2]), Accept="application/dicom",
        Range=f"bytes={len(whole)}-",
    )  # fmt: skip
    assert beyond.status_code == 416


def test_metadata_at_each_level_comes_with_resolvable_bulk_data(
    server: RunningServer, series: list[pydicom.Dataset]
) -> None:
    study = _get(server, _path(series[0], "study") + "/metadata").json()
    assert len(study) == 3
    instance = _get(server, _path(series[2]) + "/metadata").json()
    assert len(instance) == 1
    uri = instance[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith("http://127.0.0.1")
    pixels = httpx.get(uri, headers={"Accept": "application/octet-stream"}, timeout=30)
    assert pixels.status_code == 200
    assert pixels.content == series[2].PixelData
    part = httpx.get(uri, headers={"Accept": "application/octet-stream",
                                   "Range": "bytes=10-19"}, timeout=30)  # fmt: skip
    assert part.status_code == 206 and part.content == series[2].PixelData[10:20]


def test_frames_come_out_as_stored(
    server: RunningServer, series: list[pydicom.Dataset]
) -> None:
    ds = series[2]
    frame_bytes = len(ds.PixelData) // 4
    response = _get(server, _path(ds) + "/frames/2,4", Accept=FRAMES_ACCEPT)
    assert response.status_code == 200
    assert _parts(response) == [
        ds.PixelData[frame_bytes : 2 * frame_bytes],
        ds.PixelData[3 * frame_bytes :],
    ]


@pytest.mark.parametrize(
    ("frames", "status"), [("5", 404), ("0", 400), ("abc", 400), ("1,,2", 400)]
)
def test_bad_frame_numbers_are_client_errors(
    server: RunningServer, series: list[pydicom.Dataset], frames: str, status: int
) -> None:
    response = _get(
        server, _path(series[2]) + f"/frames/{frames}", Accept=FRAMES_ACCEPT
    )
    assert response.status_code == status


def test_unknown_uids_answer_404(server: RunningServer) -> None:
    assert (
        _get(server, f"/studies/{new_uid()}", Accept=MULTIPART_DICOM).status_code == 404
    )
    assert _get(server, f"/studies/{new_uid()}/metadata").status_code == 404


@pytest.mark.parametrize(
    "path", ["/studies/..%2f..%2fetc", "/studies/1.2%00/metadata",
             "/studies/1.2/../../x", "/studies/1.2/series/..%2F/instances/1",
             "/studies/1.2%2f3",
             "/studies/1.2/series/3.4/instances/5.6%2F7/frames/1",
             "/studies/1.2%5c3/metadata"],
)  # fmt: skip
def test_hostile_uids_in_the_path_answer_400(server: RunningServer, path: str) -> None:
    # http.client sends the path as written; httpx would remove the dot segments.
    host, port = server.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", f"/dicom-web{path}")
        response = connection.getresponse()
        assert response.status == 400, response.read()
    finally:
        connection.close()


def test_unacceptable_transfer_syntax_answers_406(
    server: RunningServer, series: list[pydicom.Dataset]
) -> None:
    accept = MULTIPART_DICOM + "; transfer-syntax=1.2.840.10008.1.2.4.50"
    assert _get(server, _path(series[0]), Accept=accept).status_code == 406


def test_series_metadata_of_1000_instances_comes_from_the_index(
    server: RunningServer,
) -> None:
    study, series_uid = new_uid(), new_uid()
    instances = [make_ct(study=study, series=series_uid, InstanceNumber=n)
                 for n in range(1000)]  # fmt: skip
    response = post_instances(server.dicomweb_url, [part10(ds) for ds in instances])
    assert response.status_code == 200
    # With every object gone from the store, the index alone must answer.
    objects = server.data_dir / "objects"
    hidden = server.data_dir.parent / "objects-hidden"
    shutil.move(objects, hidden)
    try:
        metadata = _get(server, f"/studies/{study}/series/{series_uid}/metadata")
    finally:
        shutil.move(hidden, objects)
    assert metadata.status_code == 200
    assert len(metadata.json()) == 1000


def _compressed_corpus_file() -> Path | None:
    path = CORPUS / "multiframe" / "us_multiframe_30frames_jpeg_baseline.dcm"
    return path if path.exists() else None


def test_compressed_frames_and_pixel_bulk_data_resolve(server: RunningServer) -> None:
    path = _compressed_corpus_file()
    if path is None:
        pytest.skip("../shared/testdata is not here")
    data = path.read_bytes()
    ds = pydicom.dcmread(path)
    assert post_instances(server.dicomweb_url, [data]).status_code == 200
    accept = ('multipart/related; type="application/octet-stream"; '
              f"transfer-syntax={ds.file_meta.TransferSyntaxUID}")  # fmt: skip
    response = _get(server, _path(ds) + "/frames/1,30", Accept=accept)
    assert response.status_code == 200
    expected = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=30))
    assert _parts(response) == [expected[0], expected[29]]
    metadata = _get(server, _path(ds) + "/metadata").json()[0]
    bulk = httpx.get(metadata["7FE00010"]["BulkDataURI"],
                     headers={"Accept": FRAMES_ACCEPT}, timeout=30)  # fmt: skip
    assert bulk.status_code == 200
