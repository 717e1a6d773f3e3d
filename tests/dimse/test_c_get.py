"""C-GET SCP (PS3.4 C.4.3): sub-operations over the caller's association."""

from __future__ import annotations

from collections.abc import Iterable
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
from pynetdicom import build_context, build_role, evt
from pynetdicom.events import Event

from dimse._contexts import PATIENT_ROOT_GET, STUDY_ROOT_GET
from tests.conftest import RunningServer
from tests.dimse.helpers import (
    associate,
    dataset_bytes,
    dcmtk,
    run_tool,
    store_datasets,
    wado_instance,
    with_meta,
)
from tests.factory import UID_ROOT, make_ct

pytestmark = pytest.mark.timeout(180)


@dataclass(frozen=True)
class Study:
    """Two CT images and one MR image in one study."""

    study: str
    ct_series: str
    mr_series: str
    ct: tuple[str, str]
    mr: str


def _uid() -> str:
    return str(generate_uid(prefix=UID_ROOT))


@pytest.fixture(scope="module")
def study(server: RunningServer) -> Study:
    """Store the study the C-GET tests retrieve."""
    study, ct_series, mr_series = _uid(), _uid(), _uid()
    ct, mr = (_uid(), _uid()), _uid()
    datasets = [
        make_ct(study=study, series=ct_series, sop=ct[0]),
        make_ct(study=study, series=ct_series, sop=ct[1]),
        make_ct(study=study, series=mr_series, sop=mr, Modality="MR"),
    ]
    datasets[2].SOPClassUID = MRImageStorage
    sent = [with_meta(ds, ExplicitVRLittleEndian) for ds in datasets]
    assert store_datasets(server, sent) == [0x0000] * 3
    return Study(study, ct_series, mr_series, ct, mr)


@dataclass
class Receiver:
    """The caller's storage SCP role: records data sets, answers set statuses."""

    status_for: dict[str, int]
    default_status: int = 0x0000

    def __post_init__(self) -> None:
        self.received: list[bytes] = []

    def __call__(self, event: Event) -> int:
        self.received.append(event.encoded_dataset())
        uid = str(getattr(event.request, "AffectedSOPInstanceUID", ""))
        return self.status_for.get(uid, self.default_status)


def get(
    server: RunningServer,
    receiver: Receiver,
    storage: Iterable[str],
    level: str,
    model: str = STUDY_ROOT_GET,
    **keys: str,
) -> list[tuple[Dataset, Dataset | None]]:
    """C-GET with pynetdicom, taking the SCP role for the given storage classes."""
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    storage = list(storage)
    contexts = [build_context(model, ExplicitVRLittleEndian)]
    contexts += [build_context(sop, ExplicitVRLittleEndian) for sop in storage]
    roles = [build_role(sop, scp_role=True) for sop in storage]
    with associate(
        server, contexts, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, receiver)]
    ) as assoc:
        return list(assoc.send_c_get(query, model))


@pytest.mark.usefixtures("dcmtk_tools")
def test_getscu_receives_the_study_byte_identical(
    server: RunningServer, study: Study, tmp_path: Path
) -> None:
    done = run_tool(
        [
            dcmtk("getscu"), "-v", "-S", "+B", "-od", str(tmp_path),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.study}",
            "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port),
        ]
    )  # fmt: skip
    assert "Number of Completed Suboperations : 3" in done.stdout + done.stderr
    files = {
        pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in tmp_path.iterdir()
    }
    assert set(files) == {*study.ct, study.mr}
    stored = wado_instance(server, study.study, study.ct_series, study.ct[0])
    assert dataset_bytes(files[study.ct[0]]) == dataset_bytes(stored)


def test_get_where_all_succeed_answers_success(
    server: RunningServer, study: Study
) -> None:
    receiver = Receiver({})
    responses = get(
        server,
        receiver,
        [CTImageStorage, MRImageStorage],
        "STUDY",
        StudyInstanceUID=study.study,
    )
    final, identifier = responses[-1]
    assert int(final.Status) == 0x0000
    assert final.NumberOfCompletedSuboperations == 3
    assert identifier is None
    assert len(receiver.received) == 3


def test_get_without_a_storage_role_for_mr_answers_b000(
    server: RunningServer, study: Study
) -> None:
    responses = get(
        server, Receiver({}), [CTImageStorage], "STUDY", StudyInstanceUID=study.study
    )
    final, identifier = responses[-1]
    assert int(final.Status) == 0xB000
    assert final.NumberOfCompletedSuboperations == 2
    assert final.NumberOfFailedSuboperations == 1
    assert identifier is not None and identifier.FailedSOPInstanceUIDList == study.mr


def test_get_where_all_fail_answers_failure_with_every_uid(
    server: RunningServer, study: Study
) -> None:
    responses = get(
        server,
        Receiver({}, default_status=0xA700),
        [CTImageStorage, MRImageStorage],
        "STUDY",
        StudyInstanceUID=study.study,
    )
    final, identifier = responses[-1]
    assert int(final.Status) == 0xA702
    assert final.NumberOfFailedSuboperations == 3
    assert identifier is not None
    assert set(identifier.FailedSOPInstanceUIDList) == {*study.ct, study.mr}


def test_get_matching_nothing_succeeds_with_zero_counts(server: RunningServer) -> None:
    receiver = Receiver({})
    ((final, _),) = get(
        server, receiver, [CTImageStorage], "STUDY", StudyInstanceUID=_uid()
    )
    assert int(final.Status) == 0x0000
    assert final.NumberOfCompletedSuboperations == 0
    assert receiver.received == []


@pytest.mark.parametrize("patient_id", ["*", "TEST-*", "TEST-?", "TEST-1\\TEST-2"])
def test_get_of_patient_ids_that_do_not_name_one_patient_is_refused(
    server: RunningServer, study: Study, patient_id: str
) -> None:
    # The study fixture's images belong to make_ct's patient, TEST-1.
    receiver = Receiver({})
    responses = get(
        server,
        receiver,
        [CTImageStorage, MRImageStorage],
        "PATIENT",
        PATIENT_ROOT_GET,
        PatientID=patient_id,
    )
    assert [int(status.Status) for status, _ in responses] == [0xC413]
    assert receiver.received == []
