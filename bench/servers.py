"""Start and stop the servers under test on loopback: dicomvault and Orthanc.

Each server gets its own work folder, free ports, and a log file there. Both
are stopped with SIGTERM and waited for; a server that does not stop in time
is killed by its process id.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class ServerError(RuntimeError):
    """A server did not start, answer or stop as expected."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


@dataclass(frozen=True)
class Destination:
    """A C-MOVE destination both servers know by AE title."""

    ae_title: str
    port: int


@dataclass
class Server:
    """One running server under test."""

    name: str
    http_port: int
    dimse_port: int
    ae_title: str
    workdir: Path
    process: subprocess.Popen[bytes]
    extra_roots: list[psutil.Process] = field(default_factory=list)

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root, without a trailing slash."""
        return f"http://{LOOPBACK}:{self.http_port}/dicom-web"

    @property
    def pid(self) -> int:
        """The server's main process id."""
        return self.process.pid

    def roots(self) -> list[psutil.Process]:
        """Processes whose trees make up the server (for the monitor)."""
        try:
            main = [psutil.Process(self.process.pid)]
        except psutil.NoSuchProcess:
            main = []
        return main + self.extra_roots

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        path = self.workdir / "server.log"
        if not path.exists():
            return ""
        text = path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, wait, then kill what is left (the main process and its roots)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", self.name)
                self.process.kill()
                self.process.wait()
        for root in self.extra_roots:
            try:
                root.wait(STOP_TIMEOUT_S)
            except psutil.TimeoutExpired:
                logger.warning("%s: pid %d still up; killing it", self.name, root.pid)
                root.kill()
            except psutil.NoSuchProcess:
                # Already gone: dicomvault stopped it, as it should.
                pass


def _wait_ready(server: Server, path: str, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"http://{LOOPBACK}:{server.http_port}{path}"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"{name} exited with {server.process.returncode} before it was "
                f"ready; its log ends:\n{server.log_tail()}"
            )
        if _get(url)[0] == 200:
            return
        time.sleep(0.1)
    server.stop()
    raise ServerError(
        f"{name} was not ready within {START_TIMEOUT_S} s at {url}; its log ends:\n"
        f"{server.log_tail()}"
    )


def _postmaster(data_dir: Path) -> list[psutil.Process]:
    """The embedded PostgreSQL's postmaster: its cmdline names our data folder."""
    wanted = str(data_dir / "pg")
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "-D" in cmdline and wanted in cmdline:
            return [process]
    return []


def start_dicomvault(
    workdir: Path,
    source: Path,
    destinations: list[Destination],
    python: str = sys.executable,
    ae_title: str = "DICOMVAULT",
    extra_env: dict[str, str] | None = None,
) -> Server:
    """Start ``dicomvault serve`` from the code in ``source`` on fresh ports."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    http_port, dimse_port = free_port(), free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(source)
    env["DICOMVAULT_AE_TITLE"] = ae_title
    env["DICOMVAULT_DIMSE_PEERS"] = ",".join(
        f"{d.ae_title}@{LOOPBACK}:{d.port}" for d in destinations
    )
    env.update(extra_env or {})
    command = [
        python,
        "-m",
        "dicomvault.cli",
        "serve",
        "--data-dir",
        str(workdir / "data"),
        "--http-port",
        str(http_port),
        "--dimse-port",
        str(dimse_port),
    ]
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server("dicomvault", http_port, dimse_port, ae_title, workdir, process)
    _wait_ready(server, "/readyz", "dicomvault")
    workers = int(env.get("DICOMVAULT_WORKERS", "1"))
    if workers > 1:
        _wait_workers_ready(server, workers)
    server.extra_roots = _postmaster(workdir / "data")
    logger.info(
        "dicomvault up: pid %d, HTTP %d, DIMSE %d", process.pid, http_port, dimse_port
    )
    return server


def _wait_workers_ready(server: Server, workers: int) -> None:
    """Wait until every worker process says it is ready (each binds when ready)."""
    log = server.workdir / "server.log"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("dicomvault ready:") >= workers:
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"dicomvault: not all {workers} workers ready; its log ends:\n"
        f"{server.log_tail()}"
    )


def orthanc_available() -> bool:
    """Whether Debian's Orthanc and its DICOMweb plugin are installed."""
    return ORTHANC_BINARY.exists() and ORTHANC_DICOMWEB_PLUGIN.exists()


def orthanc_config(
    workdir: Path,
    http_port: int,
    dimse_port: int,
    ae_title: str,
    modalities: dict[str, list[object]],
    http_threads: int,
) -> dict[str, object]:
    """Orthanc's JSON configuration: loopback, no authentication, DICOMweb on."""
    storage = str(workdir / "storage")
    return {
        "Name": "bench-orthanc",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "StorageCompression": False,
        "HttpPort": http_port,
        "DicomPort": dimse_port,
        "DicomAet": ae_title,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpThreadsCount": http_threads,
        "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "DicomModalities": modalities,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowMove": True,
        "SaveJobs": False,
        # The data set's Chinese names survive C-FIND answers only in UTF-8.
        "DefaultEncoding": "Utf8",
    }


def orthanc_version() -> str:
    """The installed Orthanc's version, from its own command line."""
    try:
        output = subprocess.run(
            [str(ORTHANC_BINARY), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return "not installed"
    first = output.strip().splitlines()
    return first[0] if first else "unknown"


def start_orthanc(
    workdir: Path,
    destinations: list[Destination],
    dicomvault_dimse_port: int | None = None,
    ae_title: str = "ORTHANC",
    http_threads: int = 50,
) -> Server:
    """Start Orthanc with a generated configuration on fresh ports."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "storage").mkdir(parents=True)
    http_port, dimse_port = free_port(), free_port()
    modalities: dict[str, list[object]] = {
        d.ae_title.lower(): [d.ae_title, LOOPBACK, d.port] for d in destinations
    }
    if dicomvault_dimse_port is not None:
        modalities["dicomvault"] = ["DICOMVAULT", LOOPBACK, dicomvault_dimse_port]
    config = orthanc_config(
        workdir, http_port, dimse_port, ae_title, modalities, http_threads
    )
    (workdir / "orthanc.json").write_text(json.dumps(config, indent=2))
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(ORTHANC_BINARY), "orthanc.json"],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server("orthanc", http_port, dimse_port, ae_title, workdir, process)
    _wait_ready(server, "/dicom-web/studies", "Orthanc")
    logger.info(
        "Orthanc up: pid %d, HTTP %d, DIMSE %d", process.pid, http_port, dimse_port
    )
    return server
