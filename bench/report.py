"""The report: medians per figure and server, ratios, targets, JSON, Markdown.

Charts too, as PNG files beside the Markdown.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import FIGURES, Figure, Metric

DV = "dicomvault"
ORTHANC = "orthanc"


@dataclass(frozen=True)
class Row:
    """One figure's medians on each server, the ratio and the verdict."""

    figure: Figure
    values: dict[str, dict[str, float]]
    resources: dict[str, dict[str, float]]
    repetitions: dict[str, int]
    verdict: str
    misses: tuple[str, ...]

    def value(self, server: str, metric: str) -> float | None:
        """The median of ``metric`` on ``server``, if measured."""
        return self.values.get(server, {}).get(metric)

    def ratio(self, metric: str) -> float | None:
        """dicomvault / Orthanc for ``metric``."""
        mine, theirs = self.value(DV, metric), self.value(ORTHANC, metric)
        if mine is None or theirs is None or theirs == 0:
            return None
        return mine / theirs


def _median(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r["metrics"][key] for r in records if key in r["metrics"]]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return statistics.median(numbers) if numbers else None


def _better_or_equal(metric: Metric, mine: float, theirs: float) -> bool:
    return mine >= theirs if metric.higher_is_better else mine <= theirs


def _within(metric: Metric, value: float, limit: float) -> bool:
    if metric.higher_is_better:
        return value >= limit
    return value <= limit if metric.key == "errors" else value < limit


def _verdict(
    figure: Figure, values: dict[str, dict[str, float]]
) -> tuple[str, tuple[str, ...]]:
    mine = values.get(DV, {})
    if not mine:
        return "not measured", ()
    misses = []
    for key in figure.target_vs_orthanc:
        metric = figure.metric(key)
        theirs = values.get(ORTHANC, {}).get(key, metric.reference)
        if theirs is None or key not in mine:
            continue
        if not _better_or_equal(metric, mine[key], theirs):
            misses.append(f"{key} {mine[key]:.1f} vs Orthanc {theirs:.1f}")
    for key, limit in figure.limits:
        metric = figure.metric(key)
        if key in mine and not _within(metric, mine[key], limit):
            sign = ">=" if metric.higher_is_better else "<"
            misses.append(f"{key} {mine[key]:.1f} (needs {sign} {limit:g})")
    if not figure.target_vs_orthanc and not figure.limits:
        return "-", ()
    return ("MISSED" if misses else "met"), tuple(misses)


def rows(records: list[dict[str, Any]]) -> list[Row]:
    """Medians per figure and server over the repetitions."""
    result = []
    for figure in FIGURES:
        values: dict[str, dict[str, float]] = {}
        resources: dict[str, dict[str, float]] = {}
        repetitions: dict[str, int] = {}
        for server in (DV, ORTHANC):
            mine = [
                r
                for r in records
                if r.get("figure") == figure.key and r.get("server") == server
            ]
            if not mine:
                continue
            repetitions[server] = len(mine)
            values[server] = {
                m.key: v
                for m in figure.metrics
                if (v := _median(mine, m.key)) is not None
            }
            resources[server] = {
                key: statistics.median(float(r[key]) for r in mine)
                for key in (
                    "server_cpu_s",
                    "server_cpu_percent",
                    "server_peak_memory_mb",
                    "client_cpu_s",
                )
            }
            resources[server]["load_avg_1min"] = statistics.median(
                r["load_avg"][0] for r in mine
            )
        if values:
            verdict, misses = _verdict(figure, values)
            result.append(Row(figure, values, resources, repetitions, verdict, misses))
    return result


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _metric_text(row: Row, server: str) -> str:
    parts = []
    for metric in row.figure.metrics:
        value = row.value(server, metric.key)
        if value is not None:
            parts.append(f"{_number(value)} {metric.unit}")
    return ", ".join(parts) or "-"


def _reference_text(figure: Figure) -> str:
    parts = [f"{_number(m.reference)} {m.unit}" for m in figure.metrics if m.reference]
    return ", ".join(parts) or "-"


def _ratio_text(row: Row) -> str:
    ratio = row.ratio(row.figure.primary.key)
    return "-" if ratio is None else f"{ratio:.2f}"


def table_lines(table: list[Row]) -> list[list[str]]:
    """The main table as cells: header first."""
    lines = [
        [
            "figure",
            "dicomvault",
            "Orthanc (this run)",
            "ratio dv/Orthanc",
            "Orthanc, reference run",
            "target",
            "verdict",
        ]
    ]
    for row in table:
        lines.append(
            [
                row.figure.title,
                _metric_text(row, DV),
                _metric_text(row, ORTHANC),
                f"{_ratio_text(row)} ({row.figure.primary.key})",
                _reference_text(row.figure),
                row.figure.target,
                row.verdict + (": " + "; ".join(row.misses) if row.misses else ""),
            ]
        )
    return lines


def text_table(table: list[Row]) -> str:
    """The main table for a terminal, columns padded."""
    lines = table_lines(table)
    keep = [0, 1, 2, 3, 6]
    cells = [[line[i] for i in keep] for line in lines]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keep))]
    widths = [min(w, 60) for w in widths]
    out = []
    for number, cell in enumerate(cells):
        out.append(
            "  ".join(c[:60].ljust(w) for c, w in zip(cell, widths, strict=True))
        )
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _markdown_table(lines: list[list[str]]) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    head = [row(lines[0]), "|" + "---|" * len(lines[0])]
    return "\n".join(head + [row(cells) for cells in lines[1:]])


def _resources_table(table: list[Row]) -> str:
    lines = [
        [
            "figure",
            "server",
            "CPU s",
            "CPU % (100 = 1 core)",
            "peak memory MB",
            "client CPU s",
            "load avg (1 min) at start",
            "runs",
        ]
    ]
    for row in table:
        for server, res in row.resources.items():
            lines.append(
                [
                    row.figure.title,
                    server,
                    _number(res["server_cpu_s"]),
                    _number(res["server_cpu_percent"]),
                    _number(res["server_peak_memory_mb"]),
                    _number(res["client_cpu_s"]),
                    f"{res['load_avg_1min']:.2f}",
                    str(row.repetitions[server]),
                ]
            )
    return _markdown_table(lines)


def _million_section(million: dict[str, Any]) -> str:
    status = million.get("status", "not run")
    if status != "ok":
        return f"Not measured: {status}\n" + (
            f"\n```\n{million.get('error', '')[-1500:]}\n```\n"
            if million.get("error")
            else ""
        )
    head = (
        f"{million['instances']} instances, {million['studies']} studies, "
        f"{million['series']} series; filled in {million['fill_s']:.0f} s; "
        f"{million['runs']} runs per search, one at a time; load average at "
        f"start {million['load_avg'][0]:.2f}.\n\n"
    )
    lines = [["search", "QIDO-RS p50 ms", "QIDO-RS p99 ms", "rows (page 100)"]]
    for name, result in million["qido"].items():
        lines.append(
            [
                name,
                _number(result["p50_ms"]),
                _number(result["p99_ms"]),
                str(result["rows"]),
            ]
        )
    find = [["search", "C-FIND p50 ms", "C-FIND p99 ms"]]
    for name, result in million["cfind"].items():
        find.append([name, _number(result["p50_ms"]), _number(result["p99_ms"])])
    return head + _markdown_table(lines) + "\n\n" + _markdown_table(find) + "\n"


def _load_section(records: list[dict[str, Any]]) -> str:
    lines = [["figure", "server", "rep", "load avg 1/5/15 min", "wall s"]]
    for r in records:
        if r.get("figure", "").startswith("_"):
            continue
        load = "/".join(f"{x:.2f}" for x in r["load_avg"])
        lines.append(
            [r["figure"], r["server"], str(r["rep"]), load, _number(r["wall_s"])]
        )
    return _markdown_table(lines)


def _parity_section(records: list[dict[str, Any]]) -> str:
    parity = [r for r in records if r.get("figure") == "_parity"]
    if not parity:
        return ""
    servers = [k for k in parity[0] if k not in ("figure", "path")]
    lines = [["QIDO of the mix", *(f"matches on {s}" for s in servers)]]
    for r in parity:
        lines.append([f"`{r['path'][:90]}`", *(str(r[s]) for s in servers)])
    return _markdown_table(lines)


def _terminal_kinds(records: list[dict[str, Any]]) -> str:
    lines = [["server", "rep", "kind", "count", "avg ms", "p99 ms", "max ms"]]
    for r in records:
        if r.get("figure") != "terminals_500":
            continue
        for kind, s in r["metrics"].get("by_kind", {}).items():
            lines.append(
                [
                    r["server"],
                    str(r["rep"]),
                    kind,
                    str(s["count"]),
                    _number(s["avg_ms"]),
                    _number(s["p99_ms"]),
                    _number(s["max_ms"]),
                ]
            )
    return _markdown_table(lines) if len(lines) > 1 else ""


def charts(folder: Path, table: list[Row], records: list[dict[str, Any]]) -> list[str]:
    """PNG charts next to the report; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    compared = [r for r in table if r.ratio(r.figure.primary.key) is not None]
    if compared:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(compared) + 1.5))
        labels, speed = [], []
        for row in compared:
            ratio = row.ratio(row.figure.primary.key) or 0.0
            better = ratio if row.figure.primary.higher_is_better else 1 / ratio
            labels.append(row.figure.title)
            speed.append(better)
        colours = ["tab:green" if s >= 1 else "tab:red" for s in speed]
        ax.barh(labels, speed, color=colours)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("dicomvault relative to Orthanc (>1: dicomvault better)")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(folder / "ratios.png", dpi=110)
        plt.close(fig)
        names.append("ratios.png")
    rows_with_resources = [r for r in table if r.resources]
    if rows_with_resources:
        fig, (cpu, memory) = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
        labels = [r.figure.title for r in rows_with_resources]
        positions = list(range(len(labels)))
        for offset, server in ((-0.2, DV), (0.2, ORTHANC)):
            cpu.barh(
                [p + offset for p in positions],
                [
                    r.resources.get(server, {}).get("server_cpu_percent", 0)
                    for r in rows_with_resources
                ],
                height=0.4,
                label=server,
            )
            memory.barh(
                [p + offset for p in positions],
                [
                    r.resources.get(server, {}).get("server_peak_memory_mb", 0)
                    for r in rows_with_resources
                ],
                height=0.4,
                label=server,
            )
        cpu.set_yticks(positions, labels)
        cpu.invert_yaxis()
        cpu.set_xlabel("server CPU % (100 = one core)")
        memory.set_xlabel("server peak memory, MB")
        cpu.legend()
        fig.tight_layout()
        fig.savefig(folder / "resources.png", dpi=110)
        plt.close(fig)
        names.append("resources.png")
    latency_figures = [
        r
        for r in records
        if r.get("metrics", {}).get("quantiles_ms")
        and r["figure"] in ("terminals_500", "qido_500", "wado_instance_20")
    ]
    if latency_figures:
        fig, ax = plt.subplots(figsize=(9, 5))
        for r in latency_figures:
            points = r["metrics"]["quantiles_ms"]
            ax.plot(
                points,
                [i / (len(points) - 1) for i in range(len(points))],
                label=f"{r['figure']} {r['server']} #{r['rep']}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("fraction of requests")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "latency.png", dpi=110)
        plt.close(fig)
        names.append("latency.png")
    return names


def markdown(
    meta: dict[str, Any],
    table: list[Row],
    records: list[dict[str, Any]],
    million: dict[str, Any],
    notes: list[str],
    images: list[str],
) -> str:
    """The whole report as Markdown."""
    machine = meta["machine"]
    load = meta["load_avg_start"]
    end = "/".join(f"{x:.2f}" for x in meta["load_avg_end"])
    setting = (
        f"Started {meta['started']}, {meta['duration_s']} s, preset "
        f"**{meta['preset']}**, medians of {meta['settings']['repetitions']} "
        f"repetition(s). Machine: {machine['cpus']} CPUs, {machine['memory_gb']} "
        f"GB, Linux {machine['kernel']}, Python {machine['python']}. dicomvault "
        f"{meta['dicomvault']['revision']}; {meta['orthanc']}. Client and servers "
        "on the same machine over loopback; dicomvault with encryption on "
        "(AES-256-GCM, embedded PostgreSQL), Orthanc with its SQLite index and "
        "the DICOMweb plugin.\n"
    )
    loads = (
        f"**Load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}**"
        f" (end: {end}). Other work on the machine skews the figures; each run's "
        "own load average is listed below.\n"
    )
    ratio = (
        "Ratio is dicomvault / Orthanc of the first metric of each figure "
        "(above 1 is better for throughput, below 1 for latency).\n"
    )
    memory = (
        "dicomvault counts its process and its embedded PostgreSQL; memory is "
        "private resident memory of each process plus the largest shared part "
        "once.\n"
    )
    parts = ["# dicomvault stress-test report\n", setting, loads, "## Figures\n"]
    parts += [_markdown_table(table_lines(table)) + "\n", ratio]
    parts += [f"![{image}]({image})\n" for image in images]
    parts += [
        "## Server CPU and peak memory\n",
        memory,
        _resources_table(table) + "\n",
        "## QIDO and C-FIND on one million index rows (dicomvault)\n",
        _million_section(million),
        "## 500 terminals by request kind\n",
        _terminal_kinds(records) + "\n",
        "## QIDO mix: matches on each server\n",
        _parity_section(records) + "\n",
        "## Load average per run\n",
        _load_section(records) + "\n",
        "## Settings\n",
        "```json\n" + json.dumps(meta["settings"], indent=1) + "\n```\n",
    ]
    if notes:
        parts += ["## Notes\n", "\n".join(f"- {n}" for n in notes) + "\n"]
    return "\n".join(parts)


def _json_rows(table: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "figure": row.figure.key,
            "title": row.figure.title,
            "values": row.values,
            "ratio": {m.key: row.ratio(m.key) for m in row.figure.metrics},
            "orthanc_reference": {
                m.key: m.reference for m in row.figure.metrics if m.reference
            },
            "target": row.figure.target,
            "verdict": row.verdict,
            "misses": list(row.misses),
            "resources": row.resources,
            "repetitions": row.repetitions,
        }
        for row in table
    ]


def write(
    folder: Path,
    meta: dict[str, Any],
    records: list[dict[str, Any]],
    million: dict[str, Any],
    notes: list[str],
) -> str:
    """Write report.json, report.md and the charts; return the text table."""
    folder.mkdir(parents=True, exist_ok=True)
    table = rows(records)
    images = charts(folder, table, records)
    document = {
        "meta": meta,
        "figures": _json_rows(table),
        "million": million,
        "runs": records,
        "notes": notes,
    }
    (folder / "report.json").write_text(
        json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    text = markdown(meta, table, records, million, notes, images)
    (folder / "report.md").write_text(text, encoding="utf-8")
    load = meta["load_avg_start"][0]
    return (
        f"\n{text_table(table)}\n\nload average at start {load:.2f}; report in "
        f"{folder / 'report.md'}"
    )
