"""The ObjectStore contract, checked on the memory and filesystem stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.base import ObjectStore
from storage.errors import InvalidKey, InvalidRange, ObjectNotFound
from storage.filesystem import FilesystemStore
from storage.memory import MemoryStore

DATA = bytes(range(256)) * 40


@pytest.fixture(params=["memory", "filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "memory":
        return MemoryStore()
    return FilesystemStore(tmp_path / "objects")


def failing_chunks() -> Iterator[bytes]:
    """Yield some bytes, then fail as a broken upstream would."""
    yield b"partial"
    raise OSError("upstream went away")


def test_write_returns_size_and_read_returns_bytes(store: ObjectStore) -> None:
    assert store.write("aa/bb/c.dv", [DATA[:100], b"", DATA[100:]]) == len(DATA)

    assert store.read("aa/bb/c.dv") == DATA
    assert store.size("aa/bb/c.dv") == len(DATA)
    assert store.exists("aa/bb/c.dv")


def test_empty_object_is_stored(store: ObjectStore) -> None:
    assert store.write("empty", []) == 0

    assert store.exists("empty")
    assert store.read("empty") == b""
    assert store.size("empty") == 0
    assert list(store.iter_read("empty")) == []


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 0),
        (0, 1),
        (5, 10),
        (10239, 1),
        (10239, 5),
        (10240, 3),
        (20000, 1),
        (7, None),
    ],
)
def test_read_range_matches_slicing(
    store: ObjectStore, offset: int, length: int | None
) -> None:
    store.write("k", [DATA])

    end = None if length is None else offset + length
    assert store.read("k", offset, length) == DATA[offset:end]


@pytest.mark.parametrize(("offset", "length"), [(-1, 1), (0, -1)])
def test_negative_offset_or_length_raises_invalid_range(
    store: ObjectStore, offset: int, length: int
) -> None:
    store.write("k", [DATA])

    with pytest.raises(InvalidRange):
        store.read("k", offset, length)


def test_iter_read_yields_bounded_pieces(store: ObjectStore) -> None:
    store.write("k", [DATA])

    pieces = list(store.iter_read("k", chunk_bytes=1000))

    assert b"".join(pieces) == DATA
    assert [len(p) for p in pieces] == [1000] * 10 + [240]


def test_overwrite_replaces_the_object(store: ObjectStore) -> None:
    store.write("k", [DATA])
    store.write("k", [b"new"])

    assert store.read("k") == b"new"


def test_failed_write_keeps_the_previous_object(store: ObjectStore) -> None:
    store.write("k", [b"old"])

    with pytest.raises(OSError, match="upstream went away"):
        store.write("k", failing_chunks())

    assert store.read("k") == b"old"
    assert list(store.keys()) == ["k"]


def test_failed_write_leaves_no_object(store: ObjectStore) -> None:
    with pytest.raises(OSError, match="upstream went away"):
        store.write("a/b", failing_chunks())

    assert not store.exists("a/b")
    assert list(store.keys()) == []


def test_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="'nope'"):
        store.read("nope")
    with pytest.raises(ObjectNotFound):
        store.size("nope")
    with pytest.raises(ObjectNotFound):
        list(store.iter_read("nope"))
    assert not store.exists("nope")


def test_delete_removes_and_ignores_absent_keys(store: ObjectStore) -> None:
    store.write("k", [DATA])

    store.delete("k")
    store.delete("k")
    store.delete("never/written")

    assert not store.exists("k")
    with pytest.raises(ObjectNotFound):
        store.read("k")


def test_keys_filters_by_prefix(store: ObjectStore) -> None:
    for key in ["ab/01", "ab/02", "ab/cd/03", "abc", "b/04"]:
        store.write(key, [key.encode()])

    assert sorted(store.keys()) == ["ab/01", "ab/02", "ab/cd/03", "abc", "b/04"]
    assert sorted(store.keys("ab/")) == ["ab/01", "ab/02", "ab/cd/03"]
    assert sorted(store.keys("ab")) == ["ab/01", "ab/02", "ab/cd/03", "abc"]
    assert sorted(store.keys("ab/c")) == ["ab/cd/03"]
    assert list(store.keys("zz")) == []
    assert list(store.keys("../")) == []


@pytest.mark.parametrize(
    "key",
    ["", "../x", "/abs", "a/../b", "a\x00b", "a/", "a//b", ".hidden", "a\n", "a b"],
)
def test_invalid_key_raises_invalid_key(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey, match="key"):
        store.write(key, [b"x"])
    with pytest.raises(InvalidKey):
        store.read(key)
    with pytest.raises(InvalidKey):
        store.size(key)
    with pytest.raises(InvalidKey):
        store.exists(key)
    with pytest.raises(InvalidKey):
        store.delete(key)

    assert list(store.keys()) == []


def test_key_longer_than_512_characters_is_invalid(store: ObjectStore) -> None:
    longest = "a" * 200 + "/" + "b" * 200 + "/" + "c" * 110
    assert len(longest) == 512

    store.write(longest, [b"ok"])

    assert store.read(longest) == b"ok"
    with pytest.raises(InvalidKey, match="513 characters"):
        store.write(longest + "d", [b"x"])
