"""Benchmark: C-STORE of synthetic 512x512 CT slices over 1 and 4 associations.

Starts a dicomvault on loopback in a temporary folder (or uses the one named by
--port), sends the slices with pynetdicom (or DCMTK's storescu) and prints
instances/s and MB/s for each number of associations. Not a test: nothing is
asserted but that every C-STORE succeeds.

    python bench/dimse_store.py                 # 200 slices, 1 then 4 associations
    python bench/dimse_store.py --client storescu --count 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config, build_context

ROOT = Path(__file__).resolve().parent.parent
UID_ROOT = "1.2.826.0.1.3680043.10.1393."
START_TIMEOUT_S = 90.0
STORESCU = "/usr/bin/storescu"


@dataclass(frozen=True)
class Target:
    """Where the slices go."""

    host: str
    port: int
    ae_title: str


@dataclass(frozen=True)
class Result:
    """One timed run."""

    associations: int
    instances: int
    total_bytes: int
    seconds: float
    failures: int

    def line(self) -> str:
        """The printed summary of the run."""
        return (
            f"{self.associations} association(s): {self.instances} instances, "
            f"{self.total_bytes / 1e6:.1f} MB in {self.seconds:.2f} s = "
            f"{self.instances / self.seconds:.1f} instances/s, "
            f"{self.total_bytes / 1e6 / self.seconds:.1f} MB/s"
            + (f", {self.failures} FAILED" if self.failures else "")
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ct_slice(study: str, series: str, number: int, rng: np.random.Generator) -> Dataset:
    """One 512x512 16-bit CT slice with noisy pixels (so nothing compresses it)."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(prefix=UID_ROOT)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID = "Bench^Patient", "BENCH-1"
    ds.StudyDate, ds.StudyTime, ds.Modality = "20240101", "120000", "CT"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.ImagePositionPatient = [0.0, 0.0, float(number)]
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, (512, 512), dtype="<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def write_slices(folder: Path, count: int, seed: int) -> list[Path]:
    """Write ``count`` slices of one new series as Part 10 files."""
    rng = np.random.default_rng(seed)
    study, series = generate_uid(prefix=UID_ROOT), generate_uid(prefix=UID_ROOT)
    paths = []
    for number in range(1, count + 1):
        path = folder / f"ct{number:04d}.dcm"
        ct_slice(study, series, number, rng).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _send_pynetdicom(
    target: Target, paths: Sequence[Path], failures: list[int]
) -> None:
    ae = AE(ae_title="BENCHSCU")
    assoc = ae.associate(
        target.host,
        target.port,
        contexts=[build_context(CTImageStorage, ExplicitVRLittleEndian)],
        ae_title=target.ae_title,
        max_pdu=0,
    )
    if not assoc.is_established:
        failures.append(len(paths))
        return
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            if int(getattr(status, "Status", 0xFFFF)) != 0x0000:
                failures.append(1)
    finally:
        assoc.release()
        ae.shutdown()


def _send_storescu(target: Target, paths: Sequence[Path], failures: list[int]) -> None:
    done = subprocess.run(
        [STORESCU, "-aec", target.ae_title, target.host, str(target.port)]
        + [str(path) for path in paths],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or "Store Failed" in done.stderr:
        failures.append(1)


def run(
    target: Target, paths: Sequence[Path], associations: int, client: str
) -> Result:
    """Send ``paths`` over ``associations`` parallel associations, timed."""
    send = _send_storescu if client == "storescu" else _send_pynetdicom
    shares = [list(paths[i::associations]) for i in range(associations)]
    failures: list[int] = []
    threads = [
        threading.Thread(target=send, args=(target, share, failures))
        for share in shares
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    total = sum(path.stat().st_size for path in paths)
    return Result(associations, len(paths), total, seconds, sum(failures))


@contextmanager
def local_server(folder: Path) -> Iterator[Target]:
    """A dicomvault on its embedded default in ``folder``, stopped afterwards."""
    http_port, dimse_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMVAULT_")}
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "dicomvault.cli", "serve",
                "--data-dir", str(folder / "data"), "--host", "127.0.0.1",
                "--http-port", str(http_port), "--dimse-port", str(dimse_port),
                "--log-level", "WARNING",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise SystemExit(f"dicomvault exited:\n{log_path.read_text()}")
            try:
                url = f"http://127.0.0.1:{http_port}/readyz"
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise SystemExit(f"dicomvault not ready:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield Target("127.0.0.1", dimse_port, "DICOMVAULT")
    finally:
        process.terminate()
        process.wait(timeout=60)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="slices per run")
    parser.add_argument(
        "--associations", type=int, nargs="+", default=[1, 4], help="runs to time"
    )
    parser.add_argument(
        "--client", choices=["pynetdicom", "storescu"], default="pynetdicom"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="with --port: a running server"
    )
    parser.add_argument("--port", type=int, help="DIMSE port of a running server")
    parser.add_argument("--ae-title", default="DICOMVAULT", help="called AE title")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Generate the slices, time each run, print the figures."""
    args = _parser().parse_args(argv)
    if args.client == "storescu" and not Path(STORESCU).exists():
        raise SystemExit("storescu not found: apt-get install dcmtk")
    # Send files as they are on disk, the way a modality does: no re-encoding here.
    _config.STORE_SEND_CHUNKED_DATASET = True
    folder = Path(tempfile.mkdtemp(prefix="dimse-bench-", dir="/tmp"))
    try:
        runs = []
        for index, associations in enumerate(args.associations):
            slices = folder / f"run{index}"
            slices.mkdir()
            runs.append((associations, write_slices(slices, args.count, index)))
        print(f"{args.count} CT slices of 512x512x16 bit per run, client {args.client}")
        if args.port is not None:
            target = Target(args.host, args.port, args.ae_title)
            results = [run(target, paths, n, args.client) for n, paths in runs]
        else:
            with local_server(folder) as target:
                results = [run(target, paths, n, args.client) for n, paths in runs]
        for result in results:
            print(result.line())
        return 1 if any(result.failures for result in results) else 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
