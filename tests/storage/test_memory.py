"""Tests for the in-memory store beyond the shared contract."""

from __future__ import annotations

import threading

from storage.memory import MemoryStore


def test_concurrent_writers_and_readers_see_whole_objects() -> None:
    store = MemoryStore()
    values = [bytes([n]) * 1000 for n in range(8)]
    torn: list[bytes] = []

    def writer(value: bytes) -> None:
        for _ in range(200):
            store.write("shared", [value[:500], value[500:]])

    def reader() -> None:
        for _ in range(400):
            if store.exists("shared"):
                data = store.read("shared")
                if data not in values:
                    torn.append(data)

    threads = [threading.Thread(target=writer, args=(v,)) for v in values]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert torn == []
    assert store.read("shared") in values


def test_repr_shows_no_contents() -> None:
    store = MemoryStore()
    store.write("k", [b"Doe^John"])

    assert repr(store) == "MemoryStore(objects=1)"
