"""The HTTP load generator, run in a process of its own (aiohttp, one loop).

Every worker owns exactly one keep-alive connection, so "500 connections" means
500 sockets. Four shapes of load:

- ``stow``: POST each file once as a one-part multipart/related, N clients.
- ``fetch``: a fixed list of GETs shared by N clients, each taken once.
- ``flat``: N connections cycle through a list of GETs, back to back, for a
  fixed time.
- ``paced``: N terminals, each sending its own sequence at a fixed rate (one
  request per period, start times spread over the first period).

Run: ``python -m bench.http_load SPEC.json`` prints one JSON result on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# Identity: servers must not spend CPU compressing DICOM or JSON for loopback.
_HEADERS = {"Accept-Encoding": "identity"}
_READ_CHUNK_BYTES = 1 << 20
_ERROR_SAMPLES = 5
QUANTILE_POINTS = 101


@dataclass
class Tally:
    """Latencies, bytes and errors of one load run."""

    latencies_ms: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    bytes_received: int = 0
    bytes_sent: int = 0
    late_starts: int = 0

    def ok(self, kind: str, latency_s: float) -> None:
        """Count one successful request."""
        milliseconds = latency_s * 1000.0
        self.latencies_ms.append(milliseconds)
        self.by_kind.setdefault(kind, []).append(milliseconds)

    def error(self, kind: str, latency_s: float, text: str) -> None:
        """Count one failed request; its latency still counts."""
        self.errors += 1
        self.latencies_ms.append(latency_s * 1000.0)
        if len(self.error_samples) < _ERROR_SAMPLES:
            self.error_samples.append(f"{kind}: {text}"[:300])


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def summarize(latencies_ms: list[float]) -> dict[str, float]:
    """Count, average, p50, p95, p99 and max of latencies in milliseconds."""
    ordered = sorted(latencies_ms)
    count = len(ordered)
    return {
        "count": count,
        "avg_ms": sum(ordered) / count if count else 0.0,
        "p50_ms": percentile(ordered, 0.50),
        "p95_ms": percentile(ordered, 0.95),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else 0.0,
    }


def quantiles(latencies_ms: list[float]) -> list[float]:
    """Latency at 0%, 1%, ... 100%, for charts."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return []
    last = len(ordered) - 1
    return [ordered[round(last * i / (QUANTILE_POINTS - 1))] for i in range(101)]


def _session(timeout_s: float) -> aiohttp.ClientSession:
    """A session that holds exactly one keep-alive connection."""
    connector = aiohttp.TCPConnector(limit=1, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=_HEADERS, auto_decompress=False
    )


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    accept: str,
    kind: str,
    tally: Tally,
    min_bytes: int = 0,
) -> None:
    started = time.perf_counter()
    try:
        async with session.get(url, headers={"Accept": accept}) as response:
            size = 0
            async for chunk in response.content.iter_chunked(_READ_CHUNK_BYTES):
                size += len(chunk)
            elapsed = time.perf_counter() - started
            tally.bytes_received += size
            if response.status != 200:
                tally.error(kind, elapsed, f"HTTP {response.status} for {url}")
            elif size < min_bytes:
                tally.error(kind, elapsed, f"{size} bytes < {min_bytes} for {url}")
            else:
                tally.ok(kind, elapsed)
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        tally.error(kind, time.perf_counter() - started, f"{error!r} for {url}")


def _multipart(data: bytes, boundary: str) -> bytes:
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, boundary: str, tally: Tally
) -> None:
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            text = await response.read()
            elapsed = time.perf_counter() - started
            tally.bytes_sent += len(body)
            if response.status != 200:
                tally.error("stow", elapsed, f"HTTP {response.status}: {text[:200]!r}")
            else:
                tally.ok("stow", elapsed)
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        tally.error("stow", time.perf_counter() - started, repr(error))


async def _warm(session: aiohttp.ClientSession, url: str) -> None:
    """Open the worker's connection before the clock starts."""
    try:
        async with session.get(url, headers={"Accept": "application/dicom+json"}) as r:
            await r.read()
    except (TimeoutError, aiohttp.ClientError, OSError):
        # A failed warm-up only means the first timed request connects.
        pass


async def _with_sessions(
    count: int,
    timeout_s: float,
    warm_url: str | None,
    work: Callable[[int, aiohttp.ClientSession], Awaitable[None]],
) -> float:
    """Run ``work`` once per worker, each with its own session; time the work."""
    sessions = [_session(timeout_s) for _ in range(count)]
    try:
        if warm_url is not None:
            await asyncio.gather(*(_warm(s, warm_url) for s in sessions))
        started = time.perf_counter()
        await asyncio.gather(*(work(i, s) for i, s in enumerate(sessions)))
        return time.perf_counter() - started
    finally:
        await asyncio.gather(*(s.close() for s in sessions))


async def run_stow(spec: dict[str, Any], tally: Tally) -> float:
    """Each file posted once, ``clients`` at a time."""
    boundary = "dicomvaultbenchboundary0123456789"
    bodies = [_multipart(Path(p).read_bytes(), boundary) for p in spec["files"]]
    queue = list(reversed(bodies))
    url = spec["base"] + "/studies"

    async def work(_: int, session: aiohttp.ClientSession) -> None:
        while queue:
            await _post(session, url, queue.pop(), boundary, tally)

    return await _with_sessions(
        spec["clients"], spec["timeout_s"], spec.get("warm_url"), work
    )


async def run_fetch(spec: dict[str, Any], tally: Tally) -> float:
    """A fixed list of GETs, each taken once by whichever client is free."""
    queue = list(reversed(spec["requests"]))

    async def work(_: int, session: aiohttp.ClientSession) -> None:
        while queue:
            request = queue.pop()
            await _get(
                session,
                spec["base"] + request["path"],
                request["accept"],
                request["kind"],
                tally,
                request.get("min_bytes", 0),
            )

    return await _with_sessions(
        spec["clients"], spec["timeout_s"], spec.get("warm_url"), work
    )


async def run_flat(spec: dict[str, Any], tally: Tally) -> float:
    """``clients`` connections cycling through the requests for ``duration_s``."""
    requests = spec["requests"]
    clock: dict[str, float] = {}

    async def work(index: int, session: aiohttp.ClientSession) -> None:
        deadline = clock.setdefault(
            "deadline", time.perf_counter() + spec["duration_s"]
        )
        position = index
        while time.perf_counter() < deadline:
            request = requests[position % len(requests)]
            position += 1
            url = spec["base"] + request["path"]
            await _get(session, url, request["accept"], request["kind"], tally)

    return await _with_sessions(
        spec["clients"], spec["timeout_s"], spec.get("warm_url"), work
    )


async def run_paced(spec: dict[str, Any], tally: Tally) -> float:
    """Terminals each sending their own sequence at one request per period."""
    period = spec["period_s"]
    steps = max(1, round(spec["duration_s"] / period))
    terminals = spec["terminals"]
    clock: dict[str, float] = {}
    late: list[int] = []

    async def work(index: int, session: aiohttp.ClientSession) -> None:
        start = clock.setdefault("start", time.perf_counter())
        origin = start + period * index / len(terminals)
        sequence = terminals[index]
        for step in range(steps):
            due = origin + step * period
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > period:
                late.append(step)
            request = sequence[step % len(sequence)]
            url = spec["base"] + request["path"]
            await _get(session, url, request["accept"], request["kind"], tally)

    elapsed = await _with_sessions(
        len(terminals), spec["timeout_s"], spec.get("warm_url"), work
    )
    tally.late_starts = len(late)
    return elapsed


_SCENARIOS: dict[str, Callable[[dict[str, Any], Tally], Awaitable[float]]] = {
    "stow": run_stow,
    "fetch": run_fetch,
    "flat": run_flat,
    "paced": run_paced,
}


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load spec and return its result as plain data."""
    tally = Tally()
    elapsed = await _SCENARIOS[spec["scenario"]](spec, tally)
    requests = len(tally.latencies_ms)
    return {
        "scenario": spec["scenario"],
        "elapsed_s": elapsed,
        "requests": requests,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "late_starts": tally.late_starts,
        "bytes_received": tally.bytes_received,
        "bytes_sent": tally.bytes_sent,
        "requests_per_s": requests / elapsed if elapsed > 0 else 0.0,
        "latency": summarize(tally.latencies_ms),
        "by_kind": {k: summarize(v) for k, v in sorted(tally.by_kind.items())},
        "quantiles_ms": quantiles(tally.latencies_ms),
    }


def main(argv: list[str] | None = None) -> int:
    """Read the spec file named on the command line, print the result."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    try:
        import uvloop
    except ImportError:
        # The standard loop works; the client is only a little slower.
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
