"""Tests for the filesystem store: layout on disk, atomic writes, key safety."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.errors import InvalidKey, ObjectNotFound
from storage.filesystem import FilesystemStore


def files_under(folder: Path) -> list[str]:
    """Every file below folder, relative, sorted."""
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
    )


def test_object_lives_at_root_slash_key(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "objects")

    store.write("ab/cd/obj.dv", [b"hello ", b"world"])

    assert (
        tmp_path / "objects" / "ab" / "cd" / "obj.dv"
    ).read_bytes() == b"hello world"
    assert files_under(tmp_path) == ["objects/ab/cd/obj.dv"]


def test_root_is_created_when_missing(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "deep" / "objects")

    assert store.root.is_dir()


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../b", "a\x00b", "", "..", "./a"])
def test_invalid_key_creates_nothing(tmp_path: Path, key: str) -> None:
    store = FilesystemStore(tmp_path / "objects")

    with pytest.raises(InvalidKey):
        store.write(key, [b"x"])

    assert sorted(p.name for p in tmp_path.rglob("*")) == ["objects"]
    assert not Path("/abs").exists()


def test_chunk_iterator_failing_midway_leaves_no_file(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    written = False

    def chunks() -> Iterator[bytes]:
        nonlocal written
        yield b"x" * 100_000
        written = True
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        store.write("ab/obj", chunks())

    assert written
    assert files_under(tmp_path) == []
    assert not store.exists("ab/obj")


def test_failed_overwrite_keeps_old_content_and_no_temp_file(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    store.write("ab/obj", [b"old"])

    def chunks() -> Iterator[bytes]:
        yield b"new"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        store.write("ab/obj", chunks())

    assert files_under(tmp_path) == ["ab/obj"]
    assert store.read("ab/obj") == b"old"


def test_keys_skips_temporary_and_foreign_files(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    store.write("ab/obj", [b"x"])
    (tmp_path / "ab" / ".tmp-abc123").write_bytes(b"half")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "inside").write_bytes(b"x")
    (tmp_path / "ab" / "bad name").write_bytes(b"x")

    assert list(store.keys()) == ["ab/obj"]


def test_folder_is_not_an_object(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    store.write("ab/obj", [b"x"])

    assert not store.exists("ab")
    with pytest.raises(ObjectNotFound):
        store.read("ab")
    with pytest.raises(ObjectNotFound):
        store.size("ab")
    with pytest.raises(ObjectNotFound):
        store.read("ab/obj/deeper")


def test_read_after_replace_keeps_serving_the_open_version(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    store.write("k", [b"a" * 10])
    pieces = store.iter_read("k", chunk_bytes=4)
    first = next(pieces)

    store.write("k", [b"b" * 10])

    assert first + b"".join(pieces) == b"a" * 10
    assert store.read("k") == b"b" * 10


def test_written_file_is_not_world_writable(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    store.write("k", [b"x"])

    assert os.stat(tmp_path / "k").st_mode & 0o022 == 0
