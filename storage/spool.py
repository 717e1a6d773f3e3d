"""Temporary files that hold their bytes encrypted, with a key only memory knows.

An upload too large to keep in memory waits on disk until it is stored, and
its bytes are patient data: on disk they are AES-256-CTR with a random key and
counter made for the file, so what the temporary file leaves behind (its
blocks after deletion, a copy of the disk) reads as noise. Nothing is
authenticated: the file lives only as long as the request that wrote it, and
the object store seals what is finally kept (``storage.envelope``).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable
from types import TracebackType
from typing import BinaryIO, Self

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CTR

_BLOCK = 16
_COUNTER_SPACE = 1 << 128
# Buffered reads and writes over the encrypted file.
_BUFFER_BYTES = 1 << 20


class _CipherRaw(io.RawIOBase):
    """A raw temporary file whose every byte is XORed with an AES-CTR keystream."""

    def __init__(self) -> None:
        super().__init__()
        # Unnamed: removed by the system however the process ends. Unbuffered:
        # the buffering is the caller's (``io.BufferedRandom``), and a size
        # read with fstat is then the true one.
        self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115
        self._key = os.urandom(32)
        self._counter = int.from_bytes(os.urandom(_BLOCK), "big")
        self._position = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _keystream_at(self, offset: int) -> CipherContext:
        block, skip = divmod(offset, _BLOCK)
        counter = (self._counter + block) % _COUNTER_SPACE
        context = Cipher(AES(self._key), CTR(counter.to_bytes(_BLOCK, "big")))
        stream = context.encryptor()
        if skip:
            stream.update(bytes(skip))
        return stream

    def write(  # type: ignore[override]
        self, data: bytes | bytearray | memoryview
    ) -> int:
        view = memoryview(data).cast("B")
        end = os.fstat(self._file.fileno()).st_size
        if self._position > end:
            # A gap past the end reads back as zeros, like any file's.
            self._file.seek(end)
            gap = self._position - end
            self._write_all(self._keystream_at(end).update(bytes(gap)))
        self._file.seek(self._position)
        self._write_all(self._keystream_at(self._position).update(view))
        self._position += len(view)
        return len(view)

    def _write_all(self, sealed: bytes) -> None:
        view = memoryview(sealed)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError("The temporary file took no bytes")
            view = view[written:]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        self._file.seek(self._position)
        sealed = self._file.read(len(target)) or b""
        plain = self._keystream_at(self._position).update(sealed)
        target[: len(plain)] = plain
        self._position += len(plain)
        return len(plain)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = os.fstat(self._file.fileno()).st_size + offset
        else:
            raise ValueError(f"whence must be 0, 1 or 2, not {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class SpooledCipherFile:
    """In memory up to ``max_bytes``, then in an encrypted temporary file.

    The same use as ``tempfile.SpooledTemporaryFile``: write, rewind, read
    (seekable throughout), close; the bytes never reach the disk in clear.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._file: BinaryIO = io.BytesIO()
        self._on_disk = False

    @property
    def rolled_over(self) -> bool:
        """Whether the bytes have moved to the encrypted file."""
        return self._on_disk

    def _roll_over_for(self, incoming: int) -> None:
        if self._on_disk:
            return
        memory = self._file
        assert isinstance(memory, io.BytesIO)
        position = memory.tell()
        size = memory.seek(0, io.SEEK_END)
        memory.seek(position)
        if size + incoming <= self._max_bytes:
            return
        encrypted = io.BufferedRandom(_CipherRaw(), _BUFFER_BYTES)
        with memory.getbuffer() as held:
            encrypted.write(held)
        encrypted.seek(position)
        self._file, self._on_disk = encrypted, True
        memory.close()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write at the current position; past the limit the file rolls over."""
        self._roll_over_for(len(data))
        return self._file.write(data)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each chunk in turn."""
        for chunk in chunks:
            self.write(chunk)

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all that remain when negative)."""
        return self._file.read(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into ``buffer``; the number of bytes read."""
        return self._file.readinto(buffer)  # type: ignore[attr-defined, no-any-return]

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position, as ``io.IOBase.seek``."""
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        """The current position."""
        return self._file.tell()

    def flush(self) -> None:
        """Nothing is held back for long: the buffer goes to the file."""
        self._file.flush()

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self._file.closed

    def close(self) -> None:
        """Close and forget the bytes (the encrypted file and its key)."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
