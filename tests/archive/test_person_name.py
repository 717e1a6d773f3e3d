"""Person name keys for literal matching and words for fuzzy matching."""

from __future__ import annotations

import pytest

from archive.person_name import (
    fold,
    fuzzy_tsquery,
    group_key,
    name_words,
    query_key,
    query_words,
)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("王^小明^^^", "王^小明"),
        ("DOE^JOHN ^^^ ", "doe^john"),
        ("Doe^^^Dr.", "doe^^^dr."),
        ("^^", None),
        ("", None),
        (None, None),
    ],
)
def test_group_key_drops_insignificant_trailing_delimiters(
    group: str | None, expected: str | None
) -> None:
    assert group_key(group) == expected


def test_query_key_keeps_groups_apart() -> None:
    assert query_key("Wang^XiaoDong^=王^小东^^") == "wang^xiaodong=王^小东"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Müller", "muller"), ("ZHĀNG", "zhang"), ("Łódź", "lodz"), ("ｱｲ", "アイ")],
)
def test_fold_removes_case_accents_and_width(text: str, expected: str) -> None:
    assert fold(text) == expected


def test_name_words_hold_each_word_and_each_group_joined() -> None:
    assert name_words("Wang^XiaoDong=王^小东=wáng^xiǎodōng") == sorted(
        {"wang", "xiaodong", "wangxiaodong", "王", "小东", "王小东"}
    )
    assert name_words("O'Neil^Mary") == sorted({"o", "neil", "mary", "oneilmary"})
    assert name_words(None) == []


def test_query_words_end_at_a_wildcard() -> None:
    assert query_words("J?HN^do*e") == ["j", "do"]
    assert query_words("*") == []


def test_fuzzy_tsquery_quotes_words_and_joins_alternatives() -> None:
    assert fuzzy_tsquery("xiao dong") == "(('xiao':* & 'dong':*) | 'xiaodong':*)"
    assert fuzzy_tsquery("a\\b") == "'a':* | 'b':*"
    assert fuzzy_tsquery("^") is None
