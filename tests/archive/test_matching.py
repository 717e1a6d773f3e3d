"""PS3.4 C.2.2.2 matching: values become the right matchers, bad ones are refused."""

from __future__ import annotations

import pytest

from archive.errors import InvalidQuery
from archive.matching import (
    AnyOf,
    Range,
    Single,
    UidList,
    Universal,
    Wildcard,
    build_matcher,
    datetime_bounds,
    is_calendar_date,
    like_pattern,
    normalize_date,
    normalize_time,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20210115", Single("20210115")),
        ("-20210115", Range(None, "20210115")),
        ("20210115-", Range("20210115", None)),
        ("20200101-20201231", Range("20200101", "20201231")),
        ("2021.01.15", Single("20210115")),
    ],
)
def test_date_values_become_single_or_open_ended_ranges(
    value: str, expected: object
) -> None:
    assert build_matcher("StudyDate", "DA", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2021011",
        "20211315",
        "abc",
        "-",
        "20211231-20210101",
        "20240230",
        "20230229",
        "20210431",
        "00000101",
        "20240101-20240230",
        "-20210631",
        "20210229-",
        "20210115\\20210230",
        "２０２１０１１５",
    ],
)
def test_malformed_dates_are_refused(value: str) -> None:
    with pytest.raises(InvalidQuery):
        build_matcher("StudyDate", "DA", value)


def test_leap_days_are_real_dates() -> None:
    assert build_matcher("StudyDate", "DA", "20240229") == Single("20240229")
    assert build_matcher("StudyDate", "DA", "20000229-") == Range("20000229", None)
    assert is_calendar_date("20240229")
    assert not is_calendar_date("19000229")


def test_time_ranges_fill_missing_precision_towards_the_open_side() -> None:
    assert build_matcher("StudyTime", "TM", "10-1230") == Range(
        "100000.000000", "123059.999999"
    )
    assert build_matcher("StudyTime", "TM", "-12") == Range(None, "125959.999999")


def test_time_range_that_crosses_midnight_is_kept_as_a_wrapped_range() -> None:
    matcher = build_matcher("StudyTime", "TM", "220000-020000")
    assert isinstance(matcher, Range)
    assert matcher.crosses_midnight


def test_single_time_matches_the_whole_of_its_precision() -> None:
    assert build_matcher("StudyTime", "TM", "1015") == Range(
        "101500.000000", "101559.999999"
    )


def test_uid_lists_split_on_backslash_and_are_validated() -> None:
    assert build_matcher("StudyInstanceUID", "UI", "1.2.3\\1.2.4") == UidList(
        ("1.2.3", "1.2.4")
    )
    with pytest.raises(InvalidQuery):
        build_matcher("StudyInstanceUID", "UI", "1.2.3\\..%2f")


def test_wildcards_become_like_patterns_and_sql_metacharacters_are_escaped() -> None:
    assert build_matcher("PatientID", "LO", "AB*") == Wildcard("AB%")
    assert build_matcher("PatientID", "LO", "A?C") == Wildcard("A_C")
    assert like_pattern("50%_a\\b*") == "50\\%\\_a\\\\b%"


def test_person_names_are_matched_lower_case() -> None:
    assert build_matcher("PatientName", "PN", "DOE^J*") == Wildcard("doe^j%")
    assert build_matcher("PatientName", "PN", "Doe^John") == Single("doe^john")


def test_empty_value_and_lone_star_are_universal() -> None:
    assert build_matcher("PatientID", "LO", "") == Universal()
    assert build_matcher("PatientID", "LO", "*") == Universal()


def test_comma_in_a_text_value_is_literal() -> None:
    assert build_matcher("StudyDescription", "LO", "Chest, PA") == Single("Chest, PA")


def test_backslash_in_a_text_value_lists_alternatives() -> None:
    assert build_matcher("Modality", "CS", "CT\\MR") == AnyOf(
        (Single("CT"), Single("MR"))
    )


def test_integer_keys_refuse_non_numbers() -> None:
    assert build_matcher("SeriesNumber", "IS", "007") == Single("7")
    with pytest.raises(InvalidQuery):
        build_matcher("SeriesNumber", "IS", "x1")


def test_normalisation_of_stored_values() -> None:
    assert normalize_date("20210230") == "20210230"
    assert normalize_date("2021-01-15") is None
    assert normalize_time("1015") == "101500.000000"
    assert normalize_time("101530.5") == "101530.500000"
    assert normalize_time("250000") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2011", Range("20110101000000.000000", "20111231235959.999999")),
        ("201102", Range("20110201000000.000000", "20110228235959.999999")),
        ("20120229", Range("20120229000000.000000", "20120229235959.999999")),
        ("2011052514", Range("20110525140000.000000", "20110525145959.999999")),
        (
            "20110525145628.35",
            Range("20110525145628.350000", "20110525145628.359999"),
        ),
        (
            "20110525145628.350000",
            Range("20110525145628.350000", "20110525145628.350000"),
        ),
        ("20110525145660", Range("20110525145659.999999", "20110525145659.999999")),
    ],
)
def test_a_single_date_time_matches_the_whole_period_it_names(
    value: str, expected: Range
) -> None:
    assert build_matcher("AcquisitionDateTime", "DT", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2011-", Range("20110101000000.000000", None)),
        ("-2011", Range(None, "20111231235959.999999")),
        ("2011-2012", Range("20110101000000.000000", "20121231235959.999999")),
        (
            "20110525145628-20110525145629.5",
            Range("20110525145628.000000", "20110525145629.599999"),
        ),
        ("2011 - 201201", Range("20110101000000.000000", "20120131235959.999999")),
    ],
)
def test_date_time_range_ends_cover_the_periods_they_name(
    value: str, expected: Range
) -> None:
    assert build_matcher("AcquisitionDateTime", "DT", value) == expected


def test_date_time_offsets_shift_to_utc_and_values_without_one_are_utc() -> None:
    assert datetime_bounds("20110525145628+0100") == (
        "20110525135628.000000",
        "20110525135628.999999",
    )
    assert datetime_bounds("20110525145628") == (
        "20110525145628.000000",
        "20110525145628.999999",
    )
    # The shift crosses midnight and the year's end.
    assert datetime_bounds("20111231-0500") == (
        "20111231050000.000000",
        "20120101045959.999999",
    )


def test_a_hyphen_is_a_range_separator_only_when_both_ends_read_in_order() -> None:
    # 20110525 to the year 500 ends before it starts: a negative offset instead.
    assert build_matcher("AcquisitionDateTime", "DT", "20110525-0500") == Range(
        "20110525050000.000000", "20110526045959.999999"
    )
    assert build_matcher(
        "AcquisitionDateTime", "DT", "20110525120000+0100-20110525120000-0100"
    ) == Range("20110525110000.000000", "20110525130000.999999")
    assert build_matcher("AcquisitionDateTime", "DT", "-20110525-0500") == Range(
        None, "20110526045959.999999"
    )


def test_date_time_alternatives_are_each_ranges() -> None:
    assert build_matcher("AcquisitionDateTime", "DT", "2011\\2013-") == AnyOf(
        (
            Range("20110101000000.000000", "20111231235959.999999"),
            Range("20130101000000.000000", None),
        )
    )


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "201",
        "20201399",
        "20201301",
        "20200230",
        "2020022",
        "20200101240000",
        "20200101236000",
        "20200101235961",
        "202001011200.5",
        "20200101120000.1234567",
        "20200101+1500",
        "20200101-1201",
        "20200101+0160",
        "2012-2011",
        "0000",
        "-",
        "2011*",
        "2011?",
        "20110525T1200",
    ],
)
def test_malformed_date_times_are_refused(value: str) -> None:
    with pytest.raises(InvalidQuery):
        build_matcher("AcquisitionDateTime", "DT", value)
