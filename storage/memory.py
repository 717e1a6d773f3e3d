"""An in-memory object store: the twin of the real stores for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from storage._keys import check_key
from storage._ranges import check_piece_bytes, check_read_range
from storage.errors import ObjectNotFound


class MemoryStore:
    """A thread-safe dict of key -> bytes that behaves like the real stores."""

    def __init__(self) -> None:
        """Start empty."""
        self._objects: dict[str, bytes] = {}
        self._written: dict[str, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        """Show the object count, never the contents."""
        return f"MemoryStore(objects={len(self._objects)})"

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenated chunks under key atomically; return the size."""
        check_key(key)
        data = b"".join(chunks)
        with self._lock:
            self._objects[key] = data
            self._written[key] = time.time()
        return len(data)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return up to length bytes from offset; fewer at the end of the object."""
        check_read_range(offset, length)
        data = self._get(key)
        stop = len(data) if length is None else offset + length
        return data[offset:stop]

    def iter_read(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Yield the whole object in pieces of at most chunk_bytes."""
        check_piece_bytes(chunk_bytes)
        data = self._get(key)
        for start in range(0, len(data), chunk_bytes):
            yield data[start : start + chunk_bytes]

    def size(self, key: str) -> int:
        """Return the stored size in bytes."""
        return len(self._get(key))

    def exists(self, key: str) -> bool:
        """Tell whether the key holds an object."""
        check_key(key)
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> None:
        """Remove the object; absent keys are not an error."""
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)
            self._written.pop(key, None)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with prefix, in sorted order."""
        with self._lock:
            matching = sorted(k for k in self._objects if k.startswith(prefix))
        yield from matching

    def modified_before(self, cutoff: float, prefix: str = "") -> Iterator[str]:
        """Yield keys written before ``cutoff`` (epoch seconds)."""
        with self._lock:
            old = sorted(
                k
                for k, t in self._written.items()
                if t < cutoff and k.startswith(prefix)
            )
        yield from old

    def sweep_temporaries(self, cutoff: float) -> int:
        """Nothing to sweep: writes here are never partial."""
        return 0

    def _get(self, key: str) -> bytes:
        """Return the object under key or raise ObjectNotFound."""
        check_key(key)
        with self._lock:
            data = self._objects.get(key)
        if data is None:
            raise ObjectNotFound(f"No object under key {key!r}")
        return data
