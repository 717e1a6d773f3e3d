"""Shared fixtures: the corpus, generated instances and a real running server."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS_DATA = ROOT / "tests" / "data"
CORPUS = ROOT.parent / "shared" / "testdata"
START_TIMEOUT_S = 60.0


def corpus_files(folder: str | None = None) -> list[Path]:
    """Every file of ../shared/testdata (or one folder of it); [] without it."""
    base = CORPUS / folder if folder else CORPUS
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and p.name != "MANIFEST.md")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _external_database_url() -> str | None:
    """A fresh database on the server named by DICOMVAULT_TEST_DATABASE_URL."""
    admin_url = os.environ.get("DICOMVAULT_TEST_DATABASE_URL")
    if not admin_url:
        return None
    import asyncpg

    name = f"dicomvault_test_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


@dataclass
class RunningServer:
    """A dicomvault process started by the tests."""

    process: subprocess.Popen[bytes]
    base_url: str
    dimse_port: int
    ae_title: str
    data_dir: Path
    log_path: Path

    @property
    def http_port(self) -> int:
        """The HTTP port the server listens on."""
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root."""
        return f"{self.base_url}/dicom-web"

    def log(self) -> str:
        """What the server has logged so far."""
        return self.log_path.read_text(errors="replace")


def start_server(
    data_dir: Path, extra_env: dict[str, str] | None = None
) -> RunningServer:
    """Start ``dicomvault serve`` on loopback and wait until /readyz says 200."""
    http_port, dimse_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMVAULT_")}
    env.update(extra_env or {})
    database_url = _external_database_url()
    if database_url and "DICOMVAULT_DATABASE_URL" not in env:
        env["DICOMVAULT_DATABASE_URL"] = database_url
    log_path = data_dir.parent / f"{data_dir.name}.log"
    command = [
        sys.executable, "-m", "dicomvault.cli", "serve",
        "--data-dir", str(data_dir), "--host", "127.0.0.1",
        "--http-port", str(http_port), "--dimse-port", str(dimse_port),
        "--ae-title", "DICOMVAULT",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        # The child keeps its own copy of the descriptor; ours closes here.
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = RunningServer(
        process, f"http://127.0.0.1:{http_port}", dimse_port, "DICOMVAULT",
        data_dir, log_path,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dicomvault exited at start:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"dicomvault not ready in {START_TIMEOUT_S} s:\n{server.log()}")


def stop_server(server: RunningServer, signum: int = signal.SIGTERM) -> int:
    """Stop the server with a signal and return its exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signum)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a server, so CI can rerun just those."""
    for item in items:
        if "server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One dicomvault for the whole session, on its embedded default."""
    running = start_server(tmp_path_factory.mktemp("server") / "data")
    yield running
    code = stop_server(running)
    assert code == 0, f"dicomvault exited with {code}:\n{running.log()}"


@pytest.fixture(scope="session")
def replacing_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """A server whose duplicate policy keeps the newest version of an instance."""
    running = start_server(
        tmp_path_factory.mktemp("replacing") / "data",
        {"DICOMVAULT_DUPLICATE_POLICY": "replace"},
    )
    yield running
    code = stop_server(running)
    assert code == 0, f"dicomvault exited with {code}:\n{running.log()}"
