"""An object store in an S3 bucket (MinIO or any S3 service), on the minio client."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from minio import Minio
from minio.error import S3Error

from storage._keys import check_key
from storage._ranges import check_piece_bytes, check_read_range
from storage.errors import ObjectNotFound, StorageError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)

PART_SIZE_BYTES = 16 * 1024 * 1024

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject"})
_EXISTING_BUCKET_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class S3Store:
    """Objects in one bucket; the key is the object name. Repr hides credentials."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str | None = None,
    ) -> None:
        """Connect lazily to endpoint ("host:port"); nothing is sent until a call."""
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
        )
        self._endpoint = endpoint
        self._bucket = bucket
        self._region = region

    def __repr__(self) -> str:
        """Show endpoint and bucket, never credentials."""
        return f"S3Store(endpoint={self._endpoint!r}, bucket={self._bucket!r})"

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""
        with _translated("bucket", self._bucket):
            if self._client.bucket_exists(self._bucket):
                return
            try:
                self._client.make_bucket(self._bucket, location=self._region)
            except S3Error as exc:
                # Another node created it between the check and the call.
                if exc.code not in _EXISTING_BUCKET_CODES:
                    raise
                return
        logger.info("Created bucket %s on %s", self._bucket, self._endpoint)

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Upload the concatenated chunks under key; return the size.

        The length is unknown up front, so the client uploads multipart in parts
        of ``PART_SIZE_BYTES``; a failure aborts the upload and stores nothing.
        """
        check_key(key)
        stream = _ChunkStream(chunks)
        with _translated("object", key):
            self._client.put_object(
                self._bucket,
                key,
                io.BufferedReader(stream),
                length=-1,
                part_size=PART_SIZE_BYTES,
            )
        logger.debug("Wrote object %s (%d bytes)", key, stream.bytes_read)
        return stream.bytes_read

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return up to length bytes from offset; fewer at the end of the object."""
        check_key(key)
        check_read_range(offset, length)
        if length == 0:
            self.size(key)
            return b""
        with _translated("object", key):
            try:
                response = self._client.get_object(
                    self._bucket, key, offset=offset, length=length or 0
                )
            except S3Error as exc:
                # S3 refuses a range that starts at or past the end of the object.
                if exc.code == "InvalidRange":
                    return b""
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def iter_read(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Yield the whole object in pieces of at most chunk_bytes."""
        check_key(key)
        check_piece_bytes(chunk_bytes)
        with _translated("object", key):
            response = self._client.get_object(self._bucket, key)
            try:
                yield from response.stream(chunk_bytes)
            finally:
                response.close()
                response.release_conn()

    def size(self, key: str) -> int:
        """Return the stored size in bytes."""
        check_key(key)
        with _translated("object", key):
            stat = self._client.stat_object(self._bucket, key)
        if stat.size is None:
            raise StorageError(f"S3 returned no size for object {key!r}")
        return stat.size

    def exists(self, key: str) -> bool:
        """Tell whether the key holds an object."""
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the object; absent keys are not an error (S3 semantics)."""
        check_key(key)
        with _translated("object", key):
            self._client.remove_object(self._bucket, key)
        logger.debug("Deleted object %s", key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with prefix, in the bucket's (sorted) order."""
        with _translated("bucket", self._bucket):
            listing = self._client.list_objects(
                self._bucket, prefix=prefix or None, recursive=True
            )
            for item in listing:
                if item.object_name is not None and not item.is_dir:
                    yield item.object_name

    def modified_before(self, cutoff: float, prefix: str = "") -> Iterator[str]:
        """Yield keys whose object was last written before ``cutoff``."""
        with _translated("bucket", self._bucket):
            listing = self._client.list_objects(
                self._bucket, prefix=prefix or None, recursive=True
            )
            for item in listing:
                written = item.last_modified
                if item.object_name is None or item.is_dir or written is None:
                    continue
                if written.timestamp() < cutoff:
                    yield item.object_name

    def sweep_temporaries(self, cutoff: float) -> int:
        """Nothing to sweep: the service discards uploads that never complete."""
        return 0


@contextlib.contextmanager
def _translated(kind: str, name: str) -> Iterator[None]:
    """Turn S3 errors about the named object or bucket into storage errors."""
    try:
        yield
    except S3Error as exc:
        if kind == "object" and exc.code in _MISSING_CODES:
            raise ObjectNotFound(f"No object under key {name!r}") from None
        raise StorageError(
            f"S3 request on {kind} {name!r} failed: {exc.code}: {exc.message}"
        ) from exc


class _ChunkStream(io.RawIOBase):
    """A read-only raw stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        """Read from chunks lazily, one at a time."""
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.bytes_read = 0

    def readable(self) -> bool:
        """Tell io that this stream reads."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Copy the next available bytes into buffer; 0 at the end."""
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self.bytes_read += count
        return count
