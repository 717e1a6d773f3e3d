"""QIDO-RS and C-FIND latency of a dicomvault whose index holds a million instances.

The rows come from ``bench/qido_million.py`` (its ``Rows`` and ``fill``: COPY
straight into PostgreSQL, no objects). This module then starts ``dicomvault
serve`` on that database and times the standard study searches end to end:
QIDO-RS over one keep-alive HTTP connection and C-FIND over one association,
one request at a time, p50 and p99 of each.

Run alone: ``python -m bench.million --instances 1000000 --out result.json``
(with the dicomvault code to measure first on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import random
import shutil
import statistics
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench.dimse_load import FindQuery, find_latencies
from bench.http_load import summarize
from bench.servers import LOOPBACK, start_dicomvault

logger = logging.getLogger(__name__)

PAGE = 100
QIDO_ACCEPT = "application/dicom+json"


def _study_date(rng: random.Random) -> tuple[str, str]:
    day = rng.randrange(0, 365 * 10 - 7)
    first = time.gmtime(1420070400 + day * 86400)
    last = time.gmtime(1420070400 + (day + 7) * 86400)
    return time.strftime("%Y%m%d", first), time.strftime("%Y%m%d", last)


def qido_searches(rows: Any, rng: random.Random) -> dict[str, list[str]]:
    """Study searches as QIDO-RS query strings, ``runs`` variants drawn later."""

    def draw(make: Any, count: int) -> list[str]:
        return [urllib.parse.urlencode(make(), safe="*^,-") for _ in range(count)]

    return {
        "PatientName prefix": draw(lambda: {"PatientName": "wang^x*"}, 1),
        "PatientName ideographic": draw(lambda: {"PatientName": "李*"}, 1),
        "PatientName fuzzy": draw(
            lambda: {"PatientName": "xiaodong w", "fuzzymatching": "true"}, 1
        ),
        "PatientID": draw(lambda: {"PatientID": rng.choice(rows.patient_ids)}, 50),
        "StudyDate range (7 days)": draw(
            lambda: {"StudyDate": "-".join(_study_date(rng))}, 50
        ),
        "AccessionNumber": draw(
            lambda: {"AccessionNumber": rng.choice(rows.accessions)}, 50
        ),
        "ModalitiesInStudy=NM": draw(lambda: {"ModalitiesInStudy": "NM"}, 1),
        "page of 100, no filter": draw(dict, 1),
        "page of 100 at the middle offset": draw(
            lambda: {"offset": str(len(rows.study_series) // 2)}, 1
        ),
        "page of 100 by StudyDate desc": draw(lambda: {"orderby": "-StudyDate"}, 1),
    }


def find_searches(rows: Any, rng: random.Random) -> list[FindQuery]:
    """Study-level C-FIND identifiers (each answered in full: no paging in DIMSE)."""
    first, last = _study_date(rng)
    return [
        FindQuery("PatientName prefix", {"PatientName": "wang^x*"}),
        FindQuery("PatientID", {"PatientID": rng.choice(rows.patient_ids)}),
        FindQuery("StudyDate range (7 days)", {"StudyDate": f"{first}-{last}"}),
        FindQuery("AccessionNumber", {"AccessionNumber": rng.choice(rows.accessions)}),
    ]


def time_qido(port: int, searches: dict[str, list[str]], runs: int) -> dict[str, Any]:
    """p50/p99 of each search over one keep-alive connection, after a warm-up."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    results: dict[str, Any] = {}
    try:
        for name, variants in searches.items():
            times: list[float] = []
            matches = 0
            for run in range(runs + 3):
                query = variants[run % len(variants)]
                path = f"/dicom-web/studies?limit={PAGE}" + (
                    f"&{query}" if query else ""
                )
                started = time.perf_counter()
                connection.request("GET", path, headers={"Accept": QIDO_ACCEPT})
                response = connection.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - started) * 1000.0
                if response.status not in (200, 204):
                    raise RuntimeError(f"QIDO {path} answered {response.status}")
                if run >= 3:
                    times.append(elapsed)
                matches = max(matches, len(json.loads(body)) if body else 0)
            results[name] = {**summarize(times), "rows": matches}
    finally:
        connection.close()
    return results


async def _fill(source_url_holder: dict[str, Any], args: argparse.Namespace) -> Any:
    from archive.index import Index
    from archive.migrate import apply_migrations, migrations_dir
    from bench.qido_million import Rows, Shape, fill

    shape = Shape(args.instances, args.per_series, args.max_series, 2.0)
    rows = Rows(shape, args.seed)
    index = await Index.connect(source_url_holder["url"], 4)
    try:
        async with index.acquire() as conn:
            await apply_migrations(conn, migrations_dir())
        started = time.perf_counter()
        await fill(index, rows)
        source_url_holder["fill_s"] = time.perf_counter() - started
        source_url_holder["studies"] = len(rows.study_series)
        source_url_holder["series"] = shape.series
    finally:
        await index.close()
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fill, serve, time; return the figures as plain data."""
    from dicomvault.embedded_pg import EmbeddedPostgres

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    embedded = EmbeddedPostgres(work / "pg")
    holder: dict[str, Any] = {"url": embedded.start()}
    server = None
    try:
        rows = asyncio.run(_fill(holder, args))
        server = start_dicomvault(
            work / "server",
            Path(args.source),
            [],
            extra_env={"DICOMVAULT_DATABASE_URL": holder["url"]},
        )
        rng = random.Random(args.seed + 1)
        qido = time_qido(server.http_port, qido_searches(rows, rng), args.runs)
        finds = find_latencies(
            LOOPBACK,
            server.dimse_port,
            server.ae_title,
            find_searches(rows, rng),
            max(3, args.runs // 10),
        )
        cfind = {name: summarize(times) for name, times in finds.items()}
    finally:
        if server is not None:
            server.stop()
        embedded.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "instances": args.instances,
        "studies": holder.get("studies"),
        "series": holder.get("series"),
        "fill_s": holder.get("fill_s"),
        "runs": args.runs,
        "qido": qido,
        "cfind": cfind,
        "p50_of_p50_ms": statistics.median(v["p50_ms"] for v in qido.values()),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: fill, measure, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--per-series", type=int, default=8)
    parser.add_argument("--max-series", type=int, default=4)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1393)
    parser.add_argument("--source", default=".", help="dicomvault code to serve")
    parser.add_argument("--work", default="/tmp/dicomvault-bench-million")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    text = json.dumps(result, indent=1, ensure_ascii=False)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
