"""Batch download as application/zip with a DICOMDIR, resumable with Range."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.conftest import RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(180)

ZIP = {"Accept": "application/zip"}


@pytest.fixture(scope="module")
def study(server: RunningServer) -> Iterator[list[pydicom.Dataset]]:
    """One study: two series, three instances (one with four frames)."""
    study_uid, first, second = new_uid(), new_uid(), new_uid()
    instances = [
        make_ct(study=study_uid, series=first, InstanceNumber=1),
        make_ct(study=study_uid, series=first, InstanceNumber=2, frames=4),
        make_ct(study=study_uid, series=second, SeriesNumber=2, Modality="MR"),
    ]
    response = post_instances(server.dicomweb_url, [part10(ds) for ds in instances])
    assert response.status_code == 200, response.text
    yield instances


def _files(archive: zipfile.ZipFile) -> dict[str, bytes]:
    assert archive.testzip() is None  # every CRC-32 checks out
    return {name: archive.read(name) for name in archive.namelist()}


def _check_dicomdir(
    files: dict[str, bytes], expected: list[pydicom.Dataset], folder: Path
) -> None:
    """Unpack the ZIP and follow the DICOMDIR: every instance listed, intact."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    dicomdir = pydicom.dcmread(folder / "DICOMDIR")
    listed = {
        record.ReferencedSOPInstanceUIDInFile: folder.joinpath(*record.ReferencedFileID)
        for record in dicomdir.DirectoryRecordSequence
        if "ReferencedFileID" in record
    }
    assert {r.DirectoryRecordType for r in dicomdir.DirectoryRecordSequence} == {
        "PATIENT",
        "STUDY",
        "SERIES",
        "IMAGE",
    }
    assert set(listed) == {ds.SOPInstanceUID for ds in expected}
    for ds in expected:
        assert listed[ds.SOPInstanceUID].read_bytes() == part10(ds)


def test_study_downloads_as_zip_with_dicomdir(
    server: RunningServer, study: list[pydicom.Dataset], tmp_path: Path
) -> None:
    url = f"{server.dicomweb_url}/studies/{study[0].StudyInstanceUID}"
    response = httpx.get(url, headers=ZIP, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert int(response.headers["content-length"]) == len(response.content)
    files = _files(zipfile.ZipFile(io.BytesIO(response.content)))
    assert len(files) == 4 and next(iter(files)) == "DICOMDIR"
    _check_dicomdir(files, study, tmp_path)


def test_series_downloads_alone(
    server: RunningServer, study: list[pydicom.Dataset], tmp_path: Path
) -> None:
    ds = study[2]
    url = (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}"
    )
    files = _files(zipfile.ZipFile(io.BytesIO(httpx.get(url, headers=ZIP).content)))
    assert len(files) == 2
    _check_dicomdir(files, [ds], tmp_path)


def test_the_zip_is_the_same_each_time_and_resumes_with_range(
    server: RunningServer, study: list[pydicom.Dataset], tmp_path: Path
) -> None:
    url = f"{server.dicomweb_url}/studies/{study[0].StudyInstanceUID}"
    whole = httpx.get(url, headers=ZIP)
    again = httpx.get(url, headers=ZIP)
    assert whole.content == again.content
    assert whole.headers["etag"] == again.headers["etag"]
    etag, size = whole.headers["etag"], len(whole.content)
    # A download cut after 1000 bytes goes on from there.
    head = httpx.get(url, headers={**ZIP, "Range": "bytes=0-999"})
    assert head.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-999/{size}"
    rest = httpx.get(url, headers={**ZIP, "Range": "bytes=1000-", "If-Range": etag})
    assert rest.status_code == 206
    assert head.content + rest.content == whole.content
    middle = httpx.get(url, headers={**ZIP, "Range": f"bytes=2000-{size - 30}"})
    assert middle.content == whole.content[2000 : size - 29]
    outside = httpx.get(url, headers={**ZIP, "Range": f"bytes={size}-"})
    assert outside.status_code == 416


def test_a_changed_study_restarts_the_download(
    server: RunningServer, tmp_path: Path
) -> None:
    study_uid = new_uid()
    first = make_ct(study=study_uid)
    assert post_instances(server.dicomweb_url, [part10(first)]).status_code == 200
    url = f"{server.dicomweb_url}/studies/{study_uid}"
    etag = httpx.get(url, headers=ZIP).headers["etag"]
    second = make_ct(study=study_uid, InstanceNumber=2)
    assert post_instances(server.dicomweb_url, [part10(second)]).status_code == 200
    resumed = httpx.get(url, headers={**ZIP, "Range": "bytes=100-", "If-Range": etag})
    assert resumed.status_code == 200 and resumed.headers["etag"] != etag
    files = _files(zipfile.ZipFile(io.BytesIO(resumed.content)))
    _check_dicomdir(files, [first, second], tmp_path)


def test_a_list_of_studies_downloads_as_one_zip(
    server: RunningServer, study: list[pydicom.Dataset], tmp_path: Path
) -> None:
    other = make_ct(PatientID="OTHER-2", PatientName="Other^Patient")
    assert post_instances(server.dicomweb_url, [part10(other)]).status_code == 200
    response = httpx.get(
        f"{server.dicomweb_url}/batch",
        params=[
            ("study", study[0].StudyInstanceUID),
            ("study", other.StudyInstanceUID),
        ],
        headers=ZIP,
    )
    assert response.status_code == 200
    files = _files(zipfile.ZipFile(io.BytesIO(response.content)))
    _check_dicomdir(files, [*study, other], tmp_path)


@pytest.mark.parametrize(
    ("query", "status"), [("", 400), ("?study=1.2.x", 400), ("?study=1.2.3", 404)]
)
def test_bad_batch_requests_are_refused(
    server: RunningServer, query: str, status: int
) -> None:
    response = httpx.get(f"{server.dicomweb_url}/batch{query}", headers=ZIP)
    assert response.status_code == status
