"""QIDO-RS against a real server: matching, paging, return keys, media types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import RunningServer, start_server, stop_server
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(120)


class Corpus:
    """Three studies of one test patient set, with distinct values to match."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.early = make_ct(
            PatientID=f"{marker}-A", PatientName="Müller^Anna", StudyDate="20210110",
            SpecificCharacterSet="ISO_IR 192", ProtocolName="Thorax",
            StudyTime="230000", AccessionNumber="ACC,1", StudyDescription="Chest, PA",
            Modality="CT", SeriesDescription=" ",
        )  # fmt: skip
        self.middle = make_ct(
            PatientID=f"{marker}-B", PatientName="DOE^JOHN", StudyDate="20210115",
            StudyTime="010000", AccessionNumber="ACC2", Modality="MR",
        )  # fmt: skip
        self.late = make_ct(
            PatientID=f"{marker}-C", PatientName="doe^jane", StudyDate="20210120",
            StudyTime="120000", AccessionNumber="", Modality="CT",
        )  # fmt: skip
        # A second series of the late study with another modality and one empty.
        self.late_sr = make_ct(
            study=self.late.StudyInstanceUID, PatientID=f"{marker}-C",
            PatientName="doe^jane", StudyDate="20210120", Modality="SR",
        )  # fmt: skip
        self.late_empty = make_ct(
            study=self.late.StudyInstanceUID, PatientID=f"{marker}-C",
            PatientName="doe^jane", StudyDate="20210120", Modality="",
        )  # fmt: skip

    def all(self) -> list[Any]:
        """Every instance."""
        return [self.early, self.middle, self.late, self.late_sr, self.late_empty]


@pytest.fixture(scope="module")
def corpus(server: RunningServer) -> Iterator[Corpus]:
    """The three studies, stored once for the module."""
    data = Corpus(new_uid()[-12:])
    response = post_instances(server.dicomweb_url, [part10(ds) for ds in data.all()])
    assert response.status_code == 200, response.text
    yield data


def _qido(
    server: RunningServer, path: str, params: Any = None, **headers: str
) -> httpx.Response:
    return httpx.get(f"{server.dicomweb_url}{path}", params=params, headers=headers,
                     timeout=30)  # fmt: skip


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(m["00100020"]["Value"][0] for m in response.json())


def _mine(corpus: Corpus, **params: str) -> dict[str, str]:
    return {"PatientID": f"{corpus.marker}-*", **params}


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("-20210115", ["A", "B"]),
        ("20210115-", ["B", "C"]),
        ("20210111-20210119", ["B"]),
        ("20210120", ["C"]),
    ],
)
def test_study_date_ranges_open_at_either_end(
    server: RunningServer, corpus: Corpus, date: str, expected: list[str]
) -> None:
    response = _qido(server, "/studies", _mine(corpus, StudyDate=date))
    assert _ids(response) == [f"{corpus.marker}-{x}" for x in expected]


def test_time_range_crossing_midnight_matches_both_sides(
    server: RunningServer, corpus: Corpus
) -> None:
    response = _qido(server, "/studies", _mine(corpus, StudyTime="220000-020000"))
    assert _ids(response) == [f"{corpus.marker}-A", f"{corpus.marker}-B"]


def test_uid_list_with_commas_and_with_repeated_keys(
    server: RunningServer, corpus: Corpus
) -> None:
    uids = [corpus.early.StudyInstanceUID, corpus.late.StudyInstanceUID]
    expected = [f"{corpus.marker}-A", f"{corpus.marker}-C"]
    assert (
        _ids(_qido(server, "/studies", {"StudyInstanceUID": ",".join(uids)}))
        == expected
    )
    repeated = [("StudyInstanceUID", uid) for uid in uids]
    assert _ids(_qido(server, "/studies", repeated)) == expected


def test_comma_in_a_non_uid_value_is_a_literal_character(
    server: RunningServer, corpus: Corpus
) -> None:
    assert _ids(_qido(server, "/studies", _mine(corpus, AccessionNumber="ACC,1"))) == [
        f"{corpus.marker}-A"
    ]
    assert _ids(_qido(server, "/studies", _mine(corpus, AccessionNumber="ACC"))) == []


def test_person_names_match_case_insensitively_with_wildcards(
    server: RunningServer, corpus: Corpus
) -> None:
    both = [f"{corpus.marker}-B", f"{corpus.marker}-C"]
    assert _ids(_qido(server, "/studies", _mine(corpus, PatientName="doe*"))) == both
    assert _ids(_qido(server, "/studies", _mine(corpus, PatientName="DOE^J?HN"))) == [
        f"{corpus.marker}-B"
    ]
    assert _ids(_qido(server, "/studies", _mine(corpus, PatientName="müller*"))) == [
        f"{corpus.marker}-A"
    ]


def test_no_match_answers_200_with_an_empty_json_array(server: RunningServer) -> None:
    response = _qido(server, "/studies", {"PatientID": "nobody-" + new_uid()})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    assert response.json() == []


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "application/dicom+json",
        'application/dicom+json, multipart/related; type="application/dicom+xml"',
        "application/json",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ],
)
def test_accept_headers_real_clients_send_are_served(
    server: RunningServer, corpus: Corpus, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept else {}
    response = _qido(server, "/studies", _mine(corpus), **headers)
    assert response.status_code == 200
    assert len(response.json()) == 3


@pytest.mark.parametrize(
    "accept", ['multipart/related; type="application/dicom+xml"', "image/png"]
)
def test_unacceptable_media_type_answers_406(
    server: RunningServer, accept: str
) -> None:
    assert _qido(server, "/studies", {}, Accept=accept).status_code == 406


def test_modalities_in_study_lists_distinct_non_empty_modalities(
    server: RunningServer, corpus: Corpus
) -> None:
    found = _qido(
        server, "/studies", {"StudyInstanceUID": corpus.late.StudyInstanceUID}
    )
    assert found.json()[0]["00080061"]["Value"] == ["CT", "SR"]
    assert found.json()[0]["00201206"]["Value"] == [3]
    assert found.json()[0]["00201208"]["Value"] == [3]
    by_modality = _qido(server, "/studies", _mine(corpus, ModalitiesInStudy="SR"))
    assert _ids(by_modality) == [f"{corpus.marker}-C"]


def test_empty_attributes_come_out_without_a_value(
    server: RunningServer, corpus: Corpus
) -> None:
    found = _qido(
        server, "/studies", {"StudyInstanceUID": corpus.late.StudyInstanceUID}
    )
    assert found.json()[0]["00080050"] == {"vr": "SH"}


def test_includefield_by_keyword_by_tag_and_all(
    server: RunningServer, corpus: Corpus
) -> None:
    params = {"StudyInstanceUID": corpus.early.StudyInstanceUID}
    plain = _qido(server, "/series", params).json()[0]
    assert "00181030" not in plain and "00280010" not in plain
    named = _qido(server, "/series", {**params, "includefield": "ProtocolName"})
    assert named.json()[0]["00181030"]["Value"] == ["Thorax"]
    tagged = _qido(server, "/studies", {**params, "includefield": "00081030"})
    assert tagged.json()[0]["00081030"]["Value"] == ["Chest, PA"]
    everything = _qido(server, "/instances", {**params, "includefield": "all"})
    assert "00280010" in everything.json()[0] and "00100010" in everything.json()[0]


def test_limit_and_offset_page_without_repeating_or_skipping(
    server: RunningServer, corpus: Corpus
) -> None:
    seen = []
    for offset in range(3):
        page = _qido(server, "/studies", _mine(corpus, limit="1", offset=str(offset)))
        seen += _ids(page)
    assert seen == [f"{corpus.marker}-{x}" for x in "ABC"]


def test_nested_resources_are_scoped_to_their_study_and_series(
    server: RunningServer, corpus: Corpus
) -> None:
    study = corpus.late.StudyInstanceUID
    series = _qido(server, f"/studies/{study}/series").json()
    assert len(series) == 3
    instances = _qido(
        server, f"/studies/{study}/series/{corpus.late.SeriesInstanceUID}/instances"
    ).json()
    assert [i["00080018"]["Value"][0] for i in instances] == [
        corpus.late.SOPInstanceUID
    ]
    assert instances[0]["00081190"]["Value"][0].endswith(corpus.late.SOPInstanceUID)


@pytest.mark.parametrize(
    "params",
    [
        {"StudyDate": "2021-01-15"},
        {"NotAKeyword": "1"},
        {"limit": "-1"},
        {"offset": "x"},
        {"StudyInstanceUID": "1.2.3,..%2f"},
        {"SeriesNumber": "one"},
    ],
)
def test_hostile_or_malformed_queries_answer_400(
    server: RunningServer, params: dict[str, str]
) -> None:
    response = _qido(server, "/studies" if "SeriesNumber" not in params else "/series",
                     params)  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]


def test_limit_the_client_asked_for_cuts_without_a_warning(
    server: RunningServer, corpus: Corpus
) -> None:
    response = _qido(server, "/studies", _mine(corpus, limit="2"))
    assert len(response.json()) == 2
    assert "Warning" not in response.headers


def test_dicomweb_client_finds_by_its_own_attribute_values(
    server: RunningServer, corpus: Corpus
) -> None:
    client = DICOMwebClient(server.dicomweb_url)
    found = client.search_for_series(
        search_filters={"Modality": "MR", "PatientID": f"{corpus.marker}-B"}
    )
    assert [f["0020000E"]["Value"][0] for f in found] == [
        corpus.middle.SeriesInstanceUID
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("+1.5", 1.5), (".5", 0.5), ("40.", 40), ("007", 7), ("1.2@", "1.2@")],
)
def test_ds_and_is_values_come_out_as_valid_json(
    server: RunningServer, raw: str, expected: Any
) -> None:
    ds = make_ct(SliceThickness="9" * len(raw))
    data = part10(ds)
    # pydicom refuses to write '1.2@', so put the device's bytes in afterwards.
    header = b"\x18\x00\x50\x00DS"
    at = data.index(header) + len(header) + 2
    value = raw.encode().ljust(len(raw) + len(raw) % 2)
    data = data[:at] + value + data[at + len(value) :]
    assert post_instances(server.dicomweb_url, [data]).status_code == 200
    response = _qido(
        server,
        f"/studies/{ds.StudyInstanceUID}/instances",
        {"includefield": "00180050"},
    )
    assert response.json()[0]["00180050"]["Value"] == [expected]


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that answers at most two rows per QIDO response."""
    running = start_server(
        tmp_path_factory.mktemp("capped") / "data", {"DICOMVAULT_QIDO_MAX_RESULTS": "2"}
    )
    yield running
    assert stop_server(running) == 0, running.log()


def test_server_cap_cuts_results_with_the_standard_warning(
    capped_server: RunningServer,
) -> None:
    data = Corpus(new_uid()[-12:])
    post_instances(capped_server.dicomweb_url, [part10(ds) for ds in data.all()])
    response = _qido(capped_server, "/studies", _mine(data))
    assert len(response.json()) == 2
    assert "exceeded the maximum" in response.headers["Warning"]
    asked = _qido(capped_server, "/studies", _mine(data, limit="50"))
    assert len(asked.json()) == 2
    assert "exceeded the maximum" in asked.headers["Warning"]
    exact = _qido(capped_server, "/studies", _mine(data, limit="2", offset="1"))
    assert len(exact.json()) == 2
    assert "Warning" not in exact.headers


def _every_key_instance() -> Any:
    ds = make_ct(
        PatientID="KEYS-" + new_uid()[-10:], StudyID="SID-" + new_uid()[-6:],
        ReferringPhysicianName="Keys^Referrer", AccessionNumber="AK-" + new_uid()[-6:],
        SeriesNumber=4711, PerformedProcedureStepStartDate="20190303",
        PerformedProcedureStepStartTime="080910", InstanceNumber=815,
    )  # fmt: skip
    item = pydicom.Dataset()
    item.ScheduledProcedureStepID = "SPS-" + new_uid()[-6:]
    item.RequestedProcedureID = "RP-" + new_uid()[-6:]
    ds.RequestAttributesSequence = [item]
    return ds


@pytest.fixture(scope="module")
def every_key(server: RunningServer) -> Any:
    """One instance carrying a distinct value for every required matching key."""
    ds = _every_key_instance()
    assert post_instances(server.dicomweb_url, [part10(ds)]).status_code == 200
    return ds


# PS3.18 Table 10.6.1-5: the keys an origin server must match at each level.
_REQUIRED_KEYS = {
    "studies": ["StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
                "ReferringPhysicianName", "PatientName", "PatientID",
                "StudyInstanceUID", "StudyID"],
    "series": ["Modality", "SeriesInstanceUID", "SeriesNumber",
               "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
               "RequestAttributesSequence.ScheduledProcedureStepID",
               "RequestAttributesSequence.RequestedProcedureID"],
    "instances": ["SOPClassUID", "SOPInstanceUID", "InstanceNumber"],
}  # fmt: skip


def _value(ds: Any, path: str) -> str:
    if path == "ModalitiesInStudy":
        return str(ds.Modality)
    head, _, item_keyword = path.partition(".")
    value = getattr(ds[head].value[0], item_keyword) if item_keyword else ds.get(head)
    return str(value)


@pytest.mark.parametrize(
    ("resource", "key"),
    [(resource, key) for resource, keys in _REQUIRED_KEYS.items() for key in keys],
)
def test_every_required_key_matches_at_its_level(
    server: RunningServer, every_key: Any, resource: str, key: str
) -> None:
    params = {"PatientID": every_key.PatientID, key: _value(every_key, key)}
    found = _qido(server, f"/{resource}", params)
    assert len(found.json()) == 1, found.text
    other = dict(params, **{key: "0" if "UID" in key else "19000101" if "Date" in key
                            else "000001" if "Time" in key else "9999"})  # fmt: skip
    assert _qido(server, f"/{resource}", other).json() == []


@pytest.mark.parametrize(
    "params",
    [
        {"PatientID": "\\"},
        {"PatientName": "\\\\"},
    ],
)
def test_values_of_only_separators_match_universally(
    server: RunningServer, corpus: Corpus, params: dict[str, str]
) -> None:
    response = _qido(server, "/studies", {**_mine(corpus), **params})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/studies", {"offset": "99999999999999999999"}),
        ("/series", {"SeriesNumber": "99999999999999999999"}),
        ("/instances", {"InstanceNumber": "-99999999999"}),
        ("/studies", {"PatientName": "\x00"}),
        ("/studies", {"AccessionNumber": "a\x00b"}),
        ("/studies", {"limit": "１"}),
        ("/series", {"SeriesNumber": "١"}),
    ],
)
def test_out_of_range_nul_and_non_ascii_numbers_answer_400(
    server: RunningServer, path: str, params: dict[str, str]
) -> None:
    assert _qido(server, path, params).status_code == 400


def test_sequence_matching_reaches_nested_items(server: RunningServer) -> None:
    ds = make_ct(PatientID="NEST-" + new_uid()[-8:])
    code = pydicom.Dataset()
    code.CodeValue = "NESTED-" + new_uid()[-6:]
    code.CodingSchemeDesignator = "99TEST"
    code.CodeMeaning = "Nested protocol"
    item = pydicom.Dataset()
    item.RequestedProcedureID = "RP-N"
    item.ScheduledProtocolCodeSequence = [code]
    ds.RequestAttributesSequence = [item]
    assert post_instances(server.dicomweb_url, [part10(ds)]).status_code == 200
    key = "RequestAttributesSequence.ScheduledProtocolCodeSequence.CodeValue"
    found = _qido(server, "/series", {key: code.CodeValue})
    assert [s["0020000E"]["Value"][0] for s in found.json()] == [ds.SeriesInstanceUID]
    assert "Warning" not in found.headers
    tagged = _qido(
        server, "/series", {"00400275.00400008.00080100": code.CodeValue[:-1] + "*"}
    )
    assert len(tagged.json()) == 1
    assert _qido(server, "/series", {key: "NESTED-none"}).json() == []
