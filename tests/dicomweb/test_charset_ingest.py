"""Every Specific Character Set in, UTF-8 JSON out, stored bytes untouched.

One generated file per defined term of PS3.3 C.12.1.1.2 goes through STOW-RS,
comes back from QIDO-RS as UTF-8 DICOM JSON with the person name groups split,
is found by its name, and WADO-RS returns the very bytes that were sent. Files
that declare one character set and hold another are read by the per-source
rule of DICOMVAULT_CHARSET_FALLBACKS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset

from tests.archive.test_charset import (
    ESC,
    G1_ESCAPE_CASES,
    ISO_2022_CASES,
    SINGLE_BYTE_CASES,
    corpus_or_data,
)
from tests.conftest import RunningServer, start_server, stop_server
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(180)

PLACEHOLDER = b"#"
GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_KEYWORD_OF_VR = {"PN": "PatientName", "LO": "StudyDescription"}
_TAG_OF_VR = {"PN": "00100010", "LO": "00081030"}


def _cases() -> list[tuple[list[str], str, bytes, str]]:
    """(Specific Character Set, VR, value bytes, expected text) for every term."""
    cases = [
        (charsets, vr, text.encode(codec), text)
        for charsets, vr, codec, text in SINGLE_BYTE_CASES
    ]
    cases += [
        (["ISO 2022 IR 6", term], "LO", b"ab" + ESC + escape + text.encode(codec),
         "ab" + text)
        for term, escape, codec, text in G1_ESCAPE_CASES
    ]  # fmt: skip
    cases += [
        (["ISO 2022 IR 6"], "LO", b"PLAIN ASCII", "PLAIN ASCII"),
        (["ISO 2022 IR 100"], "PN", "Buc^Jérôme".encode("latin_1"), "Buc^Jérôme"),
    ]
    cases += [(list(c), vr, raw, text) for c, vr, raw, text in ISO_2022_CASES]
    return cases


CASES = _cases()


def with_raw_value(ds: Dataset, keyword: str, raw: bytes) -> bytes:
    """The Part 10 bytes of ``ds`` with ``raw`` as the value of ``keyword``.

    pydicom would re-encode a value; a placeholder of the same length is
    written instead and its bytes replaced, so the file holds exactly ``raw``.
    """
    setattr(ds, keyword, (PLACEHOLDER * len(raw)).decode())
    data = part10(ds)
    assert data.count(PLACEHOLDER * len(raw)) == 1
    return data.replace(PLACEHOLDER * len(raw), raw)


def _expected_json(vr: str, text: str) -> object:
    if vr != "PN":
        return text
    return {name: group for name, group in zip(GROUPS, text.split("=")) if group}


class Stored:
    """One generated file per case, as sent."""

    def __init__(self, server: RunningServer) -> None:
        self.files: list[tuple[Dataset, bytes]] = []
        for charsets, vr, raw, _ in CASES:
            ds = make_ct(PatientID="CS-" + new_uid()[-10:])
            # pydicom 3.0.2 knows no ISO_IR 203: write 100, then put 203 back.
            known = [term.replace(" 203", " 100") for term in charsets]
            if known:
                ds.SpecificCharacterSet = known if len(known) > 1 else known[0]
            data = with_raw_value(ds, _KEYWORD_OF_VR[vr], raw)
            declared = "\\".join(charsets).encode()
            data = data.replace("\\".join(known).encode(), declared, 1)
            self.files.append((ds, data))
        response = post_instances(server.dicomweb_url, [f for _, f in self.files])
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def stored(server: RunningServer) -> Stored:
    """Every case stored once for the module."""
    return Stored(server)


@pytest.mark.parametrize("number", range(len(CASES)), ids=[str(c[0]) for c in CASES])
def test_each_character_set_comes_back_as_utf8_json_with_groups_split(
    server: RunningServer, stored: Stored, number: int
) -> None:
    _, vr, _, text = CASES[number]
    ds, _ = stored.files[number]
    response = httpx.get(
        f"{server.dicomweb_url}/studies",
        params={"StudyInstanceUID": ds.StudyInstanceUID, "includefield": "00081030"},
        timeout=30,
    )
    assert response.status_code == 200
    value = response.json()[0][_TAG_OF_VR[vr]]["Value"][0]
    assert value == _expected_json(vr, text)
    assert text.encode("utf-8") in response.content or vr == "PN"


@pytest.mark.parametrize("number", range(len(CASES)), ids=[str(c[0]) for c in CASES])
def test_each_character_set_is_found_by_its_unicode_value_and_kept_as_sent(
    server: RunningServer, stored: Stored, number: int
) -> None:
    _, vr, _, text = CASES[number]
    ds, sent = stored.files[number]
    found = httpx.get(
        f"{server.dicomweb_url}/studies",
        params={"PatientID": ds.PatientID, _KEYWORD_OF_VR[vr]: text},
        timeout=30,
    )
    assert len(found.json()) == 1, found.text
    kept = httpx.get(
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
        timeout=30,
    )
    assert kept.status_code == 200
    assert kept.content == sent


def _mislabelled_gb18030() -> tuple[Dataset, bytes]:
    """ISO_IR 192 declared, GB18030 bytes written: a common modality bug."""
    ds = make_ct(
        PatientID="MISLABEL-" + new_uid()[-8:], SpecificCharacterSet="ISO_IR 192"
    )
    return ds, with_raw_value(ds, "PatientName", "王^小明".encode("gb18030"))


def _undeclared_gbk() -> bytes:
    return Path(corpus_or_data("charset/gen_undeclared_gbk_bytes_ct.dcm")).read_bytes()


@pytest.fixture(scope="module")
def fallback_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """A server told that senders without a rule of their own write GB18030."""
    running = start_server(
        tmp_path_factory.mktemp("fallback") / "data",
        {"DICOMVAULT_CHARSET_FALLBACKS": "SOME_MODALITY=GBK,*=GB18030"},
    )
    yield running
    assert stop_server(running) == 0, running.log()


def test_mislabelled_and_undeclared_chinese_are_found_under_the_real_name(
    fallback_server: RunningServer,
) -> None:
    ds, mislabelled = _mislabelled_gb18030()
    response = post_instances(
        fallback_server.dicomweb_url, [mislabelled, _undeclared_gbk()]
    )
    assert response.status_code == 200, response.text
    found = httpx.get(
        f"{fallback_server.dicomweb_url}/studies",
        params={"PatientName": "王^小明"},
        timeout=30,
    )
    names = sorted(m["00100010"]["Value"][0]["Alphabetic"] for m in found.json())
    assert names == ["王^小明", "王^小明^^^"]
    log = fallback_server.log()
    assert "declares ISO_IR 192 but holds bytes that are not UTF-8: decoded as " \
        "GB18030" in log  # fmt: skip
    assert "declares no character set but holds bytes beyond ASCII: decoded " \
        "as GB18030" in log  # fmt: skip
    assert "王" not in log and ds.PatientID not in log


def test_without_a_rule_mislabelled_bytes_become_replacement_characters(
    server: RunningServer,
) -> None:
    ds, mislabelled = _mislabelled_gb18030()
    assert post_instances(server.dicomweb_url, [mislabelled]).status_code == 200
    found = httpx.get(
        f"{server.dicomweb_url}/studies", params={"PatientID": ds.PatientID}, timeout=30
    )
    assert "\ufffd" in found.json()[0]["00100010"]["Value"][0]["Alphabetic"]
    assert "set DICOMVAULT_CHARSET_FALLBACKS" in server.log() or (
        "kept as U+FFFD" in server.log()
    )
