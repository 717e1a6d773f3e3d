"""Rendered and thumbnail resources (PS3.18 10.4.1.1.3) against a real server."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from tests.conftest import TESTS_DATA, RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(180)

JPEG_FILE = TESTS_DATA / "multiframe" / "us_multiframe_30frames_jpeg_baseline.dcm"


@pytest.fixture(scope="module")
def study(server: RunningServer) -> Iterator[list[pydicom.Dataset]]:
    """A CT study: two 32x32 slices and a four-frame instance, values 0..1023."""
    study_uid, series = new_uid(), new_uid()
    instances = []
    for number, frames in ((1, 1), (2, 1), (3, 4)):
        ds = make_ct(study=study_uid, series=series, rows=32, columns=32,
                     frames=frames, InstanceNumber=number)  # fmt: skip
        ds.PixelData = (np.arange(frames * 32 * 32) % 1024).astype("<u2").tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        instances.append(ds)
    response = post_instances(server.dicomweb_url, [part10(ds) for ds in instances])
    assert response.status_code == 200, response.text
    yield instances


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _client(server: RunningServer) -> DICOMwebClient:
    return DICOMwebClient(server.dicomweb_url)


def _uids(ds: pydicom.Dataset) -> tuple[str, str, str]:
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_instance_renders_as_jpeg(
    server: RunningServer, study: list[pydicom.Dataset]
) -> None:
    data = _client(server).retrieve_instance_rendered(
        *_uids(study[0]), media_types=("image/jpeg",)
    )
    image = _image(data)
    assert image.format == "JPEG" and image.size == (32, 32)


def test_window_is_applied_exactly_in_png(
    server: RunningServer, study: list[pydicom.Dataset]
) -> None:
    data = _client(server).retrieve_instance_rendered(
        *_uids(study[0]), media_types=("image/png",),
        params={"window": "-824,200,linear_exact"},
    )  # fmt: skip
    shown = np.asarray(_image(data))
    hounsfield = np.arange(32 * 32).reshape(32, 32) % 1024 - 1024
    expected = np.clip((hounsfield - (-824 - 100)) / 200, 0, 1) * 255
    assert np.abs(shown.astype(int) - np.rint(expected).astype(int)).max() <= 1


def test_frame_renders_with_a_viewport(
    server: RunningServer, study: list[pydicom.Dataset]
) -> None:
    data = _client(server).retrieve_instance_frames_rendered(
        *_uids(study[2]), frame_numbers=[3], media_types=("image/png",),
        params={"viewport": "16,16"},
    )  # fmt: skip
    assert _image(data).size == (16, 16)


def test_series_renders_its_middle_image(
    server: RunningServer, study: list[pydicom.Dataset]
) -> None:
    data = _client(server).retrieve_series_rendered(
        study[0].StudyInstanceUID, study[0].SeriesInstanceUID,
        media_types=("image/jpeg",),
    )  # fmt: skip
    assert _image(data).format == "JPEG"


def test_study_renders_every_instance_as_multipart(
    server: RunningServer, study: list[pydicom.Dataset]
) -> None:
    response = httpx.get(
        f"{server.dicomweb_url}/studies/{study[0].StudyInstanceUID}/rendered",
        headers={"Accept": 'multipart/related; type="image/png"'},
    )
    assert response.status_code == 200
    boundary = re.search(r"boundary=([^;]+)", response.headers["content-type"])
    assert boundary is not None
    parts = response.content.split(b"--" + boundary.group(1).encode())[1:-1]
    assert len(parts) == 3
    assert all(b"Content-Type: image/png" in part for part in parts)


@pytest.mark.parametrize("level", ["study", "series", "instance", "frames"])
def test_thumbnails_are_small_images(
    server: RunningServer, study: list[pydicom.Dataset], level: str
) -> None:
    ds = study[2]
    path = {
        "study": f"/studies/{ds.StudyInstanceUID}",
        "series": f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}",
    }.get(level, f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
          f"/instances/{ds.SOPInstanceUID}")  # fmt: skip
    if level == "frames":
        path += "/frames/2"
    response = httpx.get(f"{server.dicomweb_url}{path}/thumbnail")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert max(_image(response.content).size) <= 128


def test_compressed_color_frames_render(server: RunningServer) -> None:
    original = pydicom.dcmread(JPEG_FILE)
    assert (
        post_instances(server.dicomweb_url, [JPEG_FILE.read_bytes()]).status_code == 200
    )
    data = _client(server).retrieve_instance_frames_rendered(
        *_uids(original), frame_numbers=[5], media_types=("image/png",)
    )
    shown = np.asarray(_image(data))
    assert shown.shape == (240, 320, 3)
    assert np.abs(shown.astype(int) - original.pixel_array[4].astype(int)).max() <= 2


def test_bad_parameters_and_media_types_are_refused(
    server: RunningServer, study: list[pydicom.Dataset]
) -> None:
    base = f"{server.dicomweb_url}/studies/{study[0].StudyInstanceUID}/rendered"
    assert httpx.get(base, params={"quality": "0"}).status_code == 400
    assert httpx.get(base, params={"window": "1"}).status_code == 400
    assert httpx.get(base, headers={"Accept": "image/gif"}).status_code == 406


def test_instances_without_pixels_cannot_render(server: RunningServer) -> None:
    ds = make_ct()
    del ds.PixelData
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    assert post_instances(server.dicomweb_url, [part10(ds)]).status_code == 200
    url = (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/rendered"
    )
    assert httpx.get(url).status_code == 406


def test_a_huge_viewport_region_answers_without_allocating_it(
    server: RunningServer, study: list[pydicom.Dataset]
) -> None:
    study_uid, series_uid, sop_uid = _uids(study[0])
    base = f"{server.dicomweb_url}/studies/{study_uid}/series/{series_uid}"
    url = f"{base}/instances/{sop_uid}/rendered"
    huge = httpx.get(
        url,
        params={"viewport": "10,10,0,0,1000000000,1"},
        headers={"Accept": "image/png"},
        timeout=30,
    )
    assert huge.status_code == 200
    off = httpx.get(
        url,
        params={"viewport": "10,10,5000,5000,10,10"},
        headers={"Accept": "image/png"},
        timeout=30,
    )
    assert off.status_code == 400
    assert "outside" in off.text
