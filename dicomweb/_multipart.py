"""multipart/related bodies (RFC 2046 5.1.1, RFC 2387) for STOW-RS and WADO-RS.

The reader is a push parser without I/O (PS3.18 10.5 request bodies); ``iter_parts``
adapts it to an ASGI byte stream and spools each part. The writer streams a response
body (PS3.18 8.7.3.1) without joining part bodies.
"""

from __future__ import annotations

import asyncio
import enum
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, cast

from dicomweb._media import parse_content_type, quote_parameter
from storage.spool import SpooledCipherFile

__all__ = [
    "MAX_HEADER_BYTES",
    "MalformedMultipart",
    "MultipartError",
    "MultipartReader",
    "PartData",
    "PartEnd",
    "PartEvent",
    "PartStart",
    "ReceivedPart",
    "TruncatedMultipart",
    "UnsupportedTransferEncoding",
    "iter_parts",
    "multipart_content_type",
    "new_boundary",
    "parse_content_type",
    "stream_parts",
]

CRLF = b"\r\n"

# Largest header block of one part, blank line included
MAX_HEADER_BYTES = 16 * 1024

# Longest run of spaces and tabs taken after a boundary (RFC 2046 transport-padding)
_MAX_PADDING = 64

# Spooled bytes gathered before one write to disk in a worker thread
_DISK_BATCH_BYTES = 1 << 20

# RFC 2046 5.1.1: 1 to 70 characters, not ending with a space
_BOUNDARY = re.compile(r"[ -~]{0,69}[!-~]")

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BARE_LF = re.compile(rb"(?<!\r)\n")

# HTTP ignores MIME's Content-Transfer-Encoding; these three leave bytes as sent
_IDENTITY_ENCODINGS = frozenset({"binary", "8bit", "7bit"})


class MultipartError(ValueError):
    """A multipart/related body cannot be read (RFC 2046 5.1.1)."""


class MalformedMultipart(MultipartError):
    """The body breaks the multipart syntax: bad boundary line or part headers."""


class TruncatedMultipart(MultipartError):
    """The body ended before its close delimiter."""


class UnsupportedTransferEncoding(MultipartError):
    """A part uses a Content-Transfer-Encoding other than binary, 8bit or 7bit."""


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part begins; header names are lowercased."""

    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PartData:
    """The next bytes of the current part's body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part's body is complete."""


PartEvent = PartStart | PartData | PartEnd


@dataclass(frozen=True, slots=True)
class ReceivedPart:
    """One whole part; the caller closes ``file``, which is rewound to 0."""

    headers: Mapping[str, str]
    content_type: str | None
    file: BinaryIO
    size: int


class _State(enum.Enum):
    """Where the reader stands in the body."""

    PREAMBLE = enum.auto()
    HEADERS = enum.auto()
    BODY = enum.auto()
    EPILOGUE = enum.auto()


class _Line(enum.Enum):
    """What a candidate delimiter turned out to be."""

    PART = enum.auto()
    CLOSE = enum.auto()
    DATA = enum.auto()


class MultipartReader:
    """Push parser of a multipart body: bytes in, part events out (RFC 2046 5.1.1).

    A delimiter is CRLF, "--", the boundary, optional spaces or tabs, then CRLF (or
    "--" for the last one). Boundary text followed by anything else is part data.
    Line endings must be CRLF; a bare LF on a boundary line or in headers is an
    error. Between calls the reader holds back at most one part's header block, or
    ``len(boundary) + 69`` body bytes: a delimiter, its padding and a CR.
    """

    def __init__(self, boundary: str) -> None:
        _check_boundary(boundary)
        self._boundary = boundary
        self._delimiter = CRLF + b"--" + boundary.encode("ascii")
        # The first boundary may open the body with no CRLF before it
        self._buffer = bytearray(CRLF)
        self._state = _State.PREAMBLE
        self._parts = 0
        self._part_bytes = 0
        self._content_length: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back until the next feed() shows what they are."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[PartEvent]:
        """Take the next bytes of the body and return the events they complete."""
        events: list[PartEvent] = []
        if self._state is _State.EPILOGUE:
            return events
        self._buffer += data
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        """Check that the body ended after its close delimiter.

        Raises:
            TruncatedMultipart: the body stopped before ``--boundary--``.
        """
        close_delimiter = f"--{self._boundary}--"
        if self._state is _State.PREAMBLE:
            raise TruncatedMultipart(
                f"Body ended before its first boundary {close_delimiter[:-2]!r}; "
                "check the boundary parameter of the Content-Type and that lines "
                "end with CRLF"
            )
        if self._state is _State.HEADERS:
            raise TruncatedMultipart(
                f"Body ended inside the headers of part {self._parts + 1}; "
                f"expected a blank line, the body and {close_delimiter!r}"
            )
        if self._state is _State.BODY:
            raise TruncatedMultipart(
                f"Body ended inside part {self._parts} before the close "
                f"delimiter {close_delimiter!r}"
            )

    def _step(self, events: list[PartEvent]) -> bool:
        """Advance as far as the buffer allows; tell whether to step again."""
        if self._state is _State.PREAMBLE:
            return self._skip_preamble()
        if self._state is _State.HEADERS:
            return self._read_headers(events)
        if self._state is _State.BODY:
            return self._read_body(events)
        return False

    def _skip_preamble(self) -> bool:
        """Drop bytes before the first boundary (RFC 2046 5.1.1 preamble)."""
        found = self._find_delimiter()
        if found is None:
            del self._buffer[: self._undecided_from()]
            return False

        index, line, end = found
        if line is None:
            del self._buffer[:index]
            return False
        del self._buffer[:end]
        self._pass_delimiter(line)
        return True

    def _read_headers(self, events: list[PartEvent]) -> bool:
        """Parse one part's header block once its blank line has arrived."""
        buffer = self._buffer
        if buffer.startswith(CRLF):
            block_end, body_start = 0, 2
        else:
            block_end = buffer.find(CRLF + CRLF)
            body_start = block_end + 4
        bare_lf = _BARE_LF.search(
            buffer, 0, block_end if block_end >= 0 else len(buffer)
        )
        if bare_lf is not None:
            raise MalformedMultipart(
                f"Headers of part {self._parts + 1} end a line with a bare LF; "
                "multipart bodies need CRLF line endings (RFC 2046 5.1.1)"
            )
        if block_end < 0 and len(buffer) < MAX_HEADER_BYTES:
            return False
        if block_end < 0 or body_start > MAX_HEADER_BYTES:
            raise MalformedMultipart(
                f"Headers of part {self._parts + 1} exceed {MAX_HEADER_BYTES} bytes "
                "or lack the blank line that ends them"
            )

        headers = self._parse_headers(bytes(buffer[:block_end]))
        del buffer[:body_start]
        self._parts += 1
        self._part_bytes = 0
        self._state = _State.BODY
        events.append(PartStart(headers))
        return True

    def _read_body(self, events: list[PartEvent]) -> bool:
        """Pass on body bytes up to the next delimiter or the undecided tail."""
        found = self._find_delimiter()
        if found is None:
            self._emit(events, self._undecided_from())
            return False

        index, line, end = found
        self._emit(events, index)
        if line is None:
            return False
        del self._buffer[: end - index]
        self._end_part(events)
        self._pass_delimiter(line)
        return True

    def _pass_delimiter(self, line: _Line) -> None:
        """Move on to the next part's headers, or past the close delimiter."""
        if line is _Line.PART:
            self._state = _State.HEADERS
        else:
            # Whatever follows the close delimiter is epilogue, dropped unread
            self._state = _State.EPILOGUE
            self._buffer.clear()

    def _find_delimiter(self) -> tuple[int, _Line | None, int] | None:
        """Find the next real delimiter: its index, kind (None: undecided) and end."""
        start = 0
        while True:
            index = self._buffer.find(self._delimiter, start)
            if index < 0:
                return None
            line, end = self._classify(index + len(self._delimiter))
            if line is not _Line.DATA:
                return index, line, end
            start = index + 1

    def _classify(self, start: int) -> tuple[_Line | None, int]:
        """Tell what follows boundary text ending at start, and where its line ends."""
        tail = bytes(self._buffer[start : start + _MAX_PADDING + 2])
        if tail.startswith(b"--"):
            return _Line.CLOSE, start + 2
        if tail in (b"", b"-"):
            return None, start
        rest = tail.lstrip(b" \t")
        padding = len(tail) - len(rest)
        if rest.startswith(CRLF):
            return _Line.PART, start + padding + 2
        if rest.startswith(b"\n"):
            raise MalformedMultipart(
                f"Boundary line of {self._boundary!r} ends with a bare LF; multipart "
                "bodies need CRLF line endings (RFC 2046 5.1.1)"
            )
        if rest not in (b"", b"\r"):
            return _Line.DATA, start
        if len(tail) <= _MAX_PADDING + 1:
            return None, start
        raise MalformedMultipart(
            f"Boundary line of {self._boundary!r} has more than {_MAX_PADDING} "
            "spaces or tabs before its CRLF"
        )

    def _undecided_from(self) -> int:
        """Return where a tail that could still begin a delimiter starts."""
        buffer = self._buffer
        candidate = buffer.find(b"\r", max(0, len(buffer) - len(self._delimiter) + 1))
        while candidate >= 0 and not self._delimiter.startswith(buffer[candidate:]):
            candidate = buffer.find(b"\r", candidate + 1)
        return len(buffer) if candidate < 0 else candidate

    def _emit(self, events: list[PartEvent], end: int) -> None:
        """Pass the first end bytes of the buffer on as part data."""
        if end == 0:
            return
        with memoryview(self._buffer) as view:
            data = bytes(view[:end])
        del self._buffer[:end]
        self._part_bytes += end
        events.append(PartData(data))

    def _end_part(self, events: list[PartEvent]) -> None:
        """Close the current part, checking its Content-Length when it had one."""
        expected = self._content_length
        if expected is not None and expected != self._part_bytes:
            raise MalformedMultipart(
                f"Part {self._parts} has {self._part_bytes} bytes but its "
                f"Content-Length says {expected}"
            )
        events.append(PartEnd())

    def _parse_headers(self, block: bytes) -> dict[str, str]:
        """Parse 'Name: value' lines, unfolding continuations (RFC 5322 2.2.3)."""
        number = self._parts + 1
        lines: list[bytes] = []
        for line in block.split(CRLF) if block else []:
            if line[:1] in (b" ", b"\t") and lines:
                lines[-1] += b" " + line.strip()
            else:
                lines.append(line)

        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(b":")
            name = name.rstrip()
            if not colon or not _TOKEN.fullmatch(name):
                raise MalformedMultipart(
                    f"Part {number} has the header line {line[:80]!r}; expected "
                    "'Name: value' lines, then a blank line"
                )
            key = name.decode("ascii").lower()
            if key in headers:
                raise MalformedMultipart(
                    f"Part {number} repeats the header {key!r}; send it once"
                )
            headers[key] = value.strip().decode("latin-1")
        self._content_length = self._check_part_headers(number, headers)
        return headers

    @staticmethod
    def _check_part_headers(number: int, headers: Mapping[str, str]) -> int | None:
        """Check the headers that change how the body is read; return its length."""
        encoding = headers.get("content-transfer-encoding", "binary").lower()
        if encoding not in _IDENTITY_ENCODINGS:
            raise UnsupportedTransferEncoding(
                f"Part {number} has Content-Transfer-Encoding {encoding!r}; send "
                "the bytes as they are, with 'binary' or no such header"
            )
        length = headers.get("content-length")
        if length is None:
            return None
        if not length.isascii() or not length.isdigit():
            raise MalformedMultipart(
                f"Part {number} has Content-Length {length!r}; expected a "
                "number of bytes"
            )
        return int(length)


async def iter_parts(
    chunks: AsyncIterator[bytes], boundary: str, spool_max_bytes: int = 8 << 20
) -> AsyncIterator[ReceivedPart]:
    """Yield each part of a multipart body as it completes, spooled to a file.

    A part stays in memory up to ``spool_max_bytes`` and moves to an encrypted
    temporary file past that (``storage.spool``); writes to disk run in a worker
    thread. The caller closes each
    ``part.file``; a part still being read when an error or ``aclose()`` stops the
    iteration is closed here.

    Raises:
        MultipartError: the body cannot be read; parts already yielded stay valid.
    """
    if spool_max_bytes < 1:
        raise ValueError(f"spool_max_bytes must be at least 1, got {spool_max_bytes}")
    reader = MultipartReader(boundary)
    spool: _Spool | None = None
    try:
        async for chunk in chunks:
            for event in reader.feed(chunk):
                if isinstance(event, PartStart):
                    spool = _Spool(event.headers, spool_max_bytes)
                    continue
                assert spool is not None, "the reader starts a part before its data"
                if isinstance(event, PartData):
                    await spool.write(event.data)
                    continue
                part = await spool.finish()
                spool = None
                yield part
        reader.close()
    finally:
        if spool is not None:
            spool.file.close()


class _Spool:
    """The body of the part being received, in memory first and on disk later."""

    def __init__(self, headers: Mapping[str, str], max_bytes: int) -> None:
        self.headers = headers
        # The caller closes it; on disk its bytes are encrypted (patient data).
        self.file = SpooledCipherFile(max_bytes)
        self._max_bytes = max_bytes
        self._size = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def write(self, data: bytes) -> None:
        """Add bytes; past the memory limit they go to disk in batches."""
        self._size += len(data)
        if self._size <= self._max_bytes:
            self.file.write(data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= _DISK_BATCH_BYTES:
            await self._flush()

    async def finish(self) -> ReceivedPart:
        """Write what is pending, rewind and hand the part over."""
        await self._flush()
        self.file.seek(0)
        return ReceivedPart(
            headers=self.headers,
            content_type=self.headers.get("content-type"),
            file=cast(BinaryIO, self.file),
            size=self._size,
        )

    async def _flush(self) -> None:
        """Write the pending bytes in a worker thread; the first one rolls over."""
        if not self._pending:
            return
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        await asyncio.to_thread(self.file.writelines, batch)


def new_boundary() -> str:
    """Return a random boundary of 32 hex digits, new on each call."""
    return secrets.token_hex(16)


def multipart_content_type(
    part_type: str, boundary: str, transfer_syntax: str | None = None
) -> str:
    """Return the Content-Type of a multipart/related response (PS3.18 8.7.3.1).

    ``type`` is always quoted, since its slash is not allowed in a token.
    """
    media_type, params = parse_content_type(part_type)
    if params:
        raise ValueError(
            f"part_type {part_type!r} must be a bare type/subtype; pass the "
            "transfer syntax as transfer_syntax"
        )
    _check_boundary(boundary)
    fields = ["multipart/related", f'type="{media_type}"']
    if transfer_syntax is not None:
        fields.append(f"transfer-syntax={quote_parameter(transfer_syntax)}")
    fields.append(f"boundary={quote_parameter(boundary)}")
    return "; ".join(fields)


async def stream_parts(
    parts: AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]],
    boundary: str,
) -> AsyncIterator[bytes]:
    """Yield a multipart body part by part, passing each body chunk on as it comes.

    The caller picks a boundary that cannot occur in the bodies: ``new_boundary()``.
    """
    _check_boundary(boundary)
    dash_boundary = b"--" + boundary.encode("ascii")
    # The CRLF ending a part's body goes out with the next boundary line
    separator = b""
    async for headers, body in parts:
        yield separator + dash_boundary + CRLF + _header_block(headers)
        async for chunk in body:
            if chunk:
                yield chunk
        separator = CRLF
    yield separator + dash_boundary + b"--" + CRLF


def _header_block(headers: Mapping[str, str]) -> bytes:
    """Render part headers and the blank line after them."""
    lines: list[bytes] = []
    for name, value in headers.items():
        encoded_name = name.encode("latin-1", "replace")
        if not _TOKEN.fullmatch(encoded_name):
            raise ValueError(f"Header name {name!r} is not an HTTP token")
        if any(char in value for char in "\r\n\0") or not value.isascii():
            raise ValueError(
                f"Header {name!r} has the value {value!r}; it must be ASCII without "
                "CR, LF or NUL"
            )
        lines.append(encoded_name + b": " + value.encode("ascii") + CRLF)
    lines.append(CRLF)
    return b"".join(lines)


def _check_boundary(boundary: str) -> None:
    """Raise MalformedMultipart unless boundary is valid (RFC 2046 5.1.1)."""
    if not _BOUNDARY.fullmatch(boundary):
        raise MalformedMultipart(
            f"Boundary {boundary!r} must be 1 to 70 printable ASCII characters, "
            "not ending with a space (RFC 2046 5.1.1)"
        )
