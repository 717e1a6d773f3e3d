"""The benchmark figures: what each row measures, Orthanc's reference, the target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One number of a figure, and which way is better."""

    key: str
    unit: str
    higher_is_better: bool
    reference: float | None = None


@dataclass(frozen=True)
class Figure:
    """One row of the table.

    ``target_vs_orthanc`` names the metrics dicomvault must match or beat on
    Orthanc's figure of the same run; ``limits`` are absolute ceilings
    (latency metrics) or floors (throughput metrics) dicomvault must keep.
    """

    key: str
    title: str
    metrics: tuple[Metric, ...]
    target: str
    target_vs_orthanc: tuple[str, ...] = ()
    limits: tuple[tuple[str, float], ...] = ()

    @property
    def primary(self) -> Metric:
        """The metric the ratio column shows."""
        return self.metrics[0]

    def metric(self, key: str) -> Metric:
        """The metric named ``key``."""
        return next(m for m in self.metrics if m.key == key)


def _up(key: str, unit: str, reference: float | None = None) -> Metric:
    return Metric(key, unit, True, reference)


def _down(key: str, unit: str, reference: float | None = None) -> Metric:
    return Metric(key, unit, False, reference)


FIGURES = (
    Figure(
        "cstore_1",
        "C-STORE, storescu, 1 association",
        (_up("inst_per_s", "inst/s", 243), _up("mb_per_s", "MB/s", 128)),
        "at least Orthanc",
        ("inst_per_s",),
    ),
    Figure(
        "cstore_4",
        "C-STORE, 4 parallel associations",
        (_up("inst_per_s", "inst/s", 441), _up("mb_per_s", "MB/s", 232)),
        "at least Orthanc",
        ("inst_per_s",),
    ),
    Figure(
        "stow_20",
        "STOW-RS, 20 clients, 1 instance per request",
        (
            _up("inst_per_s", "inst/s", 438),
            _up("mb_per_s", "MB/s", 230),
            _down("p99_ms", "ms", 108),
        ),
        "at least Orthanc; floor 100 Mbit/s upload",
        ("inst_per_s",),
        (("mb_per_s", 12.5),),
    ),
    Figure(
        "wado_study_20",
        "WADO-RS whole study, 20 clients",
        (_up("mb_per_s", "MB/s", 1133), _down("p99_ms", "ms")),
        "at least Orthanc; floor 200 Mbit/s download",
        ("mb_per_s",),
        (("mb_per_s", 25.0),),
    ),
    Figure(
        "wado_study_1",
        "WADO-RS whole study, 1 client",
        (_up("mb_per_s", "MB/s", 887), _down("ms_per_study", "ms", 113)),
        "at least Orthanc",
        ("mb_per_s",),
    ),
    Figure(
        "wado_instance_20",
        "WADO-RS single instance, 20 clients",
        (_up("req_per_s", "req/s", 920), _down("p99_ms", "ms", 56)),
        "at least Orthanc",
        ("req_per_s",),
    ),
    Figure(
        "qido_500",
        "QIDO mix, 500 connections flat out",
        (
            _up("req_per_s", "req/s", 752),
            _down("p50_ms", "ms", 55),
            _down("p99_ms", "ms", 233),
            _down("errors", "errors"),
        ),
        "more req/s than Orthanc, p99 under 100 ms",
        ("req_per_s",),
        (("p99_ms", 100.0),),
    ),
    Figure(
        "metadata_200",
        "study metadata, 200 instances, warm",
        (_down("p50_ms", "ms", 98),),
        "under 20 ms",
        (),
        (("p50_ms", 20.0),),
    ),
    Figure(
        "cmove",
        "C-MOVE of a study to storescp",
        (_up("inst_per_s", "inst/s", 988), _up("mb_per_s", "MB/s", 519)),
        "at least Orthanc; floor 50 Mbit/s export",
        ("inst_per_s",),
        (("mb_per_s", 6.25),),
    ),
    Figure(
        "cfind_study",
        "C-FIND study searches, 1 association",
        (_down("p50_ms", "ms"), _down("p99_ms", "ms")),
        "(no target; for reference)",
    ),
    Figure(
        "terminals_500",
        "500 terminals, viewer mix, 1 req/s each",
        (
            _down("avg_ms", "ms"),
            _down("p95_ms", "ms"),
            _down("p99_ms", "ms"),
            _down("max_ms", "ms"),
            _down("errors", "errors"),
            _up("req_per_s", "req/s"),
        ),
        "average under 10 ms, p99 under 50 ms (floors: average 50 ms, peak 100 ms)",
        (),
        (("avg_ms", 10.0), ("p99_ms", 50.0), ("max_ms", 100.0), ("errors", 0.0)),
    ),
)

BY_KEY = {figure.key: figure for figure in FIGURES}
INGEST = ("cstore_1", "cstore_4", "stow_20")
