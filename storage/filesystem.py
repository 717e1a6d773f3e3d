"""An object store in a folder tree: one file per object, written atomically."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from storage._atomic import TEMP_PREFIX, fsync_folder, replace_file
from storage._keys import check_key, could_prefix_keys, is_valid_key
from storage._ranges import check_piece_bytes, check_read_range
from storage.errors import ObjectNotFound

logger = logging.getLogger(__name__)


class FilesystemStore:
    """Objects as files under root; the key is the path relative to root."""

    def __init__(self, root: Path) -> None:
        """Use root (created if missing) as the top folder of the store."""
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        """Show the root folder."""
        return f"FilesystemStore(root={str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The top folder of the store."""
        return self._root

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenated chunks under key atomically; return the size.

        The bytes go to a temporary file in the target folder, which is synced
        and renamed over the target; the folder is synced after the rename.
        """
        path = self._path(key)
        _make_folders(path.parent)
        size = replace_file(path, chunks)
        logger.debug("Wrote object %s (%d bytes)", key, size)
        return size

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return up to length bytes from offset; fewer at the end of the object."""
        check_read_range(offset, length)
        with self._open(key) as file:
            file.seek(offset)
            return file.read(-1 if length is None else length)

    def iter_read(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Yield the whole object in pieces of at most chunk_bytes."""
        check_piece_bytes(chunk_bytes)
        with self._open(key) as file:
            while piece := file.read(chunk_bytes):
                yield piece

    def size(self, key: str) -> int:
        """Return the stored size in bytes."""
        try:
            status = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"No object under key {key!r}") from None
        if not stat.S_ISREG(status.st_mode):
            raise ObjectNotFound(f"No object under key {key!r}")
        return status.st_size

    def exists(self, key: str) -> bool:
        """Tell whether the key holds an object."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the object; absent keys are not an error."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        fsync_folder(path.parent)
        logger.debug("Deleted object %s", key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with prefix; temporary files are skipped."""
        if not could_prefix_keys(prefix):
            return
        folder = prefix.rpartition("/")[0]
        for dirpath, dirnames, filenames in os.walk(self._root / folder):
            dirnames[:] = [name for name in dirnames if is_valid_key(name)]
            relative = Path(dirpath).relative_to(self._root).as_posix()
            for name in filenames:
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix) and is_valid_key(key):
                    yield key

    def modified_before(self, cutoff: float, prefix: str = "") -> Iterator[str]:
        """Yield keys whose file was last modified before ``cutoff``."""
        for key in self.keys(prefix):
            try:
                if self._path(key).stat().st_mtime < cutoff:
                    yield key
            except FileNotFoundError:
                continue  # removed since it was listed

    def sweep_temporaries(self, cutoff: float) -> int:
        """Remove temporary files of writes that never finished; return how many."""
        removed = 0
        for dirpath, _, filenames in os.walk(self._root):
            for name in filenames:
                path = Path(dirpath) / name
                if not name.startswith(TEMP_PREFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed

    def _path(self, key: str) -> Path:
        """Map a validated key to its file path under root."""
        return self._root.joinpath(*check_key(key).split("/"))

    def _open(self, key: str) -> BinaryIO:
        """Open the object file for reading or raise ObjectNotFound."""
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"No object under key {key!r}") from None


def _make_folders(folder: Path) -> None:
    """Create folder and missing parents, syncing each parent that gains one."""
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        # Another writer may create the same folder at the same moment.
        with contextlib.suppress(FileExistsError):
            path.mkdir()
        fsync_folder(path.parent)
