"""UID syntax: the strict PS3.5 9.1 rule and the one ingest accepts."""

from __future__ import annotations

import pytest

from archive.errors import InvalidUID
from archive.uids import check_uid, is_acceptable_uid, is_valid_uid

VALID = ["0", "1.2.840.10008.1.2.1", "2.25.329800735698586629295641978511506172918"]
VALID_64 = "1." + "2" * 62

# Not UIDs under any rule: path tricks, control characters, bad shapes
NEVER_UIDS = [
    "",
    "..%2f",
    "%00",
    "/../",
    "1.2/../../x",
    "1.2.3.",
    ".1.2.3",
    "1..2",
    "1.2 .3",
    "1.2.3 ",
    " 1.2.3",
    "1.2.\n3",
    "1.2.3\x00",
    "1.2.a",
    "1.2.٣",
    VALID_64 + "3",
]

LEADING_ZEROS = ["1.2.246.352.91.0000217.20050503182534", "01.2", "1.00"]


@pytest.mark.parametrize("text", [*VALID, VALID_64])
def test_is_valid_uid_accepts_ps3_5_uids(text: str) -> None:
    assert is_valid_uid(text)
    assert is_acceptable_uid(text)


@pytest.mark.parametrize("text", NEVER_UIDS)
def test_is_valid_uid_and_is_acceptable_uid_reject_non_uids(text: str) -> None:
    assert not is_valid_uid(text)
    assert not is_acceptable_uid(text)


@pytest.mark.parametrize("text", LEADING_ZEROS)
def test_leading_zero_components_are_acceptable_but_not_valid(text: str) -> None:
    assert not is_valid_uid(text)
    assert is_acceptable_uid(text)


def test_uid_of_65_characters_is_rejected() -> None:
    assert len(VALID_64 + "3") == 65
    assert not is_acceptable_uid(VALID_64 + "3")
    assert is_acceptable_uid(VALID_64)


def test_check_uid_returns_an_acceptable_uid_unchanged() -> None:
    assert check_uid(LEADING_ZEROS[0], "StudyInstanceUID") == LEADING_ZEROS[0]


@pytest.mark.parametrize("text", NEVER_UIDS)
def test_check_uid_raises_invalid_uid_naming_what_and_the_value(text: str) -> None:
    with pytest.raises(InvalidUID) as raised:
        check_uid(text, "Study UID in the path")
    message = str(raised.value)
    assert message.startswith("Study UID in the path ")
    assert repr(text) in message
