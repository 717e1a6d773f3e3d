"""Every corpus file through a real server: STOW, QIDO, WADO and metadata.

Runs over ../shared/testdata when it is there, and always over tests/data.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pydicom.config
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import CORPUS, TESTS_DATA, RunningServer
from tests.dicomweb.stow_helpers import post_instances

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]


def _corpus() -> list[Path]:
    files = [p for p in TESTS_DATA.rglob("*") if p.is_file() and p.name != "NOTICE"]
    if CORPUS.is_dir():
        files += [p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md"]
    return sorted(files)


def _expect_stored(path: Path) -> bool:
    """A file the archive must accept: Part 10 with the four identifying UIDs."""
    if "broken" in path.parts and path.name != "ct_bad_file_meta.dcm":
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - unreadable means "must be refused"
        return False
    needed = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    return all(ds.get(keyword) for keyword in needed)


@pytest.fixture(autouse=True)
def lenient_pydicom() -> Iterator[None]:
    """Read corpus files without VR warnings: some break the rules on purpose."""
    before = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    yield
    pydicom.config.settings.reading_validation_mode = before


_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})


def _comparable(document: dict[str, Any], skip_text: bool) -> dict[str, Any]:
    """Drop bulk data, and spell empty values one way (PS3.18 F.2.5).

    pydicom writes an empty value inside a list as "" and an empty sequence as
    [], where PS3.18 F.2.5 asks for null and no Value; group lengths are left
    out of the JSON model (PS3.18 F.2.1); ``skip_text`` drops
    text elements whose pydicom decoding is known to be wrong (ISO 2022 IR 58,
    undeclared non-ASCII bytes): tests/archive/test_charset.py covers those.
    """
    cleaned: dict[str, Any] = {}
    for tag, element in document.items():
        if "BulkDataURI" in element or "InlineBinary" in element:
            continue
        if tag.endswith("0000"):
            continue  # group lengths are not part of the JSON model
        if skip_text and element.get("vr") in _TEXT_VRS:
            continue
        values = element.get("Value")
        if element.get("vr") == "SQ" and values is not None:
            items = [_comparable(item, skip_text) for item in values]
            element = dict(element, Value=items) if items else {"vr": "SQ"}
        elif isinstance(values, list) and len(values) > 1:
            element = dict(element, Value=[None if v == "" else v for v in values])
        cleaned[tag] = element
    return cleaned


def _pydicom_json(ds: pydicom.Dataset) -> dict[str, Any]:
    """pydicom's JSON of each top-level element; those it cannot write are left out."""
    document: dict[str, Any] = {}
    for element in ds:
        single = pydicom.Dataset()
        single.add(element)
        try:
            document.update(
                single.to_json_dict(bulk_data_element_handler=lambda e: "bulk")
            )
        except ValueError:
            continue  # e.g. IS '1A': pydicom raises where the archive keeps text
    return document


def _pydicom_decodes_text_wrongly(path: Path) -> bool:
    raw = pydicom.dcmread(path, stop_before_pixels=True)
    charsets = raw.get("SpecificCharacterSet")
    if charsets is None:
        return True
    terms = [charsets] if isinstance(charsets, str) else list(charsets)
    return "ISO 2022 IR 58" in terms


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_corpus_file_round_trips_or_is_refused_cleanly(
    replacing_server: RunningServer, path: Path
) -> None:
    data = path.read_bytes()
    response = post_instances(replacing_server.dicomweb_url, [data])
    body = response.json()
    if not _expect_stored(path):
        assert response.status_code == 409, body
        failed = body["00081198"]["Value"]
        assert len(failed) == 1 and failed[0]["00081197"]["Value"][0] > 0
        return
    assert response.status_code == 200, (body, response.headers.get("warning"))
    with warnings.catch_warnings():
        # Several corpus files break VR rules on purpose; reading them warns.
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        expected = _pydicom_json(ds)
        skip_text = _pydicom_decodes_text_wrongly(path)
        study, series, sop = (
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
        )
    client = DICOMwebClient(replacing_server.dicomweb_url, permissive_uid=True)

    found = client.search_for_instances(
        study_instance_uid=study, search_filters={"SOPInstanceUID": sop}
    )
    assert [f["00080018"]["Value"][0] for f in found] == [sop]
    studies = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert len(studies) == 1
    if ds.get("PatientID"):
        assert studies[0]["00100020"]["Value"] == [ds.PatientID]

    retrieved = httpx.get(
        f"{replacing_server.dicomweb_url}/studies/{study}/series/{series}"
        f"/instances/{sop}",
        # PS3.18 8.7.3.5: without transfer-syntax=* the default is Explicit VR LE.
        headers={"Accept": "application/dicom; transfer-syntax=*"},
        timeout=30,
    )
    assert retrieved.status_code == 200
    assert retrieved.content == data

    metadata = client.retrieve_instance_metadata(study, series, sop)
    ours, theirs = _comparable(metadata, skip_text), _comparable(expected, skip_text)
    # pydicom cannot write values such as IS '1A' and leaves them out; the
    # archive keeps them, as strings.
    for tag in set(ours) - set(theirs):
        assert ours[tag]["vr"] in ("IS", "DS"), tag
        assert all(isinstance(v, str) for v in ours[tag]["Value"]), ours[tag]
        del ours[tag]
    assert ours == theirs


def _clear_markers(path: Path) -> list[bytes]:
    """Byte strings that must never appear in a sealed object of this file."""
    markers = [b"DICM"]
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    raw = ds.get_item("PatientName") if "PatientName" in ds else None
    if raw is not None and raw.value and len(raw.value.strip(b" \x00")) >= 4:
        markers.append(raw.value.strip(b" \x00"))
    return markers


def test_no_object_in_the_store_holds_readable_dicom_or_patient_names(
    replacing_server: RunningServer,
) -> None:
    markers: set[bytes] = set()
    expected: set[str] = set()
    for path in _corpus():
        post_instances(replacing_server.dicomweb_url, [path.read_bytes()])
        markers.update(_clear_markers(path))
        if _expect_stored(path):
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            expected.add(str(ds.SOPInstanceUID))
    objects = sorted((replacing_server.data_dir / "objects").rglob("*"))
    sealed = [p for p in objects if p.is_file()]
    # One object per stored instance (the policy replaces), every one looked at.
    assert expected
    assert len(sealed) >= len(expected)
    for path in sealed:
        content = path.read_bytes()
        leaked = [marker for marker in markers if marker in content]
        assert leaked == [], f"{path.name} holds {leaked!r} in clear"
