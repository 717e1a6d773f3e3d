"""multipart/related reader, spooling adapter and writer, fed with bytes only."""

from __future__ import annotations

import hashlib
import random
import re
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self, cast

import pytest
from dicomweb_client.api import DICOMwebClient

from dicomweb import _multipart
from dicomweb._media import InvalidMediaType
from dicomweb._multipart import (
    MAX_HEADER_BYTES,
    MalformedMultipart,
    MultipartReader,
    PartData,
    PartEvent,
    PartStart,
    ReceivedPart,
    TruncatedMultipart,
    UnsupportedTransferEncoding,
    iter_parts,
    multipart_content_type,
    new_boundary,
    parse_content_type,
    stream_parts,
)
from storage.spool import SpooledCipherFile

BOUNDARY = "b0undary-7f3a"
DELIMITER_BYTES = len(b"\r\n--" + BOUNDARY.encode())
# A delimiter, the longest padding after it and a CR: what may wait for the next feed
BUFFER_BOUND = DELIMITER_BYTES + 64 + 1
EXPLICIT_LE = "1.2.840.10008.1.2.1"

Parts = list[tuple[dict[str, str], bytes]]

SMALL_BODY = (
    b"--b0undary-7f3a\r\n"
    b"Content-Type: application/dicom\r\n"
    b"Content-Location: /studies/1.2.3\r\n"
    b"\r\n"
    b"DICM\x00\r\n\xff--b0undar\r\n"
    b"\r\n--b0undary-7f3a\r\n"
    b"\r\n"
    b"no headers\r\n"
    b"\r\n--b0undary-7f3a\r\n"
    b"content-type: application/octet-stream\r\n"
    b"\r\n"
    b"\r\n--b0undary-7f3aX\r\n"
    b"\r\n--b0undary-7f3a--\r\n"
)
SMALL_PARTS: Parts = [
    (
        {"content-type": "application/dicom", "content-location": "/studies/1.2.3"},
        b"DICM\x00\r\n\xff--b0undar\r\n",
    ),
    ({}, b"no headers\r\n"),
    (
        {"content-type": "application/octet-stream"},
        b"\r\n--b0undary-7f3aX\r\n",
    ),
]


def assemble(events: Iterable[PartEvent]) -> Parts:
    """Turn reader events into (headers, body) pairs, checking their order."""
    parts: Parts = []
    body: bytearray | None = None
    for event in events:
        if isinstance(event, PartStart):
            assert body is None, "a part started inside another"
            body = bytearray()
            parts.append((dict(event.headers), b""))
        elif isinstance(event, PartData):
            assert body is not None and event.data, "data outside a part, or empty"
            body += event.data
        else:
            assert body is not None, "a part ended that never started"
            parts[-1] = (parts[-1][0], bytes(body))
            body = None
    assert body is None, "the last part never ended"
    return parts


def read(pieces: Iterable[bytes], boundary: str = BOUNDARY) -> Parts:
    """Feed the pieces, close the reader and return the parts."""
    reader = MultipartReader(boundary)
    events: list[PartEvent] = []
    for piece in pieces:
        events += reader.feed(piece)
    reader.close()
    return assemble(events)


def split_randomly(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    """Cut data into pieces of random sizes from 1 to largest bytes."""
    pieces: list[bytes] = []
    position = 0
    while position < len(data):
        size = rng.choice((1, 2, 3, rng.randint(1, largest)))
        pieces.append(data[position : position + size])
        position += size
    return pieces


def encode(parts: Sequence[tuple[Mapping[str, str], bytes]], boundary: str) -> bytes:
    """Build a body by hand, as RFC 2046 5.1.1 spells it."""
    out = bytearray()
    for headers, body in parts:
        out += f"--{boundary}\r\n".encode()
        for name, value in headers.items():
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


async def aiter_bytes(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Yield the pieces as an ASGI request stream would."""
    for piece in pieces:
        yield piece


def test_reader_returns_the_parts_when_split_at_every_byte_position() -> None:
    for cut in range(len(SMALL_BODY) + 1):
        assert read([SMALL_BODY[:cut], SMALL_BODY[cut:]]) == SMALL_PARTS, cut


def test_reader_returns_the_parts_when_fed_one_byte_at_a_time() -> None:
    pieces = [SMALL_BODY[i : i + 1] for i in range(len(SMALL_BODY))]

    assert read(pieces) == SMALL_PARTS


def test_reader_returns_the_parts_of_megabytes_fed_in_random_sizes() -> None:
    rng = random.Random(20240611)
    parts: Parts = [
        ({"content-type": "application/dicom"}, rng.randbytes(3_000_000)),
        ({"content-type": "application/dicom"}, b""),
        ({"content-length": "1000001"}, rng.randbytes(1_000_001)),
    ]
    body = encode(parts, BOUNDARY)
    reader = MultipartReader(BOUNDARY)
    events: list[PartEvent] = []

    for piece in split_randomly(body, rng, 70_000):
        events += reader.feed(piece)
        assert reader.buffered <= BUFFER_BOUND
    reader.close()

    assert assemble(events) == parts


@pytest.mark.parametrize(
    "data",
    [
        b"--b0undar",
        b"x\r\n--b0undar\r\ny",
        b"\r\n--b0undary-7f3aX",
        b"\r\n--b0undary-7f3aX\r\n",
        b"\r\n--b0undary-7f3a-x\r\n",
        b"\r\n--b0undary-7f3a \tX\r\n",
        b"\n--b0undary-7f3a\r\n",
        b"text--b0undary-7f3a\r\n",
        b"\r\r\n--b0undary-7f3\r\n",
        b"\r",
        b"\r\n-",
    ],
)
def test_reader_keeps_boundary_like_text_as_data(data: bytes) -> None:
    body = encode([({}, data)], BOUNDARY)

    assert read([body]) == [({}, data)]
    assert read([body[i : i + 1] for i in range(len(body))]) == [({}, data)]


def test_reader_takes_spaces_and_tabs_after_a_boundary() -> None:
    body = (
        b"--b0undary-7f3a \t\r\n\r\none"
        b"\r\n--b0undary-7f3a  \r\n\r\ntwo"
        b"\r\n--b0undary-7f3a--"
    )

    assert read([body]) == [({}, b"one"), ({}, b"two")]


def test_reader_refuses_a_boundary_line_padded_past_the_limit() -> None:
    body = b"--b0undary-7f3a" + b" " * 65 + b"\r\n\r\n"

    with pytest.raises(MalformedMultipart, match="more than 64 spaces or tabs"):
        read([body])


def test_reader_rejects_lf_line_endings_with_a_clear_error() -> None:
    body = (
        b"--b0undary-7f3a\nContent-Type: application/dicom\n\nDICM\n--b0undary-7f3a--\n"
    )

    with pytest.raises(MalformedMultipart, match="bare LF; multipart bodies need CRLF"):
        read([body])


def test_reader_rejects_lf_line_endings_in_part_headers() -> None:
    body = b"--b0undary-7f3a\r\nContent-Type: application/dicom\n\nDICM"

    with pytest.raises(MalformedMultipart, match="Headers of part 1 .* bare LF"):
        read([body])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "before its first boundary '--b0undary-7f3a'"),
        (b"a preamble and no boundary\r\n", "before its first boundary"),
        (b"--b0undary-7f3aX\r\n\r\ndata", "before its first boundary"),
        (b"--b0undary-7f3a\r\nContent-Type: a/b\r\n", "inside the headers of part 1"),
        (b"--b0undary-7f3a\r\n\r\ndata", "inside part 1 before the close delimiter"),
        (b"--b0undary-7f3a\r\n\r\ndata\r\n--b0undary-7f3a", "inside part 1"),
        (b"--b0undary-7f3a\r\n\r\ndata\r\n--b0undary-7f3a-", "inside part 1"),
        (b"--b0undary-7f3a\r\n\r\na\r\n--b0undary-7f3a\r\n\r\nb", "inside part 2"),
    ],
)
def test_reader_close_raises_truncated_without_the_close_delimiter(
    body: bytes, message: str
) -> None:
    reader = MultipartReader(BOUNDARY)
    reader.feed(body)

    with pytest.raises(TruncatedMultipart, match=re.escape(message)):
        reader.close()


def test_reader_accepts_a_body_of_zero_parts() -> None:
    assert read([b"--b0undary-7f3a--\r\n"]) == []
    assert read([b"preamble\r\n--b0undary-7f3a--"]) == []


def test_reader_passes_a_part_without_headers() -> None:
    body = b"--b0undary-7f3a\r\n\r\n\r\nstarts with CRLF\r\n--b0undary-7f3a--\r\n"

    assert read([body]) == [({}, b"\r\nstarts with CRLF")]


def test_reader_ignores_preamble_and_epilogue() -> None:
    preamble = b"This is a preamble.\r\n--b0undary-7f3aX is not a boundary\r\n"
    epilogue = (
        b"\r\nEpilogue --b0undary-7f3a\r\n\r\nstill epilogue\r\n--b0undary-7f3a--"
    )
    body = encode([({"content-type": "application/dicom"}, b"DICM")], BOUNDARY)
    reader = MultipartReader(BOUNDARY)

    events = reader.feed(preamble + body + epilogue) + reader.feed(epilogue)
    reader.close()

    assert assemble(events) == [({"content-type": "application/dicom"}, b"DICM")]
    assert reader.buffered == 0


def test_reader_reads_what_dicomweb_client_sends_for_stow() -> None:
    content_type = 'multipart/related; type="application/dicom"; boundary="a-b c"'
    datasets = [b"DICM first", b"", b"DICM\r\n--a-b cX third"]
    body = DICOMwebClient._encode_multipart_message(datasets, content_type)
    _, params = parse_content_type(content_type)

    parts = read([body], params["boundary"])

    assert parts == [({"content-type": "application/dicom"}, d) for d in datasets]


@pytest.mark.parametrize("extra", [0, 1])
def test_reader_caps_a_header_block_at_16_kib(extra: int) -> None:
    prefix = b"X-Padding: "
    padding = b"a" * (MAX_HEADER_BYTES - len(prefix) - 4 + extra)
    body = (
        b"--b0undary-7f3a\r\n" + prefix + padding + b"\r\n\r\nDICM\r\n--b0undary-7f3a--"
    )

    for piece_bytes in (len(body), 1000):
        pieces = [body[i : i + piece_bytes] for i in range(0, len(body), piece_bytes)]
        if extra:
            with pytest.raises(MalformedMultipart, match="exceed 16384 bytes"):
                read(pieces)
        else:
            assert read(pieces) == [({"x-padding": padding.decode()}, b"DICM")]


def test_reader_refuses_an_endless_header_block_without_waiting_for_its_end() -> None:
    reader = MultipartReader(BOUNDARY)
    reader.feed(b"--b0undary-7f3a\r\nX-Padding: ")

    with pytest.raises(MalformedMultipart, match="exceed 16384 bytes"):
        for _ in range(MAX_HEADER_BYTES // 1000 + 1):
            reader.feed(b"a" * 1000)


@pytest.mark.parametrize(
    ("header_lines", "message"),
    [
        (b"no colon here", "header line b'no colon here'"),
        (b"Bad Name: x", "header line b'Bad Name: x'"),
        (b": no name", "header line b': no name'"),
        (b" folded first line", "header line"),
        (
            b"Content-Type: a/b\r\ncontent-type: a/c",
            "repeats the header 'content-type'",
        ),
        (b"Content-Length: 12a", "Content-Length '12a'"),
        (b"Content-Length: 5", "Part 1 has 4 bytes but its Content-Length says 5"),
    ],
)
def test_reader_rejects_malformed_part_headers(
    header_lines: bytes, message: str
) -> None:
    body = b"--b0undary-7f3a\r\n" + header_lines + b"\r\n\r\nDICM\r\n--b0undary-7f3a--"

    with pytest.raises(MalformedMultipart, match=re.escape(message)):
        read([body])


def test_reader_lowercases_names_and_unfolds_continued_headers() -> None:
    body = (
        b"--b0undary-7f3a\r\n"
        b"CONTENT-TYPE: application/dicom;\r\n"
        b"\t transfer-syntax=1.2.840.10008.1.2.1\r\n"
        b"Content-Location:   http://host/studies/1  \r\n"
        b"Content-Length: 4\r\n"
        b"Content-Transfer-Encoding: Binary\r\n"
        b"\r\nDICM\r\n--b0undary-7f3a--\r\n"
    )

    assert read([body]) == [
        (
            {
                "content-type": f"application/dicom; transfer-syntax={EXPLICIT_LE}",
                "content-location": "http://host/studies/1",
                "content-length": "4",
                "content-transfer-encoding": "Binary",
            },
            b"DICM",
        )
    ]


def test_reader_refuses_base64_parts() -> None:
    body = encode([({"Content-Transfer-Encoding": "base64"}, b"RElDTQ==")], BOUNDARY)

    with pytest.raises(UnsupportedTransferEncoding, match="'base64'; send the bytes"):
        read([body])


@pytest.mark.parametrize(
    "boundary", ["", "a" * 71, "trailing space ", "cr\r\nlf", "\xe9"]
)
def test_reader_rejects_a_boundary_rfc_2046_forbids(boundary: str) -> None:
    with pytest.raises(MalformedMultipart, match="must be 1 to 70 printable ASCII"):
        MultipartReader(boundary)


def test_reader_ignores_data_fed_after_the_close_delimiter() -> None:
    reader = MultipartReader(BOUNDARY)
    reader.feed(b"--b0undary-7f3a--")

    assert reader.feed(b"\r\n" + b"x" * 100_000) == []
    assert reader.buffered == 0


async def test_iter_parts_yields_rewound_files_with_headers_and_size() -> None:
    body = encode(SMALL_PARTS, BOUNDARY)
    received: list[tuple[Mapping[str, str], str | None, bytes, int]] = []

    async for part in iter_parts(aiter_bytes([body[:30], body[30:]]), BOUNDARY):
        with part.file:
            received.append(
                (part.headers, part.content_type, part.file.read(), part.size)
            )

    assert received == [
        (headers, headers.get("content-type"), data, len(data))
        for headers, data in SMALL_PARTS
    ]


async def test_iter_parts_spools_a_200_mb_part_to_disk_with_a_small_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunk = random.Random(7).randbytes(64 * 1024)
    chunk_count = 200 * 1024 * 1024 // len(chunk)
    expected = hashlib.sha256()
    for _ in range(chunk_count):
        expected.update(chunk)

    class RecordingReader(MultipartReader):
        """A reader that notes the most it held back after any feed()."""

        def __init__(self, boundary: str) -> None:
            super().__init__(boundary)
            self.most_buffered = 0
            readers.append(self)

        def feed(self, data: bytes) -> list[PartEvent]:
            events = super().feed(data)
            self.most_buffered = max(self.most_buffered, self.buffered)
            return events

    readers: list[RecordingReader] = []
    rollover_threads: list[int] = []

    class ThreadNotingSpool(SpooledCipherFile):
        """A spool that notes the thread that moves it to disk."""

        def write(self, data: bytes | bytearray | memoryview) -> int:
            was_on_disk = self.rolled_over
            written = super().write(data)
            if self.rolled_over and not was_on_disk:
                rollover_threads.append(threading.get_ident())
            return written

    async def request_body() -> AsyncIterator[bytes]:
        yield b"--b0undary-7f3a\r\nContent-Type: application/dicom\r\n\r\n"
        for _ in range(chunk_count):
            yield chunk
        yield b"\r\n--b0undary-7f3a--\r\n"

    monkeypatch.setattr(_multipart, "MultipartReader", RecordingReader)
    monkeypatch.setattr(_multipart, "SpooledCipherFile", ThreadNotingSpool)
    tracemalloc.start()
    try:
        parts = [part async for part in iter_parts(request_body(), BOUNDARY)]
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    [part] = parts
    with part.file:
        spool = cast(SpooledCipherFile, part.file)
        assert spool.rolled_over, "the part never left memory"
        digest = hashlib.sha256()
        while block := part.file.read(1 << 20):
            digest.update(block)
    assert part.size == chunk_count * len(chunk)
    assert digest.hexdigest() == expected.hexdigest()
    assert readers[0].most_buffered < DELIMITER_BYTES
    assert peak_bytes < 40 * 1024 * 1024
    assert len(rollover_threads) == 1
    assert rollover_threads[0] != threading.get_ident(), "disk write on the loop"


async def test_iter_parts_raises_truncated_and_closes_the_unfinished_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spools: list[SpooledCipherFile] = []

    def recording_spool(max_bytes: int) -> SpooledCipherFile:
        spool = SpooledCipherFile(max_bytes)
        spools.append(spool)
        return spool

    monkeypatch.setattr(_multipart, "SpooledCipherFile", recording_spool)
    body = b"--b0undary-7f3a\r\n\r\none\r\n--b0undary-7f3a\r\n\r\ntwo, cut short"
    received: list[ReceivedPart] = []

    with pytest.raises(TruncatedMultipart, match="inside part 2"):
        async for part in iter_parts(aiter_bytes([body]), BOUNDARY, 4):
            received.append(part)

    assert [part.file.read() for part in received] == [b"one"]
    assert [spool.closed for spool in spools] == [False, True]
    received[0].file.close()


async def test_iter_parts_refuses_a_spool_limit_below_one_byte() -> None:
    with pytest.raises(ValueError, match="spool_max_bytes must be at least 1, got 0"):
        async for _ in iter_parts(aiter_bytes([]), BOUNDARY, 0):
            pass


async def body_of(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Yield chunks as a part body."""
    for chunk in chunks:
        yield chunk


async def write(
    parts: Sequence[tuple[Mapping[str, str], Sequence[bytes]]], boundary: str
) -> list[bytes]:
    """Run stream_parts over the parts and return what it yielded."""

    async def source() -> AsyncIterator[tuple[Mapping[str, str], AsyncIterator[bytes]]]:
        for headers, chunks in parts:
            yield headers, body_of(chunks)

    return [piece async for piece in stream_parts(source(), boundary)]


async def test_writer_output_is_exactly_rfc_2046() -> None:
    pieces = await write(
        [({"Content-Type": "application/dicom"}, [b"DI", b"CM"]), ({}, [])], "abc"
    )

    assert b"".join(pieces) == (
        b"--abc\r\nContent-Type: application/dicom\r\n\r\nDICM"
        b"\r\n--abc\r\n\r\n"
        b"\r\n--abc--\r\n"
    )


async def test_writer_output_read_back_by_the_reader_is_identical() -> None:
    rng = random.Random(99)
    boundary = new_boundary()
    parts = [
        (
            {"Content-Type": f"application/dicom; transfer-syntax={EXPLICIT_LE}"},
            [rng.randbytes(100_000), b"", rng.randbytes(5)],
        ),
        ({"Content-Location": "/studies/1/series/2"}, []),
        ({"Content-Type": "application/octet-stream"}, [f"\r\n--{boundary}X".encode()]),
    ]

    body = b"".join(await write(parts, boundary))

    assert read(split_randomly(body, rng, 5000), boundary) == [
        ({name.lower(): value for name, value in headers.items()}, b"".join(chunks))
        for headers, chunks in parts
    ]


async def test_writer_passes_body_chunks_on_without_copying_them() -> None:
    big = random.Random(3).randbytes(1 << 20)

    pieces = await write([({"Content-Type": "application/dicom"}, [big])], "abc")

    assert any(piece is big for piece in pieces)


async def test_writer_with_zero_parts_writes_the_close_delimiter_only() -> None:
    pieces = await write([], "abc")

    assert pieces == [b"--abc--\r\n"]
    assert read(pieces, "abc") == []


async def test_writer_output_reads_in_dicomweb_client() -> None:
    boundary = new_boundary()
    datasets = [b"DICM one", b"DICM\r\n\r\ntwo"]
    parts = [({"Content-Type": "application/dicom"}, [d]) for d in datasets]
    body = b"".join(await write(parts, boundary))

    class Response:
        """The little of requests.Response that the client's decoder reads."""

        headers: ClassVar[dict[str, str]] = {
            "content-type": multipart_content_type("application/dicom", boundary)
        }
        content = body

        def __enter__(self) -> Self:
            return self

        def __exit__(self, *exc_info: object) -> None:
            return None

    client = DICOMwebClient("http://127.0.0.1:9")
    decoded = client._decode_multipart_message(cast(Any, Response()), stream=False)

    assert [bytes(part) for part in decoded] == datasets


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/dicom\r\nX-Injected: yes"},
        {"Content-Location": "/a\nb"},
        {"Content-Type": "application/dicom\x00"},
        {"Content-Location": "/studies/é"},
        {"Bad Name": "x"},
    ],
)
async def test_writer_rejects_headers_that_could_break_the_framing(
    headers: Mapping[str, str],
) -> None:
    with pytest.raises(ValueError, match="Header"):
        await write([(headers, [b"DICM"])], "abc")


def test_new_boundary_is_random_on_each_call() -> None:
    boundaries = {new_boundary() for _ in range(1000)}

    assert len(boundaries) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", b) for b in boundaries)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("application/dicom", "abc"),
            'multipart/related; type="application/dicom"; boundary=abc',
        ),
        (
            ("Application/Octet-Stream", "abc", "1.2.840.10008.1.2.4.50"),
            (
                'multipart/related; type="application/octet-stream"; '
                "transfer-syntax=1.2.840.10008.1.2.4.50; boundary=abc"
            ),
        ),
        (
            ("application/dicom", 'a "b" c'),
            'multipart/related; type="application/dicom"; boundary="a \\"b\\" c"',
        ),
    ],
)
def test_multipart_content_type_always_quotes_type(
    args: tuple[str, ...], expected: str
) -> None:
    value = multipart_content_type(*args)

    assert value == expected
    media_type, params = parse_content_type(value)
    assert media_type == "multipart/related"
    assert params["boundary"] == args[1]
    assert params["type"] == args[0].lower()


@pytest.mark.parametrize(
    ("part_type", "boundary", "error"),
    [
        ("application/dicom; transfer-syntax=1.2", "abc", ValueError),
        ("application", "abc", InvalidMediaType),
        ("application/dicom", "", MalformedMultipart),
    ],
)
def test_multipart_content_type_checks_its_arguments(
    part_type: str, boundary: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        multipart_content_type(part_type, boundary)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'multipart/related; type="application/dicom"; boundary=abc',
            ("multipart/related", {"type": "application/dicom", "boundary": "abc"}),
        ),
        (
            "Multipart/Related;Type=application/dicom;BOUNDARY=AbC",
            ("multipart/related", {"type": "application/dicom", "boundary": "AbC"}),
        ),
        (
            'multipart/related ; boundary="a b;c,d" ; type="application/dicom"',
            ("multipart/related", {"boundary": "a b;c,d", "type": "application/dicom"}),
        ),
        (
            r'multipart/related; boundary="say \"hi\" \\ ok"',
            ("multipart/related", {"boundary": 'say "hi" \\ ok'}),
        ),
        ("application/dicom;", ("application/dicom", {})),
        ("", ("", {})),
    ],
)
def test_parse_content_type_unquotes_and_lowercases_names(
    value: str, expected: tuple[str, dict[str, str]]
) -> None:
    assert parse_content_type(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("multipart", "does not start with type/subtype"),
        ("multipart/related; boundary", "has the parameter 'boundary'; expected"),
        ('multipart/related; boundary="abc', "does not end at its closing quote"),
        ('multipart/related; boundary="a"b', "does not end at its closing quote"),
        ("multipart/related; boundary=a b", "quote a value that is empty or holds"),
        ("multipart/related; boundary=", "quote a value that is empty or holds"),
        ("multipart/related; boundary=a; Boundary=b", "repeats the parameter"),
        ("*/*", "has a wildcard"),
    ],
)
def test_parse_content_type_names_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(InvalidMediaType, match=re.escape(message)):
        parse_content_type(value)
