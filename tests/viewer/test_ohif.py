"""OHIF in headless Chromium against a real dicomvault, end to end.

The study list must show the stored corpus, Chinese names included, and a CT
series must render, with no console error and no failed DICOMweb request.
Screenshots stay in the test's tmp_path; their paths are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.conftest import TESTS_DATA, RunningServer, start_server, stop_server
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

if TYPE_CHECKING:
    from playwright.sync_api import (
        BrowserContext,
        ConsoleMessage,
        Page,
        Request,
        Response,
    )

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect
except ImportError:
    # The chromium fixture skips the test without Playwright.
    pass

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.timeout(300)

CORPUS_FILES = (
    "charset/chinese_iso_ir_192_utf8.dcm",
    "charset/gen_chinese_utf8_multifield_ct.dcm",
    "charset/gen_chinese_iso2022_ir58_3groups_ct.dcm",
    "ct_mr/ct_ge_128_explicit_le.dcm",
)
# What OHIF's study list shows for them: it formats the Alphabetic group only.
LISTED = ("Wang, XiaoDong", "Li, Na", "腹部增强CT", "Zhang, XiaoDong", "CT胸部")
CT_PATIENT, CT_LISTED, CT_STUDY_DESCRIPTION = "张^伟", "张, 伟", "头部CT"
CT_SERIES_DESCRIPTION = "Axial phantom"
CT_SLICES, CT_SIZE = 20, 256
WAIT_MS = 60_000
# The canvas once a series is drawn: enough lit pixels in more than two greys.
_DRAWN = """() => {
  const canvas = document.querySelector("canvas.cornerstone-canvas");
  if (!canvas || !canvas.width || !canvas.height) return null;
  const context = canvas.getContext("2d");
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  const greys = new Set();
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i] + pixels[i + 1] + pixels[i + 2] > 30) lit++;
    greys.add(pixels[i]);
  }
  if (lit < pixels.length / 4 / 20 || greys.size < 3) return null;
  const grey = (x, y) => context.getImageData(x, y, 1, 1).data[0];
  return {
    width: canvas.width, height: canvas.height, lit: lit, greys: greys.size,
    centre: grey(canvas.width >> 1, canvas.height >> 1), corner: grey(2, 2),
  };
}"""


def _phantom_slice(index: int) -> np.ndarray[Any, np.dtype[np.uint16]]:
    """A water disk in air with a bone rod: Hounsfield units stored +1024."""
    y, x = np.mgrid[0:CT_SIZE, 0:CT_SIZE]
    centre = CT_SIZE // 2
    units = np.full((CT_SIZE, CT_SIZE), -1000, dtype=np.int16)
    units[(x - centre) ** 2 + (y - centre) ** 2 < 110**2] = 0
    radius = 90 - abs(index - CT_SLICES // 2) * 3
    units[(x - centre) ** 2 + (y - centre) ** 2 < radius**2] = 40
    units[(x - 100) ** 2 + (y - 110) ** 2 < 15**2] = 700
    return (units + 1024).astype("<u2")


def ct_phantom_series() -> tuple[str, list[bytes]]:
    """A 20-slice 256x256 CT series of a Chinese-named patient, as Part 10."""
    study, series, frame = new_uid(), new_uid(), new_uid()
    files = []
    for index in range(CT_SLICES):
        ds = make_ct(
            study=study,
            series=series,
            rows=CT_SIZE,
            columns=CT_SIZE,
            SpecificCharacterSet="ISO_IR 192",
            PatientName=CT_PATIENT,
            PatientID="CT-PHANTOM",
            StudyDescription=CT_STUDY_DESCRIPTION,
            SeriesDescription=CT_SERIES_DESCRIPTION,
            InstanceNumber=index + 1,
            FrameOfReferenceUID=frame,
            ImagePositionPatient=[-128.0, -128.0, 5.0 * index],
            ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            PixelSpacing=[1.0, 1.0],
            SliceThickness=5.0,
            RescaleIntercept=-1024,
            RescaleSlope=1,
            WindowCenter=40,
            WindowWidth=400,
            BitsStored=12,
            HighBit=11,
        )
        ds.PixelData = _phantom_slice(index).tobytes()
        files.append(part10(ds))
    return study, files


@dataclass
class Problems:
    """What the page reported as wrong while the test drove it."""

    origin: str
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        """Record console errors, uncaught exceptions, failed or outside requests."""
        page.on("console", self._console)
        page.on("request", self._request)
        page.on("pageerror", lambda error: self._add(self.console, f"uncaught {error}"))
        page.on("response", self._response)
        page.on(
            "requestfailed",
            lambda request: self._add(
                self.requests, f"{request.method} {request.url}: {request.failure}"
            ),
        )

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self._add(self.console, f"{message.text} at {message.location}")

    def _add(self, found: list[str], problem: str) -> None:
        # Logged as it happens, so a later timeout still shows the cause.
        logger.warning("Browser problem: %s", problem)
        found.append(problem)

    def _request(self, request: Request) -> None:
        # The viewer must run offline: everything from this origin or in memory.
        if not request.url.startswith((self.origin + "/", "data:", "blob:")):
            self._add(self.requests, f"{request.method} {request.url}: elsewhere")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self._add(
                self.requests,
                f"{response.request.method} {response.url}: {response.status}",
            )


@pytest.fixture
def ohif_server(
    tmp_path: Path, installed_viewer: Path
) -> Iterator[tuple[RunningServer, str]]:
    """dicomvault serving the installed viewer, holding the corpus and the CT."""
    server = start_server(
        tmp_path / "data", {"DICOMVAULT_VIEWER_DIR": str(installed_viewer)}
    )
    try:
        study, files = ct_phantom_series()
        files += [(TESTS_DATA / name).read_bytes() for name in CORPUS_FILES]
        stored = post_instances(server.dicomweb_url, files)
        assert stored.status_code == 200, stored.text
        yield server, study
    finally:
        code = stop_server(server)
    assert code == 0, f"dicomvault exited with {code}:\n{server.log()}"


def _dismiss(page: Page, name: str) -> None:
    """Click a notice's button away if it shows, so screenshots show the images."""
    button = page.get_by_role("button", name=name)
    try:
        button.click(timeout=3_000)
    except PlaywrightTimeout:
        pass  # the notice was not shown this time; nothing to dismiss


def test_ohif_lists_the_corpus_and_renders_a_ct_series(
    ohif_server: tuple[RunningServer, str],
    chromium: BrowserContext,
    tmp_path: Path,
) -> None:
    server, study = ohif_server
    page = chromium.new_page()
    problems = Problems(server.base_url)
    problems.watch(page)

    page.goto(f"{server.base_url}/viewer/")
    # The filter inputs sit in a row of their own; studies are the other rows.
    rows = page.locator("table tbody tr").filter(has_not=page.locator("input"))
    expect(rows.filter(has_text=CT_LISTED)).to_be_visible(timeout=WAIT_MS)
    for text in LISTED:
        expect(rows.filter(has_text=text)).to_have_count(1)
    expect(rows).to_have_count(1 + len(CORPUS_FILES))
    _dismiss(page, "Confirm and hide")
    listed = tmp_path / "ohif-study-list.png"
    page.screenshot(path=listed)
    logger.info("OHIF study list screenshot: %s", listed)

    rows.filter(has_text=CT_LISTED).click()
    page.get_by_role("button", name="Basic Viewer").click()
    page.wait_for_url(f"**/viewer/viewer?StudyInstanceUIDs={study}*")
    drawn = page.wait_for_function(_DRAWN, timeout=WAIT_MS).json_value()
    overlay = page.locator('[data-cy="viewport-overlay-top-left"]')
    expect(overlay).to_contain_text(CT_SERIES_DESCRIPTION)
    _dismiss(page, "Skip all")
    rendered = tmp_path / "ohif-ct-viewer.png"
    page.screenshot(path=rendered)
    logger.info("OHIF CT viewer screenshot: %s", rendered)

    # Window 40/400: air is black, the water disk mid-grey (PS3.3 C.11.2.1.2).
    assert drawn["corner"] < 20, drawn
    assert 60 < drawn["centre"] < 200, drawn
    assert problems.console == []
    assert problems.requests == []
