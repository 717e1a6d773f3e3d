"""The small interface every object store implements."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol


class ObjectStore(Protocol):
    """A flat key -> bytes store. Calls block; the archive runs them in threads.

    Keys are made by the archive from random or hashed material only, never from
    request text: ``[0-9a-f/]`` plus a suffix. Implementations still refuse keys
    that could escape their root (``..``, absolute paths, NUL).
    """

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenated chunks under key atomically; return the size.

        A reader never sees a partly written object: either the old object (or
        none) or the whole new one. A failure leaves nothing behind.
        """
        ...

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes (all to the end when None) from ``offset``.

        Raises ``ObjectNotFound`` when the key is absent.
        """
        ...

    def iter_read(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Yield the whole object in pieces of at most chunk_bytes."""
        ...

    def size(self, key: str) -> int:
        """Return the stored size in bytes; ``ObjectNotFound`` when absent."""
        ...

    def exists(self, key: str) -> bool:
        """Tell whether the key holds an object."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; absent keys are not an error."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with prefix (for clean-up and rebuilds)."""
        ...

    def modified_before(self, cutoff: float, prefix: str = "") -> Iterator[str]:
        """Yield keys whose object was last written before ``cutoff`` (epoch s)."""
        ...

    def sweep_temporaries(self, cutoff: float) -> int:
        """Remove partial writes left before ``cutoff`` by a killed process."""
        ...
