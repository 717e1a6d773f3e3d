"""Sealed objects: a per-object data key, AES-256-GCM over fixed-size chunks.

A sealed object is a header followed by the encrypted chunks. Integers are
unsigned and big-endian; n is the KEK id length, w the wrapped key length.

====== ==== ===============================================================
offset size field
====== ==== ===============================================================
0      6    magic ``b"DVSEAL"``
6      1    format version, 1
7      2    header length H (u16): every byte before the first chunk
9      1    KEK id length n (u8), 1..255
10     n    KEK id, UTF-8
10+n   4    KEK version (u32)
14+n   2    wrapped data key length w (u16), 1..1024
16+n   w    wrapped data key, as returned by the key provider
16+n+w 8    nonce prefix, random per object
24+n+w 4    chunk size C in plaintext bytes (u32), 1..16 MiB
28+n+w 8    plaintext length L (u64)
36+n+w 16   header tag
====== ==== ===============================================================

So H = 52 + n + w, at most ``HEADER_READ_BYTES``. The header tag is the
AES-256-GCM tag of an empty message under the data key, nonce = prefix ||
u32(0xFFFFFFFF), AAD = header bytes [0, H - 16): it proves the header whole even
when there are no chunks to check.

Chunk i, for 0 <= i < ceil(L / C) (an empty plaintext has no chunks), is the
AES-256-GCM encryption of plaintext bytes [i*C, min((i+1)*C, L)) under the data
key, nonce = prefix || u32(i), AAD = the H header bytes || u32(i), followed by
its 16-byte tag. Chunk i starts at H + i*(C + 16); the sealed size is
H + L + 16*ceil(L / C). Binding the header and index into every chunk detects
reordered, swapped, foreign, truncated or extended chunks.

The data key is 32 random bytes per object, wrapped by the key provider's KEK.
Nothing else is stored: the object alone plus the KEK recovers the plaintext.
"""

from __future__ import annotations

import logging
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage._ranges import check_piece_bytes
from storage.base import ObjectStore
from storage.errors import InvalidRange, KekUnavailable, SealError
from storage.keys import KeyProvider

logger = logging.getLogger(__name__)

MAGIC = b"DVSEAL"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 65536
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_KEK_ID_BYTES = 255
MAX_WRAPPED_KEY_BYTES = 1024
TAG_BYTES = 16
DATA_KEY_BYTES = 32
NONCE_PREFIX_BYTES = 8

_FIXED_HEADER_BYTES = 52
HEADER_READ_BYTES = _FIXED_HEADER_BYTES + MAX_KEK_ID_BYTES + MAX_WRAPPED_KEY_BYTES
"""Leading bytes that always hold the whole header."""

# The last u32 index is the header tag's nonce, so no chunk may use it.
_HEADER_TAG_INDEX = 0xFFFFFFFF
MAX_CHUNKS = _HEADER_TAG_INDEX

_LEAD = struct.Struct(">6sBH")


@dataclass(frozen=True)
class ChunkSpan:
    """The chunks [first_chunk, stop_chunk) and the sealed bytes that hold them."""

    first_chunk: int
    stop_chunk: int
    ciphertext_start: int
    ciphertext_stop: int


@dataclass(frozen=True)
class SealedHeader:
    """The parsed header of a sealed object; ``raw`` is its exact bytes."""

    format_version: int
    header_length: int
    kek_id: str
    kek_version: int
    wrapped_key: bytes = field(repr=False)
    nonce_prefix: bytes = field(repr=False)
    chunk_size: int
    plaintext_length: int
    raw: bytes = field(repr=False)

    @property
    def ciphertext_chunk_size(self) -> int:
        """Sealed bytes of every full chunk: plaintext chunk size plus the tag."""
        return self.chunk_size + TAG_BYTES

    def chunk_count(self) -> int:
        """Number of chunks: ceil(plaintext_length / chunk_size)."""
        return -(-self.plaintext_length // self.chunk_size)

    def sealed_size(self) -> int:
        """Total bytes of the sealed object."""
        tags = TAG_BYTES * self.chunk_count()
        return self.header_length + self.plaintext_length + tags

    def chunk_offset(self, index: int) -> int:
        """Offset of chunk index in the sealed object; chunk_count() gives the end."""
        full = self.header_length + index * self.ciphertext_chunk_size
        return min(full, self.sealed_size())

    def chunk_span(self, start: int, end: int) -> ChunkSpan:
        """Map plaintext bytes [start, end) to the chunks and sealed bytes holding them.

        Raises ``InvalidRange`` unless 0 <= start <= end <= plaintext_length.
        """
        if not 0 <= start <= end <= self.plaintext_length:
            raise InvalidRange(
                f"Byte range [{start!r}, {end!r}) is not within the "
                f"{self.plaintext_length} plaintext bytes; expected "
                f"0 <= start <= end <= {self.plaintext_length}"
            )
        first = start // self.chunk_size
        stop = -(-end // self.chunk_size) if end > start else first
        return ChunkSpan(first, stop, self.chunk_offset(first), self.chunk_offset(stop))

    def chunk_nonce(self, index: int) -> bytes:
        """GCM nonce of chunk index: the prefix and the u32 index."""
        return self.nonce_prefix + index.to_bytes(4, "big")

    def chunk_aad(self, index: int) -> bytes:
        """Associated data of chunk index: the whole header and the u32 index."""
        return self.raw + index.to_bytes(4, "big")


def read_header(prefix: bytes) -> SealedHeader:
    """Parse the header at the start of prefix (``HEADER_READ_BYTES`` suffice).

    Checks structure and limits only; ``SealedReader`` authenticates it.
    """
    if len(prefix) < _LEAD.size:
        raise SealError(
            f"Sealed header truncated: {len(prefix)} bytes; expected at least "
            f"{_LEAD.size}"
        )
    magic, version, header_length = _LEAD.unpack_from(prefix)
    if magic != MAGIC:
        raise SealError(
            f"Object starts with {bytes(magic)!r}, not {MAGIC!r}; it is not sealed"
        )
    if version != FORMAT_VERSION:
        raise SealError(
            f"Sealed format version {version!r} is not supported; expected "
            f"{FORMAT_VERSION}"
        )
    if len(prefix) < header_length:
        raise SealError(
            f"Sealed header truncated: {len(prefix)} bytes; its length field "
            f"says {header_length}"
        )
    return _parse_fields(bytes(prefix[:header_length]))


def seal(
    chunks: Iterable[bytes],
    plaintext_length: int,
    keys: KeyProvider,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """Yield the sealed object: the header, then one encrypted chunk at a time.

    Input chunks of any size are regrouped into chunk_size pieces, so memory use
    does not grow with the object. Raises ``SealError`` (while streaming) when
    the input holds more or fewer than plaintext_length bytes.
    """
    _check_seal_arguments(plaintext_length, chunk_size)
    data_key = secrets.token_bytes(DATA_KEY_BYTES)
    aead = AESGCM(data_key)
    header = _make_header(keys, data_key, aead, chunk_size, plaintext_length)
    return _seal_stream(header, aead, chunks)


class SealedReader:
    """An opened sealed object: its verified header and data key, for range reads."""

    def __init__(
        self, store: ObjectStore, key: str, header: SealedHeader, aead: AESGCM
    ) -> None:
        """Wrap an authenticated header and its data key; use ``open`` instead."""
        self._store = store
        self._key = key
        self._header = header
        self._aead = aead

    @classmethod
    def open(cls, store: ObjectStore, key: str, keys: KeyProvider) -> SealedReader:
        """Read and authenticate the header of the object under key."""
        prefix = store.read(key, 0, HEADER_READ_BYTES)
        try:
            header = read_header(prefix)
            _check_sealed_size(header, len(prefix))
            data_key = keys.unwrap(
                header.kek_id, header.kek_version, header.wrapped_key
            )
            aead = _verified_aead(header, data_key)
        except (SealError, KekUnavailable) as exc:
            exc.add_note(f"Object key: {key!r}")
            raise
        logger.debug(
            "Opened sealed object %s (KEK %s version %d, %d bytes)",
            key,
            header.kek_id,
            header.kek_version,
            header.plaintext_length,
        )
        return cls(store, key, header, aead)

    def __repr__(self) -> str:
        """Show the key and header summary, never key material."""
        return f"SealedReader(key={self._key!r}, header={self._header!r})"

    @property
    def header(self) -> SealedHeader:
        """The authenticated header."""
        return self._header

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Decrypt plaintext bytes [start, end); end None means to the end."""
        stop = self._header.plaintext_length if end is None else end
        span = self._header.chunk_span(start, stop)
        return self._decrypt(span.first_chunk, span.stop_chunk, start, stop)

    def iter_read(
        self, start: int = 0, end: int | None = None, piece_bytes: int = 1 << 20
    ) -> Iterator[bytes]:
        """Yield plaintext bytes [start, end), decrypting about piece_bytes a time."""
        check_piece_bytes(piece_bytes)
        stop = self._header.plaintext_length if end is None else end
        span = self._header.chunk_span(start, stop)
        step = max(1, piece_bytes // self._header.chunk_size)
        return self._iter_groups(span, step, start, stop)

    def _iter_groups(
        self, span: ChunkSpan, step: int, start: int, end: int
    ) -> Iterator[bytes]:
        """Yield the span decrypted step chunks at a time."""
        for first in range(span.first_chunk, span.stop_chunk, step):
            yield self._decrypt(first, min(first + step, span.stop_chunk), start, end)

    def _decrypt(self, first: int, stop: int, start: int, end: int) -> bytes:
        """Read and decrypt chunks [first, stop); keep plaintext [start, end)."""
        if first == stop:
            return b""
        sealed = self._read_sealed(first, stop)
        offset = self._header.chunk_offset(first)
        plain = []
        for index in range(first, stop):
            begin = self._header.chunk_offset(index) - offset
            finish = self._header.chunk_offset(index + 1) - offset
            plain.append(self._open_chunk(index, sealed[begin:finish]))
        base = first * self._header.chunk_size
        return b"".join(plain)[max(start, base) - base : end - base]

    def _read_sealed(self, first: int, stop: int) -> memoryview:
        """Read the sealed bytes of chunks [first, stop), checking their length."""
        offset = self._header.chunk_offset(first)
        want = self._header.chunk_offset(stop) - offset
        # One byte more at the end exposes bytes appended after the last chunk.
        extra = 1 if stop == self._header.chunk_count() else 0
        sealed = self._store.read(self._key, offset, want + extra)
        if len(sealed) != want:
            raise SealError(
                f"Object {self._key!r} has {len(sealed)} bytes for chunks "
                f"[{first}, {stop}) at offset {offset}; expected {want} "
                "(truncated or extended)"
            )
        return memoryview(sealed)

    def _open_chunk(self, index: int, sealed: memoryview) -> bytes:
        """Authenticate and decrypt one chunk."""
        header = self._header
        try:
            aad = header.chunk_aad(index)
            return self._aead.decrypt(header.chunk_nonce(index), sealed, aad)
        except InvalidTag:
            raise SealError(
                f"Chunk {index} of object {self._key!r} fails authentication; "
                "it was altered, moved, truncated or taken from another object"
            ) from None


def open_range(
    store: ObjectStore,
    key: str,
    keys: KeyProvider,
    start: int = 0,
    end: int | None = None,
) -> bytes:
    """Decrypt plaintext bytes [start, end) of a sealed object, reading only them."""
    return SealedReader.open(store, key, keys).read(start, end)


def iter_open(
    store: ObjectStore,
    key: str,
    keys: KeyProvider,
    start: int = 0,
    end: int | None = None,
    piece_bytes: int = 1 << 20,
) -> Iterator[bytes]:
    """Yield plaintext bytes [start, end) of a sealed object, a few chunks a time."""
    yield from SealedReader.open(store, key, keys).iter_read(start, end, piece_bytes)


def _check_seal_arguments(plaintext_length: int, chunk_size: int) -> None:
    """Raise SealError for a chunk size or length the format cannot hold."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise SealError(
            f"Chunk size {chunk_size!r} is out of range; expected 1..{MAX_CHUNK_SIZE}"
        )
    if plaintext_length < 0:
        raise SealError(f"Plaintext length {plaintext_length!r} is negative")
    if -(-plaintext_length // chunk_size) > MAX_CHUNKS:
        raise SealError(
            f"Plaintext length {plaintext_length!r} needs more than {MAX_CHUNKS} "
            f"chunks of {chunk_size} bytes; use a larger chunk size"
        )


def _make_header(
    keys: KeyProvider,
    data_key: bytes,
    aead: AESGCM,
    chunk_size: int,
    plaintext_length: int,
) -> SealedHeader:
    """Build, tag and re-parse the header of a new object."""
    kek_id = keys.kek_id.encode("utf-8")
    wrapped = keys.wrap(data_key)
    if not 1 <= len(kek_id) <= MAX_KEK_ID_BYTES:
        raise SealError(
            f"KEK id {keys.kek_id!r} takes {len(kek_id)} UTF-8 bytes; expected "
            f"1..{MAX_KEK_ID_BYTES}"
        )
    if not 1 <= len(wrapped) <= MAX_WRAPPED_KEY_BYTES:
        raise SealError(
            f"Wrapped data key has {len(wrapped)} bytes; expected "
            f"1..{MAX_WRAPPED_KEY_BYTES}"
        )
    if not 0 <= keys.kek_version <= 0xFFFFFFFF:
        raise SealError(f"KEK version {keys.kek_version!r} does not fit in a u32")
    nonce_prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
    header_length = _FIXED_HEADER_BYTES + len(kek_id) + len(wrapped)
    fields = b"".join(
        [
            _LEAD.pack(MAGIC, FORMAT_VERSION, header_length),
            struct.pack(">B", len(kek_id)),
            kek_id,
            struct.pack(">IH", keys.kek_version, len(wrapped)),
            wrapped,
            nonce_prefix,
            struct.pack(">IQ", chunk_size, plaintext_length),
        ]
    )
    tag = aead.encrypt(_header_tag_nonce(nonce_prefix), b"", fields)
    return read_header(fields + tag)


def _parse_fields(raw: bytes) -> SealedHeader:
    """Parse the fields of a complete header whose lead was already checked."""
    reader = _FieldReader(raw, _LEAD.size)
    kek_id_bytes = reader.take(reader.number(">B"), "KEK id", MAX_KEK_ID_BYTES)
    kek_version = reader.number(">I")
    wrapped_key = reader.take(
        reader.number(">H"), "wrapped data key", MAX_WRAPPED_KEY_BYTES
    )
    nonce_prefix = reader.take(NONCE_PREFIX_BYTES, "nonce prefix", NONCE_PREFIX_BYTES)
    chunk_size = reader.number(">I")
    plaintext_length = reader.number(">Q")
    reader.take(TAG_BYTES, "header tag", TAG_BYTES)
    reader.expect_end()
    try:
        kek_id = kek_id_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise SealError(f"Sealed header KEK id {kek_id_bytes!r} is not UTF-8") from None
    _check_seal_arguments(plaintext_length, chunk_size)
    return SealedHeader(
        format_version=FORMAT_VERSION,
        header_length=len(raw),
        kek_id=kek_id,
        kek_version=kek_version,
        wrapped_key=wrapped_key,
        nonce_prefix=nonce_prefix,
        chunk_size=chunk_size,
        plaintext_length=plaintext_length,
        raw=raw,
    )


class _FieldReader:
    """Reads header fields in order, refusing to run past the header length."""

    def __init__(self, raw: bytes, position: int) -> None:
        """Start at position within raw."""
        self._raw = raw
        self._position = position

    def number(self, layout: str) -> int:
        """Read one unsigned big-endian integer of the struct layout."""
        size = struct.calcsize(layout)
        (value,) = struct.unpack(layout, self.take(size, "integer field", size))
        return int(value)

    def take(self, count: int, name: str, limit: int) -> bytes:
        """Read count bytes of the named field, which holds 1..limit bytes."""
        if not 1 <= count <= limit:
            raise SealError(
                f"Sealed header {name} has length {count}; expected 1..{limit}"
            )
        end = self._position + count
        if end > len(self._raw):
            raise SealError(
                f"Sealed header {name} at offset {self._position} runs past the "
                f"header length {len(self._raw)}"
            )
        value = self._raw[self._position : end]
        self._position = end
        return value

    def expect_end(self) -> None:
        """Raise SealError unless every header byte was read."""
        if self._position != len(self._raw):
            raise SealError(
                f"Sealed header length field says {len(self._raw)} bytes but the "
                f"fields take {self._position}"
            )


def _seal_stream(
    header: SealedHeader, aead: AESGCM, chunks: Iterable[bytes]
) -> Iterator[bytes]:
    """Yield the header, then each regrouped plaintext piece encrypted."""
    yield header.raw
    pieces = _regroup(chunks, header.chunk_size, header.plaintext_length)
    for index, piece in enumerate(pieces):
        yield aead.encrypt(header.chunk_nonce(index), piece, header.chunk_aad(index))


def _regroup(chunks: Iterable[bytes], size: int, expected: int) -> Iterator[bytes]:
    """Yield pieces of exactly size bytes (the last may be shorter) from chunks."""
    pending = bytearray()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > expected:
            raise SealError(
                f"Plaintext holds more than the declared {expected} bytes "
                f"({total} so far)"
            )
        view = memoryview(chunk)
        if pending:
            room = size - len(pending)
            pending += view[:room]
            view = view[room:]
            if len(pending) == size:
                yield bytes(pending)
                pending.clear()
        while len(view) >= size:
            yield bytes(view[:size])
            view = view[size:]
        pending += view
    if total != expected:
        raise SealError(
            f"Plaintext holds {total} bytes; expected the declared {expected}"
        )
    if pending:
        yield bytes(pending)


def _check_sealed_size(header: SealedHeader, prefix_length: int) -> None:
    """Compare the declared size with what the header read saw of the object."""
    sealed_size = header.sealed_size()
    # A short header read returned the whole object, so its size is known.
    whole = prefix_length < HEADER_READ_BYTES
    if (whole and prefix_length != sealed_size) or sealed_size < prefix_length:
        size = f"{prefix_length}" if whole else f"at least {prefix_length}"
        raise SealError(
            f"Sealed object has {size} bytes; its header declares {sealed_size}"
        )


def _verified_aead(header: SealedHeader, data_key: bytes) -> AESGCM:
    """Return the cipher of data_key once it authenticates the header tag."""
    if len(data_key) != DATA_KEY_BYTES:
        raise SealError(
            f"Unwrapped data key has {len(data_key)} bytes; expected {DATA_KEY_BYTES}"
        )
    aead = AESGCM(data_key)
    fields, tag = header.raw[:-TAG_BYTES], header.raw[-TAG_BYTES:]
    try:
        aead.decrypt(_header_tag_nonce(header.nonce_prefix), tag, fields)
    except InvalidTag:
        raise SealError(
            f"Sealed header (KEK {header.kek_id!r} version {header.kek_version}) "
            "fails authentication; it was altered"
        ) from None
    return aead


def _header_tag_nonce(nonce_prefix: bytes) -> bytes:
    """Nonce of the header tag: the prefix and the reserved index."""
    return nonce_prefix + _HEADER_TAG_INDEX.to_bytes(4, "big")
