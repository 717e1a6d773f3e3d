"""The index under concurrent senders: nobody waits on a study, nothing is lost.

Runs against a private embedded PostgreSQL (pgserver) in a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from archive.errors import SeriesMismatch
from archive.index import Index
from tests.archive.index_rows import rows_for
from tests.factory import new_uid


async def _count(index: Index, sql: str, *args: object) -> int:
    async with index.acquire() as conn:
        return int(await conn.fetchval(sql, *args))


async def test_a_sender_does_not_wait_for_another_into_the_same_study(
    index: Index,
) -> None:
    study, series = new_uid(), new_uid()
    assert await index.insert_instance(*rows_for(study, series))
    first_study, first_series, _ = rows_for(study, series)
    async with index.acquire() as conn:
        # A sender half-way through its transaction: study and series taken.
        transaction = conn.transaction()
        await transaction.start()
        try:
            study_pk = await index._upsert_study(conn, first_study)
            await index._upsert_series(conn, first_series, study_pk)
            # A second sender into the same study and series finishes meanwhile.
            stored = await asyncio.wait_for(
                index.insert_instance(*rows_for(study, series)), timeout=10
            )
            assert stored
        finally:
            await transaction.rollback()
    assert (
        await _count(
            index,
            "SELECT count(*) FROM instance JOIN series ON series.pk = series_pk "
            "WHERE series_instance_uid = $1",
            series,
        )
        == 2
    )


async def test_concurrent_first_senders_share_one_study_and_series_row(
    index: Index,
) -> None:
    study, series = new_uid(), new_uid()
    results = await asyncio.gather(
        *(index.insert_instance(*rows_for(study, series)) for _ in range(10))
    )
    assert results == [True] * 10
    assert (
        await _count(
            index, "SELECT count(*) FROM study WHERE study_instance_uid = $1", study
        )
        == 1
    )
    assert (
        await _count(
            index, "SELECT count(*) FROM series WHERE series_instance_uid = $1", series
        )
        == 1
    )
    assert (
        await _count(
            index,
            "SELECT count(*) FROM instance JOIN series ON series.pk = series_pk "
            "WHERE series_instance_uid = $1",
            series,
        )
        == 10
    )


async def test_a_series_filed_under_another_study_is_refused_and_nothing_added(
    index: Index,
) -> None:
    series = new_uid()
    assert await index.insert_instance(*rows_for(new_uid(), series))
    intruder_study = new_uid()
    with pytest.raises(SeriesMismatch):
        await index.insert_instance(*rows_for(intruder_study, series))
    assert (
        await _count(
            index,
            "SELECT count(*) FROM study WHERE study_instance_uid = $1",
            intruder_study,
        )
        == 0
    )


async def _instance_row(index: Index, sop_instance_uid: str) -> dict[str, object]:
    async with index.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM instance WHERE sop_instance_uid = $1", sop_instance_uid
        )
    assert row is not None
    return dict(row)


async def test_an_instance_of_a_known_series_is_indexed_in_one_statement(
    database_url: str, index: Index
) -> None:
    study, series = new_uid(), new_uid()
    first, second = rows_for(study, series), rows_for(study, series)
    assert await index.insert_instance(*first)
    single = await Index.connect(database_url, pool_size=1)
    queries: list[str] = []

    def log(record: Any) -> None:
        queries.append(record.query)

    try:
        async with single.acquire() as conn:
            inner = conn._con
            inner.add_query_logger(log)
        assert await single.insert_instance(*second)
        # Sent again: already indexed, nothing changes.
        assert not await single.insert_instance(*second)
        inner.remove_query_logger(log)
    finally:
        await single.close()
    assert len(queries) == 2
    stored = await _instance_row(index, second[2].values["sop_instance_uid"])
    before = await _instance_row(index, first[2].values["sop_instance_uid"])
    assert stored["series_pk"] == before["series_pk"]
    for name, value in second[2].values.items():
        assert stored[name] == value, name
    assert json.loads(str(stored["metadata"])) == json.loads(second[2].metadata)
