"""Key-encryption keys (KEKs) that wrap and unwrap the data key of each object.

A key file is UTF-8 text holding one KEK id and one or more versions of it::

    # Blank lines and lines starting with '#' are ignored.
    id=dev-3f9a2c1b
    version=1
    key=<base64 of 32 random bytes>
    version=2
    key=<base64 of 32 random bytes>

``id`` comes first (letters, digits, '.', '_', ':', '-'; at most 255 characters).
Each ``version=<n>`` line (1 <= n < 2**32, no repeats) is followed by its
``key=`` line. The highest version wraps new data keys; every listed version
still unwraps, so rotating appends a version and keeps the old ones until every
object has been re-wrapped. Data keys are wrapped with AES key wrap (RFC 3394)
under the 256-bit KEK.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn, Protocol

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from storage._atomic import replace_file
from storage.errors import KekUnavailable, KeyFileError, SealError

logger = logging.getLogger(__name__)

KEK_BYTES = 32
MAX_KEK_VERSION = 2**32 - 1

_KEK_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,255}")
_KEK_ID_RULE = "expected 1 to 255 letters, digits, '.', '_', ':' or '-'"


class KeyProvider(Protocol):
    """Wraps data keys under the current KEK and unwraps them under any known one."""

    @property
    def kek_id(self) -> str:
        """The id of the KEK that wraps new data keys."""

    @property
    def kek_version(self) -> int:
        """The version of the KEK that wraps new data keys."""

    def wrap(self, data_key: bytes) -> bytes:
        """Wrap data_key under the current KEK (kek_id, kek_version)."""

    def unwrap(self, kek_id: str, kek_version: int, wrapped: bytes) -> bytes:
        """Recover a data key wrapped under the named KEK version.

        Raises ``KekUnavailable`` for an unknown id or version and ``SealError``
        when the wrapped key does not authenticate under that KEK.
        """


class FileKeyProvider:
    """KEKs held in memory after reading a key file; repr shows no key material."""

    def __init__(self, kek_id: str, keks: Mapping[int, bytes]) -> None:
        """Hold the versions of one KEK; the highest version wraps."""
        _check_kek_id(kek_id)
        if not keks:
            raise KeyFileError(f"KEK {kek_id!r} has no versions; expected at least one")
        for version, kek in keks.items():
            _check_version(version)
            if len(kek) != KEK_BYTES:
                raise KeyFileError(
                    f"KEK {kek_id!r} version {version} has {len(kek)} bytes; "
                    f"expected {KEK_BYTES}"
                )
        self._kek_id = kek_id
        self._keks = dict(keks)

    @classmethod
    def from_file(cls, path: Path) -> FileKeyProvider:
        """Read a key file (format in the module docstring)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise KeyFileError(f"Key file {str(path)!r} is not UTF-8 text") from None
        except OSError as exc:
            raise KeyFileError(
                f"Cannot read key file {str(path)!r}: {exc.strerror}"
            ) from exc
        _warn_if_exposed(Path(path))
        kek_id, keks = _parse_key_file(text, Path(path))
        return cls(kek_id, keks)

    def __repr__(self) -> str:
        """Show the id and versions, never key material."""
        return f"FileKeyProvider(kek_id={self._kek_id!r}, versions={self.versions})"

    @property
    def kek_id(self) -> str:
        """The id of the KEK that wraps new data keys."""
        return self._kek_id

    @property
    def kek_version(self) -> int:
        """The highest version, which wraps new data keys."""
        return max(self._keks)

    @property
    def versions(self) -> list[int]:
        """Every version this provider can unwrap with, in increasing order."""
        return sorted(self._keks)

    def wrap(self, data_key: bytes) -> bytes:
        """Wrap data_key with AES key wrap under the current version."""
        return aes_key_wrap(self._keks[self.kek_version], data_key)

    def unwrap(self, kek_id: str, kek_version: int, wrapped: bytes) -> bytes:
        """Recover a data key wrapped under the named KEK version."""
        kek = self._kek(kek_id, kek_version)
        try:
            return aes_key_unwrap(kek, wrapped)
        except (InvalidUnwrap, ValueError):
            raise SealError(
                f"Wrapped data key does not unwrap under KEK {kek_id!r} version "
                f"{kek_version}; the key file holds another key under that name, "
                "or the object was altered"
            ) from None

    def _kek(self, kek_id: str, kek_version: int) -> bytes:
        """Return the KEK for id/version or raise KekUnavailable."""
        if kek_id != self._kek_id:
            raise KekUnavailable(
                f"Unknown KEK id {kek_id!r}; this key file holds {self._kek_id!r}"
            )
        kek = self._keks.get(kek_version)
        if kek is None:
            raise KekUnavailable(
                f"KEK {kek_id!r} has no version {kek_version!r}; "
                f"the key file holds versions {self.versions}"
            )
        return kek


def create_dev_key_file(path: Path) -> None:
    """Write a new key file with one random KEK, mode 0o600; never overwrite."""
    text = _format_key_file(f"dev-{secrets.token_hex(4)}", {1: _new_kek()})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"Key file {str(path)!r} already exists; refusing to overwrite it"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    logger.warning(
        "Created development key file %s: its KEK lives next to the data, "
        "use a key provider outside this host in production",
        path,
    )


def rotate_key_file(path: Path) -> int:
    """Append a new random KEK version to a key file; return that version."""
    path = Path(path)
    provider = FileKeyProvider.from_file(path)
    version = provider.kek_version + 1
    _check_version(version)
    text = path.read_text(encoding="utf-8").rstrip("\n") + "\n"
    text += _format_versions({version: _new_kek()})
    replace_file(path, [text.encode("utf-8")])
    logger.info("Added version %d of KEK %s to %s", version, provider.kek_id, path)
    return version


def _check_kek_id(kek_id: str) -> None:
    """Raise KeyFileError unless kek_id follows the key file rule."""
    if _KEK_ID_PATTERN.fullmatch(kek_id) is None:
        raise KeyFileError(f"Invalid KEK id {kek_id!r}; {_KEK_ID_RULE}")


def _check_version(version: int) -> None:
    """Raise KeyFileError unless version fits the header's u32 field."""
    if not 1 <= version <= MAX_KEK_VERSION:
        raise KeyFileError(
            f"Invalid KEK version {version!r}; expected 1..{MAX_KEK_VERSION}"
        )


def _new_kek() -> bytes:
    """Return fresh random KEK material."""
    return secrets.token_bytes(KEK_BYTES)


def _format_key_file(kek_id: str, keks: Mapping[int, bytes]) -> str:
    """Render a key file holding the given versions."""
    header = "# dicomvault key file: keep it secret (mode 600), back it up.\n"
    return f"{header}id={kek_id}\n{_format_versions(keks)}"


def _format_versions(keks: Mapping[int, bytes]) -> str:
    """Render version/key line pairs."""
    lines = (
        f"version={version}\nkey={base64.b64encode(kek).decode('ascii')}\n"
        for version, kek in sorted(keks.items())
    )
    return "".join(lines)


def _warn_if_exposed(path: Path) -> None:
    """Log a warning when group or others may access the key file."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning(
            "Key file %s has mode %s: group or others can reach it; "
            "restrict it with chmod 600",
            path,
            oct(mode),
        )


def _parse_key_file(text: str, path: Path) -> tuple[str, dict[int, bytes]]:
    """Parse key file text into the KEK id and its versions."""
    parser = _KeyFileParser(path)
    for number, line in enumerate(text.splitlines(), start=1):
        parser.feed(number, line.strip())
    return parser.finish()


class _KeyFileParser:
    """Line-by-line key file reader that names the line of every problem."""

    def __init__(self, path: Path) -> None:
        """Start before the first line of path."""
        self._path = path
        self._kek_id: str | None = None
        self._keks: dict[int, bytes] = {}
        self._pending: tuple[int, int] | None = None  # (line, version) without key

    def feed(self, number: int, line: str) -> None:
        """Take one stripped line."""
        if not line or line.startswith("#"):
            return
        name, equals, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not equals:
            self._fail(number, "has no '='; expected id=, version= or key=")
        if name == "id":
            self._take_id(number, value)
        elif name == "version":
            self._take_version(number, value)
        elif name == "key":
            self._take_key(number, value)
        else:
            self._fail(number, f"has unknown name {name!r}; expected id, version, key")

    def finish(self) -> tuple[str, dict[int, bytes]]:
        """Return the parsed id and versions, or fail on a missing part."""
        if self._kek_id is None:
            self._fail(None, "has no id= line")
        if self._pending is not None:
            line, version = self._pending
            self._fail(line, f"version {version} has no key= line after it")
        if not self._keks:
            self._fail(None, "has no version= and key= lines")
        return self._kek_id, self._keks

    def _take_id(self, number: int, value: str) -> None:
        """Accept the one id line, which comes before any version."""
        if self._kek_id is not None or self._keks or self._pending:
            self._fail(number, "has a second or late id= line; expected one, first")
        if _KEK_ID_PATTERN.fullmatch(value) is None:
            self._fail(number, f"has invalid KEK id {value!r}; {_KEK_ID_RULE}")
        self._kek_id = value

    def _take_version(self, number: int, value: str) -> None:
        """Open a version that the next key= line completes."""
        if self._kek_id is None:
            self._fail(number, "has version= before id=; expected id= first")
        if self._pending is not None:
            version = self._pending[1]
            self._fail(number, f"has version= but version {version} has no key yet")
        if not value.isdigit() or not 1 <= int(value) <= MAX_KEK_VERSION:
            self._fail(
                number,
                f"has version {value!r}; expected an integer 1..{MAX_KEK_VERSION}",
            )
        if int(value) in self._keks:
            self._fail(number, f"repeats version {int(value)}")
        self._pending = (number, int(value))

    def _take_key(self, number: int, value: str) -> None:
        """Complete the open version with its KEK; the value is never echoed."""
        if self._pending is None:
            self._fail(number, "has key= without a version= line before it")
        try:
            kek = base64.b64decode(value, validate=True)
        except binascii.Error:
            self._fail(number, "has a key= value that is not valid base64")
        if len(kek) != KEK_BYTES:
            self._fail(
                number, f"has a key of {len(kek)} bytes; expected {KEK_BYTES} (base64)"
            )
        self._keks[self._pending[1]] = kek
        self._pending = None

    def _fail(self, number: int | None, problem: str) -> NoReturn:
        """Raise KeyFileError naming the file, the line and the problem."""
        where = "" if number is None else f" line {number}"
        raise KeyFileError(f"Key file {str(self._path)!r}{where} {problem}")
