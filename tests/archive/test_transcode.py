"""Transfer syntax conversion without a server: instances and single frames."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from archive.errors import TranscodeFailed
from archive.transcode import (
    NATIVE_TARGETS,
    PixelFormat,
    decode_frame,
    encode_frame,
    frame_targets,
    native_frame,
    native_pixels,
    targets,
    transcode_instance,
)
from tests.conftest import TESTS_DATA
from tests.factory import make_ct, part10

ROOT = Path(__file__).resolve().parents[2]

BIG_ENDIAN_FILE = TESTS_DATA / "transfer_syntax" / "ts_explicit_vr_be_mr.dcm"


def test_big_endian_instance_becomes_explicit_little_endian() -> None:
    original = pydicom.dcmread(BIG_ENDIAN_FILE)
    converted = transcode_instance(BIG_ENDIAN_FILE.read_bytes(), ExplicitVRLittleEndian)
    back = pydicom.dcmread(io.BytesIO(converted))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, original.pixel_array)
    assert back.PatientName == original.PatientName


def test_same_syntax_returns_the_input_untouched() -> None:
    data = part10(make_ct())
    assert transcode_instance(data, ExplicitVRLittleEndian) is data


def test_sixteen_bit_pixels_refuse_jpeg_baseline() -> None:
    with pytest.raises(TranscodeFailed, match="8-bit"):
        transcode_instance(part10(make_ct()), JPEGBaseline8Bit)


def test_targets_depend_on_bits_allocated() -> None:
    sixteen = targets(ExplicitVRLittleEndian, True, 16, 1)
    assert {JPEG2000Lossless, JPEGLSLossless, RLELossless} <= sixteen
    assert JPEGBaseline8Bit not in sixteen
    assert targets(ExplicitVRLittleEndian, True, 1, 1) == NATIVE_TARGETS
    assert targets("1.2.840.10008.1.2.4.100", True, 8, 3) == frozenset()


def test_a_frame_survives_lossless_encoding_and_decoding() -> None:
    ds = make_ct(rows=32, columns=32)
    fmt = PixelFormat.of(ds)
    pixels = native_pixels(fmt, ds.PixelData)
    for target in (JPEG2000Lossless, JPEGLSLossless, RLELossless):
        encoded = encode_frame(fmt, pixels, target)
        decoded = decode_frame(fmt, target, encoded)
        assert native_frame(fmt, decoded) == ds.PixelData


def test_planar_color_frames_are_interleaved() -> None:
    ds = make_ct(rows=2, columns=2)
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 1
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    planes = bytes([1, 2, 3, 4, 10, 20, 30, 40, 100, 101, 102, 103])
    pixels = native_pixels(PixelFormat.of(ds), planes)
    assert pixels[0, 0].tolist() == [1, 10, 100]
    assert pixels[1, 1].tolist() == [4, 40, 103]


_CONCURRENT_JPEG_2000 = """
import io, logging, threading
import pydicom
from pydicom.uid import JPEG2000, JPEG2000Lossless
from archive.transcode import (
    PixelFormat, decode_frame, encode_frame, transcode_instance,
)
from tests.factory import make_ct, part10

# The server logs at INFO: OpenJPEG's progress messages then reach Python.
logging.basicConfig(level=logging.INFO)
data = part10(make_ct(rows=256, columns=256))
ds = pydicom.dcmread(io.BytesIO(data))
fmt, pixels = PixelFormat.of(ds), ds.pixel_array
failures = []

def convert() -> None:
    try:
        for _ in range(10):
            frame = encode_frame(fmt, pixels, JPEG2000)
            decode_frame(fmt, JPEG2000, frame)
            transcode_instance(data, JPEG2000Lossless)
    except Exception as error:
        failures.append(error)

threads = [threading.Thread(target=convert) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert not failures, failures
print("converted")
"""


@pytest.mark.skipif(
    JPEG2000 not in frame_targets(PixelFormat.of(make_ct())),
    reason="no JPEG 2000 encoder installed",
)
def test_concurrent_jpeg_2000_conversions_do_not_crash_the_process() -> None:
    # In a process of its own: without the guard the interpreter dies (SIGSEGV).
    done = subprocess.run(
        [sys.executable, "-c", _CONCURRENT_JPEG_2000],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "converted"
