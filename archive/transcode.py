"""Transfer syntax conversion of whole instances and of single frames (PS3.5 8, A.4).

Pure: bytes in, bytes out. Decoding goes through pydicom's pixel data handlers
(with pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-rle and pyjpegls installed);
encoding through pydicom's encoders, except JPEG Baseline, which Pillow writes.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from archive.errors import TranscodeFailed

# Transfer syntaxes whose Pixel Data needs no decoder to be rewritten natively.
NATIVE_TARGETS: frozenset[str] = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)

# Bits Allocated each encoder takes (PS3.5 8.2); JPEG Baseline is 8-bit only.
_ENCODED_TARGETS: Mapping[str, tuple[int, ...]] = {
    RLELossless: (8, 16, 32),
    JPEGLSLossless: (8, 16),
    JPEGLSNearLossless: (8, 16),
    JPEG2000Lossless: (8, 16),
    JPEG2000: (8, 16),
    JPEGBaseline8Bit: (8,),
}
_LOSSY_METHOD: Mapping[str, str] = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEG2000: "ISO_15444_1",
    JPEGLSNearLossless: "ISO_14495_1",
}
_JPEG_QUALITY = 90
_JPEG_LS_NEAR = 2
_J2K_PSNR_DB = 60.0

# JPEG 2000 (and HTJ2K) go through OpenJPEG (pylibjpeg-openjpeg), whose C code
# calls back into Python's logging from threads that do not hold the GIL: two
# conversions at once crash the process. One at a time, then.
_OPENJPEG_SYNTAXES = frozenset(
    "1.2.840.10008.1.2.4." + suffix
    for suffix in ("90", "91", "92", "93", "201", "202", "203")
)
_OPENJPEG = threading.Lock()


def _openjpeg_guard(syntax: str) -> contextlib.AbstractContextManager[Any]:
    """The OpenJPEG lock when the syntax is coded by OpenJPEG, else nothing."""
    return _OPENJPEG if str(syntax) in _OPENJPEG_SYNTAXES else contextlib.nullcontext()


@dataclass(frozen=True)
class PixelFormat:
    """The Image Pixel attributes a decoder or encoder needs (PS3.3 C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int

    @classmethod
    def of(cls, ds: Dataset) -> PixelFormat:
        """Read the format from a data set; ``TranscodeFailed`` if it is incomplete."""
        try:
            return cls(
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                samples_per_pixel=int(ds.get("SamplesPerPixel", 1)),
                bits_allocated=int(ds.BitsAllocated),
                bits_stored=int(ds.get("BitsStored", ds.BitsAllocated)),
                pixel_representation=int(ds.get("PixelRepresentation", 0)),
                photometric_interpretation=str(ds.PhotometricInterpretation),
                planar_configuration=int(ds.get("PlanarConfiguration", 0)),
                number_of_frames=int(ds.get("NumberOfFrames", 1) or 1),
            )
        except (AttributeError, TypeError, ValueError) as error:
            raise TranscodeFailed(
                f"The instance lacks a usable Image Pixel module: {error}"
            ) from error

    def options(self, **changes: Any) -> dict[str, Any]:
        """Keyword arguments for pydicom's decoders and encoders."""
        values: dict[str, Any] = {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "planar_configuration": self.planar_configuration,
            "number_of_frames": 1,
        }
        values.update(changes)
        return values


def can_decode(transfer_syntax: str) -> bool:
    """Tell whether Pixel Data in this syntax can be turned into pixels here."""
    uid = UID(transfer_syntax)
    if not uid.is_encapsulated:
        return uid.is_transfer_syntax
    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:
        return False


def _can_encode(transfer_syntax: str) -> bool:
    if transfer_syntax == JPEGBaseline8Bit:
        return True
    try:
        return bool(get_encoder(transfer_syntax).is_available)
    except NotImplementedError:
        return False


@lru_cache(maxsize=256)
def targets(
    source: str, has_pixels: bool, bits_allocated: int | None, samples: int | None
) -> frozenset[str]:
    """Transfer syntaxes an instance can be converted to, besides its own."""
    if not has_pixels:
        return NATIVE_TARGETS | frozenset(_ENCODED_TARGETS)
    if not can_decode(source):
        return frozenset()
    found: set[str] = set(NATIVE_TARGETS)
    for target, bits in _ENCODED_TARGETS.items():
        if bits_allocated in bits and samples in (1, 3) and _can_encode(target):
            found.add(target)
    return frozenset(found)


def frame_targets(fmt: PixelFormat) -> frozenset[str]:
    """Encapsulated syntaxes one frame of this format can be encoded in."""
    return frozenset(
        target
        for target, bits in _ENCODED_TARGETS.items()
        if fmt.bits_allocated in bits
        and fmt.samples_per_pixel in (1, 3)
        and _can_encode(target)
    )


def transcode_instance(data: bytes, target: str) -> bytes:
    """Re-encode a Part 10 instance in another transfer syntax, same SOP UID."""
    # Known gap (#5): the instance and its pixels are held whole in memory,
    # so transcoding a very large instance costs memory of its size.
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        source = ds.file_meta.TransferSyntaxUID
        if source == target:
            return data
        has_pixels = "PixelData" in ds
        if has_pixels and (source.is_encapsulated or not source.is_little_endian):
            with _openjpeg_guard(source):
                _decompress(ds, source)
        if has_pixels and UID(target).is_encapsulated:
            with _openjpeg_guard(target):
                _compress(ds, target)
        else:
            ds.file_meta.TransferSyntaxUID = UID(target)
        buffer = io.BytesIO()
        if source.is_little_endian:
            ds.save_as(buffer, enforce_file_format=True)
        else:
            # Retired big endian: pydicom only converts on explicit request.
            dcmwrite(
                buffer,
                ds,
                implicit_vr=target == ImplicitVRLittleEndian,
                little_endian=True,
                force_encoding=True,
            )
        return buffer.getvalue()
    except TranscodeFailed:
        raise
    except Exception as error:
        raise TranscodeFailed(
            f"Cannot convert the instance to transfer syntax {target!r}: {error}"
        ) from error


def _decompress(ds: Dataset, source: UID) -> None:
    if source.is_encapsulated:
        ds.decompress(generate_instance_uid=False)
        return
    pixels = ds.pixel_array
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()


def _compress(ds: Dataset, target: str) -> None:
    if target == JPEGBaseline8Bit:
        _jpeg_baseline(ds)
    elif target == JPEG2000:
        ds.compress(target, generate_instance_uid=False, j2k_psnr=[_J2K_PSNR_DB])
    elif target == JPEGLSNearLossless:
        ds.compress(target, generate_instance_uid=False, jls_error=_JPEG_LS_NEAR)
    else:
        ds.compress(target, generate_instance_uid=False)
    if target in _LOSSY_METHOD:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = _LOSSY_METHOD[target]


def _jpeg_baseline(ds: Dataset) -> None:
    fmt = PixelFormat.of(ds)
    if fmt.bits_allocated != 8 or fmt.pixel_representation != 0:
        raise TranscodeFailed(
            "JPEG Baseline takes unsigned 8-bit pixels; this instance has "
            f"{fmt.bits_allocated}-bit samples"
        )
    pixels = ds.pixel_array
    frames = pixels if fmt.number_of_frames > 1 else pixels[np.newaxis]
    ds.PixelData = encapsulate([_pillow_jpeg(frame) for frame in frames])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if fmt.samples_per_pixel == 3:
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PlanarConfiguration = 0
    ds.BitsStored, ds.HighBit = 8, 7
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit


def _pillow_jpeg(frame: np.ndarray[Any, Any], quality: int = _JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    # subsampling=1 is 4:2:2, what YBR_FULL_422 declares (PS3.3 C.7.6.3.1.2).
    Image.fromarray(frame).save(buffer, "JPEG", quality=quality, subsampling=1)
    return buffer.getvalue()


def decode_frame(fmt: PixelFormat, source: str, frame: bytes) -> np.ndarray[Any, Any]:
    """The pixels of one frame as stored in an encapsulated syntax (color as RGB)."""
    try:
        decoder = get_decoder(source)
        with _openjpeg_guard(source):
            pixels, _ = decoder.as_array(encapsulate([frame]), **fmt.options())
        return pixels
    except Exception as error:
        raise TranscodeFailed(
            f"Cannot decode a frame in transfer syntax {source!r}: {error}"
        ) from error


def native_frame(fmt: PixelFormat, pixels: np.ndarray[Any, Any]) -> bytes:
    """A decoded frame as native little endian bytes, color interleaved."""
    if fmt.bits_allocated == 1:
        return bytes(pack_bits(pixels))
    little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    return bytes(little.tobytes())


def encode_frame(fmt: PixelFormat, pixels: np.ndarray[Any, Any], target: str) -> bytes:
    """One decoded frame encoded as a codestream of ``target``."""
    try:
        if target == JPEGBaseline8Bit:
            if fmt.bits_allocated != 8 or fmt.pixel_representation != 0:
                raise TranscodeFailed("JPEG Baseline takes unsigned 8-bit pixels")
            return _pillow_jpeg(pixels)
        photometric = "RGB" if fmt.samples_per_pixel == 3 else None
        options = fmt.options(
            photometric_interpretation=photometric or fmt.photometric_interpretation,
            planar_configuration=0,
        )
        if target == JPEG2000:
            options["j2k_psnr"] = [_J2K_PSNR_DB]
        if target == JPEGLSNearLossless:
            options["jls_error"] = _JPEG_LS_NEAR
        if target in (JPEG2000, JPEG2000Lossless):
            options["use_mct"] = False
        with _openjpeg_guard(target):
            return bytes(get_encoder(target).encode(pixels, **options))
    except TranscodeFailed:
        raise
    except Exception as error:
        raise TranscodeFailed(
            f"Cannot encode a frame in transfer syntax {target!r}: {error}"
        ) from error


def native_pixels(
    fmt: PixelFormat, frame: bytes, little_endian: bool = True
) -> np.ndarray[Any, Any]:
    """The pixels of one native frame (PS3.5 8.1.1), color interleaved."""
    if fmt.bits_allocated not in (8, 16, 32):
        raise TranscodeFailed(
            f"Native frames of {fmt.bits_allocated}-bit samples cannot be re-encoded"
        )
    kind = "i" if fmt.pixel_representation else "u"
    order = "<" if little_endian else ">"
    dtype = np.dtype(f"{order}{kind}{fmt.bits_allocated // 8}")
    samples = fmt.samples_per_pixel
    expected = fmt.rows * fmt.columns * samples * dtype.itemsize
    if len(frame) < expected:
        raise TranscodeFailed(f"A frame holds {len(frame)} bytes, not {expected}")
    flat = np.frombuffer(frame[:expected], dtype=dtype).astype(dtype.newbyteorder("="))
    if samples == 1:
        return flat.reshape(fmt.rows, fmt.columns)
    if fmt.planar_configuration == 1:
        return flat.reshape(samples, fmt.rows, fmt.columns).transpose(1, 2, 0).copy()
    return flat.reshape(fmt.rows, fmt.columns, samples)


def decode_frames(
    fmt: PixelFormat, source: str, frames: list[bytes]
) -> list[np.ndarray[Any, Any]]:
    """Pixels of frames as stored in ``source``, native or encapsulated."""
    uid = UID(source)
    if uid.is_encapsulated:
        return [decode_frame(fmt, source, frame) for frame in frames]
    return [native_pixels(fmt, frame, uid.is_little_endian) for frame in frames]
