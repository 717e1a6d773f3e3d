"""C-MOVE SCP (PS3.4 C.4.2): destinations by AE title, counts, final status."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from dimse._contexts import PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE
from tests.conftest import RunningServer, free_port
from tests.dimse.helpers import (
    ScriptedStorage,
    associate,
    contexts_for,
    dataset_bytes,
    dcmtk,
    put_peer,
    run_tool,
    store_datasets,
    wado_instance,
    wait_for_port,
    with_meta,
)
from tests.factory import UID_ROOT, make_ct

pytestmark = pytest.mark.timeout(180)


@dataclass(frozen=True)
class Study:
    """A stored study: two CT images and one MR image."""

    study: str
    ct_series: str
    mr_series: str
    ct: tuple[str, str]
    mr: str


def _uid() -> str:
    return str(generate_uid(prefix=UID_ROOT))


@pytest.fixture(scope="module")
def study(server: RunningServer) -> Study:
    """Store the study the C-MOVE tests retrieve."""
    study, ct_series, mr_series = _uid(), _uid(), _uid()
    ct = (_uid(), _uid())
    mr = _uid()
    datasets = [
        make_ct(study=study, series=ct_series, sop=ct[0], InstanceNumber=1),
        make_ct(study=study, series=ct_series, sop=ct[1], InstanceNumber=2),
        make_ct(study=study, series=mr_series, sop=mr, Modality="MR"),
    ]
    datasets[2].SOPClassUID = MRImageStorage
    sent = [with_meta(ds, ExplicitVRLittleEndian) for ds in datasets]
    assert store_datasets(server, sent) == [0x0000] * 3
    return Study(study, ct_series, mr_series, ct, mr)


def move(
    server: RunningServer,
    destination: str,
    level: str,
    model: str = STUDY_ROOT_MOVE,
    **keys: str,
) -> list[tuple[Dataset, Dataset | None]]:
    """C-MOVE with pynetdicom; every (status, identifier) response."""
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    with associate(server, contexts_for([(model, ExplicitVRLittleEndian)])) as assoc:
        return list(assoc.send_c_move(query, destination, model))


@pytest.fixture
def peer(server: RunningServer) -> Iterator[ScriptedStorage]:
    """A scripted storage SCP for CT and MR, registered under a fresh AE title."""
    scripted = ScriptedStorage(
        f"PEER{secrets.token_hex(3).upper()}", [CTImageStorage, MRImageStorage]
    )
    put_peer(server, scripted.ae_title, scripted.port)
    yield scripted
    scripted.close()


@pytest.mark.usefixtures("dcmtk_tools")
def test_movescu_to_storescp_receives_the_study_byte_identical(
    server: RunningServer, study: Study, tmp_path: Path
) -> None:
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    scp = subprocess.Popen(
        [dcmtk("storescp"), "+B", "+xa", "-aet", "MOVESCP", "-od", str(received),
         str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        put_peer(server, "MOVESCP", port)
        done = run_tool(
            [
                dcmtk("movescu"), "-v", "-S", "-aem", "MOVESCP",
                "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={study.study}",
                "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port),
            ]
        )  # fmt: skip
    finally:
        scp.terminate()
        scp.wait(timeout=30)
    assert "Received Final Move Response (Success)" in done.stdout + done.stderr
    files = {
        pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in received.iterdir()
    }
    assert set(files) == {*study.ct, study.mr}
    for sop, series in ((study.ct[0], study.ct_series), (study.mr, study.mr_series)):
        stored = wado_instance(server, study.study, series, sop)
        assert dataset_bytes(files[sop]) == dataset_bytes(stored)


def test_unknown_destination_answers_a801(server: RunningServer, study: Study) -> None:
    responses = move(server, "NOBODY", "STUDY", StudyInstanceUID=study.study)
    assert [int(status.Status) for status, _ in responses] == [0xA801]


def test_move_matching_nothing_succeeds_with_zero_counts_and_no_connection(
    server: RunningServer, peer: ScriptedStorage
) -> None:
    responses = move(server, peer.ae_title, "STUDY", StudyInstanceUID=_uid())
    ((status, _),) = responses
    assert int(status.Status) == 0x0000
    assert status.NumberOfCompletedSuboperations == 0
    assert status.NumberOfFailedSuboperations == 0
    assert peer.connections == 0


def test_move_where_all_succeed_answers_success(
    server: RunningServer, study: Study, peer: ScriptedStorage
) -> None:
    responses = move(server, peer.ae_title, "STUDY", StudyInstanceUID=study.study)
    final, identifier = responses[-1]
    assert int(final.Status) == 0x0000
    assert final.NumberOfCompletedSuboperations == 3
    assert final.NumberOfFailedSuboperations == 0
    assert identifier is None
    assert [int(s.Status) for s, _ in responses[:-1]] == [0xFF00] * 3
    assert len(peer.received) == 3 and peer.connections == 1


def test_move_where_the_destination_refuses_a_sop_class_answers_b000(
    server: RunningServer, study: Study
) -> None:
    ct_only = ScriptedStorage("CTONLY", [CTImageStorage])
    try:
        put_peer(server, "CTONLY", ct_only.port)
        responses = move(server, "CTONLY", "STUDY", StudyInstanceUID=study.study)
    finally:
        ct_only.close()
    final, identifier = responses[-1]
    assert int(final.Status) == 0xB000
    assert final.NumberOfCompletedSuboperations == 2
    assert final.NumberOfFailedSuboperations == 1
    assert identifier is not None
    assert identifier.FailedSOPInstanceUIDList == study.mr


def test_move_where_one_store_fails_lists_that_instance(
    server: RunningServer, study: Study, peer: ScriptedStorage
) -> None:
    peer.status_for[study.ct[1]] = 0xA700
    responses = move(
        server,
        peer.ae_title,
        "SERIES",
        StudyInstanceUID=study.study,
        SeriesInstanceUID=study.ct_series,
    )
    final, identifier = responses[-1]
    assert int(final.Status) == 0xB000
    assert (
        final.NumberOfCompletedSuboperations,
        final.NumberOfFailedSuboperations,
    ) == (
        1,
        1,
    )
    assert identifier is not None and identifier.FailedSOPInstanceUIDList == study.ct[1]


def test_move_where_all_fail_answers_failure_with_every_uid(
    server: RunningServer, study: Study, peer: ScriptedStorage
) -> None:
    peer.default_status = 0xA700
    responses = move(server, peer.ae_title, "STUDY", StudyInstanceUID=study.study)
    final, identifier = responses[-1]
    assert int(final.Status) == 0xA702
    assert final.NumberOfCompletedSuboperations == 0
    assert final.NumberOfFailedSuboperations == 3
    assert identifier is not None
    assert set(identifier.FailedSOPInstanceUIDList) == {*study.ct, study.mr}


def test_move_of_one_image_sends_only_that_image(
    server: RunningServer, study: Study, peer: ScriptedStorage
) -> None:
    responses = move(
        server,
        peer.ae_title,
        "IMAGE",
        StudyInstanceUID=study.study,
        SeriesInstanceUID=study.mr_series,
        SOPInstanceUID=study.mr,
    )
    assert int(responses[-1][0].Status) == 0x0000
    (received,) = peer.received
    assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(received)).SOPInstanceUID == (
        study.mr
    )


def test_move_without_the_level_unique_key_fails_without_a_connection(
    server: RunningServer, study: Study, peer: ScriptedStorage
) -> None:
    responses = move(server, peer.ae_title, "SERIES", StudyInstanceUID=study.study)
    # PS3.4 C.4.2.1.5: Identifier Does Not Match SOP Class.
    assert [int(status.Status) for status, _ in responses] == [0xA900]
    assert peer.connections == 0


@pytest.fixture(scope="module")
def patient_id(server: RunningServer) -> str:
    """The Patient ID of one stored CT image, unique to this module."""
    patient = f"MV{secrets.token_hex(4).upper()}"
    ds = with_meta(make_ct(PatientID=patient), ExplicitVRLittleEndian)
    assert store_datasets(server, [ds]) == [0x0000]
    return patient


# Patient IDs that name no single patient, made from one that exists.
NOT_ONE_PATIENT: dict[str, Callable[[str], str]] = {
    "universal": lambda patient: "*",
    "prefix-wildcard": lambda patient: patient[:6] + "*",
    "question-marks": lambda patient: patient[:-3] + "???",
    "list": lambda patient: f"{patient}\\{patient}X",
}


@pytest.mark.parametrize("pattern", NOT_ONE_PATIENT.values(), ids=NOT_ONE_PATIENT)
def test_move_of_patient_ids_that_do_not_name_one_patient_is_refused(
    server: RunningServer,
    peer: ScriptedStorage,
    patient_id: str,
    pattern: Callable[[str], str],
) -> None:
    responses = move(
        server,
        peer.ae_title,
        "PATIENT",
        PATIENT_ROOT_MOVE,
        PatientID=pattern(patient_id),
    )
    assert [int(status.Status) for status, _ in responses] == [0xA900]
    assert peer.connections == 0 and peer.received == []


def test_move_with_a_list_of_study_uids_above_the_series_level_is_refused(
    server: RunningServer, study: Study, peer: ScriptedStorage
) -> None:
    responses = move(
        server,
        peer.ae_title,
        "SERIES",
        StudyInstanceUID=f"{study.study}\\{_uid()}",
        SeriesInstanceUID=study.ct_series,
    )
    assert [int(status.Status) for status, _ in responses] == [0xA900]
    assert peer.connections == 0


def test_move_to_a_known_destination_nothing_listens_on_fails_every_sub_operation(
    server: RunningServer, study: Study
) -> None:
    put_peer(server, "DOWNPEER", free_port())
    responses = move(server, "DOWNPEER", "STUDY", StudyInstanceUID=study.study)
    ((final, identifier),) = responses
    assert int(final.Status) == 0xA702
    assert final.NumberOfFailedSuboperations == 3
    assert final.NumberOfCompletedSuboperations == 0
    assert identifier is not None
    assert set(identifier.FailedSOPInstanceUIDList) == {*study.ct, study.mr}


def test_move_to_a_destination_accepting_no_context_fails_every_sub_operation(
    server: RunningServer, study: Study
) -> None:
    mr_only = ScriptedStorage("MRONLY", [MRImageStorage])
    try:
        put_peer(server, "MRONLY", mr_only.port)
        responses = move(
            server,
            "MRONLY",
            "SERIES",
            StudyInstanceUID=study.study,
            SeriesInstanceUID=study.ct_series,
        )
    finally:
        mr_only.close()
    ((final, identifier),) = responses
    assert int(final.Status) == 0xA702
    assert final.NumberOfFailedSuboperations == 2
    assert identifier is not None
    assert set(identifier.FailedSOPInstanceUIDList) == set(study.ct)
    assert mr_only.received == []
