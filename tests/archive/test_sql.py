"""Compiling queries to SQL: DT bounds become timestamps, forged cursors are refused."""

from __future__ import annotations

from datetime import datetime

import pytest

from archive._sql import compile_search
from archive.attributes import Level
from archive.errors import InvalidQuery
from archive.query import CursorValue, OrderKey, Query


@pytest.mark.parametrize(
    ("order", "after"),
    [
        ((), (99999999999999999999999,)),
        ((), (-(2**63) - 1,)),
        ((), (True,)),
        ((), (None,)),
        ((OrderKey("PatientName"),), ("\x00", 1)),
        ((OrderKey("PatientName"),), ("a\x00b", 1)),
        ((OrderKey("PatientName"),), ("\ud800", 1)),
        ((OrderKey("PatientName"),), (1, 1)),
        ((OrderKey("SeriesNumber"),), (2**63, 1)),
        ((OrderKey("StudyDate", descending=True),), ("20200101", 2**64)),
    ],
)
def test_cursor_values_the_sort_columns_cannot_hold_are_refused(
    order: tuple[OrderKey, ...], after: tuple[CursorValue, ...]
) -> None:
    level = Level.SERIES if order and order[0].keyword == "SeriesNumber" else None
    query = Query(level or Level.STUDY, order=order, after=after)
    with pytest.raises(InvalidQuery, match="paging cursor"):
        compile_search(query)


def test_cursor_values_at_the_edges_of_their_columns_are_accepted() -> None:
    for pk in (2**63 - 1, -(2**63)):
        assert pk in compile_search(Query(Level.STUDY, after=(pk,))).params
    by_name = (OrderKey("PatientName"),)
    named = Query(Level.STUDY, order=by_name, after=("müller^ä", 1))
    assert "müller^ä" in compile_search(named).params


def test_date_time_keys_compare_stored_json_as_utc_timestamps() -> None:
    query = Query(Level.IMAGE, keys={"AcquisitionDateTime": "2011-"})
    compiled = compile_search(query)
    assert datetime(2011, 1, 1) in compiled.params
    assert "regexp_match" in compiled.sql and "::timestamp" in compiled.sql
    assert compiled.unsupported == ()


def test_date_time_keys_in_sequences_are_range_matched_too() -> None:
    query = Query(
        Level.IMAGE,
        keys={
            "RadiopharmaceuticalInformationSequence.RadiopharmaceuticalStartDateTime": (
                "20200101-20200102"
            )
        },
    )
    compiled = compile_search(query)
    assert datetime(2020, 1, 2, 23, 59, 59, 999999) in compiled.params


def test_malformed_date_time_keys_are_refused_before_any_sql() -> None:
    for value in ("abc", "20201399", "20240230"):
        with pytest.raises(InvalidQuery):
            compile_search(Query(Level.IMAGE, keys={"AcquisitionDateTime": value}))
