"""Tests for sealed objects: layout, round trips, ranges, tampering and streaming."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from storage.base import ObjectStore
from storage.envelope import (
    DEFAULT_CHUNK_SIZE,
    HEADER_READ_BYTES,
    MAX_CHUNK_SIZE,
    SealedReader,
    iter_open,
    open_range,
    read_header,
    seal,
)
from storage.errors import InvalidRange, KekUnavailable, ObjectNotFound, SealError
from storage.filesystem import FilesystemStore
from storage.keys import FileKeyProvider
from storage.memory import MemoryStore

KEK_ID = "test-kek"
KEK_V1 = bytes(range(32))
KEK_V2 = bytes(range(32, 64))
WRAPPED_KEY_BYTES = 40  # RFC 3394 wrap of a 32-byte data key


class RecordingKeys:
    """A key provider that remembers every data key it wraps."""

    def __init__(self, inner: FileKeyProvider) -> None:
        self.inner = inner
        self.data_keys: list[bytes] = []

    @property
    def kek_id(self) -> str:
        return self.inner.kek_id

    @property
    def kek_version(self) -> int:
        return self.inner.kek_version

    def wrap(self, data_key: bytes) -> bytes:
        self.data_keys.append(data_key)
        return self.inner.wrap(data_key)

    def unwrap(self, kek_id: str, kek_version: int, wrapped: bytes) -> bytes:
        return self.inner.unwrap(kek_id, kek_version, wrapped)


class RecordingStore:
    """Wraps a store and records every read as (offset, length, bytes returned)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.reads: list[tuple[int, int | None, int]] = []

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        return self.inner.write(key, chunks)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.read(key, offset, length)
        self.reads.append((offset, length, len(data)))
        return data

    def iter_read(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        return self.inner.iter_read(key, chunk_bytes)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def modified_before(self, cutoff: float, prefix: str = "") -> Iterator[str]:
        return self.inner.modified_before(cutoff, prefix)

    def sweep_temporaries(self, cutoff: float) -> int:
        return self.inner.sweep_temporaries(cutoff)


@pytest.fixture
def keys() -> FileKeyProvider:
    return FileKeyProvider(KEK_ID, {1: KEK_V1})


@pytest.fixture(params=["memory", "filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "memory":
        return MemoryStore()
    return FilesystemStore(tmp_path / "objects")


def pattern(length: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking plaintext of length bytes."""
    blocks = (
        hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(-(-length // 32))
    )
    return b"".join(blocks)[:length]


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    """Split data into pieces of size bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def seal_bytes(
    plaintext: bytes,
    keys: FileKeyProvider | RecordingKeys,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Seal plaintext in memory, feeding it in awkward 1000-byte pieces."""
    return b"".join(seal(pieces(plaintext, 1000), len(plaintext), keys, chunk_size))


def test_header_layout_matches_the_documented_bytes(keys: FileKeyProvider) -> None:
    sealed = seal_bytes(b"x" * 100, keys, chunk_size=64)

    n, w = len(KEK_ID), WRAPPED_KEY_BYTES
    assert sealed[:6] == b"DVSEAL"
    assert sealed[6] == 1
    assert struct.unpack_from(">H", sealed, 7)[0] == 52 + n + w
    assert sealed[9] == n
    assert sealed[10 : 10 + n] == KEK_ID.encode()
    assert struct.unpack_from(">I", sealed, 10 + n)[0] == 1
    assert struct.unpack_from(">H", sealed, 14 + n)[0] == w
    assert struct.unpack_from(">I", sealed, 24 + n + w)[0] == 64
    assert struct.unpack_from(">Q", sealed, 28 + n + w)[0] == 100
    assert len(sealed) == 52 + n + w + 100 + 2 * 16


def test_read_header_reports_fields_and_sizes(keys: FileKeyProvider) -> None:
    sealed = seal_bytes(b"y" * 1000, keys, chunk_size=300)

    header = read_header(sealed[:HEADER_READ_BYTES])

    assert header.format_version == 1
    assert header.kek_id == KEK_ID
    assert header.kek_version == 1
    assert header.chunk_size == 300
    assert header.ciphertext_chunk_size == 316
    assert header.plaintext_length == 1000
    assert header.header_length == 52 + len(KEK_ID) + WRAPPED_KEY_BYTES
    assert header.raw == sealed[: header.header_length]
    assert header.chunk_count() == 4
    assert header.sealed_size() == len(sealed)


def test_header_read_bytes_covers_the_largest_header() -> None:
    assert HEADER_READ_BYTES == 52 + 255 + 1024


def test_chunk_span_maps_plaintext_range_to_sealed_bytes(
    keys: FileKeyProvider,
) -> None:
    header = read_header(seal_bytes(b"z" * 1000, keys, chunk_size=300))
    h = header.header_length

    span = header.chunk_span(299, 601)

    assert (span.first_chunk, span.stop_chunk) == (0, 3)
    assert span.ciphertext_start == h
    assert span.ciphertext_stop == h + 3 * 316
    last = header.chunk_span(900, 1000)
    assert (last.first_chunk, last.stop_chunk) == (3, 4)
    assert (last.ciphertext_start, last.ciphertext_stop) == (h + 948, h + 948 + 116)
    empty = header.chunk_span(300, 300)
    assert empty.first_chunk == empty.stop_chunk


@pytest.mark.parametrize("bounds", [(-1, 5), (5, 4), (0, 1001), (1001, 1001)])
def test_chunk_span_rejects_ranges_outside_the_plaintext(
    keys: FileKeyProvider, bounds: tuple[int, int]
) -> None:
    header = read_header(seal_bytes(b"z" * 1000, keys, chunk_size=300))

    with pytest.raises(InvalidRange, match=r"\[-?\d+, \d+\)"):
        header.chunk_span(*bounds)


@pytest.mark.parametrize(
    "length",
    [
        0,
        1,
        DEFAULT_CHUNK_SIZE - 1,
        DEFAULT_CHUNK_SIZE,
        DEFAULT_CHUNK_SIZE + 1,
        3 * DEFAULT_CHUNK_SIZE + 17,
        5 * 1024 * 1024 + 3,
    ],
)
def test_sealed_object_round_trips_through_the_store(
    store: ObjectStore, keys: FileKeyProvider, length: int
) -> None:
    plaintext = pattern(length)

    written = store.write("ab/cd/obj", seal(pieces(plaintext, 7777), length, keys))

    header = read_header(store.read("ab/cd/obj", 0, HEADER_READ_BYTES))
    assert written == store.size("ab/cd/obj") == header.sealed_size()
    assert header.chunk_count() == -(-length // DEFAULT_CHUNK_SIZE)
    assert open_range(store, "ab/cd/obj", keys) == plaintext
    assert b"".join(iter_open(store, "ab/cd/obj", keys, piece_bytes=100_000)) == (
        plaintext
    )


def test_every_byte_range_reads_what_slicing_gives(
    store: ObjectStore, keys: FileKeyProvider
) -> None:
    plaintext = pattern(50)
    store.write("k", seal([plaintext], 50, keys, chunk_size=16))
    reader = SealedReader.open(store, "k", keys)

    for start in range(51):
        for end in range(start, 51):
            assert reader.read(start, end) == plaintext[start:end], (start, end)
            pieces_read = list(reader.iter_read(start, end, piece_bytes=20))
            assert b"".join(pieces_read) == plaintext[start:end], (start, end)
    assert reader.read(37) == plaintext[37:]


def test_open_range_matches_slices_at_chunk_edges(
    store: ObjectStore, keys: FileKeyProvider
) -> None:
    plaintext = pattern(10_000)
    store.write("k", seal([plaintext], 10_000, keys, chunk_size=1024))

    for start, end in [(0, 1), (1023, 1025), (1024, 2048), (9999, 10_000), (0, 0)]:
        assert open_range(store, "k", keys, start, end) == plaintext[start:end]


def test_open_range_reads_only_the_touched_chunks(keys: FileKeyProvider) -> None:
    store = RecordingStore(MemoryStore())
    store.write("k", seal([pattern(100_000)], 100_000, keys, chunk_size=1000))
    header = read_header(store.inner.read("k"))

    open_range(store, "k", keys, 5_500, 7_200)

    assert store.reads[0][:2] == (0, HEADER_READ_BYTES)
    assert store.reads[1][:2] == (header.chunk_offset(5), 3 * 1016)
    assert len(store.reads) == 2


def test_range_outside_the_plaintext_raises_invalid_range(
    store: ObjectStore, keys: FileKeyProvider
) -> None:
    store.write("k", seal([b"abc"], 3, keys))

    with pytest.raises(InvalidRange):
        open_range(store, "k", keys, 2, 4)
    with pytest.raises(InvalidRange):
        open_range(store, "k", keys, -1)


def test_open_range_of_missing_object_raises_object_not_found(
    keys: FileKeyProvider,
) -> None:
    with pytest.raises(ObjectNotFound):
        open_range(MemoryStore(), "absent", keys)


def test_sealed_bytes_leak_no_plaintext_marker_or_key(
    store: ObjectStore, keys: FileKeyProvider, tmp_path: Path
) -> None:
    recording = RecordingKeys(keys)
    plaintext = b"\0" * 128 + b"DICM" + b"Doe^John " * 5000 + b"DICM"
    store.write("k", seal([plaintext], len(plaintext), recording, chunk_size=4096))

    sealed = store.read("k")
    assert b"DICM" not in sealed
    assert b"Doe^John" not in sealed
    assert recording.data_keys[0] not in sealed
    assert KEK_V1 not in sealed
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"Doe^John" not in path.read_bytes()


def test_each_object_gets_its_own_data_key_and_nonce(keys: FileKeyProvider) -> None:
    recording = RecordingKeys(keys)

    first = read_header(seal_bytes(b"same", recording))
    second = read_header(seal_bytes(b"same", recording))

    assert recording.data_keys[0] != recording.data_keys[1]
    assert len(recording.data_keys[0]) == 32
    assert first.wrapped_key != second.wrapped_key
    assert first.nonce_prefix != second.nonce_prefix


def sealed_in_store(keys: FileKeyProvider, plaintext: bytes) -> MemoryStore:
    """A memory store holding plaintext sealed under key "k" in 100-byte chunks."""
    store = MemoryStore()
    store.write("k", seal([plaintext], len(plaintext), keys, chunk_size=100))
    return store


def flip(data: bytes, index: int) -> bytes:
    """Return data with one bit of byte index inverted."""
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_any_altered_header_byte_is_refused(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, pattern(450))
    sealed = store.read("k")
    header = read_header(sealed)
    kek_fields = range(9, 14 + len(KEK_ID))  # id length, id and version

    for index in range(header.header_length):
        store.write("k", [flip(sealed, index)])
        expected = (SealError, KekUnavailable) if index in kek_fields else SealError
        with pytest.raises(expected):
            open_range(store, "k", keys)


@pytest.mark.parametrize("index", [0, 99, 100, 115, 250, 449])
def test_altered_chunk_byte_is_refused(keys: FileKeyProvider, index: int) -> None:
    store = sealed_in_store(keys, pattern(450))
    sealed = store.read("k")
    h = read_header(sealed).header_length
    store.write("k", [flip(sealed, h + index)])
    chunk = index // 116

    with pytest.raises(SealError, match=f"Chunk {chunk} "):
        open_range(store, "k", keys)
    with pytest.raises(SealError):
        open_range(store, "k", keys, chunk * 100, chunk * 100 + 1)


def test_altered_chunk_outside_the_range_does_not_block_it(
    keys: FileKeyProvider,
) -> None:
    plaintext = pattern(450)
    store = sealed_in_store(keys, plaintext)
    sealed = store.read("k")
    h = read_header(sealed).header_length
    store.write("k", [flip(sealed, h + 3 * 116)])

    assert open_range(store, "k", keys, 0, 300) == plaintext[:300]


def test_swapped_chunks_are_refused(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, pattern(450))
    sealed = store.read("k")
    h = read_header(sealed).header_length
    first, second = sealed[h : h + 116], sealed[h + 116 : h + 232]
    store.write("k", [sealed[:h], second, first, sealed[h + 232 :]])

    with pytest.raises(SealError, match="Chunk 0 "):
        open_range(store, "k", keys)


@pytest.mark.parametrize("cut", [1, 16, 66])
def test_truncated_last_chunk_is_refused(keys: FileKeyProvider, cut: int) -> None:
    store = sealed_in_store(keys, pattern(450))
    sealed = store.read("k")
    store.write("k", [sealed[:-cut]])

    with pytest.raises(SealError):
        open_range(store, "k", keys)
    with pytest.raises(SealError):
        b"".join(iter_open(store, "k", keys, piece_bytes=100))


def test_object_missing_whole_last_chunk_is_refused(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, pattern(500))
    sealed = store.read("k")
    store.write("k", [sealed[:-116]])

    with pytest.raises(SealError):
        open_range(store, "k", keys)


def test_large_object_missing_its_tail_is_refused(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, pattern(5000))
    sealed = store.read("k")
    store.write("k", [sealed[:-116]])

    with pytest.raises(SealError, match="truncated or extended"):
        open_range(store, "k", keys, 4000)


@pytest.mark.parametrize("length", [0, 10, 5000])
def test_bytes_appended_after_the_last_chunk_are_refused(
    keys: FileKeyProvider, length: int
) -> None:
    store = sealed_in_store(keys, pattern(length))
    store.write("k", [store.read("k"), b"\0"])

    with pytest.raises(SealError):
        open_range(store, "k", keys)


def test_empty_object_reduced_to_a_forged_length_is_refused(
    keys: FileKeyProvider,
) -> None:
    store = sealed_in_store(keys, pattern(300))
    sealed = store.read("k")
    header = read_header(sealed)
    at = header.header_length - 16 - 8
    forged = sealed[:at] + bytes(8) + sealed[at + 8 : header.header_length]
    store.write("k", [forged])

    with pytest.raises(SealError, match="fails authentication"):
        open_range(store, "k", keys)


def test_chunk_from_another_object_is_refused(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, pattern(450, seed=1))
    other = sealed_in_store(keys, pattern(450, seed=2)).read("k")
    sealed = store.read("k")
    h = read_header(sealed).header_length
    store.write("k", [sealed[: h + 116], other[h + 116 : h + 232], sealed[h + 232 :]])

    with pytest.raises(SealError, match="Chunk 1 "):
        open_range(store, "k", keys)


def test_header_from_another_object_is_refused(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, pattern(450, seed=1))
    other = sealed_in_store(keys, pattern(450, seed=2)).read("k")
    sealed = store.read("k")
    h = read_header(sealed).header_length
    store.write("k", [other[:h], sealed[h:]])

    with pytest.raises(SealError, match="Chunk 0 "):
        open_range(store, "k", keys)


def test_unknown_kek_id_raises_kek_unavailable(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, b"secret")
    stranger = FileKeyProvider("other-kek", {1: KEK_V1})

    with pytest.raises(KekUnavailable, match="other-kek"):
        open_range(store, "k", stranger)


def test_wrong_kek_material_raises_seal_error(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, b"secret")
    impostor = FileKeyProvider(KEK_ID, {1: KEK_V2})

    with pytest.raises(SealError, match="does not unwrap"):
        open_range(store, "k", impostor)


def test_objects_sealed_before_rotation_still_open(keys: FileKeyProvider) -> None:
    store = sealed_in_store(keys, b"old object")
    rotated = FileKeyProvider(KEK_ID, {1: KEK_V1, 2: KEK_V2})
    store.write("new", seal([b"new object"], 10, rotated))

    assert open_range(store, "k", rotated) == b"old object"
    assert open_range(store, "new", rotated) == b"new object"
    assert read_header(store.read("new")).kek_version == 2
    with pytest.raises(KekUnavailable, match="version 2"):
        open_range(store, "new", keys)


def test_non_sealed_object_is_refused(keys: FileKeyProvider) -> None:
    store = MemoryStore()
    store.write("k", [b"DICM" + bytes(200)])

    with pytest.raises(SealError, match="not sealed"):
        open_range(store, "k", keys)


def test_read_header_refuses_short_prefix_and_unknown_version(
    keys: FileKeyProvider,
) -> None:
    sealed = seal_bytes(b"abc", keys)
    h = read_header(sealed).header_length

    with pytest.raises(SealError, match="truncated"):
        read_header(sealed[:5])
    with pytest.raises(SealError, match="truncated"):
        read_header(sealed[: h - 1])
    with pytest.raises(SealError, match="version 2 is not supported"):
        read_header(sealed[:6] + b"\x02" + sealed[7:])


@pytest.mark.parametrize("declared", [99, 101, 0])
def test_seal_refuses_input_of_another_length(
    store: ObjectStore, keys: FileKeyProvider, declared: int
) -> None:
    with pytest.raises(SealError, match=f"declared {declared}"):
        store.write("k", seal(pieces(bytes(100), 30), declared, keys, chunk_size=16))

    assert not store.exists("k")
    assert list(store.keys()) == []


def test_seal_refuses_overlong_input_without_reading_it_all(
    keys: FileKeyProvider,
) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield bytes(64)

    with pytest.raises(SealError, match="more than the declared 100 bytes"):
        b"".join(seal(endless(), 100, keys, chunk_size=16))


@pytest.mark.parametrize("chunk_size", [0, -5, MAX_CHUNK_SIZE + 1])
def test_seal_refuses_chunk_size_out_of_range(
    keys: FileKeyProvider, chunk_size: int
) -> None:
    with pytest.raises(SealError, match=f"Chunk size {chunk_size}"):
        seal([b"x"], 1, keys, chunk_size)


def test_seal_refuses_negative_length(keys: FileKeyProvider) -> None:
    with pytest.raises(SealError, match="-1"):
        seal([], -1, keys)


def test_seal_streams_without_reading_ahead(keys: FileKeyProvider) -> None:
    consumed = 0

    def source() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(100):
            consumed += 1000
            yield bytes(1000)

    stream = seal(source(), 100_000, keys, chunk_size=4096)
    next(stream)
    assert consumed == 0
    first_chunk = next(stream)
    assert len(first_chunk) == 4096 + 16
    assert consumed <= 5000


def lazy_plaintext(total: int, block: int) -> Iterator[bytes]:
    """Yield total bytes in blocks, each built on demand."""
    for start in range(0, total, block):
        size = min(block, total - start)
        yield (start // block % 251).to_bytes(1, "big") * size


def test_iter_open_streams_a_large_object_a_piece_at_a_time(
    keys: FileKeyProvider,
) -> None:
    total = 64 * 1024 * 1024
    store = RecordingStore(MemoryStore())
    store.write("big", seal(lazy_plaintext(total, 1 << 20), total, keys))
    expected = hashlib.sha256()
    for block in lazy_plaintext(total, 1 << 20):
        expected.update(block)

    stream = iter_open(store, "big", keys, piece_bytes=1 << 20)
    first = next(stream)

    assert len(first) == 1 << 20
    assert len(store.reads) == 2
    assert sum(returned for _, _, returned in store.reads) < 2 * (1 << 20)
    received = hashlib.sha256(first)
    largest = len(first)
    for piece in stream:
        received.update(piece)
        largest = max(largest, len(piece))
    assert received.digest() == expected.digest()
    assert largest <= 1 << 20
    assert len(store.reads) == 1 + 64


def test_reader_repr_hides_key_material(keys: FileKeyProvider) -> None:
    recording = RecordingKeys(keys)
    store = MemoryStore()
    store.write("k", seal([b"abc"], 3, recording))

    text = repr(SealedReader.open(store, "k", keys))

    assert "k" in text and KEK_ID in text
    assert recording.data_keys[0].hex() not in text
    assert repr(recording.data_keys[0]) not in text
    assert repr(read_header(store.read("k")).wrapped_key) not in text
