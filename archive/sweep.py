"""Find and remove objects that no index row points at (ARCHITECTURE.md, Ingest).

Ingest writes the object first and the index second. A process killed between
the two leaves an object nobody refers to; this job finds such orphans once
they are older than any ingest could still be running, and removes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from archive.index import Index
from storage.base import ObjectStore

logger = logging.getLogger(__name__)

_BATCH = 1000


@dataclass(frozen=True)
class SweepReport:
    """What one sweep looked at and removed."""

    examined: int
    orphans_removed: int
    temporaries_removed: int


async def sweep_orphans(
    index: Index, store: ObjectStore, min_age_s: float
) -> SweepReport:
    """Remove objects older than ``min_age_s`` that the index does not know."""
    cutoff = time.time() - min_age_s
    temporaries = await asyncio.to_thread(store.sweep_temporaries, cutoff)
    candidates = await asyncio.to_thread(lambda: list(store.modified_before(cutoff)))
    removed = 0
    for start in range(0, len(candidates), _BATCH):
        batch = candidates[start : start + _BATCH]
        known = await index.known_object_keys(batch)
        for key in batch:
            if key not in known:
                await asyncio.to_thread(store.delete, key)
                removed += 1
    report = SweepReport(len(candidates), removed, temporaries)
    if removed or temporaries:
        logger.warning(
            "Sweep removed %d orphaned object(s) and %d partial write(s)",
            removed,
            temporaries,
        )
    return report
