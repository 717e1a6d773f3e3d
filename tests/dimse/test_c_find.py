"""C-FIND SCP (PS3.4 C.4.1): DCMTK's findscu at every level of both models."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pydicom
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from archive.query import Query
from archive.service import Archive, SearchResult
from dimse._bridge import LoopBridge
from dimse._contexts import PATIENT_ROOT_FIND, STUDY_ROOT_FIND
from dimse.c_find import FindHandler
from tests.conftest import RunningServer
from tests.dimse.helpers import (
    associate,
    contexts_for,
    dcmtk,
    qido,
    run_tool,
    store_datasets,
    with_meta,
)
from tests.factory import UID_ROOT, make_ct

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("dcmtk_tools")]


@dataclass(frozen=True)
class Stored:
    """What the module stored, to query for."""

    patient_id: str
    chinese_patient_id: str
    studies: tuple[str, str]
    series: tuple[str, str]
    instances: tuple[str, ...]
    chinese_studies: tuple[str, str]


def _uid() -> str:
    return str(generate_uid(prefix=UID_ROOT))


@pytest.fixture(scope="module")
def stored(server: RunningServer) -> Stored:
    """Two studies of one patient, two series, three images; two Chinese names."""
    token = secrets.token_hex(4).upper()
    patient = f"FIND-{token}"
    studies, series = (_uid(), _uid()), (_uid(), _uid())
    datasets = []
    for number, (sop, study, one_series, modality) in enumerate(
        [
            (_uid(), studies[0], series[0], "CT"),
            (_uid(), studies[0], series[0], "CT"),
            (_uid(), studies[0], series[1], "SR"),
            (_uid(), studies[1], _uid(), "CT"),
        ],
        start=1,
    ):
        datasets.append(
            make_ct(
                sop=sop,
                study=study,
                series=one_series,
                PatientID=patient,
                PatientName=f"Find^Patient{token}",
                StudyDate="20200115" if study == studies[0] else "20210610",
                Modality=modality,
                InstanceNumber=number,
            )
        )
    chinese = f"CN-{token}"
    chinese_studies = (_uid(), _uid())
    for study, charset in zip(chinese_studies, ("GB18030", "ISO_IR 192")):
        ds = make_ct(study=study, PatientID=chinese)
        ds.SpecificCharacterSet = charset
        ds.PatientName = "Wang^XiaoDong=王^小东="
        datasets.append(ds)
    sent = [with_meta(ds, ExplicitVRLittleEndian) for ds in datasets]
    assert store_datasets(server, sent) == [0x0000] * len(sent)
    return Stored(
        patient,
        chinese,
        studies,
        series,
        tuple(str(ds.SOPInstanceUID) for ds in datasets[:3]),
        chinese_studies,
    )


def findscu(
    server: RunningServer,
    model: str,
    query: Dataset,
    folder: Path,
    extra: tuple[str, ...] = (),
) -> list[Dataset]:
    """Run findscu with ``query`` (a data set) and return the responses."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = (
        PATIENT_ROOT_FIND if model == "-P" else STUDY_ROOT_FIND
    )
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    query.file_meta = meta
    path = folder / "query.dcm"
    query.save_as(path, enforce_file_format=True)
    out = folder / "responses"
    out.mkdir()
    run_tool(
        [
            dcmtk("findscu"), model, "-X", "-od", str(out), *extra,
            "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port), str(path),
        ]
    )  # fmt: skip
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def _query(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_patient_root_at_every_level(
    server: RunningServer, stored: Stored, tmp_path: Path
) -> None:
    patients = findscu(
        server,
        "-P",
        _query(
            "PATIENT",
            PatientID=stored.patient_id,
            PatientName="",
            NumberOfPatientRelatedStudies="",
        ),
        tmp_path / "patient",
    )
    assert [(p.PatientID, p.NumberOfPatientRelatedStudies) for p in patients] == [
        (stored.patient_id, 2)
    ]
    studies = findscu(
        server,
        "-P",
        _query("STUDY", PatientID=stored.patient_id, StudyInstanceUID=""),
        tmp_path / "study",
    )
    assert {s.StudyInstanceUID for s in studies} == set(stored.studies)
    series = findscu(
        server,
        "-P",
        _query(
            "SERIES",
            PatientID=stored.patient_id,
            StudyInstanceUID=stored.studies[0],
            SeriesInstanceUID="",
            Modality="",
        ),
        tmp_path / "series",
    )
    assert {(s.SeriesInstanceUID, s.Modality) for s in series} == {
        (stored.series[0], "CT"),
        (stored.series[1], "SR"),
    }
    images = findscu(
        server,
        "-P",
        _query(
            "IMAGE",
            PatientID=stored.patient_id,
            StudyInstanceUID=stored.studies[0],
            SeriesInstanceUID=stored.series[0],
            SOPInstanceUID="",
            InstanceNumber="",
        ),
        tmp_path / "image",
    )
    assert sorted((i.InstanceNumber, i.SOPInstanceUID) for i in images) == [
        (1, stored.instances[0]),
        (2, stored.instances[1]),
    ]


def test_study_root_at_every_level(
    server: RunningServer, stored: Stored, tmp_path: Path
) -> None:
    studies = findscu(
        server,
        "-S",
        _query(
            "STUDY",
            PatientID=stored.patient_id,
            StudyInstanceUID="",
            ModalitiesInStudy="",
            NumberOfStudyRelatedInstances="",
        ),
        tmp_path / "study",
    )
    by_uid = {s.StudyInstanceUID: s for s in studies}
    assert set(by_uid) == set(stored.studies)
    first = by_uid[stored.studies[0]]
    assert list(first.ModalitiesInStudy) == ["CT", "SR"]
    assert first.NumberOfStudyRelatedInstances == 3
    series = findscu(
        server,
        "-S",
        _query(
            "SERIES",
            StudyInstanceUID=stored.studies[0],
            SeriesInstanceUID="",
            NumberOfSeriesRelatedInstances="",
        ),
        tmp_path / "series",
    )
    assert {
        (s.SeriesInstanceUID, s.NumberOfSeriesRelatedInstances) for s in series
    } == {
        (stored.series[0], 2),
        (stored.series[1], 1),
    }
    images = findscu(
        server,
        "-S",
        _query(
            "IMAGE",
            StudyInstanceUID=stored.studies[0],
            SeriesInstanceUID=stored.series[1],
            SOPInstanceUID="",
        ),
        tmp_path / "image",
    )
    assert [i.SOPInstanceUID for i in images] == [stored.instances[2]]


def test_uid_list_with_backslash_matches_each_study(
    server: RunningServer, stored: Stored, tmp_path: Path
) -> None:
    found = findscu(
        server,
        "-S",
        _query("STUDY", StudyInstanceUID=list(stored.studies)),
        tmp_path,
    )
    assert {s.StudyInstanceUID for s in found} == set(stored.studies)


def test_wildcard_matching_on_patient_id_and_name(
    server: RunningServer, stored: Stored, tmp_path: Path
) -> None:
    token = stored.patient_id.removeprefix("FIND-")
    by_id = findscu(
        server,
        "-S",
        _query("STUDY", PatientID=f"FIND-{token[:4]}*", StudyInstanceUID=""),
        tmp_path / "id",
    )
    assert {s.StudyInstanceUID for s in by_id} == set(stored.studies)
    by_name = findscu(
        server,
        "-S",
        _query(
            "STUDY",
            PatientName=f"find^patient{token[:3].lower()}?{token[4:].lower()}",
            StudyInstanceUID="",
        ),
        tmp_path / "name",
    )
    assert {s.StudyInstanceUID for s in by_name} == set(stored.studies)


def test_date_range_matches_only_dates_inside(
    server: RunningServer, stored: Stored, tmp_path: Path
) -> None:
    found = findscu(
        server,
        "-S",
        _query(
            "STUDY",
            PatientID=stored.patient_id,
            StudyDate="20200101-20201231",
            StudyInstanceUID="",
        ),
        tmp_path,
    )
    assert [(s.StudyInstanceUID, s.StudyDate) for s in found] == [
        (stored.studies[0], "20200115")
    ]


@pytest.mark.parametrize("charset", ["GB18030", "ISO_IR 192"])
def test_chinese_name_is_found_with_a_prefix_wildcard_in_either_charset(
    server: RunningServer, stored: Stored, tmp_path: Path, charset: str
) -> None:
    query = _query("STUDY", PatientID=stored.chinese_patient_id, StudyInstanceUID="")
    query.SpecificCharacterSet = charset
    query.PatientName = "王*"
    found = findscu(server, "-S", query, tmp_path)
    assert {s.StudyInstanceUID for s in found} == set(stored.chinese_studies)
    for response in found:
        assert response.SpecificCharacterSet == "ISO_IR 192"
        assert response.PatientName.ideographic == "王^小东"


def test_chinese_name_is_found_over_qido_with_a_prefix_wildcard(
    server: RunningServer, stored: Stored
) -> None:
    found = qido(
        server,
        "studies",
        {"PatientName": "王*", "PatientID": stored.chinese_patient_id},
    )
    assert {m["0020000D"]["Value"][0] for m in found} == set(stored.chinese_studies)


def test_response_holds_exactly_the_requested_keys(
    server: RunningServer, stored: Stored, tmp_path: Path
) -> None:
    query = _query(
        "STUDY",
        StudyInstanceUID=stored.studies[1],
        StudyDescription="",
        AccessionNumber="",
        PatientBirthDate="",
    )
    (found,) = findscu(server, "-S", query, tmp_path)
    assert {element.keyword for element in found} == {
        "QueryRetrieveLevel",
        "StudyInstanceUID",
        "StudyDescription",
        "AccessionNumber",
        "PatientBirthDate",
    }
    assert found["StudyDescription"].is_empty
    assert found.AccessionNumber == "ACC-1"
    assert found.PatientBirthDate == "19700101"


def test_patient_level_in_study_root_is_refused(server: RunningServer) -> None:
    with associate(
        server, contexts_for([(STUDY_ROOT_FIND, ExplicitVRLittleEndian)])
    ) as assoc:
        responses = list(
            assoc.send_c_find(_query("PATIENT", PatientID="x"), STUDY_ROOT_FIND)
        )
    status, identifier = responses[-1]
    assert status.Status == 0xA900 and identifier is None


class _PagedArchive:
    """An archive stub whose search answers keyset pages and records the calls."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.afters: list[Any] = []

    async def search(self, query: Query) -> SearchResult:
        self.afters.append(query.after)
        assert query.limit is not None
        start = 0 if query.after is None else int(str(query.after[0])) + 1
        end = min(self.total, start + query.limit)
        matches = [
            {"0020000D": {"vr": "UI", "Value": [f"1.2.{n}"]}} for n in range(start, end)
        ]
        return SearchResult(matches, (), [(n,) for n in range(start, end)])


class _ImmediateBridge:
    """Runs each coroutine to completion in the calling thread."""

    def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coroutine)


def test_pending_responses_are_yielded_page_by_page() -> None:
    archive = _PagedArchive(total=5)
    handler = FindHandler(
        cast(Archive, archive), cast(LoopBridge, _ImmediateBridge()), "AE", 2
    )
    identifier = _query("STUDY", StudyInstanceUID="")
    event = SimpleNamespace(
        assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title="CALLER")),
        request=SimpleNamespace(AffectedSOPClassUID=STUDY_ROOT_FIND),
        identifier=identifier,
        is_cancelled=False,
    )
    responses: Iterator[tuple[int, Dataset | None]] = handler(cast(Any, event))
    status, first = next(responses)
    assert status == 0xFF00 and first is not None
    assert first.StudyInstanceUID == "1.2.0"
    assert archive.afters == [None], "the first match went out before page two"
    rest = list(responses)
    assert [ds.StudyInstanceUID for _, ds in rest if ds is not None] == [
        "1.2.1",
        "1.2.2",
        "1.2.3",
        "1.2.4",
    ]
    assert archive.afters == [None, (1,), (3,)]


def test_cancel_stops_the_pending_responses() -> None:
    archive = _PagedArchive(total=5)
    handler = FindHandler(
        cast(Archive, archive), cast(LoopBridge, _ImmediateBridge()), "AE", 2
    )
    event = SimpleNamespace(
        assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title="CALLER")),
        request=SimpleNamespace(AffectedSOPClassUID=STUDY_ROOT_FIND),
        identifier=_query("STUDY", StudyInstanceUID=""),
        is_cancelled=False,
    )
    responses = handler(cast(Any, event))
    next(responses)
    event.is_cancelled = True
    assert list(responses) == [(0xFE00, None)]


async def _loop_batches(total: int, cancel_after: int) -> list[list[int]]:
    """Statuses of each batch the loop's C-FIND sends; cancelled after some."""
    archive = _PagedArchive(total=total)
    handler = FindHandler(
        cast(Archive, archive), cast(LoopBridge, _ImmediateBridge()), "AE", 200
    )
    batches: list[list[int]] = []
    responses = handler.responses(
        "CALLER",
        STUDY_ROOT_FIND,
        lambda: _query("STUDY", StudyInstanceUID=""),
        "1.2.840.10008.1.2.1",
        lambda: len(batches) >= cancel_after,
    )
    async for batch in responses:
        batches.append([status for status, _ in batch])
    return batches


def test_the_loop_sends_batches_and_ends_with_success() -> None:
    batches = asyncio.run(_loop_batches(45, cancel_after=99))
    assert batches == [[0xFF00] * 20, [0xFF00] * 20, [0xFF00] * 5 + [0x0000]]


def test_a_cancel_between_batches_stops_the_loop_find() -> None:
    # A page holds 200 matches; the cancel is seen after the first batch.
    batches = asyncio.run(_loop_batches(150, cancel_after=1))
    assert batches == [[0xFF00] * 20, [0xFE00]]


# PS3.5 K.2: "Zhang^XiaoDong=张^小东=" with each ideographic group in GB2312.
IR58_NAME = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab="


@pytest.fixture(scope="module")
def ir58_patient(server: RunningServer) -> tuple[str, str]:
    """A study whose Patient Name is ISO 2022 IR 58; its Patient ID and study UID."""
    patient = f"IR58-{secrets.token_hex(4).upper()}"
    ds = make_ct(study=_uid(), PatientID=patient)
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 58"]
    ds.PatientName = IR58_NAME
    assert store_datasets(server, [with_meta(ds, ExplicitVRLittleEndian)]) == [0]
    return patient, str(ds.StudyInstanceUID)


def _find(server: RunningServer, query: Dataset) -> list[tuple[int, Dataset | None]]:
    with associate(
        server, contexts_for([(STUDY_ROOT_FIND, ExplicitVRLittleEndian)])
    ) as assoc:
        responses = list(assoc.send_c_find(query, STUDY_ROOT_FIND))
    return [(int(status.Status), identifier) for status, identifier in responses]


@pytest.mark.parametrize(
    "name",
    [IR58_NAME, b"=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab", b"=\x1b$)A\xd5\xc5*"],
    ids=["whole-name", "ideographic-group", "ideographic-wildcard"],
)
def test_iso_2022_ir58_identifier_finds_the_name_stored_in_it(
    server: RunningServer, ir58_patient: tuple[str, str], name: bytes
) -> None:
    patient, study = ir58_patient
    query = _query("STUDY", PatientID=patient, StudyInstanceUID="")
    query.SpecificCharacterSet = ["", "ISO 2022 IR 58"]
    query.PatientName = name
    responses = _find(server, query)
    assert [status for status, _ in responses] == [0xFF00, 0x0000]
    found = responses[0][1]
    assert found is not None and found.StudyInstanceUID == study
    assert found.PatientName.ideographic == "张^小东"


@pytest.mark.parametrize(
    ("charset", "name"),
    [("ISO_IR 192", b"\xff\xfe*"), ("GB18030", b"\x81*"), (None, b"M\xfcller*")],
    ids=["utf-8", "gb18030", "undeclared"],
)
def test_name_the_identifier_charset_cannot_decode_is_refused(
    server: RunningServer, charset: str | None, name: bytes
) -> None:
    query = _query("STUDY", StudyInstanceUID="")
    if charset is not None:
        query.SpecificCharacterSet = charset
    query.PatientName = name
    assert _find(server, query) == [(0xA900, None)]
