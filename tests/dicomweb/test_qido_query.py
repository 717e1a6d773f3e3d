"""QIDO-RS in depth: person name groups, fuzzy matching, sequences, order, paging."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from tests.conftest import RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(120)

PATIENT_ID = "00100020"
PIXEL_DATA = "7FE00010"


def _qido(server: RunningServer, path: str, params: Any = None) -> httpx.Response:
    return httpx.get(f"{server.dicomweb_url}{path}", params=params, timeout=30)


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m[PATIENT_ID]["Value"][0] for m in response.json()]


def _store(server: RunningServer, *datasets: Dataset) -> None:
    response = post_instances(server.dicomweb_url, [part10(ds) for ds in datasets])
    assert response.status_code == 200, response.text


class Names:
    """Patients whose names exercise component groups and fuzzy matching."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        utf8: dict[str, Any] = {"SpecificCharacterSet": "ISO_IR 192"}
        self.wang = make_ct(
            PatientID=f"{marker}-WANG", **utf8,
            PatientName="Wang^XiaoDong=王^小东=wáng^xiǎodōng",
        )  # fmt: skip
        self.zhang = make_ct(
            PatientID=f"{marker}-ZHANG", **utf8, PatientName="Zhang^San=张^三="
        )  # fmt: skip
        self.muller = make_ct(
            PatientID=f"{marker}-MULLER", **utf8, PatientName="Müller^Anna Maria"
        )  # fmt: skip
        self.oneil = make_ct(
            PatientID=f"{marker}-ONEIL", PatientName="O'Neil^Mary^^Dr.^"
        )  # fmt: skip

    def all(self) -> list[Dataset]:
        """Every instance."""
        return [self.wang, self.zhang, self.muller, self.oneil]


@pytest.fixture(scope="module")
def names(server: RunningServer) -> Names:
    """The patients, stored once for the module."""
    data = Names(new_uid()[-12:])
    _store(server, *data.all())
    return data


def _by_name(
    server: RunningServer, names: Names, value: str, **extra: str
) -> list[str]:
    params = {"PatientID": f"{names.marker}-*", "PatientName": value, **extra}
    return sorted(i.rpartition("-")[2] for i in _ids(_qido(server, "/studies", params)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("王*", ["WANG"]),
        ("王^小东", ["WANG"]),
        ("*^小东", ["WANG"]),
        ("张*", ["ZHANG"]),
        ("Wang^XiaoDong", ["WANG"]),
        ("wang*", ["WANG"]),
        ("wáng^xiǎodōng", ["WANG"]),
        ("=王*", ["WANG"]),
        ("Wang*=王*", ["WANG"]),
        ("Zhang*=王*", []),
        ("O'NEIL^MARY^^DR.", ["ONEIL"]),
        ("O'NEIL^MARY", []),
        ("小东", []),
    ],
)
def test_person_names_match_each_component_group(
    server: RunningServer, names: Names, value: str, expected: list[str]
) -> None:
    assert _by_name(server, names, value) == expected


def test_dicomweb_client_finds_a_chinese_name_by_characters_and_by_pinyin(
    server: RunningServer, names: Names
) -> None:
    client = DICOMwebClient(server.dicomweb_url)
    for value in ("王*", "Wang^XiaoDong", "*^小东"):
        found = client.search_for_studies(
            search_filters={"PatientName": value, "PatientID": f"{names.marker}-*"}
        )
        assert [f[PATIENT_ID]["Value"][0] for f in found] == [f"{names.marker}-WANG"]
        assert found[0]["00100010"]["Value"][0] == {
            "Alphabetic": "Wang^XiaoDong",
            "Ideographic": "王^小东",
            "Phonetic": "wáng^xiǎodōng",
        }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mull", ["MULLER"]),
        ("MULLER^ANNA", ["MULLER"]),
        ("anna müller", ["MULLER"]),
        ("maria", ["MULLER"]),
        ("xiaodong wang", ["WANG"]),
        ("xiao dong", ["WANG"]),
        ("XIAODONG", ["WANG"]),
        ("王小东", ["WANG"]),
        ("小东", ["WANG"]),
        ("wangxiao", ["WANG"]),
        ("oneil", ["ONEIL"]),
        ("mary neil", ["ONEIL"]),
        ("ma*", ["MULLER", "ONEIL"]),
        ("zhang\\oneil", ["ONEIL", "ZHANG"]),
        ("smith", []),
        ("ann mary", []),
    ],
)
def test_fuzzy_matching_finds_word_prefixes_in_any_order_case_and_accent(
    server: RunningServer, names: Names, value: str, expected: list[str]
) -> None:
    assert _by_name(server, names, value, fuzzymatching="true") == expected


def test_fuzzy_matching_answers_without_a_warning_and_literal_does_not_fold(
    server: RunningServer, names: Names
) -> None:
    params = {"PatientID": f"{names.marker}-*", "PatientName": "mull"}
    fuzzy = _qido(server, "/studies", {**params, "fuzzymatching": "true"})
    assert "Warning" not in fuzzy.headers
    assert len(fuzzy.json()) == 1
    assert _qido(server, "/studies", params).json() == []
    assert (
        _qido(server, "/studies", {**params, "fuzzymatching": "maybe"}).status_code
        == 400
    )


def test_dicomweb_client_fuzzy_search_finds_names_in_any_order(
    server: RunningServer, names: Names
) -> None:
    client = DICOMwebClient(server.dicomweb_url)
    found = client.search_for_studies(
        fuzzymatching=True,
        search_filters={"PatientName": "anna muller", "PatientID": f"{names.marker}-*"},
    )
    assert [f[PATIENT_ID]["Value"][0] for f in found] == [f"{names.marker}-MULLER"]


def test_sequence_matching_on_stored_items_at_study_and_image_level(
    server: RunningServer,
) -> None:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "C-" + new_uid()[-6:], "99LOCAL"
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    referenced.ReferencedSOPInstanceUID = new_uid()
    ds = make_ct(PatientID="SEQ-" + new_uid()[-8:])
    ds.ProcedureCodeSequence = [code]
    ds.ReferencedImageSequence = [referenced]
    _store(server, ds)
    study_key = "ProcedureCodeSequence.CodeValue"
    found = _qido(server, "/studies", {study_key: code.CodeValue})
    assert _ids(found) == [ds.PatientID]
    assert _qido(server, "/studies", {study_key: "C-none"}).json() == []
    image_key = "ReferencedImageSequence.ReferencedSOPInstanceUID"
    found = _qido(
        server, "/instances", {image_key: referenced.ReferencedSOPInstanceUID}
    )
    assert _ids(found) == [ds.PatientID]
    assert _qido(server, "/instances", {image_key: new_uid()}).json() == []


def test_includefield_all_returns_every_stored_attribute_but_bulk_data(
    server: RunningServer,
) -> None:
    ds = make_ct(PatientID="ALL-" + new_uid()[-8:], ProtocolName="Abdomen")
    ds.add_new(0x00091010, "LO", "PRIVATE CREATOR")
    ds.add_new(0x00091011, "LO", "private text")
    ds.EncapsulatedDocument = b"\x00" * 4096
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "113691", "DCM"
    item.add_new(0x00420011, "OB", b"\x01" * 2048)
    ds.ProcedureCodeSequence = [item]
    _store(server, ds)
    params = {"PatientID": ds.PatientID, "includefield": "all"}
    match = _qido(server, "/instances", params).json()[0]
    assert match["00181030"]["Value"] == ["Abdomen"]
    assert match["00091011"]["Value"] == ["private text"]
    assert PIXEL_DATA not in match and "00420011" not in match
    assert "BulkDataURI" not in str(match)
    assert match["00081032"]["Value"][0]["00080100"]["Value"] == ["113691"]
    study = _qido(server, "/studies", params).json()[0]
    assert study["00081032"]["Value"][0]["00080100"]["Value"] == ["113691"]
    assert "00181030" not in study and PIXEL_DATA not in study


class Dated:
    """Studies of one marker on distinct dates, stored in a scrambled order."""

    def __init__(self, server: RunningServer, dates: list[str]) -> None:
        self.server = server
        self.marker = new_uid()[-12:]
        _store(server, *[self.study(date) for date in dates])

    def study(self, date: str) -> Dataset:
        """One study of this marker on ``date``; PatientID names the date."""
        return make_ct(PatientID=f"{self.marker}-{date}", StudyDate=date)

    def params(self, **extra: str) -> dict[str, str]:
        """Query parameters selecting this marker's studies."""
        return {"PatientID": f"{self.marker}-*", **extra}

    def dates(self, response: httpx.Response) -> list[str]:
        """The dates of the matches, in response order."""
        return [i.rpartition("-")[2] for i in _ids(response)]


_DATES = ["20200105", "20200101", "20200109", "20200103", "20200107"]


def test_orderby_sorts_by_supported_keys_either_way(server: RunningServer) -> None:
    dated = Dated(server, _DATES)
    ascending = _qido(server, "/studies", dated.params(orderby="StudyDate"))
    assert dated.dates(ascending) == sorted(_DATES)
    descending = _qido(server, "/studies", dated.params(orderby="-00080020"))
    assert dated.dates(descending) == sorted(_DATES, reverse=True)
    arrival = _qido(server, "/studies", dated.params())
    assert dated.dates(arrival) == _DATES


@pytest.mark.parametrize(
    ("path", "orderby"),
    [
        ("/studies", "Modality"),
        ("/studies", "SOPInstanceUID"),
        ("/studies", "Manufacturer"),
        ("/studies", "NotAKeyword"),
        ("/series", "InstanceNumber"),
    ],
)
def test_orderby_an_unsupported_key_answers_400(
    server: RunningServer, path: str, orderby: str
) -> None:
    response = _qido(server, path, {"orderby": orderby})
    assert response.status_code == 400
    assert "orderby" in response.json()["error"] or "order" in response.json()["error"]


def test_count_without_rows_by_head_and_by_count_parameter(
    server: RunningServer,
) -> None:
    dated = Dated(server, _DATES)
    url = f"{server.dicomweb_url}/studies"
    head = httpx.head(url, params=dated.params(limit="2"), timeout=30)
    assert head.status_code == 200
    assert head.headers["X-Total-Count"] == "5"
    assert head.content == b""
    counted = _qido(
        server, "/studies", dated.params(count="true", StudyDate="-20200104")
    )
    assert counted.headers["X-Total-Count"] == "2"
    assert counted.json() == []
    client = DICOMwebClient(server.dicomweb_url)
    rows = client.search_for_studies(
        search_filters=dated.params(), additional_params={"count": "true"}
    )
    assert rows == []


def _follow(
    server: RunningServer, path: str, params: dict[str, str], between: Any = None
) -> list[httpx.Response]:
    pages = [_qido(server, path, params)]
    while "Link" in pages[-1].headers:
        link = pages[-1].headers["Link"]
        assert link.endswith('>; rel="next"')
        if between is not None:
            between(len(pages))
        pages.append(httpx.get(link[1 : link.index(">")], timeout=30))
        assert len(pages) < 20
    return pages


def test_keyset_paging_neither_repeats_nor_skips_while_studies_arrive(
    server: RunningServer,
) -> None:
    dated = Dated(server, _DATES)
    arrivals = iter(["20191231", "20200102", "20200104", "20200106", "20200108"])

    def arrive(page: int) -> None:
        # One study sorts before the rows already seen, one after them.
        _store(server, dated.study(next(arrivals)), dated.study(f"2021010{page}"))

    pages = _follow(
        server, "/studies", dated.params(orderby="StudyDate", limit="2"), arrive
    )
    seen = [date for page in pages for date in dated.dates(page)]
    assert len(seen) == len(set(seen))
    assert [date for date in seen if date in _DATES] == sorted(_DATES)
    # Rows arriving behind the cursor are not shown; those ahead of it are.
    assert "20191231" not in seen and "20210101" in seen


def test_paging_by_arrival_follows_link_and_plain_offset_still_works(
    server: RunningServer,
) -> None:
    dated = Dated(server, _DATES)
    pages = _follow(server, "/studies", dated.params(limit="2"))
    assert [len(page.json()) for page in pages] == [2, 2, 1]
    assert [d for page in pages for d in dated.dates(page)] == _DATES
    offset = _qido(server, "/studies", dated.params(limit="2", offset="2"))
    assert dated.dates(offset) == _DATES[2:4]
    assert (
        "cursor=" in offset.headers["Link"] and "offset" not in offset.headers["Link"]
    )


def _token(level: str, values: list[Any]) -> str:
    data = json.dumps({"l": level, "o": "", "k": values}).encode()
    return base64.urlsafe_b64encode(data).decode()


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": _token("STUDY", ["x"])},
        {"cursor": _token("STUDY", [1, 2])},
        {"cursor": _token("SERIES", [1])},
        {"cursor": _token("STUDY", [1]), "offset": "3"},
    ],
)
def test_a_cursor_the_server_did_not_give_answers_400(
    server: RunningServer, params: dict[str, str]
) -> None:
    assert _qido(server, "/studies", params).status_code == 400


def test_series_and_instances_page_with_their_own_cursor(server: RunningServer) -> None:
    study = new_uid()
    instances = [
        make_ct(study=study, PatientID="PAGE-" + study[-8:], InstanceNumber=n)
        for n in (3, 1, 2)
    ]
    _store(server, *instances)
    pages = _follow(
        server,
        f"/studies/{study}/instances",
        {"orderby": "InstanceNumber", "limit": "1"},
    )
    numbers = [m["00200013"]["Value"][0] for page in pages for m in page.json()]
    assert numbers == [1, 2, 3]
