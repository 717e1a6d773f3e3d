"""Crash-safe file replacement: temporary file, fsync, rename, folder fsync."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

# A leading dot keeps temporary files out of the key space: no object key
# component may start with one.
TEMP_PREFIX = ".tmp-"


def replace_file(path: Path, chunks: Iterable[bytes]) -> int:
    """Atomically make path hold the concatenated chunks (mode 0o600); return size.

    A failure, including one raised by chunks, leaves path as it was and removes
    the temporary file.
    """
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as temp:
            size = 0
            for chunk in chunks:
                temp.write(chunk)
                size += len(chunk)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        # The original error is the one to report; the file may never have existed.
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_folder(path.parent)
    return size


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (renames, new or removed files) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
