"""Fixtures of the DIMSE tests."""

from __future__ import annotations

from collections.abc import Iterator

import pydicom.config
import pytest

from tests.dimse.helpers import has_dcmtk


@pytest.fixture
def lenient_pydicom() -> Iterator[None]:
    """Read and write corpus values without VR warnings: some break rules on purpose."""
    settings = pydicom.config.settings
    before = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = pydicom.config.IGNORE
    settings.writing_validation_mode = pydicom.config.IGNORE
    yield
    settings.reading_validation_mode, settings.writing_validation_mode = before


@pytest.fixture
def dcmtk_tools() -> None:
    """Skip when Debian's DCMTK tools are not installed."""
    if not has_dcmtk():
        pytest.skip("DCMTK is not installed (apt-get install dcmtk)")
