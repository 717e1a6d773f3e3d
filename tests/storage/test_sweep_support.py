"""Stores list old objects and clear partial writes, for the orphan sweep."""

from __future__ import annotations

import os
import time
from pathlib import Path

from storage.filesystem import FilesystemStore
from storage.memory import MemoryStore


def test_filesystem_lists_only_objects_written_before_the_cutoff(
    tmp_path: Path,
) -> None:
    store = FilesystemStore(tmp_path)
    store.write("aa/old", [b"x"])
    store.write("aa/new", [b"y"])
    past = time.time() - 7200
    os.utime(tmp_path / "aa" / "old", (past, past))
    assert list(store.modified_before(time.time() - 3600)) == ["aa/old"]


def test_filesystem_sweeps_stale_temporaries_and_keeps_fresh_ones(
    tmp_path: Path,
) -> None:
    store = FilesystemStore(tmp_path)
    store.write("aa/kept", [b"x"])
    stale, fresh = tmp_path / "aa" / ".tmp-stale", tmp_path / "aa" / ".tmp-fresh"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    past = time.time() - 7200
    os.utime(stale, (past, past))
    assert store.sweep_temporaries(time.time() - 3600) == 1
    assert not stale.exists() and fresh.exists()
    assert store.read("aa/kept") == b"x"


def test_memory_store_lists_by_write_time() -> None:
    store = MemoryStore()
    store.write("k1", [b"a"])
    cutoff = time.time() + 1
    assert list(store.modified_before(cutoff)) == ["k1"]
    assert list(store.modified_before(cutoff - 3600)) == []
    assert store.sweep_temporaries(cutoff) == 0
