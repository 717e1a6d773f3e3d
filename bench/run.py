"""Run the benchmark suite: dicomvault and Orthanc, interleaved, on every figure.

    python -m bench.run --quick        # one repetition, short runs (minutes)
    python -m bench.run --full         # medians of 3, 30 s load runs
    python -m bench.run --quick --only qido_500,terminals_500 --profile qido_500

Writes bench/results/report.json, report.md and charts; prints one table with
the dicomvault/Orthanc ratio of each figure. Servers, storescp and the load
generators are started and stopped here; the HTTP load runs in a process of
its own (``bench.http_load``).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import dataset, report
from bench.dimse_load import (
    FindQuery,
    Receiver,
    dcmtk_available,
    dcmtk_env,
    find_latencies,
    move_study,
)
from bench.dimse_store import Target
from bench.dimse_store import run as store_with_dcmtk
from bench.figures import BY_KEY, FIGURES, INGEST
from bench.http_load import summarize
from bench.monitor import TreeSampler
from bench.servers import (
    LOOPBACK,
    Destination,
    Server,
    free_port,
    orthanc_available,
    orthanc_version,
    start_dicomvault,
    start_orthanc,
)

logger = logging.getLogger("bench.run")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OCTETS_ANY = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DICOM_JSON = "application/dicom+json"
RECEIVER_AE_TITLE = "STORESCP"
# A viewer's mix for the terminals: (kind, weight).
TERMINAL_MIX = (
    ("search", 25),
    ("series", 15),
    ("metadata", 2),
    ("instance", 30),
    ("frame", 28),
)


@dataclass(frozen=True)
class Preset:
    """How long and how often: the quick and the full run."""

    repetitions: int
    load_duration_s: float
    terminal_duration_s: float
    study_rounds: int
    instance_requests: int
    metadata_requests: int
    find_runs: int
    million_instances: int


PRESETS = {
    "quick": Preset(1, 10.0, 15.0, 1, 1000, 10, 10, 50_000),
    "full": Preset(3, 30.0, 30.0, 2, 3000, 30, 30, 1_000_000),
}


@dataclass
class Suite:
    """Everything one run shares."""

    args: argparse.Namespace
    preset: Preset
    data: dataset.DataSet
    work: Path
    receiver: Receiver
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def servers(self) -> list[str]:
        """Server names in the order of the first repetition."""
        return list(self.args.servers)

    def order(self, rep: int) -> list[str]:
        """Alternate which server goes first, so drift favours neither."""
        return self.servers if rep % 2 == 0 else list(reversed(self.servers))


# ---------------------------------------------------------------------------
# Measurement plumbing


def _cpu_self_and_children() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def _profiler(suite: Suite, server: Server, name: str) -> Iterator[None]:
    """py-spy on the dicomvault process while ``name`` runs, if asked for."""
    wanted = suite.args.profile
    if server.name != "dicomvault" or not (
        "all" in wanted or name.split("#")[0] in wanted
    ):
        yield
        return
    folder = suite.args.out / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"{name.replace('#', '-rep')}.txt"
    command = [
        shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(server.pid),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nonblocking",
        # With --workers above 1 the server processes are the supervisor's children.
        "--subprocesses",
        "--output",
        str(output),
    ]
    if suite.args.profile_mode == "wall":
        # Wall time per thread: where a serial path waits, not only where it computes.
        command += ["--idle", "--threads"]
    elif suite.args.profile_mode == "gil":
        # Only samples holding the GIL: what the one Python core is spent on.
        command += ["--gil", "--threads"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        suite.notes.append(f"profile of {name}: {output}")


def measure(
    suite: Suite,
    figure: str,
    server: Server,
    rep: int,
    action: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Run ``action`` under the process-tree sampler; record and return it."""
    load = os.getloadavg()
    logger.info("%s rep %d on %s (load %.2f)", figure, rep + 1, server.name, load[0])
    sampler = TreeSampler(server.roots)
    client_before = _cpu_self_and_children()
    with _profiler(suite, server, f"{figure}#{rep + 1}"):
        sampler.start()
        try:
            metrics = action()
        finally:
            usage = sampler.stop()
    record = {
        "figure": figure,
        "server": server.name,
        "rep": rep + 1,
        "load_avg": [round(x, 2) for x in load],
        "metrics": metrics,
        "server_cpu_s": round(usage.cpu_s, 2),
        "server_cpu_percent": round(usage.cpu_percent, 1),
        "server_peak_memory_mb": round(usage.peak_memory_mb, 1),
        "client_cpu_s": round(_cpu_self_and_children() - client_before, 2),
        "wall_s": round(usage.wall_s, 2),
    }
    suite.records.append(record)
    primary = BY_KEY[figure].primary
    logger.info(
        "  %s %s = %.1f %s (server CPU %.0f%%, peak %.0f MB)",
        server.name,
        primary.key,
        metrics.get(primary.key, float("nan")),
        primary.unit,
        usage.cpu_percent,
        usage.peak_memory_mb,
    )
    return record


def http_load(suite: Suite, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load spec in a separate process; return its result."""
    folder = suite.work / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec['scenario']}-{len(suite.records)}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "bench.http_load", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _http_metrics(result: dict[str, Any]) -> dict[str, Any]:
    latency = result["latency"]
    return {
        "requests": result["requests"],
        "errors": result["errors"],
        "error_samples": result["error_samples"],
        "req_per_s": result["requests_per_s"],
        "avg_ms": latency["avg_ms"],
        "p50_ms": latency["p50_ms"],
        "p95_ms": latency["p95_ms"],
        "p99_ms": latency["p99_ms"],
        "max_ms": latency["max_ms"],
        "elapsed_s": result["elapsed_s"],
        "by_kind": result["by_kind"],
        "quantiles_ms": result["quantiles_ms"],
        "late_starts": result.get("late_starts", 0),
    }


# ---------------------------------------------------------------------------
# Servers


def start(suite: Suite, name: str, label: str) -> Server:
    """A fresh server ``name`` with its own folder under the work folder."""
    destinations = [Destination(RECEIVER_AE_TITLE, suite.receiver.port)]
    folder = suite.work / f"{name}-{label}"
    if name == "dicomvault":
        workers = {"DICOMVAULT_WORKERS": str(suite.args.workers)}
        return start_dicomvault(
            folder, suite.args.source, destinations, extra_env=workers
        )
    return start_orthanc(
        folder, destinations, http_threads=suite.args.orthanc_http_threads
    )


def qido_count(url: str) -> int:
    """Matches of one QIDO-RS request; -1 when it fails or is not a JSON list."""
    request = urllib.request.Request(url, headers={"Accept": DICOM_JSON})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
    except (urllib.error.URLError, OSError):
        return -1
    try:
        matches = json.loads(body or b"[]")
    except json.JSONDecodeError:
        return -1
    return len(matches) if isinstance(matches, list) else -1


def _study_instance_count(server: Server, study: str) -> int:
    return qido_count(f"{server.dicomweb_url}/studies/{study}/instances")


def check_stored(suite: Suite, server: Server, kinds: tuple[str, ...]) -> None:
    """Count each study's instances over QIDO; note any shortfall."""
    for study in suite.data.studies:
        if study.kind not in kinds:
            continue
        expected = sum(
            1
            for i in suite.data.instances
            if i.study_instance_uid == study.study_instance_uid
        )
        found = _study_instance_count(server, study.study_instance_uid)
        if found != expected:
            note = (
                f"{server.name}: study {study.accession_number} has {found} "
                f"instances over QIDO, {expected} were sent"
            )
            logger.warning(note)
            suite.notes.append(note)


# ---------------------------------------------------------------------------
# Ingest figures: a fresh server for every measurement


def _store_files(
    server: Server, paths: list[Path], associations: int
) -> dict[str, Any]:
    target = Target(LOOPBACK, server.dimse_port, server.ae_title)
    result = store_with_dcmtk(target, paths, associations, "storescu")
    return {
        "inst_per_s": result.instances / result.seconds,
        "mb_per_s": result.total_bytes / 1e6 / result.seconds,
        "seconds": result.seconds,
        "instances": result.instances,
        "errors": result.failures,
    }


def _stow(suite: Suite, server: Server, paths: list[Path]) -> dict[str, Any]:
    spec = {
        "scenario": "stow",
        "base": server.dicomweb_url,
        "files": [str(p) for p in paths],
        "clients": 20,
        "timeout_s": 120,
    }
    result = http_load(suite, spec)
    metrics = _http_metrics(result)
    seconds = result["elapsed_s"]
    metrics["inst_per_s"] = result["requests"] / seconds
    metrics["mb_per_s"] = result["bytes_sent"] / 1e6 / seconds
    return metrics


def _ingest_action(
    suite: Suite, figure: str, server: Server, paths: list[Path]
) -> Callable[[], dict[str, Any]]:
    if figure == "stow_20":
        return lambda: _stow(suite, server, paths)
    associations = 1 if figure == "cstore_1" else 4
    return lambda: _store_files(server, paths, associations)


def run_ingest(suite: Suite) -> None:
    """C-STORE over 1 and 4 associations and STOW-RS, into empty servers."""
    paths = [suite.data.file(i) for i in suite.data.of_kind("ct")]
    wanted = [f for f in INGEST if f in suite.args.only]
    for rep in range(suite.preset.repetitions):
        for figure in wanted:
            for name in suite.order(rep):
                server = start(suite, name, f"{figure}-{rep + 1}")
                try:
                    action = _ingest_action(suite, figure, server, paths)
                    measure(suite, figure, server, rep, action)
                    check_stored(suite, server, ("ct",))
                finally:
                    server.stop()
                    shutil.rmtree(server.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Retrieval figures: one loaded server of each kind, measured in turn


def _instance_path(instance: dataset.Instance) -> str:
    return (
        f"/studies/{instance.study_instance_uid}/series/"
        f"{instance.series_instance_uid}/instances/{instance.sop_instance_uid}"
    )


def qido_mix(data: dataset.DataSet) -> list[dict[str, Any]]:
    """The study, series and instance searches of the QIDO mix."""
    ct = data.studies_of_kind("ct")
    mr = data.studies_of_kind("mr")[0]
    paths = [
        "/studies?PatientName=Wang*",
        f"/studies?PatientID={ct[1 % len(ct)].patient_id}",
        "/studies?StudyDate=20240101-20240131",
        f"/studies?AccessionNumber={ct[-1].accession_number}",
        "/studies?ModalitiesInStudy=MR",
        "/studies?limit=25",
        f"/studies/{mr.study_instance_uid}/series",
        (
            f"/studies/{ct[0].study_instance_uid}/series/"
            f"{ct[0].series_instance_uids[0]}/instances"
        ),
    ]
    return [{"path": p, "accept": DICOM_JSON, "kind": "qido"} for p in paths]


def terminal_sequences(
    data: dataset.DataSet, terminals: int, steps: int, seed: int
) -> list[list[dict[str, Any]]]:
    """Each terminal's own request sequence, drawn from the viewer mix."""
    searches = [dict(q, kind="search") for q in qido_mix(data)[:6]]
    studies = data.studies
    images = data.of_kind("ct") + data.of_kind("mr")
    multiframe = data.of_kind("multiframe")
    kinds = [k for k, _ in TERMINAL_MIX]
    weights = [w for _, w in TERMINAL_MIX]
    sequences = []
    for terminal in range(terminals):
        rng = random.Random(seed * 100_003 + terminal)
        sequence: list[dict[str, Any]] = []
        for _ in range(steps):
            kind = rng.choices(kinds, weights)[0]
            if kind == "search":
                sequence.append(rng.choice(searches))
                continue
            study = rng.choice(studies).study_instance_uid
            if kind == "series":
                path, accept = f"/studies/{study}/series", DICOM_JSON
            elif kind == "metadata":
                path, accept = f"/studies/{study}/metadata", DICOM_JSON
            elif kind == "instance":
                path, accept = _instance_path(rng.choice(images)), DICOM_ANY
            elif multiframe and rng.random() < 0.3:
                instance = multiframe[0]
                frame = rng.randint(1, instance.frames)
                path, accept = f"{_instance_path(instance)}/frames/{frame}", OCTETS_ANY
            else:
                path, accept = (
                    f"{_instance_path(rng.choice(images))}/frames/1",
                    OCTETS_ANY,
                )
            sequence.append({"path": path, "accept": accept, "kind": kind})
        sequences.append(sequence)
    return sequences


def _wado_study(suite: Suite, server: Server, clients: int) -> dict[str, Any]:
    ct = suite.data.studies_of_kind("ct")
    per_study = {
        s.study_instance_uid: sum(
            i.size
            for i in suite.data.of_kind("ct")
            if i.study_instance_uid == s.study_instance_uid
        )
        for s in ct
    }
    count = max(len(ct), clients) * suite.preset.study_rounds
    requests = [
        {
            "path": f"/studies/{ct[n % len(ct)].study_instance_uid}",
            "accept": DICOM_ANY,
            "kind": "study",
            "min_bytes": per_study[ct[n % len(ct)].study_instance_uid],
        }
        for n in range(count)
    ]
    spec = {
        "scenario": "fetch",
        "base": server.dicomweb_url,
        "requests": requests,
        "clients": clients,
        "timeout_s": 300,
        "warm_url": server.dicomweb_url + "/studies?limit=1",
    }
    result = http_load(suite, spec)
    metrics = _http_metrics(result)
    metrics["mb_per_s"] = result["bytes_received"] / 1e6 / result["elapsed_s"]
    metrics["ms_per_study"] = result["latency"]["p50_ms"]
    return metrics


def _wado_instances(suite: Suite, server: Server) -> dict[str, Any]:
    rng = random.Random(suite.args.seed)
    ct = suite.data.of_kind("ct")
    requests = [
        {
            "path": _instance_path(instance),
            "accept": DICOM_ANY,
            "kind": "instance",
            "min_bytes": instance.size,
        }
        for instance in (rng.choice(ct) for _ in range(suite.preset.instance_requests))
    ]
    spec = {
        "scenario": "fetch",
        "base": server.dicomweb_url,
        "requests": requests,
        "clients": 20,
        "timeout_s": 60,
        "warm_url": server.dicomweb_url + "/studies?limit=1",
    }
    result = http_load(suite, spec)
    metrics = _http_metrics(result)
    metrics["mb_per_s"] = result["bytes_received"] / 1e6 / result["elapsed_s"]
    return metrics


def _qido(suite: Suite, server: Server) -> dict[str, Any]:
    spec = {
        "scenario": "flat",
        "base": server.dicomweb_url,
        "requests": qido_mix(suite.data),
        "clients": suite.args.connections,
        "duration_s": suite.preset.load_duration_s,
        "timeout_s": 60,
        "warm_url": server.dicomweb_url + "/studies?limit=1",
    }
    return _http_metrics(http_load(suite, spec))


def _metadata(suite: Suite, server: Server) -> dict[str, Any]:
    study = suite.data.studies_of_kind("ct")[0].study_instance_uid
    request = {"path": f"/studies/{study}/metadata", "accept": DICOM_JSON}
    warm = [dict(request, kind="warm")] * 3
    timed = [dict(request, kind="metadata")] * suite.preset.metadata_requests
    spec = {
        "scenario": "fetch",
        "base": server.dicomweb_url,
        "requests": warm + timed,
        "clients": 1,
        "timeout_s": 60,
    }
    result = http_load(suite, spec)
    metrics = _http_metrics(result)
    timed_only = result["by_kind"].get("metadata", summarize([]))
    metrics.update({k: v for k, v in timed_only.items() if k.endswith("_ms")})
    return metrics


def _terminals(suite: Suite, server: Server, rep: int) -> dict[str, Any]:
    steps = int(suite.preset.terminal_duration_s)
    spec = {
        "scenario": "paced",
        "base": server.dicomweb_url,
        "terminals": terminal_sequences(
            suite.data, suite.args.terminals, steps, suite.args.seed + rep
        ),
        "period_s": 1.0,
        "duration_s": suite.preset.terminal_duration_s,
        "timeout_s": 30,
        "warm_url": server.dicomweb_url + "/studies?limit=1",
    }
    return _http_metrics(http_load(suite, spec))


def _cmove(suite: Suite, server: Server, rep: int) -> dict[str, Any]:
    ct = suite.data.studies_of_kind("ct")
    study = ct[rep % len(ct)]
    expected = sum(
        1
        for i in suite.data.of_kind("ct")
        if i.study_instance_uid == study.study_instance_uid
    )
    result = move_study(
        LOOPBACK,
        server.dimse_port,
        server.ae_title,
        suite.receiver,
        study.study_instance_uid,
    )
    errors = 0 if result.returncode == 0 and result.instances == expected else 1
    if errors:
        suite.notes.append(
            f"{server.name}: C-MOVE delivered {result.instances}/{expected} "
            f"(movescu {result.returncode}): {result.output[-300:]}"
        )
    return {
        "inst_per_s": result.instances / result.seconds,
        "mb_per_s": result.bytes / 1e6 / result.seconds,
        "seconds": result.seconds,
        "instances": result.instances,
        "errors": errors,
    }


def _cfind(suite: Suite, server: Server) -> dict[str, Any]:
    ct = suite.data.studies_of_kind("ct")
    queries = [
        FindQuery("PatientName", {"PatientName": "Wang*"}),
        FindQuery("PatientID", {"PatientID": ct[0].patient_id}),
        FindQuery("StudyDate", {"StudyDate": "20240101-20240131"}),
        FindQuery("AccessionNumber", {"AccessionNumber": ct[-1].accession_number}),
    ]
    times = find_latencies(
        LOOPBACK, server.dimse_port, server.ae_title, queries, suite.preset.find_runs
    )
    every = [t for values in times.values() for t in values]
    summary = summarize(every)
    return {
        **summary,
        "by_kind": {name: summarize(values) for name, values in times.items()},
        "errors": 0,
    }


def load_archive(suite: Suite, server: Server) -> None:
    """Store the whole data set (untimed, 4 associations) and check it."""
    paths = [suite.data.file(i) for i in suite.data.instances]
    result = store_with_dcmtk(
        Target(LOOPBACK, server.dimse_port, server.ae_title), paths, 4, "storescu"
    )
    if result.failures:
        suite.notes.append(f"{server.name}: loading the data set had failures")
    check_stored(suite, server, ("ct", "mr", "multiframe"))


def parity(suite: Suite, servers: dict[str, Server]) -> None:
    """How many matches each QIDO of the mix finds on each server."""
    for request in qido_mix(suite.data):
        counts = {}
        for name, server in servers.items():
            counts[name] = qido_count(server.dicomweb_url + request["path"])
        suite.records.append({"figure": "_parity", "path": request["path"], **counts})


def run_retrieval(suite: Suite) -> None:
    """Every retrieval figure, on one loaded server of each kind, interleaved."""
    wanted = [f.key for f in FIGURES if f.key not in INGEST]
    wanted = [f for f in wanted if f in suite.args.only]
    if not wanted:
        return
    servers: dict[str, Server] = {}
    try:
        for name in suite.servers:
            servers[name] = start(suite, name, "retrieval")
            load_archive(suite, servers[name])
        parity(suite, servers)
        actions: dict[str, Callable[[Server, int], dict[str, Any]]] = {
            "wado_study_20": lambda s, r: _wado_study(suite, s, 20),
            "wado_study_1": lambda s, r: _wado_study(suite, s, 1),
            "wado_instance_20": lambda s, r: _wado_instances(suite, s),
            "qido_500": lambda s, r: _qido(suite, s),
            "metadata_200": lambda s, r: _metadata(suite, s),
            "cmove": lambda s, r: _cmove(suite, s, r),
            "cfind_study": lambda s, r: _cfind(suite, s),
            "terminals_500": lambda s, r: _terminals(suite, s, r),
        }
        for figure in wanted:
            for rep in range(suite.preset.repetitions):
                for name in suite.order(rep):
                    server = servers[name]
                    action = functools.partial(actions[figure], server, rep)
                    measure(suite, figure, server, rep, action)
                    # Let sockets in TIME_WAIT and background work settle.
                    time.sleep(suite.args.pause_s)
    finally:
        for server in servers.values():
            server.stop()


# ---------------------------------------------------------------------------
# One million index rows (dicomvault only)


def run_million(suite: Suite) -> dict[str, Any]:
    """``bench.million`` in a process of its own, on the code under test."""
    instances = suite.args.million
    if instances is None:
        instances = suite.preset.million_instances
    if instances <= 0:
        return {"status": "skipped (--million 0)"}
    out = suite.work / "million.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{suite.args.source}{os.pathsep}{REPO}"
    runs = 20 if suite.args.quick else 100
    command = [
        sys.executable,
        "-m",
        "bench.million",
        "--instances",
        str(instances),
        "--runs",
        str(runs),
        "--source",
        str(suite.args.source),
        "--work",
        str(suite.work / "million"),
        "--out",
        str(out),
    ]
    logger.info("One-million-row index: %d instances", instances)
    load = os.getloadavg()
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not out.exists():
        return {"status": "failed", "error": done.stderr[-3000:]}
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    result["status"] = "ok"
    result["load_avg"] = [round(x, 2) for x in load]
    return result


# ---------------------------------------------------------------------------
# The command


def _git_revision(source: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(source), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown (not a git tree)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1 repetition, short runs")
    size.add_argument("--full", action="store_true", help="medians of 3 (default)")
    parser.add_argument("--repetitions", type=int, help="override the preset")
    parser.add_argument("--duration-s", type=float, help="load runs, override")
    parser.add_argument("--connections", type=int, default=500, help="QIDO mix")
    parser.add_argument("--terminals", type=int, default=500)
    parser.add_argument(
        "--only",
        default=",".join(f.key for f in FIGURES),
        help="comma-separated figure keys (default: all)",
    )
    parser.add_argument(
        "--servers", default="dicomvault,orthanc", help="which servers to measure"
    )
    parser.add_argument(
        "--million",
        type=int,
        help="index rows for the QIDO/C-FIND figure (0 skips; preset otherwise)",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="figure keys (or 'all') to record with py-spy on dicomvault",
    )
    parser.add_argument(
        "--profile-mode",
        choices=("cpu", "wall", "gil"),
        default="cpu",
        help="py-spy samples: on CPU (default), wall time per thread, GIL holder",
    )
    parser.add_argument(
        "--source", type=Path, default=REPO, help="dicomvault code tree to serve"
    )
    parser.add_argument(
        "--source-revision", help="label for --source when it is not a git tree"
    )
    parser.add_argument("--data", type=Path, default=RESULTS / "data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dicomvault-bench"))
    parser.add_argument(
        "--orthanc-http-threads",
        type=int,
        default=500,
        help="Orthanc's HttpThreadsCount (Debian's default 50 starves 500 "
        "keep-alive connections: one thread per connection)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="dicomvault server processes (serve --workers; default: one per core)",
    )
    parser.add_argument("--pause-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--ct-slices", type=int, default=dataset.Spec.ct_slices)
    return parser


def _settings(argv: list[str] | None) -> tuple[argparse.Namespace, Preset]:
    args = _parser().parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full"]
    if args.repetitions:
        preset = Preset(**{**preset.__dict__, "repetitions": args.repetitions})
    if args.duration_s:
        preset = Preset(
            **{
                **preset.__dict__,
                "load_duration_s": args.duration_s,
                "terminal_duration_s": args.duration_s,
            }
        )
    args.only = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in args.only if key not in BY_KEY]
    if unknown:
        raise SystemExit(f"unknown figure(s) {unknown}; known: {sorted(BY_KEY)}")
    args.profile = [key.strip() for key in args.profile.split(",") if key.strip()]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.source = args.source.resolve()
    # The work folder holds the embedded PostgreSQL: it must not be under /root.
    if str(args.work.resolve()).startswith("/root"):
        raise SystemExit(f"--work {args.work} must lie outside /root (pgserver)")
    return args, preset


def main(argv: list[str] | None = None) -> int:
    """Run the suite and write the report."""
    args, preset = _settings(argv)
    # SIGTERM unwinds like Ctrl-C, so that every server started here is stopped.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    # pynetdicom logs every message it sends at INFO: keep the console readable.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if not dcmtk_available():
        raise SystemExit("DCMTK is missing: apt-get install -y dcmtk")
    if "orthanc" in args.servers and not orthanc_available():
        logger.warning("Orthanc is not installed: measuring dicomvault alone")
        args.servers = [s for s in args.servers if s != "orthanc"]
    # DCMTK started by bench.dimse_store inherits this: Nagle off.
    os.environ.update({"TCP_NODELAY": dcmtk_env()["TCP_NODELAY"]})
    data = dataset.ensure(
        args.data, dataset.Spec(seed=args.seed, ct_slices=args.ct_slices)
    )
    args.work.mkdir(parents=True, exist_ok=True)
    receiver = Receiver(args.work / "storescp" / "in", RECEIVER_AE_TITLE, free_port())
    (args.work / "storescp").mkdir(parents=True, exist_ok=True)
    suite = Suite(args, preset, data, args.work, receiver)
    started = time.time()
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "preset": "quick" if args.quick else "full",
        "settings": {
            **preset.__dict__,
            "connections": args.connections,
            "terminals": args.terminals,
            "terminal_mix": TERMINAL_MIX,
            "orthanc_http_threads": args.orthanc_http_threads,
            "dicomvault_workers": args.workers,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
            ),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "dicomvault": {
            "source": str(args.source),
            "revision": args.source_revision or _git_revision(args.source),
        },
        "orthanc": orthanc_version() if "orthanc" in args.servers else "not measured",
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "data": {
            kind: {
                "instances": len(data.of_kind(kind)),
                "mb": round(data.total_bytes(kind) / 1e6, 1),
            }
            for kind in ("ct", "mr", "multiframe")
        },
    }
    receiver.start()
    million: dict[str, Any] = {}
    try:
        run_ingest(suite)
        run_retrieval(suite)
        million = run_million(suite)
    finally:
        receiver.stop()
    meta["duration_s"] = round(time.time() - started)
    meta["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = report.write(args.out, meta, suite.records, million, suite.notes)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
