"""QIDO-RS and C-FIND date matching against a real server: DT ranges, real dates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydicom import Dataset, config
from pydicom.dataelem import DataElement
from pydicom.uid import ExplicitVRLittleEndian

from dimse._contexts import STUDY_ROOT_FIND
from tests.conftest import RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.dimse.helpers import associate, contexts_for
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(120)

INSTANCE_NUMBER = "00200013"
ACQUISITION_DATE_TIME = 0x0008002A
# Instance number -> stored Acquisition DateTime (DT, matched in the DICOM JSON).
STORED = {
    1: "20110525145628.350000",
    2: "20120101000000",
    3: "20101231235959.999999",
    4: "20110525145628+0100",
    5: "201106",
    6: "20110230123000",
    7: "garbage",
}


class Timed:
    """One study whose instances carry the Acquisition DateTime values above."""

    def __init__(self, server: RunningServer) -> None:
        self.marker = "DT-" + new_uid()[-10:]
        self.study = new_uid()
        datasets = []
        for number, value in STORED.items():
            ds = make_ct(
                study=self.study,
                PatientID=self.marker,
                InstanceNumber=number,
                StudyDate="20240229",
                AcquisitionTime="145628.35" if number == 1 else "0900",
            )
            # Stored as sent, even where a validating writer would object.
            ds.add(
                DataElement(
                    ACQUISITION_DATE_TIME, "DT", value, validation_mode=config.IGNORE
                )
            )
            if number == 1:
                item = Dataset()
                item.RadiopharmaceuticalStartDateTime = "20110525120000-0500"
                ds.RadiopharmaceuticalInformationSequence = [item]
            datasets.append(part10(ds))
        response = post_instances(server.dicomweb_url, datasets)
        assert response.status_code == 200, response.text

    def numbers(self, server: RunningServer, **params: str) -> list[int]:
        """Instance numbers of the study's instances that match ``params``."""
        response = _qido(server, f"/studies/{self.study}/instances", params)
        assert response.status_code == 200, response.text
        assert "Warning" not in response.headers, response.headers["Warning"]
        return sorted(m[INSTANCE_NUMBER]["Value"][0] for m in response.json())


@pytest.fixture(scope="module")
def timed(server: RunningServer) -> Timed:
    """The study, stored once for the module."""
    return Timed(server)


def _qido(server: RunningServer, path: str, params: Any = None) -> httpx.Response:
    return httpx.get(f"{server.dicomweb_url}{path}", params=params, timeout=30)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2011-", [1, 2, 4, 5]),
        ("-2011", [1, 3, 4, 5]),
        ("2011", [1, 4, 5]),
        ("2011-2011", [1, 4, 5]),
        ("20110525145628.35", [1]),
        ("20110525145628.350000", [1]),
        ("20110525145628", [1]),
        ("2011052514", [1]),
        ("20110525135628", [4]),
        ("20110525145628+0100", [4]),
        ("20110525155628+0100", [1]),
        ("20110525-20110525135628", [4]),
        ("201106-20111231", [5]),
        ("2012\\2010", [2, 3]),
        ("20120101000000.000001-", []),
        ("*", [1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_date_time_single_values_and_ranges_match_instants(
    server: RunningServer, timed: Timed, value: str, expected: list[int]
) -> None:
    assert timed.numbers(server, AcquisitionDateTime=value) == expected


def test_date_time_range_matching_reaches_into_sequences(
    server: RunningServer, timed: Timed
) -> None:
    key = "RadiopharmaceuticalInformationSequence.RadiopharmaceuticalStartDateTime"
    assert timed.numbers(server, **{key: "20110525170000"}) == [1]
    assert timed.numbers(server, **{key: "20110525-20110525165959"}) == []
    assert timed.numbers(server, **{key: "2011-"}) == [1]


def test_time_values_in_the_json_match_whatever_precision_was_stored(
    server: RunningServer, timed: Timed
) -> None:
    assert timed.numbers(server, AcquisitionTime="1456") == [1]
    assert timed.numbers(server, AcquisitionTime="145628.35") == [1]
    assert timed.numbers(server, AcquisitionTime="0800-0900") == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    "params",
    [
        {"AcquisitionDateTime": "abc"},
        {"AcquisitionDateTime": "20201399"},
        {"AcquisitionDateTime": "20200230"},
        {"AcquisitionDateTime": "2012-2011"},
        {"AcquisitionDateTime": "20200101+1500"},
        {"AcquisitionDateTime": "2011*"},
        {"StudyDate": "20240230"},
        {"StudyDate": "20230229-"},
        {"StudyDate": "-20210431"},
        {"PatientBirthDate": "19000229"},
    ],
)
def test_malformed_and_impossible_dates_answer_400(
    server: RunningServer, timed: Timed, params: dict[str, str]
) -> None:
    response = _qido(server, "/instances", {"PatientID": timed.marker, **params})
    assert response.status_code == 400, response.text


def test_a_leap_day_is_a_date_like_any_other(
    server: RunningServer, timed: Timed
) -> None:
    params = {"PatientID": timed.marker, "StudyDate": "20240229"}
    response = _qido(server, "/studies", params)
    assert response.status_code == 200, response.text
    assert [m["0020000D"]["Value"][0] for m in response.json()] == [timed.study]


@pytest.mark.parametrize(
    "keys",
    [
        {"StudyDate": "20240230"},
        {"StudyDate": "20240101-20240230"},
        {"AcquisitionDateTime": "2011-13"},
    ],
)
def test_c_find_refuses_impossible_dates_with_a900(
    server: RunningServer, keys: dict[str, str]
) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE" if "AcquisitionDateTime" in keys else "STUDY"
    query.StudyInstanceUID = new_uid() if query.QueryRetrieveLevel == "IMAGE" else ""
    if query.QueryRetrieveLevel == "IMAGE":
        query.SeriesInstanceUID = new_uid()
        query.SOPInstanceUID = ""
    for keyword, value in keys.items():
        query.add(
            DataElement(
                keyword, "DA" if keyword == "StudyDate" else "DT", value,
                validation_mode=config.IGNORE,
            )
        )  # fmt: skip
    with associate(
        server, contexts_for([(STUDY_ROOT_FIND, ExplicitVRLittleEndian)])
    ) as assoc:
        responses = list(assoc.send_c_find(query, STUDY_ROOT_FIND))
    status, identifier = responses[-1]
    assert status.Status == 0xA900 and identifier is None
