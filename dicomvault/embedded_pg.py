"""The embedded PostgreSQL of the default set-up, started through pgserver."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

# pgserver keeps the process ids attached to a data folder in this file and
# stops PostgreSQL when the last one detaches.
_ATTACHED_PIDS_FILE = ".handle_pids.json"


def drop_stale_attachments(pgdata: Path) -> list[int]:
    """Remove ids of dead processes from pgserver's attach list; return them.

    A process killed with SIGKILL never detaches, so without this the embedded
    server would never be stopped by the processes that come after it.
    """
    path = pgdata / _ATTACHED_PIDS_FILE
    if not path.exists():
        return []
    try:
        pids = [int(pid) for pid in json.loads(path.read_text())]
    except (ValueError, TypeError):
        logger.warning("Unreadable pgserver attach list in %s; starting afresh", path)
        path.write_text("[]")
        return []
    alive = [pid for pid in pids if _running(pid) and pid != os.getpid()]
    stale = [pid for pid in pids if pid not in alive]
    if stale:
        logger.warning("Dropped %d stale pgserver attachment(s): %s", len(stale), stale)
        path.write_text(json.dumps(alive))
    return stale


def _running(pid: int) -> bool:
    """True for a live process; a killed one not yet reaped (zombie) is dead."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


class EmbeddedPostgres:
    """A private PostgreSQL inside the data folder, stopped when we detach last."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its connection URL."""
        # Imported here: pgserver's import already touches runtime folders.
        import pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        drop_stale_attachments(self.pgdata)
        self._server = pgserver.get_server(  # type: ignore[attr-defined]
            self.pgdata, cleanup_mode="stop"
        )
        url: str = self._server.get_uri()
        logger.info("Embedded PostgreSQL ready in %s", self.pgdata)
        return url

    def stop(self) -> None:
        """Detach; pgserver stops PostgreSQL when no other process is attached."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            logger.info("Embedded PostgreSQL detached")
