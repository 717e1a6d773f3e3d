"""Index rows of synthetic instances, for tests that write to the index directly."""

from __future__ import annotations

import io

from archive.index import InstanceRow, SeriesRow, StudyRow
from archive.parse import parse_instance
from archive.records import index_rows
from tests.factory import make_ct, new_uid, part10

Rows = tuple[StudyRow, SeriesRow, InstanceRow]


def rows_for(study: str, series: str) -> Rows:
    """Index rows of a fresh instance in the given study and series."""
    data = part10(make_ct(study=study, series=series))
    parsed = parse_instance(io.BytesIO(data), len(data))
    return index_rows(
        parsed, object_key=new_uid(), object_size=len(data), sha256=b"\0" * 32
    )
