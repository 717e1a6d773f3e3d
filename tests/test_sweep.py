"""The orphan sweep removes unindexed objects and partial writes, nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, part10

pytestmark = pytest.mark.timeout(120)


def test_sweep_removes_orphans_and_partial_writes_but_keeps_indexed_objects(
    tmp_path: Path,
) -> None:
    server = start_server(
        tmp_path / "data",
        {"DICOMVAULT_ORPHAN_MIN_AGE_S": "0", "DICOMVAULT_ORPHAN_SWEEP_INTERVAL_S": "1"},
    )
    try:
        ds = make_ct()
        data = part10(ds)
        assert post_instances(server.dicomweb_url, [data]).status_code == 200
        objects = server.data_dir / "objects"
        orphan = objects / "ff" / "ff" / "ffff0000orphan"
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"left by a killed process")
        partial = objects / "ff" / ".tmp-partial"
        partial.write_bytes(b"half an object")
        deadline = time.monotonic() + 30
        while (orphan.exists() or partial.exists()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not orphan.exists() and not partial.exists()
        url = (f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
               f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}")  # fmt: skip
        kept = httpx.get(url, headers={"Accept": "application/dicom"}, timeout=30)
        assert kept.content == data
        assert "orphaned object" in server.log()
    finally:
        assert stop_server(server) == 0
