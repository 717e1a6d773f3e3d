"""Rendering of decoded frames for people: windowing, viewport, JPEG or PNG.

Pure pixel math (PS3.18 8.3.5.1, PS3.3 C.11.2.1.2): Modality LUT by rescale
slope and intercept, VOI by the window asked for or the one stored (else the
frame's range), MONOCHROME1 inverted, then crop and scale to the viewport and
encode with Pillow.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut

from archive.errors import InvalidQuery

JPEG = "image/jpeg"
PNG = "image/png"
DEFAULT_QUALITY = 90
THUMBNAIL_PIXELS = 128
_WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Window:
    """A VOI window: center, width and function (PS3.3 C.11.2.1.2)."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Viewport:
    """Output size and the source region shown (PS3.18 8.3.5.1.3)."""

    width: int
    height: int
    source: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Rendering:
    """What a rendered request asked for."""

    media_type: str = JPEG
    quality: int = DEFAULT_QUALITY
    window: Window | None = None
    viewport: Viewport | None = None


def parse_window(text: str) -> Window:
    """``center,width[,function]`` of the window query parameter."""
    parts = [part.strip() for part in text.split(",")]
    function = parts[2].upper() if len(parts) == 3 else "LINEAR"
    try:
        if len(parts) not in (2, 3):
            raise ValueError(text)
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidQuery(
            f"window={text!r} must be center,width[,function], e.g. 40,400"
        ) from None
    if function not in _WINDOW_FUNCTIONS or width <= 0 or not math.isfinite(center):
        raise InvalidQuery(
            f"window={text!r}: width must be above 0 and the function one of "
            f"{', '.join(f.lower() for f in _WINDOW_FUNCTIONS)}"
        )
    return Window(center, width, function)


def parse_viewport(text: str) -> Viewport:
    """``vw,vh[,sx,sy,sw,sh]`` of the viewport query parameter."""
    try:
        numbers = [int(part) if part.strip() else 0 for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 6) or any(not 0 < n <= 8192 for n in numbers[:2]):
        raise InvalidQuery(
            f"viewport={text!r} must be vw,vh[,sx,sy,sw,sh] with sizes 1..8192"
        )
    if len(numbers) == 2:
        return Viewport(numbers[0], numbers[1])
    sx, sy, sw, sh = numbers[2:]
    return Viewport(numbers[0], numbers[1], (sx, sy, sw, sh))


def parse_quality(text: str) -> int:
    """The quality query parameter: 1..100."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise InvalidQuery(f"quality={text!r} must be a whole number from 1 to 100")
    return int(text)


def _first_number(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return float(value[0] if isinstance(value, (list, tuple)) else value)
    except (TypeError, ValueError, IndexError):
        return None


def _shared(ds: Dataset, sequence: str, keyword: str) -> float | None:
    """A value from the Shared Functional Groups (enhanced multi-frame objects)."""
    for group in ds.get("SharedFunctionalGroupsSequence") or []:
        for item in group.get(sequence) or []:
            found = _first_number(item, keyword)
            if found is not None:
                return found
    return None


def _stored_window(ds: Dataset) -> Window | None:
    center = _first_number(ds, "WindowCenter")
    width = _first_number(ds, "WindowWidth")
    if center is None or width is None:
        center = _shared(ds, "FrameVOILUTSequence", "WindowCenter")
        width = _shared(ds, "FrameVOILUTSequence", "WindowWidth")
    if center is None or width is None or width <= 0:
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    return Window(
        center, width, function if function in _WINDOW_FUNCTIONS else "LINEAR"
    )


def _modality(ds: Dataset, pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    slope = _first_number(ds, "RescaleSlope")
    intercept = _first_number(ds, "RescaleIntercept")
    if slope is None:
        slope = _shared(ds, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _shared(ds, "PixelValueTransformationSequence", "RescaleIntercept")
    values = pixels.astype(np.float64)
    return values * (slope if slope is not None else 1.0) + (intercept or 0.0)


def _voi(values: np.ndarray[Any, Any], window: Window | None) -> np.ndarray[Any, Any]:
    """Map values to 0..255 (PS3.3 C.11.2.1.2.1 and .2)."""
    if window is None:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else values * 0.0
        return scaled * 255.0
    center, width = window.center, window.width
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if window.function == "LINEAR_EXACT":
        scaled = (values - (center - width / 2)) / width
    else:
        scaled = (values - (center - 0.5)) / (width - 1 if width > 1 else 1) + 0.5
    return np.clip(scaled, 0.0, 1.0) * 255.0


def to_display(
    ds: Dataset, pixels: np.ndarray[Any, Any], window: Window | None
) -> np.ndarray[Any, Any]:
    """Decoded frame to 8-bit grey or RGB, ready to show."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR" and pixels.ndim == 2:
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:
        if pixels.dtype == np.uint8:
            return pixels
        top = float(pixels.max()) or 1.0
        return (pixels.astype(np.float64) / top * 255.0).astype(np.uint8)
    shown = _voi(_modality(ds, pixels), window or _stored_window(ds))
    if photometric == "MONOCHROME1":
        shown = 255.0 - shown
    display: np.ndarray[Any, Any] = np.rint(shown).astype(np.uint8)
    return display


def _apply_viewport(image: Image.Image, viewport: Viewport | None) -> Image.Image:
    if viewport is None:
        return image
    if viewport.source is not None:
        sx, sy, sw, sh = viewport.source
        sw = sw or image.width - sx
        sh = sh or image.height - sy
        left, right = sorted((sx, sx + sw))
        top, bottom = sorted((sy, sy + sh))
        # Only the part of the region that lies on the image is shown: a region
        # far outside it would otherwise allocate its whole area.
        left, right = max(left, 0), min(right, image.width)
        top, bottom = max(top, 0), min(bottom, image.height)
        if right <= left or bottom <= top:
            raise InvalidQuery(
                f"viewport region {viewport.source} lies outside the "
                f"{image.width}x{image.height} image"
            )
        image = image.crop((left, top, right, bottom))
        if sw < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if sh < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    # Fit inside the viewport, keeping the aspect ratio (PS3.18 8.3.5.1.3).
    scale = min(viewport.width / image.width, viewport.height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def render(ds: Dataset, pixels: np.ndarray[Any, Any], rendering: Rendering) -> bytes:
    """One frame as JPEG or PNG bytes."""
    image = Image.fromarray(to_display(ds, pixels, rendering.window))
    image = _apply_viewport(image, rendering.viewport)
    buffer = io.BytesIO()
    if rendering.media_type == PNG:
        image.save(buffer, "PNG")
    else:
        image.save(buffer, "JPEG", quality=rendering.quality)
    return buffer.getvalue()
