"""C-STORE hands the calling AE title to ingest, so per-AE charset rules apply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.conftest import TESTS_DATA, RunningServer, start_server, stop_server
from tests.dimse.helpers import dcmtk, has_dcmtk, qido, run_tool

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not has_dcmtk(), reason="Debian's dcmtk is not installed"),
]

UNDECLARED_GBK = TESTS_DATA / "charset" / "gen_undeclared_gbk_bytes_ct.dcm"


@pytest.fixture(scope="module")
def gbk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server told that the AE title GBK_MODALITY writes GBK without saying so."""
    running = start_server(
        tmp_path_factory.mktemp("gbk") / "data",
        {"DICOMVAULT_CHARSET_FALLBACKS": "GBK_MODALITY=GBK"},
    )
    yield running
    assert stop_server(running) == 0, running.log()


def _send(server: RunningServer, path: Path, calling_ae: str) -> None:
    run_tool([dcmtk("storescu"), "-aet", calling_ae, "-aec", server.ae_title,
              "127.0.0.1", str(server.dimse_port), str(path)])  # fmt: skip


def test_rule_of_the_calling_ae_title_decodes_undeclared_gbk(
    gbk_server: RunningServer,
) -> None:
    ds = pydicom.dcmread(UNDECLARED_GBK, stop_before_pixels=True)
    _send(gbk_server, UNDECLARED_GBK, "GBK_MODALITY")
    found = qido(gbk_server, "studies", {"PatientName": "王*"})
    assert [m["0020000D"]["Value"][0] for m in found] == [ds.StudyInstanceUID]
    assert found[0]["00100010"]["Value"][0]["Alphabetic"].startswith("王^小明")
    assert "GBK_MODALITY" in gbk_server.log()
