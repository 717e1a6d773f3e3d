"""The index under concurrent senders: nobody waits on a study, nothing is lost.

Runs against a private embedded PostgreSQL (pgserver) in a temporary folder.
"""

from __future__ import annotations

import asyncio

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
