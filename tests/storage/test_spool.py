"""Encrypted temporary spool files (storage.spool)."""

from __future__ import annotations

import io
import os
import random
from typing import cast

from storage.spool import SpooledCipherFile, _CipherRaw

MARKER = b"PATIENT^NAME=" * 300  # recognisable plaintext, 3,900 bytes


def _raw_on_disk(spool: SpooledCipherFile) -> bytes:
    """The bytes of the spool's temporary file as the disk holds them."""
    spool.flush()
    encrypted = cast(io.BufferedRandom, spool._file)
    raw = cast(_CipherRaw, encrypted.raw)
    raw._file.seek(0)
    return raw._file.read()


def test_small_content_stays_in_memory() -> None:
    with SpooledCipherFile(1000) as spool:
        spool.write(b"x" * 1000)
        assert not spool.rolled_over
        spool.seek(0)
        assert spool.read() == b"x" * 1000


def test_content_past_the_limit_is_encrypted_on_disk() -> None:
    with SpooledCipherFile(4096) as spool:
        spool.write(MARKER)
        assert not spool.rolled_over
        spool.write(MARKER)
        assert spool.rolled_over
        on_disk = _raw_on_disk(spool)
        assert len(on_disk) == 2 * len(MARKER)
        assert b"PATIENT" not in on_disk
        spool.seek(0)
        assert spool.read() == MARKER * 2


def test_each_spool_has_its_own_key() -> None:
    with SpooledCipherFile(0) as first, SpooledCipherFile(0) as second:
        first.write(MARKER)
        second.write(MARKER)
        assert _raw_on_disk(first) != _raw_on_disk(second)


def test_random_writes_seeks_and_reads_match_a_plain_file() -> None:
    chance = random.Random(7)
    model = io.BytesIO()
    with SpooledCipherFile(50_000) as spool:
        for _ in range(300):
            action = chance.random()
            if action < 0.4:
                data = os.urandom(chance.randint(0, 9000))
                assert spool.write(data) == model.write(data)
            elif action < 0.7:
                size = chance.choice([-1, 0, 1, 15, 16, 17, 4095, 70_000])
                assert spool.read(size) == model.read(size)
            elif action < 0.8:
                buffer = bytearray(chance.randint(1, 5000))
                expected = bytearray(len(buffer))
                assert spool.readinto(buffer) == model.readinto(expected)
                assert buffer == expected
            else:
                whence = chance.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
                base = {
                    io.SEEK_SET: 0,
                    io.SEEK_CUR: model.tell(),
                    io.SEEK_END: len(model.getbuffer()),
                }[whence]
                # Anywhere from the start to past the end (a gap reads as zeros).
                offset = chance.randint(-base, 1000)
                assert spool.seek(offset, whence) == model.seek(offset, whence)
            assert spool.tell() == model.tell()
        assert spool.rolled_over
        spool.seek(0)
        assert spool.read() == model.getvalue()


def test_a_gap_written_past_the_end_reads_as_zeros() -> None:
    with SpooledCipherFile(0) as spool:
        spool.write(b"start")
        spool.seek(100, io.SEEK_END)
        spool.write(b"end")
        spool.seek(0)
        assert spool.read() == b"start" + bytes(100) + b"end"
