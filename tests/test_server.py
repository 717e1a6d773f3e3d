"""The process: probes, clean stops, recovery after a kill, settings, migrations."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from archive.migrate import apply_migrations, migration_files, migrations_dir
from dicomvault.settings import SettingsError, load_settings
from tests.conftest import RunningServer, start_server, stop_server
from tests.dicomweb.stow_helpers import multipart_body
from tests.factory import make_ct, part10

pytestmark = pytest.mark.timeout(180)


def _postgres_of(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL processes whose data folder is the server's embedded one."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if (
            "postgres" in (process.info["name"] or "")
            and str(data_dir / "pg") in cmdline
        ):
            found.append(process)
    return found


def test_probes_answer_once_ready(server: RunningServer) -> None:
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_drains_a_request_in_flight_and_stops_postgres(
    tmp_path: Path, signum: int
) -> None:
    running = start_server(tmp_path / "data")
    if not os.environ.get("DICOMVAULT_TEST_DATABASE_URL"):
        assert _postgres_of(running.data_dir), "no embedded PostgreSQL found"
    ds = make_ct(rows=1024, columns=1024, frames=8)
    body = multipart_body([part10(ds)], "drain", "application/dicom")
    answer: dict[str, int] = {}
    sent_half = threading.Event()

    def pieces() -> Iterator[bytes]:
        half = len(body) // 2
        yield body[:half]
        sent_half.set()
        yield body[half:]

    def upload() -> None:
        response = httpx.post(
            f"{running.dicomweb_url}/studies", content=pieces(),
            headers={"Content-Type": 'multipart/related; type="application/dicom"; '
                     "boundary=drain"}, timeout=60,
        )  # fmt: skip
        answer["status"] = response.status_code

    uploader = threading.Thread(target=upload)
    uploader.start()
    assert sent_half.wait(30)
    running.process.send_signal(signum)
    uploader.join(60)
    assert running.process.wait(60) == 0, running.log()
    assert answer.get("status") == 200, running.log()
    assert _postgres_of(running.data_dir) == []
    assert "dicomvault stopped" in running.log()


def test_restart_after_sigkill_cleans_the_stale_attachment(tmp_path: Path) -> None:
    if os.environ.get("DICOMVAULT_TEST_DATABASE_URL"):
        pytest.skip("concerns the embedded PostgreSQL only")
    first = start_server(tmp_path / "data")
    first.process.kill()
    first.process.wait()
    second = start_server(tmp_path / "data")
    assert "stale pgserver attachment" in second.log()
    assert stop_server(second) == 0
    assert _postgres_of(second.data_dir) == []


def test_bad_setting_stops_start_up_naming_key_and_value(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dicomvault.cli", "serve", "--data-dir",
         str(tmp_path / "d"), "--http-port", "70000"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "http_port" in result.stderr and "70000" in result.stderr


def test_settings_read_the_environment_and_overrides_win() -> None:
    settings = load_settings(
        {"DICOMVAULT_HTTP_PORT": "9000", "DICOMVAULT_AE_TITLE": "ENVAE"},
        ae_title="CLIAE",
        host=None,
    )
    assert settings.http_port == 9000
    assert settings.ae_title == "CLIAE"
    assert settings.host == "127.0.0.1"
    with pytest.raises(SettingsError, match="DICOMVAULT_DIMSE_PORT"):
        load_settings({"DICOMVAULT_DIMSE_PORT": "eleven"})
    with pytest.raises(SettingsError, match="duplicate_policy"):
        load_settings({"DICOMVAULT_DUPLICATE_POLICY": "overwrite"})
    secret = load_settings({"DICOMVAULT_DATABASE_URL": "postgresql://u:pw@h/db"})
    assert "pw" not in repr(secret)


def test_data_dir_under_root_is_refused_for_the_embedded_database() -> None:
    with pytest.raises(SettingsError, match="/root"):
        load_settings({}, data_dir=Path("/root/archive"))


def test_migrations_are_numbered_and_apply_once_under_concurrency(
    tmp_path: Path,
) -> None:
    assert [number for number, _ in migration_files(migrations_dir())][:1] == [1]
    import pgserver

    server = pgserver.get_server(  # type: ignore[attr-defined]
        tmp_path / "pg", cleanup_mode="stop"
    )
    try:
        url = server.get_uri()

        async def run() -> list[list[int]]:
            async def one() -> list[int]:
                conn = await asyncpg.connect(url)
                try:
                    return await apply_migrations(conn, migrations_dir())
                finally:
                    await conn.close()

            return list(await asyncio.gather(one(), one(), one()))

        results = asyncio.run(run())
    finally:
        server.cleanup()
    applied = sorted(number for result in results for number in result)
    assert applied == [number for number, _ in migration_files(migrations_dir())]
