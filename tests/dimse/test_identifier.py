"""Identifiers to queries and matches to response identifiers, without sockets."""

from __future__ import annotations

import io

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from archive.attributes import Level
from dimse._identifier import parse_identifier, retrieve_query
from dimse._response import has_non_ascii_text, response_identifier
from dimse.errors import InvalidIdentifier

pytestmark = pytest.mark.timeout(30)


def _decoded(ds: Dataset) -> Dataset:
    """Encode then decode as pynetdicom hands identifiers over: raw elements."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return read_dataset(io.BytesIO(buffer.getvalue()), False, True)


def test_parse_identifier_keeps_uid_list_and_return_keys() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = ["1.2.3", "1.2.4"]
    ds.Modality = ""
    ds.SeriesDescription = "AX*"
    request = parse_identifier(_decoded(ds), patient_root=False)
    assert request.level is Level.SERIES
    assert request.query.keys == {
        "StudyInstanceUID": "1.2.3\\1.2.4",
        "Modality": "",
        "SeriesDescription": "AX*",
    }
    assert [key.tag for key in request.requested] == [
        Tag("Modality"),
        Tag("SeriesDescription"),
        Tag("StudyInstanceUID"),
    ]


def test_parse_identifier_decodes_gb18030_person_name() -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "GB18030"
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "王*"
    request = parse_identifier(_decoded(ds), patient_root=True)
    assert request.query.keys["PatientName"] == "王*"
    assert request.wants_character_set


def test_parse_identifier_keeps_date_range_as_sent() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyDate = "20200101-20201231"
    request = parse_identifier(_decoded(ds), patient_root=False)
    assert request.query.keys["StudyDate"] == "20200101-20201231"


def test_parse_identifier_refuses_patient_level_in_study_root() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    with pytest.raises(InvalidIdentifier, match="Study Root"):
        parse_identifier(_decoded(ds), patient_root=False)


def test_parse_identifier_refuses_missing_level() -> None:
    ds = Dataset()
    ds.PatientID = "X"
    with pytest.raises(InvalidIdentifier, match="Query/Retrieve Level"):
        parse_identifier(_decoded(ds), patient_root=True)


def test_parse_identifier_turns_sequence_items_into_sequence_keys() -> None:
    item = Dataset()
    item.ScheduledProcedureStepID = "SPS1"
    item.RequestedProcedureID = ""
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.RequestAttributesSequence = Sequence([item])
    request = parse_identifier(_decoded(ds), patient_root=False)
    assert request.query.keys == {
        "RequestAttributesSequence.ScheduledProcedureStepID": "SPS1"
    }
    (key,) = request.requested
    assert key.items is not None and len(key.items) == 2


def test_retrieve_query_keeps_only_unique_keys_in_scope() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = ["1.2.3.1", "1.2.3.2"]
    ds.PatientName = "ignored"
    query = retrieve_query(_decoded(ds), patient_root=False)
    assert query.level is Level.IMAGE
    assert query.keys == {
        "StudyInstanceUID": "1.2.3",
        "SeriesInstanceUID": "1.2.3.1\\1.2.3.2",
    }


def test_retrieve_query_needs_the_unique_key_of_its_level() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = "1.2.3"
    with pytest.raises(InvalidIdentifier, match="SOPInstanceUID"):
        retrieve_query(_decoded(ds), patient_root=False)


def _request_for(**keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return _decoded(ds)


def test_response_holds_exactly_the_requested_keys_empty_ones_zero_length() -> None:
    request = parse_identifier(
        _request_for(StudyInstanceUID="", AccessionNumber="", StudyDescription=""),
        patient_root=False,
    )
    match = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00080050": {"vr": "SH"},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Not^Asked"}]},
    }
    ds = response_identifier(
        match, request.requested, request.level, request.wants_character_set, "AE"
    )
    assert set(ds.keys()) == {
        Tag("QueryRetrieveLevel"),
        Tag("AccessionNumber"),
        Tag("StudyDescription"),
        Tag("StudyInstanceUID"),
    }
    assert ds.StudyInstanceUID == "1.2.3"
    assert ds["AccessionNumber"].is_empty and ds["StudyDescription"].is_empty
    assert "SpecificCharacterSet" not in ds


def test_response_adds_utf8_character_set_for_non_ascii_text() -> None:
    request = parse_identifier(
        _request_for(SpecificCharacterSet="ISO_IR 192", PatientName="王*"),
        patient_root=True,
    )
    name = {"Alphabetic": "Wang", "Ideographic": "王"}
    match = {"00100010": {"vr": "PN", "Value": [name]}}
    ds = response_identifier(
        match, request.requested, request.level, request.wants_character_set, "AE"
    )
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Wang=王"


def test_response_answers_retrieve_ae_title_with_ours() -> None:
    request = parse_identifier(_request_for(RetrieveAETitle=""), patient_root=False)
    ds = response_identifier(
        {}, request.requested, request.level, request.wants_character_set, "VAULT"
    )
    assert ds.RetrieveAETitle == "VAULT"


def test_has_non_ascii_text_looks_into_sequences() -> None:
    item = Dataset()
    item.CodeMeaning = "胸部"
    ds = Dataset()
    ds.ProcedureCodeSequence = Sequence([item])
    assert has_non_ascii_text(ds)
    item.CodeMeaning = "Chest"
    assert not has_non_ascii_text(ds)


def test_parse_identifier_decodes_iso_2022_ir58_escapes() -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 58"]
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab="
    request = parse_identifier(_decoded(ds), patient_root=False)
    assert request.query.keys["PatientName"] == "Zhang^XiaoDong=张^小东="


@pytest.mark.usefixtures("lenient_pydicom")
@pytest.mark.parametrize(
    ("charset", "keyword", "value"),
    [
        ("ISO_IR 192", "PatientName", b"\xff\xfe*"),
        ("GB18030", "PatientName", b"\x81*"),
        (None, "PatientName", b"M\xfcller"),
        ("ISO_IR 192", "StudyInstanceUID", b"1.2.\xc3\xa9"),
    ],
)
def test_parse_identifier_refuses_bytes_its_charset_cannot_decode(
    charset: str | None, keyword: str, value: bytes
) -> None:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    setattr(ds, keyword, value)
    with pytest.raises(InvalidIdentifier, match=keyword):
        parse_identifier(_decoded(ds), patient_root=False)


@pytest.mark.usefixtures("lenient_pydicom")
@pytest.mark.parametrize(
    ("level", "keys"),
    [
        ("PATIENT", {"PatientID": "*"}),
        ("PATIENT", {"PatientID": "9889*"}),
        ("PATIENT", {"PatientID": "P1???"}),
        ("PATIENT", {"PatientID": ["P1", "P2"]}),
        ("STUDY", {"PatientID": "P*", "StudyInstanceUID": "1.2.3"}),
        ("STUDY", {"StudyInstanceUID": "1.2.*"}),
        (
            "SERIES",
            {"StudyInstanceUID": ["1.2.3", "1.2.4"], "SeriesInstanceUID": "1.5"},
        ),
        ("SERIES", {"StudyInstanceUID": "1.2.3", "SeriesInstanceUID": ["1.5", ""]}),
    ],
)
def test_retrieve_query_refuses_keys_that_do_not_name_exactly(
    level: str, keys: dict[str, str | list[str]]
) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    with pytest.raises(InvalidIdentifier, match="PS3.4 C.4.2.2.1|empty value"):
        retrieve_query(_decoded(ds), patient_root=True)


def test_retrieve_query_keeps_a_single_patient_id_and_a_study_uid_list() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "P-1"
    ds.StudyInstanceUID = ["1.2.3", "1.2.4"]
    query = retrieve_query(_decoded(ds), patient_root=True)
    assert query.keys == {"PatientID": "P-1", "StudyInstanceUID": "1.2.3\\1.2.4"}


def test_an_empty_key_of_ambiguous_vr_in_implicit_vr_is_a_return_key() -> None:
    # (0028,0106) is US or SS: pydicom cannot tell which without Pixel
    # Representation, and an empty key needs no value to be read.
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = "1.2"
    identifier.SeriesInstanceUID = "1.3"
    identifier.SOPInstanceUID = ""
    identifier.SmallestImagePixelValue = None
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, identifier)
    decoded = read_dataset(io.BytesIO(buffer.getvalue()), True, True)
    request = parse_identifier(decoded, patient_root=False)
    assert (Tag("SmallestImagePixelValue"), "US") in [
        (key.tag, key.vr) for key in request.requested
    ]
