"""Specific Character Set decoding: every defined term, ISO 2022 resets, data sets."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from archive.charset import (
    TextReport,
    check_text,
    dataset_charsets,
    decode_value,
    fix_dataset_text,
    normalize_term,
)

TESTS_DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"

ESC = b"\x1b"

# (Specific Character Set, VR, Python codec, text), one per defined term
SINGLE_BYTE_CASES = [
    (["ISO_IR 100"], "PN", "latin_1", "Buc^Jérôme"),
    (["ISO_IR 101"], "PN", "iso8859_2", "Wałęsa^Lech"),
    (["ISO_IR 109"], "LO", "iso8859_3", "Ħal Għargħur"),
    (["ISO_IR 110"], "LO", "iso8859_4", "Šiauliai ķēķis"),
    (["ISO_IR 144"], "PN", "iso8859_5", "Люкceмбург"),
    (["ISO_IR 127"], "PN", "iso8859_6", "قباني^لنزار"),
    (["ISO_IR 126"], "PN", "iso8859_7", "Διονυσιος"),
    (["ISO_IR 138"], "PN", "iso8859_8", "שרון^דבורה"),
    (["ISO_IR 148"], "PN", "iso8859_9", "Çavuşoğlu^Ömer"),
    (["ISO_IR 166"], "LO", "iso8859_11", "ภาษาไทย"),
    (["ISO_IR 203"], "PN", "iso8859_15", "Œuvre^Zoë €"),
    (["ISO_IR 13"], "PN", "shift_jis", "ﾔﾏﾀﾞ^ﾀﾛｳ"),
    (["ISO_IR 192"], "PN", "utf_8", "Wang^XiaoDong=王^小東="),
    (["GB18030"], "PN", "gb18030", "Ji^Xiang=𠮷^㐀祥"),
    (["GBK"], "PN", "gbk", "Zhu^Rongkun=朱^镕堃"),
    ([""], "LO", "ascii", "PLAIN ASCII"),
    ([], "LO", "ascii", "PLAIN ASCII"),
]

# (value 1, escape sequence, Python codec, text): single-byte sets designated
# to G1 by ISO 2022 escape sequences (PS3.3 Table C.12-3)
G1_ESCAPE_CASES = [
    ("ISO 2022 IR 100", b"-A", "latin_1", "Müller"),
    ("ISO 2022 IR 101", b"-B", "iso8859_2", "łę"),
    ("ISO 2022 IR 109", b"-C", "iso8859_3", "Ħ"),
    ("ISO 2022 IR 110", b"-D", "iso8859_4", "Š"),
    ("ISO 2022 IR 144", b"-L", "iso8859_5", "Иван"),
    ("ISO 2022 IR 127", b"-G", "iso8859_6", "قباني"),
    ("ISO 2022 IR 126", b"-F", "iso8859_7", "Δέλτα"),
    ("ISO 2022 IR 138", b"-H", "iso8859_8", "שרון"),
    ("ISO 2022 IR 148", b"-M", "iso8859_9", "Öğr"),
    ("ISO 2022 IR 166", b"-T", "iso8859_11", "ไทย"),
    ("ISO 2022 IR 203", b"-b", "iso8859_15", "Œž€"),
    ("ISO 2022 IR 13", b")I", "shift_jis", "ｱｲ"),
]

# PS3.5 Annexes H, I and K, and single-byte sets switched within one value
ISO_2022_CASES = [
    (
        ["", "ISO 2022 IR 87"],
        "PN",
        (
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B="
            b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
        ),
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
    ),
    (
        ["ISO 2022 IR 13", "ISO 2022 IR 87"],
        "PN",
        (
            b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J="
            b"\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J"
        ),
        "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
    ),
    (
        ["", "ISO 2022 IR 159"],
        "LO",
        b"\x1b$(D0!\x1b(B",
        "丂",
    ),
    (
        ["", "ISO 2022 IR 149"],
        "PN",
        (
            b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7="
            b"\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf"
        ),
        "Hong^Gildong=洪^吉洞=홍^길동",
    ),
    (
        ["", "ISO 2022 IR 58"],
        "PN",
        b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=",
        "Zhang^XiaoDong=张^小东=",
    ),
    (
        ["", "ISO 2022 IR 58"],
        "PN",
        (
            b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab="
            b"\x1b$)Azh\xa8\xa1ng^\x1b$)Axi\xa8\xa3od\xa8\xadng"
        ),
        "Zhang^XiaoDong=张^小东=zhāng^xiǎodōng",
    ),
    (
        ["ISO 2022 IR 6", "ISO 2022 IR 100"],
        "LO",
        b"M\x1b-A\xfcller",
        "Müller",
    ),
    (
        ["ISO 2022 IR 100", "ISO 2022 IR 101"],
        "LO",
        b"J\xe9r\xf4me \x1b-B\xb3\xea",
        "Jérôme łę",
    ),
]

# File, tag keyword, expected text: names from MANIFEST.md, checked against the
# bytes with Python's own codecs where MANIFEST.md names a different person.
CORPUS_TEXT = [
    ("charset/chinese_gb18030.dcm", "PatientName", "Wang^XiaoDong=王^小东="),
    (
        "charset/chinese_iso2022_ir58_gb2312.dcm",
        "PatientName",
        "Zhang^XiaoDong=张^小东=",
    ),
    ("charset/chinese_iso_ir_192_utf8.dcm", "PatientName", "Wang^XiaoDong=王^小東="),
    ("charset/gen_chinese_gb18030_4byte_ct.dcm", "PatientName", "Ji^Xiang=𠮷^㐀祥"),
    (
        "charset/gen_chinese_gb18030_4byte_ct.dcm",
        "InstitutionName",
        "上海市第一人民医院",
    ),
    ("charset/gen_chinese_gb18030_4byte_ct.dcm", "StudyDescription", "头颅CT"),
    ("charset/gen_chinese_gbk_ct.dcm", "PatientName", "Zhu^Rongkun=朱^镕堃"),
    ("charset/gen_chinese_gbk_ct.dcm", "StudyDescription", "胸部CT平扫"),
    (
        "charset/gen_chinese_iso2022_ir58_3groups_ct.dcm",
        "PatientName",
        "Zhang^XiaoDong=张^小东=zhāng^xiǎodōng",
    ),
    ("charset/gen_chinese_iso2022_ir58_3groups_ct.dcm", "StudyDescription", "CT胸部"),
    (
        "charset/gen_chinese_utf8_multifield_ct.dcm",
        "PatientName",
        "Li^Na=李^娜=lǐ^nà",
    ),
    (
        "charset/gen_chinese_utf8_multifield_ct.dcm",
        "InstitutionName",
        "四川大学华西医院",
    ),
    (
        "charset/gen_chinese_utf8_multifield_ct.dcm",
        "StudyDescription",
        "腹部增强CT",
    ),
    (
        "charset/japanese_iso2022_ir87.dcm",
        "PatientName",
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
    ),
    (
        "charset/korean_iso2022_ir149.dcm",
        "PatientName",
        "Hong^Gildong=洪^吉洞=홍^길동",
    ),
]


def corpus_or_data(relative: str) -> Path:
    """A corpus file from ../shared/testdata, else its copy in tests/data."""
    for base in (CORPUS, TESTS_DATA):
        if (base / relative).is_file():
            return base / relative
    pytest.skip(f"{relative} is neither in the corpus nor in tests/data")


def raw_value(ds: Dataset, keyword: str) -> bytes:
    """The undecoded bytes of a top-level element pydicom has not converted."""
    elem = ds.get_item(keyword)
    assert isinstance(elem.value, bytes)
    return elem.value


@pytest.mark.parametrize(("charsets", "vr", "codec", "text"), SINGLE_BYTE_CASES)
def test_decode_value_decodes_each_term_without_code_extensions(
    charsets: list[str], vr: str, codec: str, text: str
) -> None:
    assert decode_value(text.encode(codec), charsets, vr) == text


@pytest.mark.parametrize(("term", "escape", "codec", "text"), G1_ESCAPE_CASES)
def test_decode_value_follows_escapes_to_each_single_byte_set(
    term: str, escape: bytes, codec: str, text: str
) -> None:
    raw = b"ab" + ESC + escape + text.encode(codec)

    assert decode_value(raw, ["", term], "LO") == "ab" + text


@pytest.mark.parametrize(("charsets", "vr", "raw", "expected"), ISO_2022_CASES)
def test_decode_value_follows_iso_2022_escape_sequences(
    charsets: list[str], vr: str, raw: bytes, expected: str
) -> None:
    assert decode_value(raw, charsets, vr) == expected


def test_decode_value_strips_the_ir_58_escape_that_pydicom_leaves() -> None:
    raw = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab="
    decoded = decode_value(raw, ["", "ISO 2022 IR 58"], "PN")
    encodings = pydicom.charset.convert_encodings(["", "ISO 2022 IR 58"])
    pydicom_text = pydicom.charset.decode_bytes(raw, encodings, set())

    assert "\x1b" not in decoded
    assert "\x1b" in pydicom_text


def test_decode_value_reads_gr_bytes_as_the_declared_g1_set_without_escape() -> None:
    chest = b"CT\xd0\xd8\xb2\xbf"
    assert decode_value(chest, ["", "ISO 2022 IR 58"], "LO") == "CT胸部"
    assert decode_value(b"\xc8\xab", ["", "ISO 2022 IR 149"], "SH") == "홍"


def test_pn_delimiters_return_to_the_initial_g1_set() -> None:
    raw = b"\x1b-L" + "Иван".encode("iso8859_5") + b"^\xe9"
    charsets = ["ISO 2022 IR 100", "ISO 2022 IR 144"]

    assert decode_value(raw, charsets, "PN") == "Иван^é"
    assert decode_value(raw, charsets, "LO") == "Иван^щ"


def test_backslash_returns_to_the_initial_set_except_in_single_valued_text() -> None:
    raw = b"\x1b-L\xb8\\\xe9"
    charsets = ["ISO 2022 IR 100", "ISO 2022 IR 144"]

    assert decode_value(raw, charsets, "LO") == "И\\é"
    assert decode_value(raw, charsets, "LT") == "И\\щ"
    assert decode_value(b"\x1b-L\xb8\r\n\xe9", charsets, "LT") == "И\r\né"


def test_two_byte_g0_characters_are_not_taken_for_delimiters() -> None:
    # The JIS X 0208 code of 表 is 49/3D: its second byte is the '=' of PN.
    raw = b"Hyou=\x1b$BI=\x1b(B"
    assert decode_value(raw, ["", "ISO 2022 IR 87"], "PN") == "Hyou=表"


def test_undecodable_bytes_become_replacement_characters() -> None:
    assert decode_value(b"\x1b$)A\xd5", ["", "ISO 2022 IR 58"], "PN") == "\ufffd"
    assert decode_value(b"\x1b%Zabc", ["", "ISO 2022 IR 87"], "LO") == "\ufffd%Zabc"
    assert decode_value(b"\xff\xfe", ["ISO_IR 192"], "LO") == "\ufffd\ufffd"


def test_undeclared_bytes_are_utf_8_when_valid_then_the_fallback() -> None:
    gbk = "王^小明".encode("gbk")

    assert decode_value(gbk, [], "PN", fallback="GB18030") == "王^小明"
    assert decode_value("Müller".encode(), [], "PN") == "Müller"
    assert decode_value("Müller".encode(), [], "PN", fallback="GB18030") == "Müller"
    assert decode_value(gbk, [], "PN") == "\ufffd\ufffd^\ufffd\ufffd\ufffd\ufffd"


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("ISO IR 100", "ISO_IR 100"),
        ("ISO-IR 192", "ISO_IR 192"),
        ("iso_ir100", "ISO_IR 100"),
        ("ISO 2022 IR 087", "ISO 2022 IR 87"),
        (" GB18030 ", "GB18030"),
    ],
)
def test_normalize_term_mends_common_misspellings(term: str, expected: str) -> None:
    assert normalize_term(term) == expected


@pytest.mark.parametrize(("relative", "keyword", "expected"), CORPUS_TEXT)
def test_corpus_text_decodes_to_the_expected_unicode(
    relative: str, keyword: str, expected: str
) -> None:
    ds = pydicom.dcmread(corpus_or_data(relative))
    charsets = dataset_charsets(ds)
    vr = ds.get_item(keyword).VR

    assert decode_value(raw_value(ds, keyword), charsets, vr).rstrip() == expected


@pytest.mark.parametrize(("relative", "keyword", "expected"), CORPUS_TEXT)
def test_fix_dataset_text_puts_the_expected_unicode_in_the_data_set(
    relative: str, keyword: str, expected: str
) -> None:
    ds = pydicom.dcmread(corpus_or_data(relative))
    fix_dataset_text(ds)

    assert str(ds[keyword].value) == expected.rstrip("=")


def test_fix_dataset_text_uses_the_fallback_for_undeclared_bytes() -> None:
    path = corpus_or_data("charset/gen_undeclared_gbk_bytes_ct.dcm")
    with_fallback = pydicom.dcmread(path)
    without = pydicom.dcmread(path)

    fix_dataset_text(with_fallback, fallback="GB18030")
    fix_dataset_text(without)

    assert str(with_fallback.PatientName) == "王^小明^^^"
    assert str(without.PatientName).startswith("\ufffd")


def test_fix_dataset_text_decodes_items_with_their_own_character_set() -> None:
    ds = pydicom.dcmread(corpus_or_data("charset/sequence_with_different_charset.dcm"))
    fix_dataset_text(ds)
    item = ds.RequestedProcedureCodeSequence[0]

    expected = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"
    assert str(item.PatientName) == expected
    assert str(ds.RequestingPhysician) == "Doctor^Who^^MD"
    assert dataset_charsets(item, dataset_charsets(ds)) == [
        "ISO 2022 IR 13",
        "ISO 2022 IR 87",
    ]


def test_fix_dataset_text_leaves_ascii_values_to_pydicom() -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientID = "ABC"

    fix_dataset_text(ds)

    assert ds.PatientID == "ABC"


def test_check_text_tells_invalid_utf_8_under_iso_ir_192_and_undeclared_bytes() -> None:
    declared = Dataset()
    declared.SpecificCharacterSet = "ISO_IR 192"
    declared.PatientName = "王^小明"
    raw = pydicom.dcmread(_saved(declared), force=True)
    assert check_text(raw, "GB18030") == TextReport()
    path = corpus_or_data("charset/gen_undeclared_gbk_bytes_ct.dcm")
    undeclared = check_text(pydicom.dcmread(path), "GB18030")
    assert undeclared == TextReport(undeclared=True, fallback="GB18030")
    assert check_text(pydicom.dcmread(path)).replaced


def test_fix_dataset_text_reads_a_mislabelled_data_set_as_the_fallback() -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "PLACE^HOLDER"
    data = _saved(ds).getvalue().replace(b"PLACE^HOLDER", "王^小明^^".encode("gb18030"))
    found = pydicom.dcmread(io.BytesIO(data), force=True)
    report = check_text(found, "GB18030")
    fix_dataset_text(found, fallback="GB18030", mislabelled=report.mislabelled)

    assert report == TextReport(mislabelled="ISO_IR 192", fallback="GB18030")
    assert str(found.PatientName) == "王^小明^^"


def _saved(ds: Dataset) -> io.BytesIO:
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True)
    buffer.seek(0)
    return buffer
