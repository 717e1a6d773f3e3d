"""Ingest writes the object while its index transaction is open, and commits after.

These run the real index (embedded PostgreSQL) and the in-memory store; a
store that holds or fails its writes shows the order: no index row is visible
before its object is written, and a failed write leaves no row and no object.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from pydicom.dataset import Dataset

from archive.errors import StoreUnavailable
from archive.index import Index
from archive.ingest import DuplicatePolicy, Ingestor, Outcome
from storage.keys import FileKeyProvider
from storage.memory import MemoryStore
from tests.factory import make_ct, part10

pytestmark = pytest.mark.timeout(60)


class HeldStore(MemoryStore):
    """Writes wait for ``release``; ``entered`` is set when one has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        self.entered.set()
        assert self.release.wait(30), "the test never released the write"
        return super().write(key, chunks)


class FullStore(MemoryStore):
    """Every write fails as a full disk does."""

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        raise OSError(28, "No space left on device")


def _ingestor(index: Index, store: MemoryStore) -> Ingestor:
    keys = FileKeyProvider("test-kek", {1: os.urandom(32)})
    return Ingestor(
        index,
        store,
        keys,
        chunk_bytes=65536,
        duplicate_policy=DuplicatePolicy.REJECT,
    )


async def _rows(index: Index, sop_instance_uid: str) -> int:
    async with index.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM instance WHERE sop_instance_uid = $1",
            sop_instance_uid,
        )
    return int(count)


async def _store_held(index: Index) -> tuple[HeldStore, Dataset, asyncio.Task[Any]]:
    """Start storing a new instance into a held store; return once its write began."""
    store = HeldStore()
    ds = make_ct()
    data = part10(ds)
    task = asyncio.create_task(
        _ingestor(index, store).store(io.BytesIO(data), len(data))
    )
    assert await asyncio.to_thread(store.entered.wait, 30)
    return store, ds, task


async def test_the_index_row_is_committed_only_after_the_object_is_written(
    index: Index,
) -> None:
    store, ds, task = await _store_held(index)
    # The rows may be added already, but nobody else sees them yet.
    await asyncio.sleep(0.2)
    assert await _rows(index, ds.SOPInstanceUID) == 0
    assert list(store.keys()) == []
    store.release.set()
    result = await task
    assert result.outcome is Outcome.STORED
    assert await _rows(index, ds.SOPInstanceUID) == 1
    assert len(list(store.keys())) == 1


async def test_a_failed_write_leaves_no_row_no_study_and_no_object(
    index: Index,
) -> None:
    store = FullStore()
    ds = make_ct()
    data = part10(ds)
    with pytest.raises(StoreUnavailable):
        await _ingestor(index, store).store(io.BytesIO(data), len(data))
    assert await _rows(index, ds.SOPInstanceUID) == 0
    async with index.acquire() as conn:
        studies = await conn.fetchval(
            "SELECT count(*) FROM study WHERE study_instance_uid = $1",
            ds.StudyInstanceUID,
        )
    assert studies == 0
    assert list(store.keys()) == []


async def test_a_resent_instance_writes_no_second_object(index: Index) -> None:
    store = MemoryStore()
    ingestor = _ingestor(index, store)
    data = part10(make_ct())
    first = await ingestor.store(io.BytesIO(data), len(data))
    again = await ingestor.store(io.BytesIO(data), len(data))
    assert (first.outcome, again.outcome) == (Outcome.STORED, Outcome.ALREADY_STORED)
    assert len(list(store.keys())) == 1


async def test_a_cancelled_store_leaves_no_row_and_removes_its_object(
    index: Index,
) -> None:
    store, ds, task = await _store_held(index)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The write was not stopped midway; once it ends, its object is removed.
    store.release.set()
    for _ in range(100):
        if not list(store.keys()):
            break
        await asyncio.sleep(0.05)
    assert list(store.keys()) == []
    assert await _rows(index, ds.SOPInstanceUID) == 0


async def test_a_released_connection_gets_no_reset_round_trip(index: Index) -> None:
    """The pool sends nothing when a connection comes back (see Index.connect)."""
    queries: list[str] = []

    def log(record: Any) -> None:
        queries.append(record.query)

    async with index.acquire() as conn:
        inner = conn._con
        inner.add_query_logger(log)
        await conn.fetchval("SELECT 1")
    inner.remove_query_logger(log)
    assert queries == ["SELECT 1"]


async def test_a_store_cancelled_while_its_row_is_written_keeps_a_committed_row_whole(
    index: Index,
) -> None:
    """A timeout may cut a request off after its insert was sent: if that commits,
    the object stays, so the row never points at nothing."""
    store = MemoryStore()
    ds = make_ct()
    data = part10(ds)
    async with index.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE instance IN EXCLUSIVE MODE")
        task = asyncio.create_task(
            _ingestor(index, store).store(io.BytesIO(data), len(data))
        )
        for _ in range(200):
            # Activity statistics are a snapshot per transaction: renew it.
            await blocker.execute("SELECT pg_stat_clear_snapshot()")
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )
            if waiting:
                break
            await asyncio.sleep(0.02)
        assert waiting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The lock is gone: the insert that was sent commits now.
    for _ in range(100):
        if await _rows(index, ds.SOPInstanceUID):
            break
        await asyncio.sleep(0.05)
    assert await _rows(index, ds.SOPInstanceUID) == 1
    await asyncio.sleep(0.2)  # any removal would have run by now
    async with index.acquire() as conn:
        key = await conn.fetchval(
            "SELECT object_key FROM instance WHERE sop_instance_uid = $1",
            ds.SOPInstanceUID,
        )
    assert list(store.keys()) == [key]
