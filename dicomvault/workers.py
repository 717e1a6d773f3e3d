"""Several server processes on one node: one Python process uses one core.

``dicomvault serve`` with ``workers`` above 1 runs this supervisor instead of
the server. It does once what must happen once (start the embedded PostgreSQL,
create the development key), then starts the workers, each a whole server
(dicomvault/server.py) on the same HTTP and DIMSE ports (SO_REUSEPORT: the
kernel spreads connections over them). A node keeps no state of its own
(ARCHITECTURE.md, "Scaling out"), so workers share nothing but the index and
the store, like nodes behind a load balancer.

A worker that dies is started again; SIGINT or SIGTERM stops every worker
(each drains its requests) and then the embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import threading
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from types import FrameType

from dicomvault.embedded_pg import EmbeddedPostgres
from dicomvault.settings import Secret, Settings

logger = logging.getLogger(__name__)

# A worker that dies this soon after starting, this many times in a row, is
# failing at start (a port taken, a bad setting): stop instead of looping.
_QUICK_DEATH_S = 10.0
_QUICK_DEATHS = 3
_POLL_S = 0.5
_STOP_MARGIN_S = 15.0


def _worker_main(settings: Settings, worker: int, log_level: str) -> None:
    """The entry point of one worker process (started with 'spawn')."""
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s [w{worker}] %(name)s: %(message)s",
    )
    from dicomvault.server import run

    try:
        import uvloop
    except ImportError:
        asyncio.run(run(settings, worker=worker))
    else:
        uvloop.run(run(settings, worker=worker))


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, settings: Settings, log_level: str) -> None:
        self._settings = settings
        self._log_level = log_level
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._processes: dict[int, BaseProcess] = {}
        self._started_at: dict[int, float] = {}
        self._quick_deaths: dict[int, int] = {}

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: stop every worker, then return from ``run``."""
        self._stopping.set()

    def run(self) -> int:
        """Serve until asked to stop; 0 when every worker ended cleanly."""
        settings = self._settings
        embedded = None
        url = settings.database_url
        if url is None:
            embedded = EmbeddedPostgres(settings.data_dir / "pg")
            url = Secret(embedded.start())
        try:
            # Created here once, not raced for by the workers.
            from dicomvault.server import load_keys

            load_keys(settings)
            worker_settings = replace(settings, database_url=url)
            for worker in range(settings.workers):
                self._start(worker, worker_settings)
            failed = self._watch(worker_settings)
            codes = self._stop_all()
        finally:
            if embedded is not None:
                embedded.stop()
        if failed:
            return 1
        if all(stopped_cleanly(code) for code in codes):
            return 0
        logger.error("Workers ended with exit codes %s", codes)
        return 1

    def _start(self, worker: int, settings: Settings) -> None:
        process = self._context.Process(
            target=_worker_main,
            args=(settings, worker, self._log_level),
            name=f"dicomvault-worker-{worker}",
        )
        process.start()
        self._processes[worker] = process
        self._started_at[worker] = time.monotonic()
        logger.info("Started worker %d (pid %s)", worker, process.pid)

    def _watch(self, settings: Settings) -> bool:
        """Restart workers that die; True when one keeps dying at start."""
        while not self._stopping.wait(_POLL_S):
            for worker, process in list(self._processes.items()):
                if process.is_alive():
                    continue
                lived = time.monotonic() - self._started_at[worker]
                logger.error(
                    "Worker %d (pid %s) exited with %s after %.0f s; starting it again",
                    worker,
                    process.pid,
                    process.exitcode,
                    lived,
                )
                quick = (
                    self._quick_deaths.get(worker, 0) + 1
                    if lived < _QUICK_DEATH_S
                    else 0
                )
                self._quick_deaths[worker] = quick
                if quick >= _QUICK_DEATHS:
                    logger.critical(
                        "Worker %d failed %d times at start; stopping", worker, quick
                    )
                    return True
                self._start(worker, settings)
        return False

    def _stop_all(self) -> list[int | None]:
        """SIGTERM to every worker (each drains), then wait; kill the late."""
        for process in self._processes.values():
            if process.is_alive() and process.pid is not None:
                process.terminate()
        deadline = time.monotonic() + self._settings.shutdown_grace_s + _STOP_MARGIN_S
        for worker, process in self._processes.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.warning("Worker %d did not stop in time; killing it", worker)
                process.kill()
                process.join()
        return [process.exitcode for process in self._processes.values()]


def stopped_cleanly(exit_code: int | None) -> bool:
    """Whether a worker's exit code is that of a stop we asked for.

    0 is a worker that drained and ended; -SIGTERM one that the stop's
    SIGTERM ended while it was still starting, before it handled signals.
    """
    return exit_code in (0, -signal.SIGTERM)


def supervise(settings: Settings, log_level: str) -> int:
    """Run ``settings.workers`` server processes until SIGINT or SIGTERM."""
    supervisor = Supervisor(settings, log_level)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, supervisor.request_stop)
    logger.info(
        "Starting %d worker processes on HTTP port %d and DIMSE port %d",
        settings.workers,
        settings.http_port,
        settings.dimse_port,
    )
    return supervisor.run()
