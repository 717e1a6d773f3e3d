"""CPU time and peak memory of a server's process tree while a benchmark runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

_Key = tuple[int, float]


@dataclass(frozen=True)
class Usage:
    """What the server's processes used during one measurement."""

    wall_s: float
    cpu_s: float
    peak_memory_mb: float

    @property
    def cpu_percent(self) -> float:
        """Average CPU over the run, 100 = one core busy."""
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def _key(process: psutil.Process) -> _Key:
    return process.pid, process.create_time()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class TreeSampler:
    """Samples the processes ``roots()`` returns, and their children.

    CPU is the sum over every process seen of its CPU time at the last sample
    minus its CPU time at the start (zero for processes born during the run).
    Memory counts private resident memory of each process plus the largest
    shared part once, so that PostgreSQL's shared buffers are not counted per
    backend.
    """

    def __init__(
        self, roots: Callable[[], list[psutil.Process]], interval_s: float = 0.2
    ) -> None:
        self._roots = roots
        self._interval_s = interval_s
        self._first: dict[_Key, float] = {}
        self._last: dict[_Key, float] = {}
        self._peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = 0.0

    def _tree(self) -> list[psutil.Process]:
        processes: list[psutil.Process] = []
        for root in self._roots():
            try:
                processes.append(root)
                processes.extend(root.children(recursive=True))
            except psutil.NoSuchProcess:
                # A root that ended is simply no longer counted.
                continue
        return processes

    def _sample(self, first: bool) -> None:
        private = 0
        shared = 0
        for process in self._tree():
            try:
                with process.oneshot():
                    key = _key(process)
                    cpu = _cpu(process)
                    memory = process.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                # Processes come and go (PostgreSQL backends); skip the gone.
                continue
            if first:
                self._first[key] = cpu
            self._last[key] = cpu
            private += memory.rss - memory.shared
            shared = max(shared, memory.shared)
        self._peak_bytes = max(self._peak_bytes, private + shared)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample(first=False)

    def start(self) -> None:
        """Take the first sample and keep sampling in a thread."""
        self._started = time.perf_counter()
        self._sample(first=True)
        self._thread.start()

    def stop(self) -> Usage:
        """Take the last sample and return the usage since ``start``."""
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        wall = time.perf_counter() - self._started
        cpu = sum(last - self._first.get(key, 0.0) for key, last in self._last.items())
        return Usage(wall, cpu, self._peak_bytes / 1e6)
