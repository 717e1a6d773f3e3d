"""Rendering pixel math: windowing, MONOCHROME1, viewport, parameters."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from archive.errors import InvalidQuery
from archive.render import (
    PNG,
    Rendering,
    Viewport,
    Window,
    parse_viewport,
    parse_window,
    render,
    to_display,
)


def _ct(**attributes: object) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_linear_window_clips_below_and_above() -> None:
    stored = np.array([[0, 864, 1064, 1264, 3000]], dtype=np.uint16)
    shown = to_display(_ct(), stored, Window(40, 400))
    # -1024 and -160 HU are black, 40 HU mid-grey, 240 HU and above white.
    assert shown.tolist() == [[0, 0, 128, 255, 255]]


def test_stored_window_applies_when_none_is_asked() -> None:
    stored = np.array([[1024 - 200, 1024 + 200]], dtype=np.uint16)
    ds = _ct(WindowCenter=0, WindowWidth=201)
    assert to_display(ds, stored, None).tolist() == [[0, 255]]


def test_monochrome1_is_inverted_and_no_window_uses_the_range() -> None:
    ds = _ct(PhotometricInterpretation="MONOCHROME1")
    shown = to_display(ds, np.array([[10, 20]], dtype=np.uint16), None)
    assert shown.tolist() == [[255, 0]]


def test_viewport_keeps_the_aspect_ratio() -> None:
    pixels = np.zeros((32, 64), dtype=np.uint16)
    image = render(_ct(), pixels, Rendering(PNG, viewport=Viewport(32, 32)))
    assert Image.open(io.BytesIO(image)).size == (32, 16)
    cropped = render(
        _ct(), pixels, Rendering(PNG, viewport=parse_viewport("8,8,0,0,16,16"))
    )
    assert Image.open(io.BytesIO(cropped)).size == (8, 8)


@pytest.mark.parametrize("text", ["40", "40,0", "a,b", "40,400,cubic"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(InvalidQuery, match="window"):
        parse_window(text)


@pytest.mark.parametrize("text", ["0,10", "10", "10,10,1,2", "x,y"])
def test_bad_viewports_are_refused(text: str) -> None:
    with pytest.raises(InvalidQuery, match="viewport"):
        parse_viewport(text)


def test_a_viewport_region_is_clipped_to_the_image() -> None:
    pixels = np.zeros((32, 64), dtype=np.uint16)
    # 10 columns and 2 rows of the region lie on the image; the rest is ignored.
    spilled = parse_viewport("100,100,54,30,1000000000,1000000000")
    image = render(_ct(), pixels, Rendering(PNG, viewport=spilled))
    assert Image.open(io.BytesIO(image)).size == (100, 20)


@pytest.mark.parametrize("region", ["64,0,10,10", "0,32,10,10", "-20,0,10,10"])
def test_a_viewport_region_off_the_image_is_refused(region: str) -> None:
    pixels = np.zeros((32, 64), dtype=np.uint16)
    viewport = parse_viewport(f"16,16,{region}")
    with pytest.raises(InvalidQuery, match="outside"):
        render(_ct(), pixels, Rendering(PNG, viewport=viewport))
