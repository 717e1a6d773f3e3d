"""C-FIND response identifiers written straight from matches (dimse._response).

The direct writer must give byte for byte what pydicom writes for the data
set ``response_identifier`` builds, or hand the match back to pydicom.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import decode, encode

from archive.attributes import Level
from dimse._identifier import parse_identifier
from dimse._response import response_identifier, write_response_identifier

SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]


def _request(**keys: Any) -> Any:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return parse_identifier(identifier, patient_root=False)


STUDY_KEYS = {
    "SpecificCharacterSet": "",
    "StudyInstanceUID": "",
    "PatientName": "",
    "PatientID": "",
    "PatientBirthDate": "",
    "StudyDate": "",
    "StudyTime": "",
    "AccessionNumber": "",
    "ModalitiesInStudy": "",
    "StudyDescription": "",
    "NumberOfStudyRelatedInstances": "",
    "NumberOfStudyRelatedSeries": "",
    "RetrieveAETitle": "",
}

MATCHES: dict[str, dict[str, Any]] = {
    "ascii": {
        "0020000D": {"vr": "UI", "Value": ["1.2.3.4"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Fang"}]},
        "00100020": {"vr": "LO", "Value": ["PAT-001"]},
        "00080020": {"vr": "DA", "Value": ["20240115"]},
        "00080030": {"vr": "TM", "Value": ["101500.123"]},
        "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
        "00201208": {"vr": "IS", "Value": [200]},
        "00201206": {"vr": "IS", "Value": [3]},
    },
    "chinese": {
        "0020000D": {"vr": "UI", "Value": ["1.2.3.45"]},
        "00100010": {
            "vr": "PN",
            "Value": [{"Alphabetic": "Zhang^XiaoDong", "Ideographic": "张^小东"}],
        },
        "00081030": {"vr": "LO", "Value": ["胸部 CT 平扫"]},
    },
    "empty-and-missing": {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN"},
        "00080050": {"vr": "SH", "Value": []},
        "00080061": {"vr": "CS", "Value": ["CT", None]},
    },
    "nulls-and-latin-code": {
        "0020000D": {"vr": "UI", "Value": ["1.2.3.6"]},
        "00201208": {"vr": "IS", "Value": [1, None, 3]},
        "00080061": {"vr": "CS", "Value": ["CRÂNE", None]},
    },
    "phonetic-only": {
        "00100010": {"vr": "PN", "Value": [{"Phonetic": "wang^fang"}]},
    },
}


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("name", MATCHES)
@pytest.mark.parametrize("wants_character_set", [True, False])
def test_written_bytes_are_pydicoms(
    syntax: str, name: str, wants_character_set: bool
) -> None:
    keys = dict(STUDY_KEYS)
    if not wants_character_set:
        del keys["SpecificCharacterSet"]
    request = _request(**keys)
    match = MATCHES[name]
    uid = UID(syntax)
    dataset = response_identifier(
        match, request.requested, Level.STUDY, request.wants_character_set, "DV"
    )
    expected = encode(dataset, uid.is_implicit_VR, uid.is_little_endian)
    written = write_response_identifier(
        match,
        request.requested,
        Level.STUDY,
        request.wants_character_set,
        "DV",
        syntax,
    )
    assert written is not None
    assert written == expected
    # And it reads back as the same data set.
    back = decode(io.BytesIO(written), uid.is_implicit_VR, True)
    assert back.QueryRetrieveLevel == "STUDY"


@pytest.mark.parametrize(
    "syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
def test_other_syntaxes_are_left_to_pydicom(syntax: str) -> None:
    request = _request(**STUDY_KEYS)
    assert (
        write_response_identifier(
            MATCHES["ascii"], request.requested, Level.STUDY, True, "DV", syntax
        )
        is None
    )


def test_sequences_and_unknown_values_are_left_to_pydicom() -> None:
    sequence = _request(StudyInstanceUID="", ReferencedStudySequence=[])
    assert (
        write_response_identifier(
            {}, sequence.requested, Level.STUDY, False, "DV", ExplicitVRLittleEndian
        )
        is None
    )
    plain = _request(StudyInstanceUID="", StudyDescription="")
    odd = {"00081030": {"vr": "LO", "Value": [{"not": "text"}]}}
    assert (
        write_response_identifier(
            odd, plain.requested, Level.STUDY, False, "DV", ExplicitVRLittleEndian
        )
        is None
    )


def test_the_pydicom_path_writes_no_none_and_only_utf8() -> None:
    request = _request(StudyInstanceUID="", SpecificCharacterSet="")
    requested = (
        *request.requested,
        *_request(PixelSpacing="", ModalitiesInStudy="").requested,
    )
    match = {
        "00280030": {"vr": "DS", "Value": [0.5, None]},
        "00080061": {"vr": "CS", "Value": ["CRÂNE"]},
    }
    dataset = response_identifier(match, requested, Level.STUDY, True, "DV")
    for syntax in (ExplicitVRBigEndian, ExplicitVRLittleEndian):
        uid = UID(syntax)
        encoded = encode(dataset, uid.is_implicit_VR, uid.is_little_endian)
        assert encoded is not None
        assert b"None" not in encoded
        assert "CRÂNE".encode() in encoded
        assert b"ISO_IR 192" in encoded
